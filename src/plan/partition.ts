/**
 * The partition planner. All three strategies are expressed the same way: the global order of
 * LeanTiles (sequence-major, then KV head, then row block, then token) is cut into contiguous
 * runs, one run per workgroup. They differ only in where the cuts fall:
 *
 * - `lean`: equal cuts over the whole order (stream-K), runs cross segment boundaries; unless a
 *   segment-aligned cut (see {@linkcode alignedCut}) costs no more, or runs in one wave and costs
 *   at most 5% more (see {@linkcode partitionCost}, {@linkcode preferAligned}), as when the
 *   segments already fill the grid evenly: then crossing buys little and costs pieces, and runs
 *   that start at different token positions in different KV heads read K/V more slowly than runs
 *   that walk the heads' rows in step (bench/notes.md, session 19);
 * - `split` (FlashDecoding): every segment cut into the same number of balanced chunks;
 * - `single` (FlashAttention-2): a cut at every segment boundary and nowhere else.
 *
 * Cost is O(segments + workgroups): nothing here touches individual tokens.
 *
 * @module
 */

import type { Problem, Strategy } from "../core/problem.ts";
import type { TileConfig } from "./tiles.ts";
import { skippedTiles } from "./sliding_window.ts";

/**
 * A partition of the global tile order into per-workgroup runs.
 *
 * @example
 * ```ts
 * import { type Partition } from "@lean/attention";
 * import { partition, segmentTiles, tileConfig, validateShape } from "@lean/attention/plan";
 * const problem = validateShape({ seqLens: [300], numHeads: 2, numKVHeads: 2, headDim: 8 });
 * const part: Partition = partition(segmentTiles(problem, tileConfig(problem)), "split", 4);
 * console.log(part.strategy, part.splits, Array.from(part.runStarts)); // split 2 [0, 2, 5, 7, 10]
 * ```
 */
export interface Partition {
  /** The strategy that made the cuts. */
  readonly strategy: Strategy;
  /** Global tile index where each segment starts; `numSegments + 1` entries. */
  readonly segmentTileStarts: Uint32Array;
  /** Global tile index where each workgroup's run starts; `workgroups + 1` entries. */
  readonly runStarts: Uint32Array;
  /** Chunks per segment for `split`, and for `lean` when it took the aligned cut (else 1). */
  readonly splits: number;
  /** For `lean`: true when the order was cut into equal runs (stream-K), false when aligned. */
  readonly streamK: boolean;
}

/**
 * Extra cost of a piece (a run's stretch within one segment) in tiles: loading the query rows,
 * merging the token groups and writing a state. Measured on an H100 (bench/notes.md).
 *
 * @example
 * ```ts
 * import { partitionCost, PIECE_COST_TILES } from "@lean/attention/plan";
 * // One workgroup running one 8-tile segment: 8 tiles plus one piece.
 * const cost = partitionCost(Uint32Array.of(0, 8), Uint32Array.of(0, 8), 1);
 * console.log(cost, cost === 8 + PIECE_COST_TILES); // 12 true
 * ```
 */
export const PIECE_COST_TILES = 4;

/**
 * Share of a GPU-sized grid (at least {@linkcode SATURATING_MIN_GRID} workgroups) whose
 * workgroups already stream K/V at the memory's rate: on the H200, 428 workgroups of 502 (one run
 * per segment) read b64 16k MHA at 101% of the read ceiling, 14% faster than 502 equal runs
 * (bench/notes.md, session 19). Smaller grids (CPU threads, tests) are modelled as compute-bound.
 */
export const SATURATING_SHARE = 0.8;

/** Grids from this size on are modelled as bandwidth-bound (see {@linkcode SATURATING_SHARE}). */
export const SATURATING_MIN_GRID = 64;

/**
 * The modelled makespan of a partition in tiles. On small grids (CPU threads, tests): the longest
 * run counting `PIECE_COST_TILES` per piece, times the waves its runs take on `grid` workgroups.
 * On GPU-sized grids, where the work is bound by memory bandwidth: the longer of the longest run
 * and the whole work (tiles and pieces) spread over the workgroups that saturate the memory
 * (`SATURATING_SHARE` of the grid); runs beyond one wave then cost only their share of the
 * bandwidth.
 *
 * @example
 * ```ts
 * import { partitionCost } from "@lean/attention/plan";
 * const segments = Uint32Array.of(0, 4, 8);
 * console.log(partitionCost(segments, Uint32Array.of(0, 4, 8), 2)); // 8
 * console.log(partitionCost(segments, Uint32Array.of(0, 3, 6, 8), 3)); // 11
 * ```
 */
export function partitionCost(
  segmentTileStarts: Uint32Array,
  runStarts: Uint32Array,
  grid: number,
): number {
  const { worst, work } = runCosts(segmentTileStarts, runStarts);
  const g = Math.max(1, grid);
  const runs = runStarts.length - 1;
  if (g < SATURATING_MIN_GRID) return worst * Math.ceil(runs / g);
  return Math.max(worst, work / (SATURATING_SHARE * g));
}

/** The longest run and the whole work of a partition, in tiles, each piece `PIECE_COST_TILES`. */
function runCosts(
  segmentTileStarts: Uint32Array,
  runStarts: Uint32Array,
): { worst: number; work: number } {
  const runs = runStarts.length - 1;
  let worst = 0;
  let work = 0;
  let seg = 0;
  for (let r = 0; r < runs; r++) {
    const a = runStarts[r];
    const b = runStarts[r + 1];
    while (segmentTileStarts[seg + 1] <= a) seg++;
    let pieces = 0;
    for (let s = seg; s + 1 < segmentTileStarts.length && segmentTileStarts[s] < b; s++) pieces++;
    const cost = b - a + PIECE_COST_TILES * pieces;
    worst = Math.max(worst, cost);
    work += cost;
  }
  return { worst, work };
}

/**
 * How much longer (modelled) an aligned cut may be than the stream-K cut and still be taken for
 * `lean`: on the H200, runs aligned with the segments read K/V faster than equal runs that
 * cross them (split beat lean by 2-6% on uniform batches whose equal runs were modelled up to
 * 11% shorter; bench/notes.md, session 19).
 */
export const ALIGNED_MARGIN = 1.05;

/**
 * The segment-aligned cut `lean` weighs against equal runs: of `split`'s cut and the cut into
 * as many chunks per segment as one wave of `grid` workgroups holds, the one whose longest run
 * times its waves is shorter (`split`'s on a tie).
 *
 * @example
 * ```ts
 * import { alignedCut } from "@lean/attention/plan";
 * // 8 segments of 2048 tiles on 264 workgroups: 33 chunks each, one run per workgroup.
 * const starts = Uint32Array.from({ length: 9 }, (_, i) => i * 2048);
 * const cut = alignedCut(starts, 264);
 * console.log(cut.splits, cut.runStarts.length - 1); // 33 264
 * ```
 */
export function alignedCut(segmentTileStarts: Uint32Array, grid: number): Partition {
  const split = partition(segmentTileStarts, "split", grid);
  const segments = segmentTileStarts.length - 1;
  const fill = Math.min(128, Math.floor(grid / Math.max(1, segments)));
  if (fill <= 1 || fill === split.splits) return split;
  const filled = cutEachSegment(segmentTileStarts, fill, "split");
  // Compared by their longest runs: every workgroup of a wave helps a kernel that needs all the
  // resident workgroups to saturate memory (the H200's 4-row kernels: 33 chunks per head on 264
  // workgroups read 5% faster than split's 29).
  const span = (runs: Uint32Array) =>
    runCosts(segmentTileStarts, runs).worst * Math.ceil((runs.length - 1) / Math.max(1, grid));
  return span(filled.runStarts) < span(split.runStarts) ? filled : split;
}

/**
 * Whether `lean` takes the aligned cut over equal runs: when it costs no more, or, running in one
 * wave, at most {@linkcode ALIGNED_MARGIN} times more (its runs then walk the heads in step).
 *
 * @example
 * ```ts
 * import { preferAligned } from "@lean/attention/plan";
 * const segments = Uint32Array.of(0, 100, 200);
 * // Two chunks of 50 per segment against equal runs of 50 tiles: the same cut, so no costlier.
 * const runs = Uint32Array.of(0, 50, 100, 150, 200);
 * console.log(preferAligned(segments, runs, runs, 4)); // true
 * ```
 */
export function preferAligned(
  segmentTileStarts: Uint32Array,
  aligned: Uint32Array,
  equal: Uint32Array,
  grid: number,
): boolean {
  const a = partitionCost(segmentTileStarts, aligned, grid);
  const e = partitionCost(segmentTileStarts, equal, grid);
  return a <= e || (aligned.length - 1 <= grid && a <= ALIGNED_MARGIN * e);
}

/** Every segment cut into `min(splits, its tiles)` balanced chunks. */
function cutEachSegment(
  segmentTileStarts: Uint32Array,
  splits: number,
  strategy: Strategy,
): Partition {
  const numSegments = segmentTileStarts.length - 1;
  const total = segmentTileStarts[numSegments];
  const runStarts = new Uint32Array(numSegments * splits + 1);
  let r = 0;
  for (let s = 0; s < numSegments; s++) {
    const start = segmentTileStarts[s];
    const n = segmentTileStarts[s + 1] - start;
    const chunks = Math.min(splits, n);
    for (let c = 0; c < chunks; c++) runStarts[r++] = start + Math.floor((c * n) / chunks);
  }
  runStarts[r] = total;
  return {
    strategy,
    segmentTileStarts,
    runStarts: runStarts.subarray(0, r + 1),
    splits,
    streamK: false,
  };
}

/**
 * Counts the tiles of every segment and returns their prefix sums. With a sliding window, the
 * tiles before the window of a sequence's earliest row are not counted (see
 * `src/plan/sliding_window.ts`).
 *
 * @example
 * ```ts
 * import { segmentTiles, tileConfig, validateShape } from "@lean/attention/plan";
 * const problem = validateShape({ seqLens: [100, 64], numHeads: 2, numKVHeads: 2, headDim: 8 });
 * console.log(segmentTiles(problem, tileConfig(problem))); // Uint32Array [0, 2, 4, 5, 6]
 * ```
 */
export function segmentTiles(problem: Problem, tiles: TileConfig): Uint32Array {
  const { numSeqs, numKVHeads, seqLens } = problem;
  const { rowBlocks, rowsPerBlock } = tiles;
  const starts = new Uint32Array(numSeqs * numKVHeads * rowBlocks + 1);
  // With a sliding window, the tiles before a sequence's earliest window are not scheduled.
  const skip = skippedTiles(problem, tiles.tileTokens);
  let total = 0;
  let s = 0;
  for (let seq = 0; seq < numSeqs; seq++) {
    const n = Math.ceil(seqLens[seq] / tiles.tileTokens) - (skip ? skip[seq] : 0);
    // A sequence with fewer query tokens than the batch's largest leaves its last blocks empty.
    const blocks = Math.ceil(segmentRows(problem, seq) / rowsPerBlock);
    for (let h = 0; h < numKVHeads; h++) {
      for (let b = 0; b < rowBlocks; b++) {
        starts[s++] = total;
        if (b < blocks) total += n;
      }
    }
  }
  if (total > 0xffffffff) throw new RangeError(`total tiles must fit in 32 bits: got ${total}`);
  starts[s] = total;
  return starts;
}

/**
 * Query rows of one sequence served by one read of a KV head: `groupSize * qLens[seq]` (row `r`
 * is head `r / qLens[seq]` of the group at query position `r % qLens[seq]`).
 *
 * @example
 * ```ts
 * import { segmentRows, validateShape } from "@lean/attention/plan";
 * const p = validateShape({ seqLens: [9, 9], qLens: [1, 3], numHeads: 4, numKVHeads: 2, headDim: 8 });
 * console.log(segmentRows(p, 0), segmentRows(p, 1), p.rowsPerGroup); // 2 6 6
 * ```
 */
export function segmentRows(
  problem: Pick<Problem, "groupSize" | "qLens">,
  seq: number,
): number {
  return problem.groupSize * problem.qLens[seq];
}

/**
 * FlashAttention-2's split heuristic: the smallest split count whose wave efficiency over the grid
 * is within 85% of the best, skipping counts that give the same chunk size as one fewer.
 *
 * @example
 * ```ts
 * import { chooseSplits } from "@lean/attention/plan";
 * console.log(chooseSplits(8, 64, 132)); // 16 (chunks per segment)
 * ```
 */
export function chooseSplits(segments: number, maxTiles: number, grid: number): number {
  if (segments >= 0.8 * grid) return 1;
  const maxSplits = Math.min(128, grid, maxTiles);
  const efficiency = (n: number) => {
    const waves = (segments * n) / grid;
    return waves / Math.ceil(waves);
  };
  let best = 0;
  for (let n = 1; n <= maxSplits; n++) best = Math.max(best, efficiency(n));
  for (let n = 1; n <= maxSplits; n++) {
    const eligible = n === 1 || Math.ceil(maxTiles / n) !== Math.ceil(maxTiles / (n - 1));
    if (eligible && efficiency(n) >= 0.85 * best) return n;
  }
  return 1;
}

/**
 * Cuts the tile order into runs for a strategy. `grid` is the number of workgroups the device
 * runs at once (from its profile); `lean` uses exactly `min(grid, tiles)` workgroups.
 *
 * @example
 * ```ts
 * import { partition, segmentTiles, tileConfig, validateShape } from "@lean/attention/plan";
 * const problem = validateShape({ seqLens: [1000, 200], numHeads: 4, numKVHeads: 2, headDim: 64 });
 * const tiles = tileConfig(problem);
 * const p = partition(segmentTiles(problem, tiles), "lean", 8);
 * console.log(p.runStarts.length - 1); // 8 workgroups
 * ```
 */
export function partition(
  segmentTileStarts: Uint32Array,
  strategy: Strategy,
  grid: number,
): Partition {
  const numSegments = segmentTileStarts.length - 1;
  const total = segmentTileStarts[numSegments];
  if (strategy === "single") {
    return { strategy, segmentTileStarts, runStarts: segmentTileStarts, splits: 1, streamK: false };
  }
  if (strategy === "lean") {
    const g = Math.max(1, Math.min(grid, total));
    const runStarts = new Uint32Array(g + 1);
    const base = Math.floor(total / g);
    const extra = total % g;
    for (let i = 0; i <= g; i++) runStarts[i] = i * base + Math.min(i, extra);
    const aligned = alignedCut(segmentTileStarts, grid);
    if (preferAligned(segmentTileStarts, aligned.runStarts, runStarts, grid)) {
      return { ...aligned, strategy, streamK: false };
    }
    return { strategy, segmentTileStarts, runStarts, splits: 1, streamK: true };
  }
  let maxTiles = 0;
  for (let s = 0; s < numSegments; s++) {
    const n = segmentTileStarts[s + 1] - segmentTileStarts[s];
    if (n > maxTiles) maxTiles = n;
  }
  const splits = chooseSplits(numSegments, maxTiles, grid);
  if (splits === 1) {
    return { strategy, segmentTileStarts, runStarts: segmentTileStarts, splits, streamK: false };
  }
  return cutEachSegment(segmentTileStarts, splits, strategy);
}
