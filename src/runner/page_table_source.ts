/**
 * The narrow page-table interface paged planning reads: what a plan needs from a cache (its
 * layout, each sequence's length and page list, a change counter and an identity token), so
 * planning depends on no runtime object. {@linkcode KVCache} implements it for its own pages,
 * `IndptrPageTable` (`indptr_page_table.ts`) for a runner's FlashInfer-style page table over the
 * runner's own K/V page buffers.
 *
 * @module
 */

import type { KVDtype } from "../core/problem.ts";
import type { PageLayout } from "../plan/kv_addressing.ts";

/**
 * Page tables a paged plan can be made from ({@linkcode planForCache}).
 *
 * @example
 * ```ts
 * import { createKVCache, type PageTableSource } from "@lean/attention/runner";
 * const source: PageTableSource = createKVCache({
 *   numLayers: 1, numKVHeads: 1, headDim: 8, pageSize: 4, numPages: 8,
 * });
 * console.log(source.pageSize, source.numPages); // 4 8
 * ```
 */
export interface PageTableSource {
  /**
   * Identity token of the K/V storage the pages index (plans keep it to find the cache again);
   * absent for a runner's own storage (its plans are encoded with the runner's `k` and `v`).
   */
  readonly id?: number;
  /** Counts the changes to the page tables: a plan made at an older version is stale. */
  readonly version: number;
  /** Tokens per page (a power of two). */
  readonly pageSize: number;
  /** `log2(pageSize)`. */
  readonly pageShift: number;
  /** Pages of the storage (every page number is below it). */
  readonly numPages: number;
  /** KV heads per token row. */
  readonly numKVHeads: number;
  /** Elements per head (of K). */
  readonly headDim: number;
  /** Elements per head of V, when it differs from K's (MLA); default `headDim`. */
  readonly headDimV?: number;
  /** V is the first `headDimV` dims of each K row (MLA's latent cache); absent otherwise. */
  readonly vFromK?: boolean;
  /** Element type of K and V. */
  readonly kvDtype: KVDtype;
  /** How a page holds its rows (default `"NHD"`, `[page][token][kvHead][dim]`). */
  readonly layout?: PageLayout;
  /** Tokens in a sequence. */
  length(seq: number): number;
  /** Pages of a sequence. */
  pageCount(seq: number): number;
  /** Writes a sequence's page list into `target` at `offset`; returns the entries written. */
  copyPageTable(seq: number, target: Uint32Array, offset: number): number;
}
