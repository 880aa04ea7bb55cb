/**
 * Where the decode kernel finds a token's K and V: the WGSL `kv_addr(base, t, kv_head)`, the
 * index of the first 16-byte chunk of KV head `kv_head`'s row of token `t`, for dense rows (from
 * the piece's `kvStart`), NHD pages (`[page][token][kvHead][dim]`: a token's rows of every head
 * together) and HND pages (`[page][kvHead][token][dim]`: each head's rows of a page together).
 * The host twin is `pagedElement` in `src/plan/kv_addressing.ts`.
 *
 * @module
 */

import type { KernelSpec } from "./kernel_spec.ts";

/**
 * The kernel's `kv_row` (token row, NHD and dense), `kv_addr` and (V rows of another length,
 * MLA) `kv_addr_v` functions for a spec. They
 * read `params.kv_row` (chunks per token row of all heads), `params.page_shift`, the `pages`
 * binding and the kernel's `CHUNKS` (chunks per head).
 *
 * @example
 * ```ts
 * import { kvAddressWGSL } from "./kv_address.ts";
 * const spec = { headDim: 64, kvDtype: "f16" as const, tileTokens: 64, rowsPerBlock: 4, workgroupSize: 64 };
 * console.log(kvAddressWGSL({ ...spec, paged: true, kvLayout: "HND" }).includes("kv_head * CHUNKS) <<"));
 * // true
 * ```
 */
export function kvAddressWGSL(spec: KernelSpec): string {
  const paged = spec.paged ?? false;
  const kvRow = paged
    ? `fn kv_row(base: u32, t: u32) -> u32 {
  return (pages[base + (t >> params.page_shift)] << params.page_shift) +
    (t & ((1u << params.page_shift) - 1u));
}`
    : `fn kv_row(base: u32, t: u32) -> u32 {
  return base + t;
}`;
  const kvAddr = paged && spec.kvLayout === "HND"
    ? `
fn kv_addr(base: u32, t: u32, kv_head: u32) -> u32 {
  let page = pages[base + (t >> params.page_shift)];
  return ((page * params.kv_row + kv_head * CHUNKS) << params.page_shift) +
    (t & ((1u << params.page_shift) - 1u)) * CHUNKS;
}`
    : `
fn kv_addr(base: u32, t: u32, kv_head: u32) -> u32 {
  return kv_row(base, t) * params.kv_row + kv_head * CHUNKS;
}`;
  // V rows of their own length (MLA): the same addressing with V's chunks per head; a token
  // row of all heads holds `params.kv_row / CHUNKS` heads.
  const splitV = (spec.headDimV ?? spec.headDim) !== spec.headDim;
  const kvAddrV = !splitV ? "" : paged && spec.kvLayout === "HND"
    ? `
fn kv_addr_v(base: u32, t: u32, kv_head: u32) -> u32 {
  let page = pages[base + (t >> params.page_shift)];
  return (((page * (params.kv_row / CHUNKS) + kv_head) * CHUNKS_V) << params.page_shift) +
    (t & ((1u << params.page_shift) - 1u)) * CHUNKS_V;
}`
    : `
fn kv_addr_v(base: u32, t: u32, kv_head: u32) -> u32 {
  return (kv_row(base, t) * (params.kv_row / CHUNKS) + kv_head) * CHUNKS_V;
}`;
  return kvRow + kvAddr + kvAddrV;
}
