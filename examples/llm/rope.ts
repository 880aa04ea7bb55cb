/**
 * Rotary position embeddings as Hugging Face's Llama-family models compute them: inverse
 * frequencies in float32 (default, linear, Llama 3 or YaRN scaling), angles `position x inv_freq`
 * rounded to float32, cos and sin times the attention scaling (YaRN's `attention_factor`, 1
 * otherwise), and `rotate_half` pairs (element `i` with `i + headDim / 2`). The cos/sin
 * table is computed once on the host, so the GPU never evaluates `cos` of a large argument (its
 * precision there is implementation-defined).
 *
 * ```ts
 * import { ropeInvFreq, ropeTable } from "./rope.ts";
 * const rope = { type: "default" as const, theta: 10000, factor: 1, lowFreqFactor: 1,
 *   highFreqFactor: 4, originalMaxPositions: 8192, betaFast: 32, betaSlow: 1, truncate: true,
 *   attentionScaling: 1 };
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
  } else if (rope.type === "yarn") {
    yarn(rope, headDim, inv);
  }
  return inv;
}

/**
 * YaRN (transformers' `_compute_yarn_parameters`): a ramp over the frequency index between the
 * dimensions where `betaFast` and `betaSlow` rotations fit the original context blends the
 * original frequencies (`1 / pos`, below the ramp) with the interpolated ones (`1 / (factor pos)`,
 * above it), `pos = theta^(2i / headDim)`; the result replaces `inv`.
 */
function yarn(rope: RopeConfig, headDim: number, inv: Float32Array): void {
  const { factor, theta, originalMaxPositions: old } = rope;
  // The dimension (fractional) at which `rotations` full turns fit the original context.
  const dimOf = (rotations: number) =>
    (headDim * Math.log(old / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = dimOf(rope.betaFast), high = dimOf(rope.betaSlow);
  if (rope.truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, headDim - 1);
  if (low === high) high += 0.001; // as transformers: no division by zero
  const lowF = f(low), span = f(high - low), factorF = f(factor);
  for (let i = 0; i < inv.length; i++) {
    const pos = posFreq(theta, i, headDim);
    const ramp = Math.min(1, Math.max(0, f(f(i - lowF) / span)));
    const extrapolation = f(1 - ramp);
    const interpolated = f(1 / f(factorF * pos));
    const original = f(1 / pos);
    inv[i] = f(f(interpolated * f(1 - extrapolation)) + f(original * extrapolation));
  }
}

/** `theta^(2i / headDim)` in f32, as `base ** (arange(0, dim, 2) / dim)`. */
function posFreq(theta: number, i: number, headDim: number): number {
  return f(Math.pow(theta, f(f(2 * i) / headDim)));
}

/**
 * `cos` and `sin` of every position below `positions`, `[position][headDim / 2]`, times
 * `scaling` (YaRN's attention factor; 1 leaves them as they are).
 */
export function ropeTable(invFreq: Float32Array, positions: number, scaling = 1): {
  cos: Float32Array;
  sin: Float32Array;
} {
  const s = f(scaling);
  const half = invFreq.length;
  const cos = new Float32Array(positions * half);
  const sin = new Float32Array(positions * half);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = f(p * invFreq[i]);
      cos[p * half + i] = s === 1 ? Math.cos(angle) : f(f(Math.cos(angle)) * s);
      sin[p * half + i] = s === 1 ? Math.sin(angle) : f(f(Math.sin(angle)) * s);
    }
  }
  return { cos, sin };
}
