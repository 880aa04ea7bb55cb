/**
 * How a plan's pieces address K and V rows, as plain data: densely (a sequence's rows follow one
 * another from its `kvStart`, bound window by window) or through page tables.
 *
 * @module
 */

import type { KVWindow } from "./windows.ts";

/**
 * Dense K/V rows: a sequence's rows follow one another from its pieces' `kvStart`, within the
 * KV window its workgroups are bound to.
 *
 * @example
 * ```ts
 * import { createPlan, type DenseKV } from "@lean/attention/plan";
 * const plan = createPlan({ seqLens: [5], numHeads: 1, numKVHeads: 1, headDim: 8 }, { grid: 2 });
 * const kv = plan.kv as DenseKV;
 * console.log(kv.kind, kv.windows.length); // dense 1
 * ```
 */
export interface DenseKV {
  /** The addressing: rows from each piece's `kvStart`. */
  readonly kind: "dense";
  /** The KV windows, each bound for its own decode dispatch (the schedule's `windows`). */
  readonly windows: readonly KVWindow[];
}

/**
 * A plan's K/V addressing: dense rows or page lists.
 *
 * @example
 * ```ts
 * import { createPlan, type KVAddressing } from "@lean/attention/plan";
 * const plan = createPlan({ seqLens: [5], numHeads: 1, numKVHeads: 1, headDim: 8 }, { grid: 2 });
 * const kv: KVAddressing = plan.kv;
 * console.log(kv.kind); // dense
 * ```
 */
export type KVAddressing = DenseKV | PagedKV;

/**
 * K/V rows through page lists: token `t` of sequence `s` lives in row
 * `pages[pageOffsets[s] + (t >> pageShift)] * pageSize + (t & (pageSize - 1))` of a layer's K
 * and V storage.
 *
 * @example
 * ```ts
 * import { createPagedPlan, type PagedKV } from "@lean/attention/runner";
 * const plan = createPagedPlan(
 *   { seqLens: [5, 3], numHeads: 2, numKVHeads: 1, headDim: 8 },
 *   { pageSize: 4, numPages: 4, pageTables: [[2, 0], [3]] },
 *   { grid: 4 },
 * );
 * const kv: PagedKV = plan.kv;
 * // Token 4 of sequence 0: page pages[pageOffsets[0] + (4 >> pageShift)], row 0 of it.
 * const page = kv.pages[kv.pageOffsets[0] + (4 >> kv.pageShift)];
 * console.log(kv.kind, kv.pageShift, page * kv.pageSize + (4 & (kv.pageSize - 1))); // paged 2 0
 * ```
 */
export interface PagedKV {
  /** The addressing: K/V rows through page lists. */
  readonly kind: "paged";
  /** Tokens per page (a power of two). */
  readonly pageSize: number;
  /** `log2(pageSize)`. */
  readonly pageShift: number;
  /** Pages of the storage the tables point into (every entry is below it). */
  readonly numPages: number;
  /** The sequences' page lists, concatenated in sequence order. */
  readonly pages: Uint32Array;
  /** Where each sequence's page list starts in `pages` (`numSeqs + 1` entries). */
  readonly pageOffsets: Uint32Array;
  /**
   * How a page holds its rows (see {@linkcode PageLayout}); absent means `"NHD"`, the layout of
   * `KVCache` pages.
   */
  readonly layout?: PageLayout;
}

/**
 * The element order of a K or V page: `"NHD"`, `[page][token][kvHead][dim]` (a token's row of
 * every KV head together, as `KVCache` stores it), or `"HND"`, `[page][kvHead][token][dim]` (each
 * KV head's tokens together). FlashInfer's `kv_layout` names them the same way.
 */
export type PageLayout = "NHD" | "HND";

/**
 * Element offset of KV head `kvHead`'s row of token `t` of sequence `seq` in a paged K/V storage
 * of `numKVHeads` heads of `headDim` elements, in the plan's page layout.
 *
 * @example
 * ```ts
 * import { pagedElement, type PagedKV } from "@lean/attention/plan";
 * const kv: PagedKV = {
 *   kind: "paged", pageSize: 4, pageShift: 2, numPages: 2, layout: "HND",
 *   pages: Uint32Array.of(1), pageOffsets: Uint32Array.of(0, 1),
 * };
 * // Page 1, head 1, token 2 of a [page][kvHead][token][dim] storage of 2 heads of 8.
 * console.log(pagedElement(kv, 0, 2, 1, 2, 8)); // ((1 * 2 + 1) * 4 + 2) * 8 = 112
 * ```
 */
export function pagedElement(
  kv: PagedKV,
  seq: number,
  t: number,
  kvHead: number,
  numKVHeads: number,
  headDim: number,
): number {
  const page = kv.pages[kv.pageOffsets[seq] + (t >>> kv.pageShift)];
  const inPage = t & (kv.pageSize - 1);
  return kv.layout === "HND"
    ? ((page * numKVHeads + kvHead) * kv.pageSize + inPage) * headDim
    : ((page * kv.pageSize + inPage) * numKVHeads + kvHead) * headDim;
}

/** Row of token `t` of sequence `seq` in a paged K/V storage. */
export function pagedRow(kv: PagedKV, seq: number, t: number): number {
  return kv.pages[kv.pageOffsets[seq] + (t >>> kv.pageShift)] * kv.pageSize +
    (t & (kv.pageSize - 1));
}
