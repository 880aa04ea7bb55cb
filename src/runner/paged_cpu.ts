/**
 * Paged plans on the CPU: the host cache's K/V rows gathered through each sequence's page list,
 * then the dense plan's schedule run on them, so results are bitwise those of a dense decode.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import { executePlanOnCpu } from "../cpu/cpu_backend.ts";
import type { KVCache } from "./kv_cache.ts";
import type { Plan } from "../plan/plan.ts";
import type { DecodeOutput, KVDtype } from "../core/problem.ts";
import { PIECE, PIECE_STRIDE } from "../plan/schedule.ts";

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
  /** One layer's K storage: rows of all pages, `[row][kvHead][dim]` (bits for f16/bf16). */
  k: Float32Array | Uint16Array;
  /** One layer's V storage, like `k`. */
  v: Float32Array | Uint16Array;
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
 * Executes a paged plan on the CPU: gathers each sequence's K/V rows through its page list
 * (the pieces' `kvStart` fields) and runs the same schedule as the dense plan, so results are
 * bitwise those of a dense decode of the same tokens.
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
  if (!plan?.paging) {
    throw new TypeError("plan must be a paged plan (createPagedPlan, planForCache)");
  }
  const { problem: p, paging, cache } = plan;
  if (cache) {
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
  const row = p.numKVHeads * p.headDim;
  const dtype: KVDtype = p.kvDtype;
  const Ctor = KV_DTYPE_INFO[dtype].HostArray;
  for (const name of ["k", "v"] as const) {
    const a = input?.[name];
    if (!(a instanceof Ctor)) {
      throw new TypeError(`${name} must be a ${Ctor.name} (kvDtype "${dtype}"): got ${typeof a}`);
    }
    if (a.length < paging.numPages * paging.pageSize * row) {
      throw new RangeError(
        `${name} must hold ${paging.numPages} pages of ${paging.pageSize} rows of ${row} elements: got ${a.length} elements`,
      );
    }
  }
  const qElems = p.numSeqs * p.qLen * p.numHeads * p.headDim;
  if (!(input.q instanceof Float32Array)) {
    throw new TypeError(`q must be a Float32Array: got ${typeof input.q}`);
  }
  if (input.q.length !== qElems) {
    throw new RangeError(`q must have ${qElems} elements: got ${input.q.length}`);
  }
  const P = paging.pageSize;
  const k = new Ctor(p.totalTokens * row);
  const v = new Ctor(p.totalTokens * row);
  for (let s = 0; s < p.numSeqs; s++) {
    const len = p.seqLens[s];
    const base = p.kvStarts[s] * row;
    for (let j = 0; j * P < len; j++) {
      const src = paging.pages[paging.pageOffsets[s] + j] * P * row;
      const n = Math.min(P, len - j * P) * row;
      k.set((input.k as Float32Array).subarray(src, src + n), base + j * P * row);
      v.set((input.v as Float32Array).subarray(src, src + n), base + j * P * row);
    }
  }
  // The dense twin of the schedule: kvStart back to the sequence's first dense row.
  const pieces = plan.schedule.pieces.slice();
  for (let o = 0; o < pieces.length; o += PIECE_STRIDE) {
    const seq = pieces[o + PIECE.seq];
    if (pieces[o + PIECE.kvStart] !== paging.pageOffsets[seq]) {
      throw new RangeError(
        `piece ${o / PIECE_STRIDE} of the plan must start at its sequence's page list (${
          paging.pageOffsets[seq]
        }): got ${pieces[o + PIECE.kvStart]}`,
      );
    }
    pieces[o + PIECE.kvStart] = p.kvStarts[seq];
  }
  const dense: Plan = { ...plan, schedule: { ...plan.schedule, pieces } };
  return executePlanOnCpu(
    dense,
    {
      q: input.q,
      k,
      v,
      seqLens: p.seqLens,
      numHeads: p.numHeads,
      numKVHeads: p.numKVHeads,
      headDim: p.headDim,
      qLen: p.qLen,
      kvDtype: dtype,
    },
    plan.scale,
  );
}
