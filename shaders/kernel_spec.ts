/**
 * The specialisation of a kernel: the values baked into its WGSL as constants. The spec's key is
 * the pipeline cache key, so two plans with the same key share a pipeline.
 *
 * @module
 */

import type { KVDtype } from "../src/problem.ts";

/** Compile-time parameters of the decode and merge kernels. */
export interface KernelSpec {
  readonly headDim: number;
  readonly kvDtype: KVDtype;
  readonly tileTokens: number;
  readonly rowsPerBlock: number;
  readonly workgroupSize: number;
}

/** The pipeline cache key of a spec. */
export function specKey(kind: string, spec: KernelSpec): string {
  return `${kind}:d${spec.headDim}:${spec.kvDtype}:t${spec.tileTokens}:r${spec.rowsPerBlock}:w${spec.workgroupSize}`;
}

/** KV elements in one 16-byte load: 4 floats, or 8 halves packed in a `vec4<u32>`. */
export function elementsPerLoad(kvDtype: KVDtype): number {
  return kvDtype === "f32" ? 4 : 8;
}

/** Byte size of one KV element. */
export function kvElementBytes(kvDtype: KVDtype): number {
  return kvDtype === "f32" ? 4 : 2;
}

/** `u32`s of the uniform block both kernels read (see `PARAMS_WGSL`). */
export const PARAMS_WORDS = 12;

/** The uniform block shared by the decode and merge kernels. */
export const PARAMS_WGSL = `
struct Params {
  num_heads: u32,
  q_len: u32,
  group_size: u32,
  rows_per_group: u32,
  kv_row: u32,        // 16-byte loads per KV token row (all KV heads)
  piece_base: u32,    // first u32 of the piece records in sched
  reduce_base: u32,   // first u32 of the reduce records in sched
  lse_base: u32,      // first f32 of the LSE in result
  count: u32,         // workgroups (decode) or reduce records (merge)
  scale_log2: f32,    // softmax scale * log2(e)
  _pad0: u32,
  _pad1: u32,
}`;

/** Index of a flat workgroup in a possibly 2-D dispatch (grids beyond 65,535 workgroups). */
export const FLAT_WORKGROUP_WGSL = `
fn flat_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}`;

/** Maps row `r` of a KV group to its flat query row `(seq * qLen + pos) * numHeads + head`. */
export const QUERY_ROW_WGSL = `
fn query_row(seq: u32, kv_head: u32, r: u32) -> u32 {
  let head = kv_head * params.group_size + r / params.q_len;
  let pos = r % params.q_len;
  return (seq * params.q_len + pos) * params.num_heads + head;
}`;
