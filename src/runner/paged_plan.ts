/**
 * Paged plans: a {@linkcode Plan} whose K/V addressing is `kv: { kind: "paged", ... }`, page
 * tables held as plain data. The schedule is the dense plan's, unchanged (same tiles,
 * workgroups, slots and merge order, so paged and dense results are bitwise equal). Token `t` of
 * sequence `s` lives in row `(pages[pageOffsets[s] + (t >> pageShift)] << pageShift) +
 * (t & (pageSize - 1))` of a layer's K and V. (The paged kernel reads a piece's page-list offset
 * from its `kvStart` field: the GPU table upload writes it there, the plan does not.)
 *
 * @module
 */

import type { PageTableSource } from "./page_table_source.ts";
import type { PagedKV, PageLayout } from "../plan/kv_addressing.ts";
import { type Plan, type PlanOptions, planProblem } from "../plan/plan.ts";
import { reusePlan } from "../plan/reuse.ts";
import {
  type DecodeShape,
  MAX_Q_LEN,
  type Problem,
  type Strategy,
  validateShape,
} from "../core/problem.ts";
import type { VariantOptions } from "../core/variant_options.ts";

export type { PagedKV } from "../plan/kv_addressing.ts";

/**
 * A plan that reads K and V through page tables.
 *
 * @example
 * ```ts
 * import { createKVCache, type PagedPlan, planForCache } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 1, numKVHeads: 1, headDim: 8, pageSize: 4, numPages: 8 });
 * const a = cache.addSequence();
 * cache.extend([a], 6);
 * const plan: PagedPlan = planForCache(cache, { seqs: [a], numHeads: 2 }, { grid: 4 });
 * console.log(plan.cacheId === cache.id, plan.cacheVersion === cache.version); // true true
 * console.log(Array.from(plan.seqIds ?? [])); // [0]
 * cache.extend([a], 1);
 * console.log(plan.cacheVersion === cache.version); // false (stale: plan again)
 * ```
 */
export interface PagedPlan extends Plan {
  /** The K/V addressing: the page tables the plan's pieces read through. */
  readonly kv: PagedKV;
  /** Softmax scale the plan is run with. */
  readonly scale: number;
  /** Identity token of the cache the plan was made from (absent for explicit page tables). */
  readonly cacheId?: number;
  /** The cache's version when planned: a plan of an older version is stale. */
  readonly cacheVersion?: number;
  /** The cache's sequence ids, in plan order (absent for explicit page tables). */
  readonly seqIds?: Uint32Array;
}

/**
 * Explicit page tables for {@linkcode createPagedPlan}.
 *
 * @example
 * ```ts
 * import { createPagedPlan, type PageTables } from "@lean/attention/runner";
 * // Sequence 0 (5 tokens) in pages 2 and 0, sequence 1 (3 tokens) in page 3.
 * const tables: PageTables = { pageSize: 4, numPages: 4, pageTables: [[2, 0], [3]] };
 * const shape = { seqLens: [5, 3], numHeads: 2, numKVHeads: 1, headDim: 8 };
 * const plan = createPagedPlan(shape, tables, { grid: 4 });
 * console.log(plan.kv.numPages, plan.numTiles); // 4 2
 * ```
 */
export interface PageTables {
  /** Tokens per page: a power of two from 1 to 65536. */
  pageSize: number;
  /** Pages of the K/V storage (each entry must be below it). */
  numPages: number;
  /** One page list per sequence, at least `ceil(seqLens[i] / pageSize)` pages long. */
  pageTables: ArrayLike<ArrayLike<number>>;
  /** Element order of a page (default `"NHD"`, see `PagedKV.layout`). */
  layout?: PageLayout;
}

/**
 * Options of paged planning: the dense plan's, plus the softmax scale.
 *
 * @example
 * ```ts
 * import { createPagedPlan, type PagedPlanOptions } from "@lean/attention/runner";
 * const options: PagedPlanOptions = { grid: 4, strategy: "split", scale: 0.125 };
 * const plan = createPagedPlan(
 *   { seqLens: [5], numHeads: 1, numKVHeads: 1, headDim: 8 },
 *   { pageSize: 4, numPages: 2, pageTables: [[1, 0]] },
 *   options,
 * );
 * console.log(plan.strategy, plan.scale); // split 0.125
 * ```
 */
export interface PagedPlanOptions extends PlanOptions {
  /** Softmax scale (default `1 / sqrt(headDim)`). */
  scale?: number;
}

/**
 * Options of {@linkcode planForCache}: which sequences, the model's query shape and the layer's
 * attention variant (`slidingWindow`, `logitsSoftCap`, `alibiSlopes`, `sinks`: a model whose
 * layers differ, as Gemma 2's alternating windows, plans once per kind of layer).
 *
 * @example
 * ```ts
 * import { type CachePlanOptions, createKVCache, planForCache } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 1, numKVHeads: 2, headDim: 8, pageSize: 4, numPages: 8 });
 * const a = cache.addSequence();
 * const b = cache.addSequence();
 * cache.extend([a, b], [6, 3]);
 * const step: CachePlanOptions = { seqs: [b, a], numHeads: 4, qLen: 2 };
 * const plan = planForCache(cache, step, { grid: 4 });
 * console.log(Array.from(plan.problem.seqLens), plan.problem.qLen); // [3, 6] 2
 * ```
 */
export interface CachePlanOptions extends VariantOptions {
  /** Sequence ids of the cache, in batch order (the order of `q`'s rows). */
  seqs: ArrayLike<number>;
  /** Query heads (a multiple of the cache's KV heads). */
  numHeads: number;
  /** Query tokens per sequence (default 1): the last `qLen` tokens of each sequence. */
  qLen?: number;
  /**
   * Query tokens of each sequence (1 to 16 each; instead of `qLen`): a ragged batch mixing
   * decode and speculative verification. `q`'s rows are the sequences' query tokens concatenated.
   */
  qLens?: ArrayLike<number>;
  /** Softmax scale (default `1 / sqrt(headDim)`). */
  scale?: number;
  /** Partition strategy (default `"lean"`). */
  strategy?: Strategy;
}

function checkScale(scale: unknown, headDim: number): number {
  if (scale === undefined) return 1 / Math.sqrt(headDim);
  if (typeof scale !== "number") throw new TypeError(`scale must be a number: got ${typeof scale}`);
  if (!Number.isFinite(scale) || scale <= 0) {
    throw new RangeError(`scale must be a finite number > 0: got ${scale}`);
  }
  return scale;
}

function pagePlan(
  problem: Problem,
  kv: PagedKV,
  scale: number,
  options: PlanOptions,
  extra: Pick<PagedPlan, "cacheId" | "cacheVersion" | "seqIds">,
  previous?: PagedPlan,
): PagedPlan {
  if (problem.totalTokens > 0xffffffff) {
    throw new RangeError(
      `seqLens must total at most 4294967295 tokens (32-bit offsets): got ${problem.totalTokens}`,
    );
  }
  const planOptions = { ...options, maxBindingBytes: undefined };
  const dense = (previous && reusePlan(previous, problem, planOptions)) ??
    planProblem(problem, planOptions);
  return { ...dense, kv, scale, ...extra };
}

/**
 * Plans a batch whose K/V live in pages given by explicit page tables (for runners with their
 * own page management). The tables are checked: one per sequence, long enough for its tokens,
 * every entry a page number below `numPages`; a bad table throws `RangeError` naming the entry.
 *
 * @example
 * ```ts
 * import { createPagedPlan } from "@lean/attention/runner";
 * const plan = createPagedPlan(
 *   { seqLens: [5, 3], numHeads: 2, numKVHeads: 1, headDim: 8 },
 *   { pageSize: 4, numPages: 4, pageTables: [[2, 0], [3]] },
 *   { grid: 4 },
 * );
 * console.log(Array.from(plan.kv.pages), Array.from(plan.kv.pageOffsets)); // [2, 0, 3] [0, 2, 3]
 * ```
 */
export function createPagedPlan(
  shape: DecodeShape,
  tables: PageTables,
  options: PagedPlanOptions,
): PagedPlan {
  const problem = validateShape(shape);
  if (typeof tables !== "object" || tables === null) {
    throw new TypeError(
      `page tables must be an object: got ${tables === null ? "null" : typeof tables}`,
    );
  }
  const { pageSize, numPages, pageTables } = tables;
  if (typeof pageSize !== "number") {
    throw new TypeError(`pageSize must be a number: got ${typeof pageSize}`);
  }
  if (
    !Number.isInteger(pageSize) || pageSize < 1 || pageSize > 65536 || (pageSize & (pageSize - 1))
  ) {
    throw new RangeError(`pageSize must be a power of two from 1 to 65536: got ${pageSize}`);
  }
  if (typeof numPages !== "number") {
    throw new TypeError(`numPages must be a number: got ${typeof numPages}`);
  }
  if (!Number.isInteger(numPages) || numPages < 1 || numPages > 0xffffffff / pageSize) {
    throw new RangeError(
      `numPages must be a positive integer with numPages * pageSize < 2^32: got ${numPages}`,
    );
  }
  if (
    pageTables === null || typeof pageTables !== "object" || typeof pageTables.length !== "number"
  ) {
    throw new TypeError(`pageTables must be an array of page lists: got ${typeof pageTables}`);
  }
  if (pageTables.length !== problem.numSeqs) {
    throw new RangeError(
      `pageTables must hold one page list per sequence (${problem.numSeqs}): got ${pageTables.length}`,
    );
  }
  const pageOffsets = new Uint32Array(problem.numSeqs + 1);
  for (let i = 0; i < problem.numSeqs; i++) {
    const need = Math.ceil(problem.seqLens[i] / pageSize);
    const table = pageTables[i];
    if (table === null || typeof table !== "object" || typeof table.length !== "number") {
      throw new TypeError(`pageTables[${i}] must be an array of page numbers: got ${typeof table}`);
    }
    if (table.length < need) {
      throw new RangeError(
        `pageTables[${i}] must hold at least ${need} pages for seqLens[${i}] = ${
          problem.seqLens[i]
        } tokens: got ${table.length}`,
      );
    }
    pageOffsets[i + 1] = pageOffsets[i] + need;
  }
  const pages = new Uint32Array(pageOffsets[problem.numSeqs]);
  for (let i = 0; i < problem.numSeqs; i++) {
    const table = pageTables[i];
    for (let j = 0; j < pageOffsets[i + 1] - pageOffsets[i]; j++) {
      const page = table[j];
      if (typeof page !== "number") {
        throw new TypeError(`pageTables[${i}][${j}] must be a number: got ${typeof page}`);
      }
      if (!Number.isInteger(page) || page < 0 || page >= numPages) {
        throw new RangeError(
          `pageTables[${i}][${j}] must be a page number from 0 to ${numPages - 1}: got ${page}`,
        );
      }
      pages[pageOffsets[i] + j] = page;
    }
  }
  const layout: unknown = tables.layout ?? "NHD";
  if (typeof layout !== "string") {
    throw new TypeError(`layout must be a string: got ${typeof layout}`);
  }
  if (layout !== "NHD" && layout !== "HND") {
    throw new RangeError(`layout must be "NHD" or "HND": got "${layout}"`);
  }
  const kv: PagedKV = {
    kind: "paged",
    pageSize,
    pageShift: Math.log2(pageSize),
    numPages,
    pages,
    pageOffsets,
    ...(layout === "HND" ? { layout: "HND" as const } : {}),
  };
  return pagePlan(problem, kv, checkScale(options.scale, problem.headDim), options, {});
}

/**
 * Plans one step of a runner over sequences of a {@linkcode PageTableSource} (a `KVCache`): their
 * current lengths (extended already with this step's tokens) and page tables. The plan keeps the
 * source's identity token and version as plain data, not the source. Host only; one plan serves every
 * layer. O(segments + workgroups + pages of the batch).
 *
 * @example
 * ```ts
 * import { createKVCache, planForCache } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 1, numKVHeads: 2, headDim: 8, pageSize: 4, numPages: 8 });
 * const a = cache.addSequence();
 * cache.extend([a], 6);
 * const plan = planForCache(cache, { seqs: [a], numHeads: 4 }, { grid: 4 });
 * console.log(plan.problem.seqLens[0], plan.kv.pages.length); // 6 2
 * ```
 */
export function planForCache(
  cache: PageTableSource,
  step: CachePlanOptions,
  options: Omit<PlanOptions, "strategy"> & {
    strategy?: Strategy;
    /**
     * The plan of an earlier step over the same sequences: while no sequence has crossed a tile
     * boundary since, its partition and schedule are reused (same result, less host work).
     */
    previous?: PagedPlan;
  },
): PagedPlan {
  if (typeof step !== "object" || step === null) {
    throw new TypeError(
      `step options must be an object: got ${step === null ? "null" : typeof step}`,
    );
  }
  const seqs = step.seqs;
  if (seqs === null || typeof seqs !== "object" || typeof seqs.length !== "number") {
    throw new TypeError(`seqs must be an array of sequence ids: got ${typeof seqs}`);
  }
  const n = seqs.length;
  const seqLens = new Uint32Array(n);
  const pageOffsets = new Uint32Array(n + 1);
  for (let i = 0; i < n; i++) {
    seqLens[i] = cache.length(seqs[i]);
    pageOffsets[i + 1] = pageOffsets[i] + cache.pageCount(seqs[i]);
  }
  const qLen = step.qLen ?? 1;
  // (A qLens that is not an array is reported by the shape's validation below.)
  const lens = typeof step.qLens === "object" && step.qLens !== null ? step.qLens : undefined;
  for (let i = 0; i < n; i++) {
    const need = lens === undefined ? qLen : lens[i] ?? qLen;
    // A sequence with no tokens is an empty request (out 0, lse -Infinity); others must hold
    // their query tokens.
    if (
      typeof need === "number" && Number.isInteger(need) && need >= 1 && need <= MAX_Q_LEN &&
      seqLens[i] < need && seqLens[i] !== 0
    ) {
      throw new RangeError(
        `seqs[${i}] (sequence ${seqs[i]}) must hold at least ${
          step.qLens === undefined ? "qLen" : `qLens[${i}]`
        } (${need}) tokens: got ${seqLens[i]}; extend it before planning`,
      );
    }
  }
  const pages = new Uint32Array(pageOffsets[n]);
  for (let i = 0; i < n; i++) cache.copyPageTable(seqs[i], pages, pageOffsets[i]);
  const shape: DecodeShape = {
    seqLens,
    numHeads: step.numHeads,
    numKVHeads: cache.numKVHeads,
    headDim: cache.headDim,
    ...(cache.headDimV === undefined ? {} : { headDimV: cache.headDimV }),
    ...(cache.vFromK ? { vFromK: true } : {}),
    ...(step.qLen === undefined && step.qLens !== undefined ? {} : { qLen }),
    ...(step.qLens === undefined ? {} : { qLens: step.qLens }),
    kvDtype: cache.kvDtype,
    slidingWindow: step.slidingWindow,
    logitsSoftCap: step.logitsSoftCap,
    alibiSlopes: step.alibiSlopes,
    sinks: step.sinks,
  };
  const kv: PagedKV = {
    kind: "paged",
    pageSize: cache.pageSize,
    pageShift: cache.pageShift,
    numPages: cache.numPages,
    pages,
    pageOffsets,
    ...(cache.layout === "HND" ? { layout: "HND" as const } : {}),
  };
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `options must be an object with the plan's grid: got ${
        options === null ? "null" : typeof options
      }`,
    );
  }
  const { previous, ...planOptions } = options;
  // The scale is checked before the shape, so a step with several bad fields reports as before.
  const scale = checkScale(step.scale, cache.headDim);
  return pagePlan(
    validateShape(shape),
    kv,
    scale,
    { ...planOptions, strategy: step.strategy ?? options.strategy },
    cache.id === undefined
      ? { seqIds: Uint32Array.from(seqs) }
      : { cacheId: cache.id, cacheVersion: cache.version, seqIds: Uint32Array.from(seqs) },
    previous,
  );
}
