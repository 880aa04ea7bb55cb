/**
 * The uniform block of the decode, tiled and merge kernels, packed on the host from the ABI's one
 * declaration (`PARAMS_RECORD` in `abi.ts`), and the WGSL those kernels share around it: the flat
 * workgroup of a 2-D dispatch, a block row's query row, the loop over a workgroup's pieces and the
 * entry point.
 *
 * @module
 */

import type { KVDtype } from "../core/problem.ts";
import type { Variant } from "../core/variant_options.ts";
import { packRecord, PARAMS_RECORD, recordStructWGSL } from "./abi.ts";
import { kvElementBytes, kvLoadBytes, kvLoadDim } from "./kernel_layout.ts";

/** `u32`s of the uniform block both kernels read (see `PARAMS_WGSL`). */
export const PARAMS_WORDS: number = PARAMS_RECORD.stride;

/** The values of the uniform block (`PARAMS_WGSL`) for one dispatch. */
export interface KernelParams {
  numHeads: number;
  qLen: number;
  groupSize: number;
  rowsPerGroup: number;
  numKVHeads: number;
  headDim: number;
  /** V's head dim (MLA), for the load size of both rows (default `headDim`). */
  headDimV?: number;
  kvDtype: KVDtype;
  /** First u32 of the piece records in the schedule buffer. */
  pieceBase: number;
  /** First u32 of the reduce records in the schedule buffer. */
  reduceBase: number;
  /** Workgroups (decode) or reduce records (merge). */
  count: number;
  /** Reduce records, for a block both kernels read (default `count`). */
  mergeCount?: number;
  /** Softmax scale (natural units; the block holds it in log2 units). */
  scale: number;
  /** log2 of the page size, for paged kernels (default 0). */
  pageShift?: number;
  /** The attention variant: its sliding window and soft-cap go into the block. */
  variant?: Variant;
  /** Per-tensor scale of 8-bit K (default 1). */
  kScale?: number;
  /** Per-tensor scale of 8-bit V (default 1). */
  vScale?: number;
}

/**
 * Packs the uniform block of one dispatch (the layout of {@linkcode PARAMS_RECORD}).
 *
 * @example
 * ```ts
 * import { kernelParams } from "./kernel_params.ts";
 * const words = kernelParams({
 *   numHeads: 8, qLen: 1, groupSize: 4, rowsPerGroup: 4, numKVHeads: 2, headDim: 64,
 *   kvDtype: "f16", pieceBase: 9, reduceBase: 40, count: 8, scale: 0.125,
 * });
 * console.log(words.length, words[4]); // 14 16
 * ```
 */
export function kernelParams(p: KernelParams): Uint32Array<ArrayBuffer> {
  return packRecord(PARAMS_RECORD, {
    numHeads: p.numHeads,
    qLen: p.qLen,
    groupSize: p.groupSize,
    rowsPerGroup: p.rowsPerGroup,
    kvRow: (p.numKVHeads * p.headDim * kvElementBytes(p.kvDtype)) /
      kvLoadBytes(p.kvDtype, kvLoadDim(p.headDim, p.headDimV)),
    pieceBase: p.pieceBase,
    reduceBase: p.reduceBase,
    count: p.count,
    scaleLog2: p.scale * Math.LOG2E,
    pageShift: p.pageShift ?? 0,
    mergeCount: p.mergeCount ?? p.count,
    window: Math.min(p.variant?.slidingWindow ?? 0, 0xffffffff),
    softCap: (p.variant?.logitsSoftCap ?? 0) * Math.LOG2E,
    kScale: p.kScale ?? 1,
    vScale: p.vScale ?? 1,
  });
}

/** The uniform block shared by the decode and merge kernels, generated from the ABI. */
export const PARAMS_WGSL: string = recordStructWGSL(PARAMS_RECORD);

/** Index of a flat workgroup in a possibly 2-D dispatch (grids beyond 65,535 workgroups). */
export const FLAT_WORKGROUP_WGSL = `
fn flat_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}`;

/**
 * Maps row `r` of a KV group of a sequence with `q_len` query tokens from `q_start` (its piece's
 * or reduce record's) to its flat query row `(q_start + pos) * numHeads + head`.
 */
export const QUERY_ROW_WGSL = `
fn query_row(q_start: u32, q_len: u32, kv_head: u32, r: u32) -> u32 {
  let head = kv_head * params.group_size + r / q_len;
  let pos = r % q_len;
  return (q_start + pos) * params.num_heads + head;
}`;

/**
 * The statements that open a kernel's loop over its workgroup's pieces (flat workgroup `w`):
 * each piece's fields from the schedule, named as the piece record's fields, its first block row
 * `r0` (the kernel's `RP` rows per block) and its real rows `n_rows`. The kernel closes the loop.
 */
export const PIECE_LOOP_WGSL = `  let p_begin = sched[w];
  let p_end = sched[w + 1u];
  for (var pc = p_begin; pc < p_end; pc++) {
    let f = params.piece_base + pc * PIECE_STRIDE;
    let seq = sched[f + PIECE_SEQ];
    let kv_head = sched[f + PIECE_KV_HEAD];
    let r0 = sched[f + PIECE_ROW_BLOCK] * RP;
    let tok_begin = sched[f + PIECE_TOKEN_BEGIN];
    let tok_end = sched[f + PIECE_TOKEN_END];
    let slot = sched[f + PIECE_SLOT];
    let kv_start = sched[f + PIECE_KV_START];
    let seq_len = sched[f + PIECE_SEQ_LEN];
    let q_start = sched[f + PIECE_Q_START];
    let q_len = sched[f + PIECE_Q_LEN];
    // The sequence's own rows (ragged batches): groupSize x its query tokens.
    let n_rows = min(RP, params.group_size * q_len - r0);`;

/**
 * The entry point of the decode and tiled kernels for `W` threads: the flat workgroup `w` of a
 * possibly 2-D dispatch, and the early return of workgroups past `params.count` (the dispatch
 * rounds up); `lid` is the thread's index in its workgroup.
 *
 * @example
 * ```ts
 * import { kernelEntryWGSL } from "./kernel_params.ts";
 * console.log(kernelEntryWGSL(128).startsWith("@compute @workgroup_size(128)")); // true
 * ```
 */
export function kernelEntryWGSL(W: number): string {
  return `@compute @workgroup_size(${W})
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let w = flat_workgroup(wid, nwg);
  if (w >= params.count) {
    return;
  }`;
}
