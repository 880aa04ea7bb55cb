/**
 * A plan: everything decided on the host for one batch shape (problem, tile geometry,
 * partition and schedule tables). Backends only execute it.
 *
 * @module
 */

import { type Partition, partition, segmentTiles } from "./planner.ts";
import {
  type DecodeShape,
  type Problem,
  type Strategy,
  validateShape,
  validateStrategy,
} from "./problem.ts";
import { type Schedule, schedule } from "./scheduler.ts";
import { type TileConfig, tileConfig, type TileOptions } from "./tile_config.ts";

/** Options for {@linkcode createPlan}. */
export interface PlanOptions extends TileOptions {
  /** Partition strategy (default `"lean"`). */
  strategy?: Strategy;
  /** Workgroups the device runs at once (the lean grid); from the device profile. */
  grid: number;
}

/** A complete, immutable execution plan for one batch shape. */
export interface Plan {
  readonly problem: Problem;
  readonly tiles: TileConfig;
  readonly strategy: Strategy;
  /** The grid the plan was cut for. */
  readonly grid: number;
  readonly partition: Partition;
  readonly schedule: Schedule;
  /** Total LeanTiles over all segments. */
  readonly numTiles: number;
  /** Segments: sequences x KV heads x row blocks. */
  readonly numSegments: number;
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
  const problem = validateShape(shape);
  const strategy = validateStrategy(options.strategy);
  const grid = options.grid;
  if (typeof grid !== "number") throw new TypeError(`grid must be a number: got ${typeof grid}`);
  if (!Number.isInteger(grid) || grid < 1) {
    throw new RangeError(`grid must be a positive integer: got ${grid}`);
  }
  const tiles = tileConfig(problem, options);
  const segStarts = segmentTiles(problem, tiles);
  const part = partition(segStarts, strategy, grid);
  const numSegments = segStarts.length - 1;
  return {
    problem,
    tiles,
    strategy,
    grid,
    partition: part,
    schedule: schedule(problem, tiles, part),
    numTiles: segStarts[numSegments],
    numSegments,
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
    `  ${s.partialSlots} partial states merged into ${s.reduce.length / 8} segments`,
  ].join("\n");
}
