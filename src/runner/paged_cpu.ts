/**
 * Paged plans on the CPU: the plan's schedule run on the host cache's storage, each K/V row read
 * through its sequence's page list (`kv.kind === "paged"`), so results are bitwise those of a
 * dense decode of the same tokens.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import { describe } from "../core/field_checks.ts";
import { prefixRows } from "../core/values_from_keys.ts";
import { runSchedule } from "../cpu/cpu_backend.ts";
import type { KVCache } from "./kv_cache.ts";
import type { DecodeOutput, KVArray, KVDtype } from "../core/problem.ts";
import { cacheById } from "./cache_registry.ts";

import type { PagedPlan } from "./paged_plan.ts";

/**
 * Host K/V storage and queries for {@linkcode executePagedPlanOnCpu}.
 *
 * @example
 * ```ts
 * import {
 *   createKVCache, executePagedPlanOnCpu, type PagedCpuInput, planForCache,
 * } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 1, numKVHeads: 1, headDim: 8, pageSize: 2, numPages: 4 });
 * const a = cache.addSequence();
 * cache.append(a, { k: [new Float32Array(24).fill(1)], v: [new Float32Array(24).fill(5)] });
 * const plan = planForCache(cache, { seqs: [a], numHeads: 1 }, { grid: 2 });
 * const input: PagedCpuInput = { q: new Float32Array(8).fill(1), ...cache.layerData(0) };
 * console.log(executePagedPlanOnCpu(plan, input).out[0]); // 5
 * ```
 */
export interface PagedCpuInput {
  /** Queries, `[seq][qpos][head][dim]`. */
  q: Float32Array;
  /**
   * One layer's K storage: rows of all pages, `[row][kvHead][dim]` (bits for f16/bf16, codes for
   * the 8-bit dtypes).
   */
  k: KVArray;
  /**
   * One layer's V storage, like `k` with rows of `headDimV` dims; absent for plans with
   * `vFromK` (V is then the first `headDimV` dims of `k`'s rows).
   */
  v?: KVArray;
  /**
   * 8-bit dtypes: the layer's scale table, `[row][kvHead][2]` (K's scale, V's scale), as
   * `cache.layerData(layer).scales` holds it.
   */
  scales?: Float32Array;
}

/** Whether `k` and `v` are one layer's storage of a host cache. */
function ownsStorage(cache: KVCache, k: unknown, v: unknown): boolean {
  for (let l = 0; l < cache.numLayers; l++) {
    const data = cache.layerData(l);
    if (data.k === k && data.v === v) return true;
  }
  return false;
}

/**
 * Executes a paged plan on the CPU: runs the plan's schedule reading each K/V row through its
 * sequence's page list, so results are bitwise those of a dense decode of the same tokens.
 *
 * @example
 * ```ts
 * import { createKVCache, executePagedPlanOnCpu, planForCache } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 1, numKVHeads: 1, headDim: 8, pageSize: 2, numPages: 4 });
 * const a = cache.addSequence();
 * cache.append(a, { k: [new Float32Array(24).fill(1)], v: [new Float32Array(24).fill(3)] });
 * const plan = planForCache(cache, { seqs: [a], numHeads: 1 }, { grid: 2 });
 * const { out } = executePagedPlanOnCpu(plan, { q: new Float32Array(8), ...cache.layerData(0) });
 * console.log(out[0]); // 3
 * ```
 */
export function executePagedPlanOnCpu(plan: PagedPlan, input: PagedCpuInput): DecodeOutput {
  if (plan?.kv?.kind !== "paged") {
    throw new TypeError("plan must be a paged plan (createPagedPlan, planForCache)");
  }
  const { problem: p, kv } = plan;
  if (p.vFromK && input?.v !== undefined) {
    throw new TypeError(
      `v must be absent for a plan with vFromK (V is read from k's rows): got ${describe(input.v)}`,
    );
  }
  if (plan.cacheId !== undefined) {
    const cache = cacheById(plan.cacheId);
    if (!cache) {
      throw new RangeError("plan is stale: its cache is gone; plan again on a live cache");
    }
    // The plan's page tables are the cache's of the moment it was made.
    if (cache.version !== plan.cacheVersion) {
      throw new RangeError(
        `plan is stale: the cache changed (version ${cache.version}, planned at ${plan.cacheVersion}); plan again after extend, fork or free`,
      );
    }
    if (!cache.device && !ownsStorage(cache, input?.k, input?.v)) {
      throw new RangeError(
        "k and v must be one layer's storage of the plan's cache (cache.layerData(layer))",
      );
    }
  }
  const dtype: KVDtype = p.kvDtype;
  const info = KV_DTYPE_INFO[dtype];
  const Ctor = info.HostArray;
  for (const name of p.vFromK ? ["k"] as const : ["k", "v"] as const) {
    const a = input?.[name];
    const row = p.numKVHeads * (name === "k" ? p.headDim : p.headDimV);
    if (!(a instanceof Ctor)) {
      throw new TypeError(`${name} must be a ${Ctor.name} (kvDtype "${dtype}"): got ${typeof a}`);
    }
    if (a.length < kv.numPages * kv.pageSize * row) {
      throw new RangeError(
        `${name} must hold ${kv.numPages} pages of ${kv.pageSize} rows of ${row} elements: got ${a.length} elements`,
      );
    }
  }
  const scaleRow = info.scaled ? 2 * p.numKVHeads : 0;
  if (info.scaled) {
    const want = kv.numPages * kv.pageSize * scaleRow;
    if (!(input.scales instanceof Float32Array)) {
      throw new TypeError(
        `scales must be a Float32Array (kvDtype "${dtype}": cache.layerData(layer).scales): got ${typeof input
          .scales}`,
      );
    }
    if (input.scales.length < want) {
      throw new RangeError(
        `scales must hold ${kv.numPages} pages of ${kv.pageSize} rows of ${scaleRow} scales: got ${input.scales.length} elements`,
      );
    }
  }
  const qElems = p.totalQueries * p.numHeads * p.headDim;
  if (!(input.q instanceof Float32Array)) {
    throw new TypeError(`q must be a Float32Array: got ${typeof input.q}`);
  }
  if (input.q.length !== qElems) {
    throw new RangeError(`q must have ${qElems} elements: got ${input.q.length}`);
  }
  return runSchedule(
    plan,
    input.q,
    decodePages(input.k, plan, p.headDim, input.scales, 0),
    p.vFromK
      // V's rows are K's first headDimV dims, with the scale table's V entries.
      ? prefixRows(
        decodePages(input.k, plan, p.headDim, input.scales, 1),
        p.headDim,
        p.headDimV,
      ) as Float32Array
      : decodePages(input.v!, plan, p.headDimV, input.scales, 1),
    plan.scale,
    kv,
  );
}

/**
 * The storage as float32 (the array itself for f32): packed dtypes decode only the pages the
 * plan reads, in place in a storage-sized array, so page numbers address it unchanged. 8-bit
 * codes are multiplied by their row's and KV head's scale (column `col` of the scale table).
 */
function decodePages(
  data: KVArray,
  plan: PagedPlan,
  headDim: number,
  scales: Float32Array | undefined,
  col: number,
): Float32Array {
  const { problem: p, kv } = plan;
  if (data instanceof Float32Array) return data;
  const info = KV_DTYPE_INFO[p.kvDtype];
  const span = kv.pageSize * p.numKVHeads * headDim;
  const heads = kv.pageSize * p.numKVHeads;
  const hnd = kv.layout === "HND";
  const out = new Float32Array(kv.numPages * span);
  for (let s = 0; s < p.numSeqs; s++) {
    const used = Math.ceil(p.seqLens[s] / kv.pageSize);
    for (let j = 0; j < used; j++) {
      const page = kv.pages[kv.pageOffsets[s] + j];
      const at = page * span;
      let scale: Float32Array | undefined;
      if (info.scaled) {
        // This page's scales of K (col 0) or V (col 1), one per (row, KV head).
        scale = new Float32Array(heads);
        // Chunk h of the page is (token, KV head) in NHD order, (KV head, token) in HND; the
        // table is [row][kvHead] either way.
        for (let h = 0; h < heads; h++) {
          const row = hnd ? (h % kv.pageSize) * p.numKVHeads + Math.floor(h / kv.pageSize) : h;
          scale[h] = scales![2 * (page * heads + row) + col];
        }
      }
      out.set(info.decode(data.subarray(at, at + span), scale), at);
    }
  }
  return out;
}
