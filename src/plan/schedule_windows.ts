/**
 * The scheduler for split KV caches and batch-invariant plans. It cuts the work into *units*:
 * a segment's tokens inside one KV window ({@linkcode KVWindow}), and with `batchInvariant` further
 * into chunks of a fixed number of tiles counted from the sequence's first token. Each window is
 * partitioned on its own over the full grid (its own decode dispatch); pieces never cross a unit,
 * so no tile crosses a window. Partial slots and the reduce list stay global: the slots of one
 * segment are consecutive and in token order across windows, so the one merge dispatch reduces
 * them in a fixed order.
 *
 * Piece coordinates are relative to the piece's window: `kvStart` is the sequence's first row in
 * the window (0 when it began in an earlier window), and `tokenBegin`, `tokenEnd` and `seqLen` are
 * counted from that row. Causal limits (`seqLen - qLen + pos + 1`) are unchanged by the shift, and
 * window cuts keep at least `qLen` tokens of a sequence after them, so the counts never go below
 * zero. Cost: O(units + workgroups).
 *
 * @module
 */

import type { KVWindow } from "./windows.ts";
import { type Partition, partition, segmentRows } from "./partition.ts";
import type { Problem, Strategy } from "../core/problem.ts";
import {
  DIRECT,
  PIECE,
  PIECE_STRIDE,
  REDUCE,
  REDUCE_STRIDE,
  type Schedule,
  writeEmptyReduce,
} from "./schedule.ts";
import type { TileConfig } from "./tiles.ts";
import { skippedTiles } from "./sliding_window.ts";

/** Appends a zeroed record of `stride` words to a table; returns its first index. */
function pushRecord(table: number[], stride: number): number {
  const at = table.length;
  for (let i = 0; i < stride; i++) table.push(0);
  return at;
}

/**
 * Tiles per chunk of a batch-invariant plan: a sequence's cuts fall every this many tiles.
 *
 * @example
 * ```ts
 * import { createPlan } from "@lean/attention";
 * import { INVARIANT_CHUNK_TILES } from "@lean/attention/plan";
 * const shape = { seqLens: [2000], numHeads: 1, numKVHeads: 1, headDim: 64 };
 * const plan = createPlan(shape, { grid: 4, tileTokens: 64, batchInvariant: true });
 * // 32 tiles cut into units of 8 (the sequence's fixed chunks), whatever the batch.
 * const units = Array.from(plan.partition.segmentTileStarts);
 * console.log(INVARIANT_CHUNK_TILES, units); // 8 [0, 8, 16, 24, 32]
 * ```
 */
export const INVARIANT_CHUNK_TILES = 8;

/**
 * Options for {@linkcode scheduleWindows}.
 *
 * @example
 * ```ts
 * import {
 *   scheduleWindows, tileConfig, validateShape, type WindowedScheduleOptions,
 * } from "@lean/attention/plan";
 * const problem = validateShape({ seqLens: [1000], numHeads: 2, numKVHeads: 2, headDim: 64 });
 * const options: WindowedScheduleOptions = {
 *   strategy: "lean", grid: 4, bounds: Float64Array.of(0, 1000), batchInvariant: true,
 * };
 * const { schedule } = scheduleWindows(problem, tileConfig(problem), options);
 * console.log(schedule.workgroups, schedule.windows.length); // 4 1
 * ```
 */
export interface WindowedScheduleOptions {
  /** Partition strategy. */
  readonly strategy: Strategy;
  /** Workgroups the device runs at once (the lean grid). */
  readonly grid: number;
  /** Token boundaries of the KV windows (from `kvWindowBounds`). */
  readonly bounds: Float64Array;
  /** Cut every sequence into fixed chunks and keep every chunk its own piece. */
  readonly batchInvariant: boolean;
}

/**
 * What {@linkcode scheduleWindows} returns: the partition over units and the kernel tables.
 *
 * @example
 * ```ts
 * import {
 *   scheduleWindows, tileConfig, validateShape, type WindowedSchedule,
 * } from "@lean/attention/plan";
 * const problem = validateShape({ seqLens: [300, 200], numHeads: 2, numKVHeads: 2, headDim: 64 });
 * const ws: WindowedSchedule = scheduleWindows(problem, tileConfig(problem), {
 *   strategy: "lean", grid: 4, bounds: Float64Array.of(0, 256, 500), batchInvariant: false,
 * });
 * const units = ws.partition.segmentTileStarts.length - 1;
 * console.log(ws.numTiles, units, ws.schedule.windows.length); // 18 6 2
 * ```
 */
export interface WindowedSchedule {
  /** Runs over the units' global tile order (`segmentTileStarts` holds the unit starts). */
  readonly partition: Partition;
  /** The kernel tables over the units. */
  readonly schedule: Schedule;
  /** Tiles over all units. */
  readonly numTiles: number;
}

/**
 * Cuts units into `min(grid, units)` runs balanced by tiles, cutting only between units: every
 * run is within one unit of the average.
 *
 * @example
 * ```ts
 * import { unitRuns } from "@lean/attention/plan";
 * console.log(Array.from(unitRuns(Uint32Array.of(0, 8, 16, 24, 27), 2))); // [0, 16, 27]
 * ```
 */
export function unitRuns(unitStarts: Uint32Array, grid: number): Uint32Array {
  const n = unitStarts.length - 1;
  const total = unitStarts[n];
  const g = Math.max(1, Math.min(grid, n));
  const runs = [0];
  let u = 0;
  for (let i = 1; i < g; i++) {
    const target = (i * total) / g;
    while (u < n && unitStarts[u + 1] <= target) u++;
    if (u >= n) break;
    const cut = target - unitStarts[u] <= unitStarts[u + 1] - target ? u : u + 1;
    if (cut < n && unitStarts[cut] > runs[runs.length - 1]) runs.push(unitStarts[cut]);
  }
  runs.push(total);
  return Uint32Array.from(runs);
}

/**
 * Schedules a plan over KV windows (and fixed chunks when batch-invariant).
 *
 * @example
 * ```ts
 * import {
 *   kvWindowBounds, scheduleWindows, tileConfig, validateShape,
 * } from "@lean/attention/plan";
 * const problem = validateShape({ seqLens: [300, 200], numHeads: 2, numKVHeads: 2, headDim: 64 });
 * const tiles = tileConfig(problem);
 * const bounds = kvWindowBounds(problem, { maxBindingBytes: 65536, tileTokens: 64, alignTokens: 64 });
 * const { schedule } = scheduleWindows(problem, tiles, {
 *   strategy: "lean", grid: 4, bounds, batchInvariant: false,
 * });
 * console.log(schedule.windows.length, schedule.workgroups); // 5 18
 * ```
 */
export function scheduleWindows(
  problem: Problem,
  tiles: TileConfig,
  options: WindowedScheduleOptions,
): WindowedSchedule {
  const { strategy, grid, bounds, batchInvariant } = options;
  const { numSeqs, seqLens, kvStarts, numKVHeads } = problem;
  const T = tiles.tileTokens;
  const RB = tiles.rowBlocks;
  const numSegments = numSeqs * numKVHeads * RB;
  const chunkTokens = batchInvariant && strategy !== "single"
    ? INVARIANT_CHUNK_TILES * T
    : Number.POSITIVE_INFINITY;
  // With a sliding window, each sequence's tokens before its first scheduled tile are left out.
  const skip = skippedTiles(problem, T);

  const unitStarts: number[] = [0];
  const runStarts: number[] = [0];
  const windows: KVWindow[] = [];
  const pieceOffsets: number[] = [];
  const pieces: number[] = [];
  /** Segment of each piece; `-1 - segment` when the piece is its whole segment (DIRECT). */
  const pieceSeg: number[] = [];
  let tileBase = 0;
  let splits = 1;
  let streamK = false;
  let first = 0; // first sequence overlapping the window
  for (let w = 0; w + 1 < bounds.length; w++) {
    const A = bounds[w];
    const B = bounds[w + 1];
    while (kvStarts[first + 1] <= A) first++;
    // Units of this window, in (seq, kvHead, rowBlock, token) order.
    const uSeq: number[] = [];
    const uSeg: number[] = [];
    const uLo: number[] = [];
    const uHi: number[] = [];
    const prefix: number[] = [0];
    for (let seq = first; seq < numSeqs && kvStarts[seq] < B; seq++) {
      const start = kvStarts[seq];
      const lo = Math.max(A, start, start + (skip ? skip[seq] * T : 0)) - start;
      const hi = Math.min(B, start + seqLens[seq]) - start;
      const blocks = Math.ceil(segmentRows(problem, seq) / tiles.rowsPerBlock);
      for (let seg = seq * numKVHeads * RB, end = seg + numKVHeads * RB; seg < end; seg++) {
        if ((seg - seq * numKVHeads * RB) % RB >= blocks) continue; // no rows in this block
        for (let a = lo; a < hi;) {
          const b = Math.min(hi, (Math.floor(a / chunkTokens) + 1) * chunkTokens);
          uSeq.push(seq);
          uSeg.push(seg);
          uLo.push(a);
          uHi.push(b);
          prefix.push(prefix[prefix.length - 1] + Math.ceil((b - a) / T));
          a = b;
        }
      }
    }
    const local = Uint32Array.from(prefix);
    let runs: Uint32Array;
    if (!batchInvariant || strategy === "single") {
      const part = partition(local, strategy, grid);
      runs = part.runStarts;
      splits = Math.max(splits, part.splits);
      streamK ||= part.streamK;
    } else if (strategy === "split") {
      runs = local;
    } else {
      runs = unitRuns(local, grid);
    }
    const workgroupBegin = pieceOffsets.length;
    let u = 0;
    for (let r = 0; r + 1 < runs.length; r++) {
      pieceOffsets.push(pieces.length / PIECE_STRIDE);
      let a = runs[r];
      const b = runs[r + 1];
      while (a < b) {
        while (prefix[u + 1] <= a) u++;
        const e = Math.min(b, prefix[u + 1]);
        const seq = uSeq[u];
        const seg = uSeg[u];
        const start = kvStarts[seq];
        const origin = Math.max(A, start) - start; // the sequence's first token in this window
        const tokBegin = uLo[u] + (a - prefix[u]) * T;
        const tokEnd = Math.min(uLo[u] + (e - prefix[u]) * T, uHi[u]);
        const rest = seg - seq * numKVHeads * RB;
        const f = pushRecord(pieces, PIECE_STRIDE);
        pieces[f + PIECE.seq] = seq;
        pieces[f + PIECE.kvHead] = Math.floor(rest / RB);
        pieces[f + PIECE.rowBlock] = rest % RB;
        pieces[f + PIECE.tokenBegin] = tokBegin - origin;
        pieces[f + PIECE.tokenEnd] = tokEnd - origin;
        pieces[f + PIECE.slot] = DIRECT;
        pieces[f + PIECE.kvStart] = start + origin - A;
        pieces[f + PIECE.seqLen] = seqLens[seq] - origin;
        pieces[f + PIECE.qStart] = problem.qStarts[seq];
        pieces[f + PIECE.qLen] = problem.qLens[seq];
        const whole = tokBegin === (skip ? skip[seq] * T : 0) && tokEnd === seqLens[seq];
        pieceSeg.push(whole ? -1 - seg : seg);
        a = e;
      }
    }
    windows.push({ tokenBegin: A, tokenEnd: B, workgroupBegin, workgroupEnd: pieceOffsets.length });
    for (let i = 1; i < prefix.length; i++) unitStarts.push(tileBase + prefix[i]);
    for (let i = 1; i < runs.length; i++) runStarts.push(tileBase + runs[i]);
    tileBase += prefix[prefix.length - 1];
  }
  const workgroups = pieceOffsets.length;
  pieceOffsets.push(pieces.length / PIECE_STRIDE);

  // Slots: a segment's partial pieces get consecutive slots in token order (pieces are already in
  // window order, then token order), segments in order.
  const partialCount = new Uint32Array(numSegments);
  for (const seg of pieceSeg) if (seg >= 0) partialCount[seg]++;
  const nextSlot = new Uint32Array(numSegments);
  const reduce: number[] = [];
  let slots = 0;
  for (let seg = 0; seg < numSegments; seg++) {
    const seq = Math.floor(seg / (numKVHeads * RB));
    const rest = seg - seq * numKVHeads * RB;
    if (seqLens[seq] === 0 && (rest % RB) * tiles.rowsPerBlock < segmentRows(problem, seq)) {
      // An empty request's rows: a record of no slots, so the merge writes the identity.
      const f = pushRecord(reduce, REDUCE_STRIDE);
      writeEmptyReduce(reduce, f, problem, seq, Math.floor(rest / RB), rest % RB);
      continue;
    }
    if (partialCount[seg] === 0) continue;
    const f = pushRecord(reduce, REDUCE_STRIDE);
    reduce[f + REDUCE.seq] = seq;
    reduce[f + REDUCE.kvHead] = Math.floor(rest / RB);
    reduce[f + REDUCE.rowBlock] = rest % RB;
    reduce[f + REDUCE.firstSlot] = slots;
    reduce[f + REDUCE.numSlots] = partialCount[seg];
    reduce[f + REDUCE.qStart] = problem.qStarts[seq];
    reduce[f + REDUCE.qLen] = problem.qLens[seq];
    nextSlot[seg] = slots;
    slots += partialCount[seg];
  }
  const pieceTable = Uint32Array.from(pieces);
  pieceSeg.forEach((seg, i) => {
    if (seg >= 0) pieceTable[i * PIECE_STRIDE + PIECE.slot] = nextSlot[seg]++;
  });
  return {
    partition: {
      strategy,
      segmentTileStarts: Uint32Array.from(unitStarts),
      runStarts: Uint32Array.from(runStarts),
      splits,
      streamK: strategy === "lean" && streamK,
    },
    schedule: {
      workgroups,
      pieceOffsets: Uint32Array.from(pieceOffsets),
      pieces: pieceTable,
      reduce: Uint32Array.from(reduce),
      partialSlots: slots,
      windows,
    },
    numTiles: tileBase,
  };
}
