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
}

/** Row of token `t` of sequence `seq` in a paged K/V storage. */
export function pagedRow(kv: PagedKV, seq: number, t: number): number {
  return kv.pages[kv.pageOffsets[seq] + (t >>> kv.pageShift)] * kv.pageSize +
    (t & (kv.pageSize - 1));
}
