/**
 * The LeanTile scheduler: turns a {@linkcode Partition} into flat `Uint32Array` tables that a
 * kernel reads as they are. A workgroup's run is cut at segment boundaries into *pieces*; a piece
 * that covers its whole segment writes the final output, any other piece writes a partial state
 * into its own slot. Slots of one segment are consecutive and in ascending token order, so the
 * reduce list is one `(firstSlot, count)` per split segment and merging is deterministic.
 *
 * @module
 */

import { PIECE_RECORD, REDUCE_RECORD } from "../kernels/abi.ts";
import type { KVWindow } from "./windows.ts";
import type { Partition } from "./partition.ts";
import type { Problem } from "../core/problem.ts";
import type { TileConfig } from "./tiles.ts";
import { skippedTiles } from "./sliding_window.ts";

/**
 * `u32`s per piece record.
 *
 * @example
 * ```ts
 * import {
 *   partition, PIECE_STRIDE, schedule, segmentTiles, tileConfig, validateShape,
 * } from "@lean/attention/plan";
 * const problem = validateShape({ seqLens: [300], numHeads: 2, numKVHeads: 2, headDim: 8 });
 * const tiles = tileConfig(problem);
 * const s = schedule(problem, tiles, partition(segmentTiles(problem, tiles), "lean", 4));
 * console.log(s.pieces.length / PIECE_STRIDE, s.pieceOffsets[s.workgroups]); // 4 4
 * ```
 */
export const PIECE_STRIDE: number = PIECE_RECORD.stride;
/**
 * Field offsets inside a piece record (declared once in the kernel ABI, `src/kernels/abi.ts`):
 * `seq`, `kvHead`, `rowBlock`; `tokenBegin` and `tokenEnd`, the piece's tokens counted from the
 * row `kvStart`; `slot`, the partial slot or {@linkcode DIRECT} when the piece writes the final
 * output; `kvStart`, the row of the piece's window where the sequence starts (0 when it began in
 * an earlier window, and then the token counts and `seqLen` count from the window's first row);
 * `seqLen`, the context length counted from `kvStart`; `qStart` and `qLen`, the sequence's first
 * query token in `q`'s rows and its query tokens (each sequence's own in a ragged batch).
 *
 * @example
 * ```ts
 * import {
 *   partition, PIECE, PIECE_STRIDE, schedule, segmentTiles, tileConfig, validateShape,
 * } from "@lean/attention/plan";
 * const problem = validateShape({ seqLens: [300], numHeads: 2, numKVHeads: 2, headDim: 8 });
 * const tiles = tileConfig(problem);
 * const s = schedule(problem, tiles, partition(segmentTiles(problem, tiles), "lean", 4));
 * for (let o = 0; o < s.pieces.length; o += PIECE_STRIDE) {
 *   const p = s.pieces.subarray(o, o + PIECE_STRIDE);
 *   console.log(p[PIECE.kvHead], p[PIECE.tokenBegin], p[PIECE.tokenEnd], p[PIECE.slot]);
 * }
 * // 0 0 128 0
 * // 0 128 300 1
 * // 1 0 128 2
 * // 1 128 300 3
 * ```
 */
export const PIECE: Readonly<
  Record<
    | "seq"
    | "kvHead"
    | "rowBlock"
    | "tokenBegin"
    | "tokenEnd"
    | "slot"
    | "kvStart"
    | "seqLen"
    | "qStart"
    | "qLen",
    number
  >
> = PIECE_RECORD.offsets;
/**
 * `u32`s per reduce record.
 *
 * @example
 * ```ts
 * import {
 *   partition, REDUCE_STRIDE, schedule, segmentTiles, tileConfig, validateShape,
 * } from "@lean/attention/plan";
 * const problem = validateShape({ seqLens: [300], numHeads: 2, numKVHeads: 2, headDim: 8 });
 * const tiles = tileConfig(problem);
 * const s = schedule(problem, tiles, partition(segmentTiles(problem, tiles), "lean", 4));
 * console.log(s.reduce.length / REDUCE_STRIDE); // 2
 * ```
 */
export const REDUCE_STRIDE: number = REDUCE_RECORD.stride;
/**
 * Field offsets inside a reduce record.
 *
 * @example
 * ```ts
 * import {
 *   partition, REDUCE, REDUCE_STRIDE, schedule, segmentTiles, tileConfig, validateShape,
 * } from "@lean/attention/plan";
 * const problem = validateShape({ seqLens: [300], numHeads: 2, numKVHeads: 2, headDim: 8 });
 * const tiles = tileConfig(problem);
 * const s = schedule(problem, tiles, partition(segmentTiles(problem, tiles), "lean", 4));
 * for (let o = 0; o < s.reduce.length; o += REDUCE_STRIDE) {
 *   const r = s.reduce.subarray(o, o + REDUCE_STRIDE);
 *   console.log(r[REDUCE.kvHead], r[REDUCE.firstSlot], r[REDUCE.numSlots]);
 * }
 * // 0 0 2
 * // 1 2 2
 * ```
 */
export const REDUCE: Readonly<
  Record<"seq" | "kvHead" | "rowBlock" | "firstSlot" | "numSlots" | "qStart" | "qLen", number>
> = REDUCE_RECORD.offsets;
/**
 * Slot value of a piece that writes the final output itself.
 *
 * @example
 * ```ts
 * import {
 *   DIRECT, partition, PIECE, schedule, segmentTiles, tileConfig, validateShape,
 * } from "@lean/attention/plan";
 * const problem = validateShape({ seqLens: [300], numHeads: 2, numKVHeads: 2, headDim: 8 });
 * const tiles = tileConfig(problem);
 * // "single": one piece per segment, each writing its final output.
 * const s = schedule(problem, tiles, partition(segmentTiles(problem, tiles), "single", 4));
 * console.log(s.pieces[PIECE.slot] === DIRECT, s.partialSlots); // true 0
 * ```
 */
export const DIRECT = 0xffffffff;

/**
 * Kernel-ready tables for one plan.
 *
 * @example
 * ```ts
 * import { type Schedule } from "@lean/attention";
 * import {
 *   partition, schedule, segmentTiles, tileConfig, validateShape,
 * } from "@lean/attention/plan";
 * const problem = validateShape({ seqLens: [300], numHeads: 2, numKVHeads: 2, headDim: 8 });
 * const tiles = tileConfig(problem);
 * const s: Schedule = schedule(problem, tiles, partition(segmentTiles(problem, tiles), "lean", 4));
 * console.log(Array.from(s.pieceOffsets), s.windows.length); // [0, 1, 2, 3, 4] 1
 * ```
 */
export interface Schedule {
  /** Workgroups of the decode dispatch. */
  readonly workgroups: number;
  /** Piece index where each workgroup's list starts; `workgroups + 1` entries. */
  readonly pieceOffsets: Uint32Array;
  /** Piece records, {@linkcode PIECE_STRIDE} `u32`s each. */
  readonly pieces: Uint32Array;
  /** Reduce records, {@linkcode REDUCE_STRIDE} `u32`s each, one per split segment. */
  readonly reduce: Uint32Array;
  /** Partial-state slots the decode kernel writes. */
  readonly partialSlots: number;
  /**
   * KV windows, each its own decode dispatch over its workgroups (one window covering the whole
   * cache unless it is split over several bindings, see `src/plan/windows.ts`). A piece's `kvStart`
   * is relative to its window's first token row.
   */
  readonly windows: readonly KVWindow[];
}

/**
 * Builds the schedule tables of a partition. O(workgroups + segments).
 *
 * @example
 * ```ts
 * import {
 *   partition, schedule, segmentTiles, tileConfig, validateShape,
 * } from "@lean/attention/plan";
 * const problem = validateShape({ seqLens: [300], numHeads: 2, numKVHeads: 2, headDim: 8 });
 * const tiles = tileConfig(problem);
 * const s = schedule(problem, tiles, partition(segmentTiles(problem, tiles), "lean", 4));
 * console.log(s.workgroups, s.partialSlots); // 4 4
 * ```
 */
export function schedule(problem: Problem, tiles: TileConfig, part: Partition): Schedule {
  // Field offsets as locals: this loop is the planner's hot path.
  const {
    seq: P_SEQ,
    kvHead: P_KV_HEAD,
    rowBlock: P_ROW_BLOCK,
    tokenBegin: P_TOKEN_BEGIN,
    tokenEnd: P_TOKEN_END,
    slot: P_SLOT,
    kvStart: P_KV_START,
    seqLen: P_SEQ_LEN,
    qStart: P_Q_START,
    qLen: P_Q_LEN,
  } = PIECE;
  const {
    seq: R_SEQ,
    kvHead: R_KV_HEAD,
    rowBlock: R_ROW_BLOCK,
    firstSlot: R_FIRST_SLOT,
    numSlots: R_NUM_SLOTS,
    qStart: R_Q_START,
    qLen: R_Q_LEN,
  } = REDUCE;
  const { segmentTileStarts: segStarts, runStarts } = part;
  const workgroups = runStarts.length - 1;
  const numSegments = segStarts.length - 1;
  const T = tiles.tileTokens;
  const rowBlocks = tiles.rowBlocks;
  const numKVHeads = problem.numKVHeads;
  const { seqLens, kvStarts, qStarts, qLens } = problem;
  // With a sliding window, a segment's first tile is its sequence's first scheduled one.
  const skip = skippedTiles(problem, T);
  const empty = emptySegments(problem, tiles);
  // Upper bounds; the tables returned are views of the filled part.
  const pieces = new Uint32Array((workgroups + numSegments) * PIECE_STRIDE);
  const reduce = new Uint32Array(
    (Math.min(numSegments, 2 * workgroups) + empty.length / 3) * REDUCE_STRIDE,
  );
  const pieceOffsets = new Uint32Array(workgroups + 1);
  let o = 0;
  let r = -REDUCE_STRIDE;
  let slots = 0;
  // The segment being walked and its (seq, kvHead, rowBlock), advanced incrementally.
  let seg = 0;
  let seq = 0;
  let kvHead = 0;
  let rowBlock = 0;
  let reducedSeg = -1;
  for (let w = 0; w < workgroups; w++) {
    pieceOffsets[w] = o / PIECE_STRIDE;
    let a = runStarts[w];
    const b = runStarts[w + 1];
    while (a < b) {
      while (segStarts[seg + 1] <= a) {
        seg++;
        if (++rowBlock === rowBlocks) {
          rowBlock = 0;
          if (++kvHead === numKVHeads) {
            kvHead = 0;
            seq++;
          }
        }
      }
      const segBegin = segStarts[seg];
      const segEnd = segStarts[seg + 1];
      const e = b < segEnd ? b : segEnd;
      const seqLen = seqLens[seq];
      const first = skip ? skip[seq] - segBegin : -segBegin;
      const end = (e + first) * T;
      pieces[o + P_SEQ] = seq;
      pieces[o + P_KV_HEAD] = kvHead;
      pieces[o + P_ROW_BLOCK] = rowBlock;
      pieces[o + P_TOKEN_BEGIN] = (a + first) * T;
      pieces[o + P_TOKEN_END] = end < seqLen ? end : seqLen;
      pieces[o + P_KV_START] = kvStarts[seq];
      pieces[o + P_SEQ_LEN] = seqLen;
      pieces[o + P_Q_START] = qStarts[seq];
      pieces[o + P_Q_LEN] = qLens[seq];
      if (a === segBegin && e === segEnd) {
        pieces[o + P_SLOT] = DIRECT;
      } else {
        pieces[o + P_SLOT] = slots;
        if (reducedSeg !== seg) {
          reducedSeg = seg;
          r += REDUCE_STRIDE;
          reduce[r + R_SEQ] = seq;
          reduce[r + R_KV_HEAD] = kvHead;
          reduce[r + R_ROW_BLOCK] = rowBlock;
          reduce[r + R_FIRST_SLOT] = slots;
          reduce[r + R_Q_START] = qStarts[seq];
          reduce[r + R_Q_LEN] = qLens[seq];
        }
        reduce[r + R_NUM_SLOTS]++;
        slots++;
      }
      o += PIECE_STRIDE;
      a = e;
    }
  }
  pieceOffsets[workgroups] = o / PIECE_STRIDE;
  for (let i = 0; i < empty.length; i += 3) {
    r += REDUCE_STRIDE;
    writeEmptyReduce(reduce, r, problem, empty[i], empty[i + 1], empty[i + 2]);
  }
  return {
    workgroups,
    pieceOffsets,
    pieces: pieces.subarray(0, o),
    reduce: reduce.subarray(0, r + REDUCE_STRIDE),
    partialSlots: slots,
    windows: [{
      tokenBegin: 0,
      tokenEnd: problem.totalTokens,
      workgroupBegin: 0,
      workgroupEnd: workgroups,
    }],
  };
}

/**
 * The row blocks of empty requests (sequences with no context) as `(seq, kvHead, rowBlock)`
 * triples: they get no tiles, only a reduce record of no slots, so the merge writes their rows
 * the merge identity (out 0, lse -Infinity).
 */
export function emptySegments(problem: Problem, tiles: TileConfig): number[] {
  const out: number[] = [];
  for (let seq = 0; seq < problem.numSeqs; seq++) {
    if (problem.seqLens[seq] !== 0) continue;
    const blocks = Math.ceil((problem.groupSize * problem.qLens[seq]) / tiles.rowsPerBlock);
    for (let h = 0; h < problem.numKVHeads; h++) {
      for (let b = 0; b < blocks; b++) out.push(seq, h, b);
    }
  }
  return out;
}

/** Writes the reduce record of an empty request's row block at `r`: no slots. */
export function writeEmptyReduce(
  reduce: Uint32Array | number[],
  r: number,
  problem: Problem,
  seq: number,
  kvHead: number,
  rowBlock: number,
): void {
  reduce[r + REDUCE.seq] = seq;
  reduce[r + REDUCE.kvHead] = kvHead;
  reduce[r + REDUCE.rowBlock] = rowBlock;
  reduce[r + REDUCE.firstSlot] = 0;
  reduce[r + REDUCE.numSlots] = 0;
  reduce[r + REDUCE.qStart] = problem.qStarts[seq];
  reduce[r + REDUCE.qLen] = problem.qLens[seq];
  for (let i = REDUCE_RECORD.fields.length; i < REDUCE_STRIDE; i++) reduce[r + i] = 0;
}
