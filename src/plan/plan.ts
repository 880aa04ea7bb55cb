/**
 * A plan: everything decided on the host for one batch shape (problem, tile geometry,
 * partition and schedule tables). Backends only execute it.
 *
 * @module
 */

import { kvWindowBounds } from "./windows.ts";
import type { KVAddressing } from "./kv_addressing.ts";
import { type Partition, partition, segmentTiles } from "./partition.ts";
import {
  type DecodeShape,
  type Problem,
  type Strategy,
  validateShape,
  validateStrategy,
} from "../core/problem.ts";
import { REDUCE_STRIDE, type Schedule, schedule } from "./schedule.ts";
import { type TileConfig, tileConfig, type TileOptions } from "./tiles.ts";
import { INVARIANT_CHUNK_TILES, scheduleWindows } from "./schedule_windows.ts";

/**
 * Options for {@linkcode createPlan}.
 *
 * @example
 * ```ts
 * import { createPlan, type PlanOptions } from "@lean/attention";
 * const options: PlanOptions = { strategy: "split", grid: 132 };
 * console.log(createPlan({ seqLens: [64], numHeads: 1, numKVHeads: 1, headDim: 8 }, options).strategy); // split
 * ```
 */
export interface PlanOptions extends TileOptions {
  /** Partition strategy (default `"lean"`). */
  strategy?: Strategy;
  /** Workgroups the device runs at once (the lean grid); from the device profile. */
  grid: number;
  /**
   * Largest K (or V) binding in bytes. A cache larger than this is split into KV windows, each
   * its own decode dispatch (see `src/plan/windows.ts`). Default: no limit.
   */
  maxBindingBytes?: number;
  /**
   * Cut every sequence at fixed points (every {@linkcode INVARIANT_CHUNK_TILES} tiles from its
   * start) and merge its chunks in order, so a sequence's output is bitwise the same whatever
   * other sequences share the batch. `lean` spreads the chunks over the grid in balanced runs,
   * `split` gives each chunk a workgroup, `single` is unchanged (already invariant). Default false.
   * In a ragged batch (`qLens`) a GPU kernel's row blocks follow the batch's largest query
   * length: invariance holds among batches with the same largest entry.
   */
  batchInvariant?: boolean;
}

/**
 * A complete, immutable execution plan for one batch shape.
 *
 * @example
 * ```ts
 * import { createPlan } from "@lean/attention";
 * const plan = createPlan({ seqLens: [1000], numHeads: 8, numKVHeads: 8, headDim: 64 }, { grid: 16 });
 * console.log(plan.numTiles, plan.numSegments, plan.schedule.workgroups); // 128 8 16
 * ```
 */
export interface Plan {
  /** The validated, normalised shape. */
  readonly problem: Problem;
  /** Tile geometry: tokens per LeanTile, rows per block, workgroup size. */
  readonly tiles: TileConfig;
  /** The partition strategy. */
  readonly strategy: Strategy;
  /** The grid the plan was cut for. */
  readonly grid: number;
  /** Where the global tile order is cut into per-workgroup runs. */
  readonly partition: Partition;
  /** The kernel tables: pieces per workgroup and the reduce list. */
  readonly schedule: Schedule;
  /** How the pieces address K/V rows: dense (the schedule's windows) or through page lists. */
  readonly kv: KVAddressing;
  /** Total LeanTiles over all segments. */
  readonly numTiles: number;
  /** Segments: sequences x KV heads x row blocks. */
  readonly numSegments: number;
  /** Whether the plan is batch-invariant (see {@linkcode PlanOptions.batchInvariant}). */
  readonly batchInvariant: boolean;
}

/**
 * Checks a `maxBindingBytes` option: a positive integer, or `undefined`/`Infinity` for no limit.
 *
 * @example
 * ```ts
 * import { validateMaxBindingBytes } from "@lean/attention/plan";
 * console.log(validateMaxBindingBytes(1 << 20), validateMaxBindingBytes(undefined)); // 1048576 Infinity
 * ```
 */
export function validateMaxBindingBytes(value: unknown): number {
  if (value === undefined) return Number.POSITIVE_INFINITY;
  if (typeof value !== "number") {
    throw new TypeError(`maxBindingBytes must be a number: got ${typeof value}`);
  }
  if (value !== Number.POSITIVE_INFINITY && (!Number.isInteger(value) || value < 1)) {
    throw new RangeError(`maxBindingBytes must be a positive integer: got ${value}`);
  }
  return value;
}

/**
 * Checks a boolean option (`undefined` is false).
 *
 * @example
 * ```ts
 * import { validateFlag } from "@lean/attention/plan";
 * console.log(validateFlag("batchInvariant", true)); // true
 * ```
 */
export function validateFlag(name: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== "boolean") {
    throw new TypeError(`${name} must be a boolean: got ${typeof value}`);
  }
  return value;
}

/**
 * Plans a decode batch: validates the shape, picks the tile geometry, partitions the tiles over
 * workgroups and builds the kernel tables. Pure and O(segments + grid).
 *
 * @example
 * ```ts
 * import { createPlan, describePlan } from "@lean/attention";
 * const plan = createPlan(
 *   { seqLens: [4096, 100], numHeads: 32, numKVHeads: 8, headDim: 128 },
 *   { strategy: "lean", grid: 132 },
 * );
 * console.log(describePlan(plan));
 * ```
 */
export function createPlan(shape: DecodeShape, options: PlanOptions): Plan {
  return planProblem(validateShape(shape), options);
}

/**
 * {@linkcode createPlan} for a shape validated already: the later stages take the
 * {@linkcode Problem} that `validateShape` (or `validateInput`) returned, so one decode
 * validates its shape once.
 *
 * @example
 * ```ts
 * import { planProblem, validateShape } from "@lean/attention/plan";
 * const problem = validateShape({ seqLens: [300], numHeads: 2, numKVHeads: 2, headDim: 64 });
 * const plan = planProblem(problem, { grid: 4 });
 * console.log(plan.problem === problem); // true
 * ```
 */
export function planProblem(problem: Problem, options: PlanOptions): Plan {
  const strategy = validateStrategy(options.strategy);
  const grid = options.grid;
  if (typeof grid !== "number") throw new TypeError(`grid must be a number: got ${typeof grid}`);
  if (!Number.isInteger(grid) || grid < 1) {
    throw new RangeError(`grid must be a positive integer: got ${grid}`);
  }
  const maxBindingBytes = validateMaxBindingBytes(options.maxBindingBytes);
  const batchInvariant = validateFlag("batchInvariant", options.batchInvariant);
  const tiles = tileConfig(problem, options);
  const numSegments = problem.numSeqs * problem.numKVHeads * tiles.rowBlocks;
  const bounds = maxBindingBytes === Number.POSITIVE_INFINITY
    ? Float64Array.of(0, problem.totalTokens)
    : kvWindowBounds(problem, {
      maxBindingBytes,
      tileTokens: tiles.tileTokens,
      alignTokens: tiles.tileTokens * (batchInvariant ? INVARIANT_CHUNK_TILES : 1),
    });
  // Pieces hold a sequence's first row within its window as a u32: a window must not wrap it.
  for (let w = 0; w + 1 < bounds.length; w++) {
    if (bounds[w + 1] - bounds[w] > 0xffffffff) {
      throw new RangeError(
        `seqLens must total at most 4294967295 tokens in one KV window (32-bit offsets): got ${
          bounds[w + 1] - bounds[w]
        }; split the KV with maxBindingBytes`,
      );
    }
  }
  if (bounds.length > 2 || batchInvariant) {
    const windowed = scheduleWindows(problem, tiles, { strategy, grid, bounds, batchInvariant });
    return {
      problem,
      tiles,
      strategy,
      grid,
      partition: windowed.partition,
      schedule: windowed.schedule,
      kv: { kind: "dense", windows: windowed.schedule.windows },
      numTiles: windowed.numTiles,
      numSegments,
      batchInvariant,
    };
  }
  const segStarts = segmentTiles(problem, tiles);
  const part = partition(segStarts, strategy, grid);
  const dense = schedule(problem, tiles, part);
  return {
    problem,
    tiles,
    strategy,
    grid,
    partition: part,
    schedule: dense,
    kv: { kind: "dense", windows: dense.windows },
    numTiles: segStarts[numSegments],
    numSegments,
    batchInvariant,
  };
}

/**
 * A one-paragraph human summary of a plan: sizes, balance and merge work.
 *
 * @example
 * ```ts
 * import { createPlan, describePlan } from "@lean/attention";
 * const plan = createPlan({ seqLens: [512], numHeads: 4, numKVHeads: 4, headDim: 64 }, { grid: 8 });
 * console.log(describePlan(plan).startsWith("lean:")); // true
 * ```
 */
export function describePlan(plan: Plan): string {
  const { problem: p, tiles, schedule: s, partition: part } = plan;
  let minRun = Infinity;
  let maxRun = 0;
  for (let w = 0; w < s.workgroups; w++) {
    const n = part.runStarts[w + 1] - part.runStarts[w];
    minRun = Math.min(minRun, n);
    maxRun = Math.max(maxRun, n);
  }
  const pieces = s.pieceOffsets[s.workgroups];
  return [
    `${plan.strategy}: ${p.numSeqs} seq x ${p.numKVHeads} kv heads x ${tiles.rowBlocks} row blocks` +
    ` = ${plan.numSegments} segments, ${plan.numTiles} tiles of ${tiles.tileTokens} tokens`,
    `  ${s.workgroups} workgroups (grid ${plan.grid}${
      part.splits > 1 ? `, ${part.splits} splits` : ""
    })` +
    `, ${minRun}..${maxRun} tiles each, ${pieces} pieces`,
    `  ${s.partialSlots} partial states merged into ${s.reduce.length / REDUCE_STRIDE} segments`,
    ...(s.windows.length > 1 ? [`  ${s.windows.length} KV windows, one decode dispatch each`] : []),
    ...(plan.batchInvariant ? [`  batch-invariant: chunks of ${INVARIANT_CHUNK_TILES} tiles`] : []),
  ].join("\n");
}
