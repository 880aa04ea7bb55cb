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
 * MLA) `kv_addr_v` functions for a spec, and for paged specs `kv_page` (the page of a token) with
 * the `kv_row_at` / `kv_addr_at` / `kv_addr_v_at` forms that take it. They read
 * `params.kv_row` (chunks per token row of all heads), `params.page_shift`, the `pages`
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
  const splitV = (spec.headDimV ?? spec.headDim) !== spec.headDim;
  // V as the first dims of K's rows (`vFromK`, MLA's latent): V's address is K's.
  const fromK = splitV && spec.vFromK === true;
  if (!paged) {
    // V rows of their own length (MLA): the same addressing with V's chunks per head; a token
    // row of all heads holds `params.kv_row / CHUNKS` heads.
    return `fn kv_row(base: u32, t: u32) -> u32 {
  return base + t;
}
fn kv_addr(base: u32, t: u32, kv_head: u32) -> u32 {
  return kv_row(base, t) * params.kv_row + kv_head * CHUNKS;
}${
      splitV
        ? `
fn kv_addr_v(base: u32, t: u32, kv_head: u32) -> u32 {
  return ${
          fromK
            ? "kv_addr(base, t, kv_head)"
            : "(kv_row(base, t) * (params.kv_row / CHUNKS) + kv_head) * CHUNKS_V"
        };
}`
        : ""
    }`;
  }
  // Paged: each address goes through the token's page, \`kv_page\`; the \`_at\` forms take a page
  // read earlier, so a kernel can read the page table a step ahead of the K/V rows it locates.
  const hnd = spec.kvLayout === "HND";
  const inPage = "(t & ((1u << params.page_shift) - 1u))";
  const addrAt = hnd
    ? `((page * params.kv_row + kv_head * CHUNKS) << params.page_shift) + ${inPage} * CHUNKS`
    : "kv_row_at(page, t) * params.kv_row + kv_head * CHUNKS";
  const addrVAt = fromK
    ? "kv_addr_at(page, t, kv_head)"
    : hnd
    ? `(((page * (params.kv_row / CHUNKS) + kv_head) * CHUNKS_V) << params.page_shift) +
    ${inPage} * CHUNKS_V`
    : "(kv_row_at(page, t) * (params.kv_row / CHUNKS) + kv_head) * CHUNKS_V";
  // Page slices (`pageSlices`): a step's G-token slice lies in one page, so a row's address is
  // its page's, times the page's stride, plus the slice's place in the page (none with one slice
  // per page) plus the thread's fixed offset (its group's row and its KV head).
  const slices = (spec.pageSlices ?? 0) > 0 && !splitV
    ? `
fn kv_slice_offset(g: u32, kv_head: u32) -> u32 {
  return ${
      hnd
        ? "((kv_head * CHUNKS) << params.page_shift) + g * CHUNKS"
        : "kv_head * CHUNKS + g * params.kv_row"
    };
}
fn kv_slice_addr(page: u32, s: u32, offset: u32) -> u32 {
  return page * (params.kv_row << params.page_shift)${
      spec.pageSlices === 1
        ? ""
        : ` + (s & ((1u << params.page_shift) - 1u)) * ${hnd ? "CHUNKS" : "params.kv_row"}`
    } + offset;
}`
    : "";
  return `fn kv_page(base: u32, t: u32) -> u32 {
  return pages[base + (t >> params.page_shift)];
}
fn kv_row_at(page: u32, t: u32) -> u32 {
  return (page << params.page_shift) + ${inPage};
}
fn kv_row(base: u32, t: u32) -> u32 {
  return kv_row_at(kv_page(base, t), t);
}
fn kv_addr_at(page: u32, t: u32, kv_head: u32) -> u32 {
  return ${addrAt};
}
fn kv_addr(base: u32, t: u32, kv_head: u32) -> u32 {
  return kv_addr_at(kv_page(base, t), t, kv_head);
}${slices}${
    splitV
      ? `
// V rows of their own length (MLA): the same addressing with V's chunks per head.
fn kv_addr_v_at(page: u32, t: u32, kv_head: u32) -> u32 {
  return ${addrVAt};
}
fn kv_addr_v(base: u32, t: u32, kv_head: u32) -> u32 {
  return kv_addr_v_at(kv_page(base, t), t, kv_head);
}`
      : ""
  }`;
}
