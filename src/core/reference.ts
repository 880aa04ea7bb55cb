/**
 * A float64 reference for decode attention: direct two-pass softmax, no tiling, no plan, with
 * the attention variants' host hooks (`variant.ts`). Every backend is tested against it.
 *
 * @module
 */

import { rowHooks } from "./variant.ts";
import { decodeInputKV } from "./dtypes.ts";
import { keysAndValues } from "./values_from_keys.ts";
import { type DecodeInput, resolveScale, validateInput } from "./problem.ts";

/**
 * Reference result in float64.
 *
 * @example
 * ```ts
 * import { referenceAttention } from "@lean/attention";
 * const ref = referenceAttention({
 *   q: new Float32Array(8), k: new Float32Array(16), v: new Float32Array(16).fill(1),
 *   seqLens: [2], numHeads: 1, numKVHeads: 1, headDim: 8,
 * });
 * console.log(ref.out[0], ref.lse[0]); // 1 0.6931471805599453
 * ```
 */
export interface ReferenceOutput {
  /** `[seq][qpos][head][headDimV]`. */
  out: Float64Array;
  /** `[seq][qpos][head]`, natural log. */
  lse: Float64Array;
}

/**
 * Computes decode attention in float64, straight from the definition.
 *
 * @example
 * ```ts
 * import { referenceAttention } from "@lean/attention";
 * const r = referenceAttention({
 *   q: new Float32Array(8).fill(1), k: new Float32Array(8).fill(1), v: new Float32Array(8).fill(2),
 *   seqLens: [1], numHeads: 1, numKVHeads: 1, headDim: 8,
 * });
 * console.log(r.out[0], r.lse[0]); // 2 2.828...
 * ```
 */
export function referenceAttention(input: DecodeInput): ReferenceOutput {
  const p = validateInput(input);
  const scale = resolveScale(input);
  const { k, v } = decodeInputKV(keysAndValues(input, p), p.kvDtype);
  const { headDim: D, headDimV: DV, numHeads: H, numKVHeads: KH, groupSize } = p;
  const out = new Float64Array(p.totalQueries * H * DV);
  const lse = new Float64Array(p.totalQueries * H);
  let maxLen = 0;
  for (const len of p.seqLens) maxLen = Math.max(maxLen, len);
  const scores = new Float64Array(maxLen);
  const acc = new Float64Array(DV);
  for (let seq = 0; seq < p.numSeqs; seq++) {
    const L = p.seqLens[seq];
    const start = p.kvStarts[seq];
    const qLen = p.qLens[seq];
    for (let pos = 0; pos < qLen; pos++) {
      for (let h = 0; h < H; h++) {
        // The variant's hooks of this row: its visible tokens, logit transform and sink.
        const { begin, end: visible, logit, sink } = rowHooks(p.variant, L, qLen, pos, h);
        const kvh = Math.floor(h / groupSize);
        const row = (p.qStarts[seq] + pos) * H + h;
        const qo = row * D;
        let max = sink ?? -Infinity;
        for (let t = begin; t < visible; t++) {
          const ko = ((start + t) * KH + kvh) * D;
          let s = 0;
          for (let d = 0; d < D; d++) s += input.q[qo + d] * k[ko + d];
          s *= scale;
          if (logit) s = logit(s, t);
          scores[t] = s;
          if (s > max) max = s;
        }
        if (L === 0) {
          // An empty request (no context) sees nothing: out 0, lse -Infinity (the merge
          // identity), with or without a sink.
          lse[row] = -Infinity;
          continue;
        }
        // The sink joins the denominator only.
        let sum = sink === undefined ? 0 : Math.exp(sink - max);
        acc.fill(0);
        for (let t = begin; t < visible; t++) {
          const w = Math.exp(scores[t] - max);
          sum += w;
          const vo = ((start + t) * KH + kvh) * DV;
          for (let d = 0; d < DV; d++) acc[d] += w * v[vo + d];
        }
        for (let d = 0; d < DV; d++) out[row * DV + d] = acc[d] / sum;
        lse[row] = max + Math.log(sum);
      }
    }
  }
  return { out, lse };
}
