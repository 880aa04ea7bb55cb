/**
 * Rotary position embeddings as Hugging Face's Llama-family models compute them: inverse
 * frequencies in float32 (default, linear or Llama 3 scaling), angles `position x inv_freq`
 * rounded to float32, and `rotate_half` pairs (element `i` with `i + headDim / 2`). The cos/sin
 * table is computed once on the host, so the GPU never evaluates `cos` of a large argument (its
 * precision there is implementation-defined).
 *
 * ```ts
 * import { ropeInvFreq, ropeTable } from "./rope.ts";
 * const rope = { type: "default" as const, theta: 10000, factor: 1, lowFreqFactor: 1,
 *   highFreqFactor: 4, originalMaxPositions: 8192 };
 * const inv = ropeInvFreq(rope, 8);
 * const { cos, sin } = ropeTable(inv, 3);
 * console.log(inv.length, cos.length, cos[0], sin[4]); // 4 12 1 0.8414709568023682
 * ```
 *
 * @module
 */

import type { RopeConfig } from "./config.ts";

const f = Math.fround;

/** Inverse frequencies `[headDim / 2]` (float32 arithmetic, as transformers does it). */
export function ropeInvFreq(rope: RopeConfig, headDim: number): Float32Array {
  const half = headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const exponent = f(f(2 * i) / headDim);
    inv[i] = f(1 / f(Math.pow(rope.theta, exponent)));
  }
  if (rope.type === "linear") {
    for (let i = 0; i < half; i++) inv[i] = f(inv[i] / rope.factor);
  } else if (rope.type === "llama3") {
    const { factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: old } = rope;
    const lowWavelen = old / low;
    const highWavelen = old / high;
    for (let i = 0; i < half; i++) {
      const wavelen = f((2 * Math.PI) / inv[i]);
      let v = wavelen > lowWavelen ? f(inv[i] / factor) : inv[i];
      if (!(wavelen < highWavelen) && !(wavelen > lowWavelen)) {
        const smooth = f(f(f(old / wavelen) - low) / f(high - low));
        v = f(f(f(f(1 - smooth) * v) / factor) + f(smooth * v));
      }
      inv[i] = v;
    }
  }
  return inv;
}

/** `cos` and `sin` of every position below `positions`, `[position][headDim / 2]`. */
export function ropeTable(invFreq: Float32Array, positions: number): {
  cos: Float32Array;
  sin: Float32Array;
} {
  const half = invFreq.length;
  const cos = new Float32Array(positions * half);
  const sin = new Float32Array(positions * half);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = f(p * invFreq[i]);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}
