/**
 * The LeanTile scheduler: turns a {@linkcode Partition} into flat `Uint32Array` tables that a
 * kernel reads as they are. A workgroup's run is cut at segment boundaries into *pieces*; a piece
 * that covers its whole segment writes the final output, any other piece writes a partial state
 * into its own slot. Slots of one segment are consecutive and in ascending token order, so the
 * reduce list is one `(firstSlot, count)` per split segment and merging is deterministic.
 *
 * @module
 */

import type { Partition } from "./planner.ts";
import type { Problem } from "./problem.ts";
import type { TileConfig } from "./tile_config.ts";

/** `u32`s per piece record. */
export const PIECE_STRIDE = 8;
/** Field offsets inside a piece record. */
export const PIECE = {
  seq: 0,
  kvHead: 1,
  rowBlock: 2,
  tokenBegin: 3,
  tokenEnd: 4,
  /** Partial slot, or {@linkcode DIRECT} when the piece writes the final output. */
  slot: 5,
  /** First token of the sequence in the concatenated K/V. */
  kvStart: 6,
  seqLen: 7,
} as const;
/** `u32`s per reduce record. */
export const REDUCE_STRIDE = 8;
/** Field offsets inside a reduce record. */
export const REDUCE = { seq: 0, kvHead: 1, rowBlock: 2, firstSlot: 3, numSlots: 4 } as const;
/** Slot value of a piece that writes the final output itself. */
export const DIRECT = 0xffffffff;

/** Kernel-ready tables for one plan. */
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
}

/**
 * Builds the schedule tables of a partition. O(workgroups + segments).
 *
 * @example
 * ```ts
 * import { partition, schedule, segmentTiles, tileConfig, validateShape } from "@lean/attention";
 * const problem = validateShape({ seqLens: [300], numHeads: 2, numKVHeads: 2, headDim: 8 });
 * const tiles = tileConfig(problem);
 * const s = schedule(problem, tiles, partition(segmentTiles(problem, tiles), "lean", 4));
 * console.log(s.workgroups, s.partialSlots); // 4 4
 * ```
 */
export function schedule(problem: Problem, tiles: TileConfig, part: Partition): Schedule {
  const { segmentTileStarts: segStarts, runStarts } = part;
  const workgroups = runStarts.length - 1;
  const numSegments = segStarts.length - 1;
  const perSeq = problem.numKVHeads * tiles.rowBlocks;
  const T = tiles.tileTokens;
  const pieces = new Uint32Array((workgroups + numSegments) * PIECE_STRIDE);
  const reduce = new Uint32Array(Math.min(numSegments, 2 * workgroups) * REDUCE_STRIDE);
  const pieceOffsets = new Uint32Array(workgroups + 1);
  let np = 0;
  let nr = 0;
  let slots = 0;
  let seg = 0;
  let reducedSeg = -1;
  for (let w = 0; w < workgroups; w++) {
    pieceOffsets[w] = np;
    let a = runStarts[w];
    const b = runStarts[w + 1];
    while (a < b) {
      while (segStarts[seg + 1] <= a) seg++;
      const segBegin = segStarts[seg];
      const segEnd = segStarts[seg + 1];
      const e = Math.min(b, segEnd);
      const seq = Math.floor(seg / perSeq);
      const inSeq = seg - seq * perSeq;
      const kvHead = Math.floor(inSeq / tiles.rowBlocks);
      const rowBlock = inSeq - kvHead * tiles.rowBlocks;
      const seqLen = problem.seqLens[seq];
      const o = np * PIECE_STRIDE;
      pieces[o + PIECE.seq] = seq;
      pieces[o + PIECE.kvHead] = kvHead;
      pieces[o + PIECE.rowBlock] = rowBlock;
      pieces[o + PIECE.tokenBegin] = (a - segBegin) * T;
      pieces[o + PIECE.tokenEnd] = Math.min((e - segBegin) * T, seqLen);
      pieces[o + PIECE.kvStart] = problem.kvStarts[seq];
      pieces[o + PIECE.seqLen] = seqLen;
      if (a === segBegin && e === segEnd) {
        pieces[o + PIECE.slot] = DIRECT;
      } else {
        pieces[o + PIECE.slot] = slots;
        if (reducedSeg !== seg) {
          reducedSeg = seg;
          const r = nr++ * REDUCE_STRIDE;
          reduce[r + REDUCE.seq] = seq;
          reduce[r + REDUCE.kvHead] = kvHead;
          reduce[r + REDUCE.rowBlock] = rowBlock;
          reduce[r + REDUCE.firstSlot] = slots;
        }
        reduce[(nr - 1) * REDUCE_STRIDE + REDUCE.numSlots]++;
        slots++;
      }
      np++;
      a = e;
    }
  }
  pieceOffsets[workgroups] = np;
  return {
    workgroups,
    pieceOffsets,
    pieces: pieces.slice(0, np * PIECE_STRIDE),
    reduce: reduce.slice(0, nr * REDUCE_STRIDE),
    partialSlots: slots,
  };
}
