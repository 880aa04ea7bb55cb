/**
 * The demo's batch: a realistic ragged decode step (8 sequences from 37 to 4096 tokens, Llama-like
 * GQA 32/8 heads, head dim 128, f16 KV), with seeded data, and smaller variants for quick runs.
 *
 * @module
 */

import { dynamicKVScales, encodeKV, KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { DecodeInput, KVDtype } from "../core/problem.ts";
import { gaussian, seededRandom } from "./random.ts";

/**
 * Context lengths of the demo batch's sequences.
 *
 * @example
 * ```ts
 * import { DEMO_SEQ_LENS } from "@lean/attention/cli";
 * console.log(DEMO_SEQ_LENS.length); // 8
 * ```
 */
export const DEMO_SEQ_LENS: readonly number[] = [37, 512, 1000, 4096, 130, 2048, 777, 3000];

/**
 * Options for {@linkcode demoBatch}.
 *
 * @example
 * ```ts
 * import { demoBatch, type DemoBatchOptions } from "@lean/attention/cli";
 * const options: DemoBatchOptions = { seqLens: [100], numHeads: 2, numKVHeads: 1, headDim: 8 };
 * console.log(demoBatch(options).q.length); // 16
 * ```
 */
export interface DemoBatchOptions {
  /** Context lengths (default {@linkcode DEMO_SEQ_LENS}). */
  seqLens?: readonly number[];
  /** Query heads (default 32). */
  numHeads?: number;
  /** KV heads (default 8). */
  numKVHeads?: number;
  /** Head dimension (default 128). */
  headDim?: number;
  /** V's head dimension (default `headDim`; MLA: 512 beside K's 576). */
  headDimV?: number;
  /** V is the first `headDimV` dims of each K row (MLA's latent cache): no `v` (default false). */
  vFromK?: boolean;
  /** Query tokens per sequence (default 1). */
  qLen?: number;
  /**
   * K/V dtype (default `"f16"`); the 8-bit ones with one scale per tensor, its largest value at
   * the format's largest code.
   */
  kvDtype?: KVDtype;
  /** Seed of the data (default 0x1ea4). */
  seed?: number;
}

/**
 * Builds a decode batch with unit-variance q, k and v, so scores `q.k / sqrt(headDim)` are about
 * N(0, 1) as in a trained model's decode step. K and V are f16 unless `kvDtype` says otherwise.
 *
 * @example
 * ```ts
 * import { demoBatch } from "@lean/attention/cli";
 * const input = demoBatch({ seqLens: [10, 20], numHeads: 4, numKVHeads: 2, headDim: 16 });
 * console.log(input.q.length, input.k.length, input.kvDtype); // 128 960 f16
 * const int8 = demoBatch({ seqLens: [10], numHeads: 2, numKVHeads: 1, headDim: 16, kvDtype: "int8" });
 * console.log(int8.k.constructor.name, typeof int8.kScale); // Int8Array number
 * const mla = demoBatch({ seqLens: [10], numHeads: 16, numKVHeads: 1, headDim: 576, headDimV: 512, vFromK: true });
 * console.log(mla.k.length, mla.v); // 5760 undefined
 * ```
 */
export function demoBatch(options: DemoBatchOptions = {}): DecodeInput {
  const seqLens = [...(options.seqLens ?? DEMO_SEQ_LENS)];
  const numHeads = options.numHeads ?? 32;
  const numKVHeads = options.numKVHeads ?? 8;
  const headDim = options.headDim ?? 128;
  const headDimV = options.headDimV ?? headDim;
  const vFromK = options.vFromK ?? false;
  const qLen = options.qLen ?? 1;
  const tokens = seqLens.reduce((a, b) => a + b, 0);
  const rand = seededRandom(options.seed ?? 0x1ea4);
  const q = gaussian(seqLens.length * qLen * numHeads * headDim, 1, rand);
  const k = gaussian(tokens * numKVHeads * headDim, 1, rand);
  const v = gaussian(vFromK ? 0 : tokens * numKVHeads * headDimV, 1, rand);
  const kvDtype = options.kvDtype ?? "f16";
  const base = {
    q,
    seqLens,
    numHeads,
    numKVHeads,
    headDim,
    ...(headDimV === headDim ? {} : { headDimV }),
    ...(vFromK ? { vFromK } : {}),
    qLen,
    kvDtype,
  };
  if (!KV_DTYPE_INFO[kvDtype].scaled) {
    return { ...base, k: encodeKV(k, kvDtype), ...(vFromK ? {} : { v: encodeKV(v, kvDtype) }) };
  }
  // One scale per tensor: the largest of the per-row scales.
  const scale = (x: Float32Array) =>
    dynamicKVScales(x, kvDtype, { headDim }).reduce((a, b) => Math.max(a, b), 0) || 1;
  const kScale = scale(k);
  if (vFromK) return { ...base, k: encodeKV(k, kvDtype, { scale: kScale }), kScale };
  const vScale = scale(v);
  return {
    ...base,
    k: encodeKV(k, kvDtype, { scale: kScale }),
    v: encodeKV(v, kvDtype, { scale: vScale }),
    kScale,
    vScale,
  };
}
