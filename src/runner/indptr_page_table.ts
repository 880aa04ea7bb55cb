/**
 * A runner's own page table, FlashInfer style, as a {@linkcode PageTableSource}: sequence `i`'s
 * pages are `indices[indptr[i] .. indptr[i + 1]]`, all full but the last, which holds
 * `lastPageLen[i]` tokens. The K/V pages are the runner's buffers, in `"NHD"`
 * (`[page][token][kvHead][dim]`) or `"HND"` (`[page][kvHead][token][dim]`) layout; plans made
 * from the table (`planForCache`, `AttentionEncoder.plan`) are encoded with those buffers as
 * `k` and `v`, and run on the CPU by `executePagedPlanOnCpu` with host arrays of the same layout.
 * V pages may hold rows of their own head dim (`headDimV`, MLA's latent V): each buffer is then
 * addressed with its own row length, in either layout.
 *
 * @module
 */

import { describe, headDimOf, integerIn } from "../core/field_checks.ts";
import { KV_DTYPES, type KVDtype, MAX_HEAD_DIM } from "../core/problem.ts";
import type { PageLayout } from "../plan/kv_addressing.ts";
import type { PageTableSource } from "./page_table_source.ts";

/** Most tokens a page of a runner's page table may hold. */
export const MAX_INDPTR_PAGE_SIZE = 256;

/**
 * A FlashInfer-style page table over a runner's K/V pages (see
 * {@linkcode createIndptrPageTable}).
 *
 * @example
 * ```ts
 * import type { IndptrPageTableOptions } from "@lean/attention/runner";
 * // Sequence 0: pages 3 and 0 (4 + 2 tokens); sequence 1: page 1 (3 tokens).
 * const table: IndptrPageTableOptions = {
 *   indptr: [0, 2, 3], indices: [3, 0, 1], lastPageLen: [2, 3],
 *   pageSize: 4, numPages: 4, numKVHeads: 2, headDim: 8, layout: "HND",
 * };
 * console.log(table.indices.length); // 3
 * // MLA: K pages of 576 dims per token row, V pages of 512 (one latent KV head).
 * const mla: IndptrPageTableOptions = { ...table, numKVHeads: 1, headDim: 576, headDimV: 512 };
 * console.log(mla.headDimV); // 512
 * ```
 */
export interface IndptrPageTableOptions {
  /** Where each sequence's pages start in `indices` (`numSeqs + 1` entries, non-decreasing). */
  indptr: ArrayLike<number>;
  /** The sequences' page numbers, concatenated. */
  indices: ArrayLike<number>;
  /** Tokens in each sequence's last page, 1 to `pageSize` (0 for a sequence of no pages). */
  lastPageLen: ArrayLike<number>;
  /** Tokens per page: a power of two from 1 to 256. */
  pageSize: number;
  /** Pages of the runner's K (and V) storage: every index is below it. */
  numPages: number;
  /** KV heads per token. */
  numKVHeads: number;
  /** Elements per head of K (and of Q). */
  headDim: number;
  /**
   * Elements per head of V and of the output, when V's pages hold rows of another length than
   * K's (MLA: `headDim` 576, `headDimV` 512): a multiple of 8 from 8 to 576 (default `headDim`).
   * The V pages are `[page][token][kvHead][headDimV]` (NHD) or `[page][kvHead][token][headDimV]`
   * (HND).
   */
  headDimV?: number;
  /**
   * V is the first `headDimV` dims of each K row (MLA's latent cache, `DecodeShape.vFromK`): the
   * runner keeps K pages only and encodes with `k` alone (default false). 8-bit pages' scale
   * tables still hold a pair per row and KV head, V's entry read for V.
   */
  vFromK?: boolean;
  /** Element type of the pages (default `"f32"`). */
  kvDtype?: KVDtype;
  /** Element order of a page (default `"NHD"`). */
  layout?: PageLayout;
}

function checkInts(name: string, value: unknown, min: number, max: number): ArrayLike<number> {
  if (
    value === null || typeof value !== "object" ||
    typeof (value as ArrayLike<number>).length !== "number"
  ) {
    throw new TypeError(
      `${name} must be an array of integers: got ${value === null ? "null" : typeof value}`,
    );
  }
  const a = value as ArrayLike<number>;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    if (typeof x !== "number") {
      throw new TypeError(`${name}[${i}] must be a number: got ${typeof x}`);
    }
    if (!Number.isInteger(x) || x < min || x > max) {
      throw new RangeError(`${name}[${i}] must be an integer from ${min} to ${max}: got ${x}`);
    }
  }
  return a;
}

/** A runner's page table, validated; create it with {@linkcode createIndptrPageTable}. */
export class IndptrPageTable implements PageTableSource {
  /** A runner's table never changes under a plan: its plans are never stale. */
  readonly version = 0;
  readonly pageSize: number;
  readonly pageShift: number;
  readonly numPages: number;
  readonly numKVHeads: number;
  readonly headDim: number;
  /** Elements per head of V (`headDim` unless the options gave another). */
  readonly headDimV: number;
  /** V is read from K's rows (`headDimV` <= `headDim`); absent otherwise. */
  readonly vFromK?: true;
  readonly kvDtype: KVDtype;
  readonly layout: PageLayout;
  /** Sequences in the table. */
  readonly numSeqs: number;
  /** Every sequence, in table order (`step.seqs` for a plan of the whole batch). */
  readonly seqs: Uint32Array;
  readonly #indptr: Uint32Array;
  readonly #indices: Uint32Array;
  readonly #lengths: Uint32Array;

  /** Prefer {@linkcode createIndptrPageTable}, which documents the checks. */
  constructor(options: IndptrPageTableOptions) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(
        `page table must be an object: got ${options === null ? "null" : typeof options}`,
      );
    }
    const pageSize = integerIn("pageSize", options.pageSize, 1, MAX_INDPTR_PAGE_SIZE);
    if ((pageSize & (pageSize - 1)) !== 0) {
      throw new RangeError(`pageSize must be a power of two from 1 to 256: got ${pageSize}`);
    }
    const numPages = integerIn("numPages", options.numPages, 1, Math.floor(0xffffffff / pageSize));
    const kvDtype = options.kvDtype ?? "f32";
    if (typeof kvDtype !== "string") {
      throw new TypeError(`kvDtype must be a string: got ${typeof kvDtype}`);
    }
    if (!KV_DTYPES.includes(kvDtype)) {
      throw new RangeError(`kvDtype must be one of ${KV_DTYPES.join(", ")}: got "${kvDtype}"`);
    }
    const layout = options.layout ?? "NHD";
    if (typeof layout !== "string") {
      throw new TypeError(`layout must be a string: got ${typeof layout}`);
    }
    if (layout !== "NHD" && layout !== "HND") {
      throw new RangeError(`layout must be "NHD" or "HND": got "${layout}"`);
    }
    // Checked here, where the runner gives it (headDim, like numKVHeads, is checked by planning).
    const headDimV = options.headDimV === undefined
      ? undefined
      : headDimOf("headDimV", options.headDimV, MAX_HEAD_DIM);
    const vFromK = options.vFromK ?? false;
    if (typeof vFromK !== "boolean") {
      throw new TypeError(`vFromK must be a boolean: got ${describe(vFromK)}`);
    }
    const indices = checkInts("indices", options.indices, 0, numPages - 1);
    const indptr = checkInts("indptr", options.indptr, 0, indices.length);
    if (indptr.length < 2) {
      throw new RangeError(`indptr must hold numSeqs + 1 >= 2 entries: got ${indptr.length}`);
    }
    const n = indptr.length - 1;
    // 0 marks an empty request (a sequence of no pages): plans give its rows the merge
    // identity, so a runner need not filter empty requests out of its table.
    const last = checkInts("lastPageLen", options.lastPageLen, 0, pageSize);
    if (last.length !== n) {
      throw new RangeError(
        `lastPageLen must hold one entry per sequence (${n}, from indptr): got ${last.length}`,
      );
    }
    const lengths = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const pages = indptr[i + 1] - indptr[i];
      if (pages < 0) {
        throw new RangeError(
          `indptr must be non-decreasing: indptr[${i + 1}] = ${
            indptr[i + 1]
          } after indptr[${i}] = ${indptr[i]}`,
        );
      }
      if (pages === 0 && last[i] !== 0) {
        throw new RangeError(
          `lastPageLen[${i}] must be 0 for a sequence of no pages (indptr[${i}] = indptr[${
            i + 1
          }] = ${indptr[i]}, an empty request): got ${last[i]}`,
        );
      }
      if (pages > 0 && last[i] === 0) {
        throw new RangeError(
          `lastPageLen[${i}] must be an integer from 1 to ${pageSize}: got 0 (0 only for a sequence of no pages)`,
        );
      }
      lengths[i] = pages === 0 ? 0 : (pages - 1) * pageSize + last[i];
    }
    this.pageSize = pageSize;
    this.pageShift = Math.log2(pageSize);
    this.numPages = numPages;
    // Checked by planning (validateShape names them as fields of the shape).
    this.numKVHeads = options.numKVHeads;
    this.headDim = options.headDim;
    this.headDimV = headDimV ?? options.headDim;
    if (vFromK) this.vFromK = true;
    this.kvDtype = kvDtype;
    this.layout = layout;
    this.numSeqs = n;
    this.seqs = Uint32Array.from({ length: n }, (_, i) => i);
    this.#indptr = Uint32Array.from(indptr);
    this.#indices = Uint32Array.from(indices);
    this.#lengths = lengths;
  }

  #seq(seq: number): number {
    if (!Number.isInteger(seq) || seq < 0 || seq >= this.numSeqs) {
      throw new RangeError(
        `seqs must be sequences of the page table (0 to ${this.numSeqs - 1}): got ${seq}`,
      );
    }
    return seq;
  }

  /** Tokens of a sequence. */
  length(seq: number): number {
    return this.#lengths[this.#seq(seq)];
  }

  /** Pages of a sequence. */
  pageCount(seq: number): number {
    const s = this.#seq(seq);
    return this.#indptr[s + 1] - this.#indptr[s];
  }

  /** Writes a sequence's page list into `target` at `offset`; returns the entries written. */
  copyPageTable(seq: number, target: Uint32Array, offset: number): number {
    const s = this.#seq(seq);
    const pages = this.#indices.subarray(this.#indptr[s], this.#indptr[s + 1]);
    target.set(pages, offset);
    return pages.length;
  }
}

/**
 * Checks a runner's FlashInfer-style page table and wraps it for paged planning: `indptr` has
 * `numSeqs + 1` non-decreasing entries, `indices` page numbers
 * below `numPages`, `lastPageLen` one entry from 1 to `pageSize` per sequence (0 for a sequence
 * of no pages: an empty request, whose rows come back as out 0 and lse -Infinity), `pageSize` a power
 * of two from 1 to 256, `headDimV` (V's row length per head when it differs from K's, MLA) a
 * multiple of 8 from 8 to 576. A bad field throws `TypeError` or `RangeError` naming it and its value.
 * The arrays are copied: changing them later changes nothing.
 *
 * @example
 * ```ts
 * import {
 *   createIndptrPageTable, executePagedPlanOnCpu, planForCache,
 * } from "@lean/attention/runner";
 * const table = createIndptrPageTable({
 *   indptr: [0, 2], indices: [1, 0], lastPageLen: [1], pageSize: 2, numPages: 2,
 *   numKVHeads: 1, headDim: 8, layout: "HND",
 * });
 * const plan = planForCache(table, { seqs: table.seqs, numHeads: 1 }, { grid: 2 });
 * // Page 0 then page 1 of [page][kvHead][token][dim] storage: tokens 2, 0, 1 of the sequence.
 * const k = new Float32Array(32).fill(1);
 * const v = Float32Array.from({ length: 32 }, (_, i) => Math.floor(i / 8)); // row numbers
 * const { out } = executePagedPlanOnCpu(plan, { q: new Float32Array(8), k, v });
 * console.log(plan.problem.seqLens[0], out[0].toFixed(3)); // 3 1.667 (mean of v rows 2, 3, 0)
 * ```
 *
 * @example MLA-style pages: K rows of 16 dims, V rows of 8 (each buffer its own row length)
 * ```ts
 * import {
 *   createIndptrPageTable, executePagedPlanOnCpu, planForCache,
 * } from "@lean/attention/runner";
 * const table = createIndptrPageTable({
 *   indptr: [0, 2], indices: [1, 0], lastPageLen: [1], pageSize: 2, numPages: 2,
 *   numKVHeads: 1, headDim: 16, headDimV: 8, layout: "NHD",
 * });
 * const plan = planForCache(table, { seqs: table.seqs, numHeads: 2 }, { grid: 2 });
 * const k = new Float32Array(2 * 2 * 16).fill(1); // [page][token][kvHead][16]
 * const v = Float32Array.from({ length: 2 * 2 * 8 }, (_, i) => Math.floor(i / 8)); // [..][8]
 * const { out } = executePagedPlanOnCpu(plan, { q: new Float32Array(2 * 16), k, v });
 * console.log(plan.problem.headDimV, out.length, out[8].toFixed(3)); // 8 16 1.667
 * ```
 */
export function createIndptrPageTable(options: IndptrPageTableOptions): IndptrPageTable {
  return new IndptrPageTable(options);
}
