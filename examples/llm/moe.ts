/**
 * gpt-oss's mixture of experts (transformers' `GptOssMLP`) in the runner's layout, and its two
 * non-matmul steps on the host. Per token: router logits `x W_r^T + b_r` over the `E` experts, the
 * top `k` of them, a softmax over those `k` logits (top-k first, then softmax), and for each chosen
 * expert `e` with weight `w_e`: `gate_up = x W_e + b_e` (gate and up interleaved: gate the even
 * columns, up the odd ones), `gate = min(gate, limit)`, `up = clamp(up, -limit, limit)`,
 * `(up + 1) * gate * sigmoid(alpha gate)`, times the down projection plus its bias, times `w_e`,
 * summed over the chosen experts.
 *
 * The runner computes every expert with two plain matmuls: `gateUp` stacks the experts' gate and up
 * rows (de-interleaved, output-major), and the activation writes `w_e * act_e` (0 for experts not
 * chosen) followed by the `E` weights themselves, so one matmul with `down` (the experts' down
 * projections side by side, then their biases as `E` more columns) gives
 * `sum_e w_e (act_e W_down_e + b_down_e)`.
 *
 * ```ts
 * import { expertActivation, routeExperts } from "./moe.ts";
 * const moe = { experts: 4, topK: 2, alpha: 1.702, limit: 7 };
 * const ffn = 1, hCols = 4 * (ffn + 1);
 * const h = new Float32Array(hCols);
 * routeExperts(Float32Array.of(0, 2, -1, 2 + Math.log(3)), 1, moe, ffn, h);
 * console.log(Array.from(h.subarray(4), (w) => w.toFixed(2)).join(" ")); // 0.00 0.25 0.00 0.75
 * // gate, up of experts 0..3: expert 1's gate 1 and up 0.5.
 * expertActivation(Float32Array.of(9, 9, 1, 0.5, 9, 9, 0, 0), 1, moe, ffn, h);
 * console.log(h[0], h[1].toFixed(4), h[3]); // 0 0.3172 0
 * ```
 *
 * @module
 */

import type { MoeConfig } from "./config.ts";
import type { FloatDtype, Tensor } from "./safetensors.ts";

const f = Math.fround;

/** A weight matrix `[rows][cols]` (output-major), as `checkpoint.ts`'s `Matrix`. */
export interface ExpertMatrix {
  dtype: FloatDtype;
  rows: number;
  cols: number;
  data: Float32Array | Uint16Array;
}

/** One layer's experts in the runner's layout. */
export interface ExpertWeights {
  /** `[E][hidden]` (`mlp.router.weight`). */
  router: ExpertMatrix;
  /** `[E]` (`mlp.router.bias`). */
  routerBias: Float32Array;
  /** `[E * 2 ffn][hidden]`: expert `e`'s `ffn` gate rows, then its `ffn` up rows. */
  gateUp: ExpertMatrix;
  /** `[E * 2 ffn]`, the rows of `gateUp`. */
  gateUpBias: Float32Array;
  /** `[hidden][E * ffn + E]`: expert `e`'s down projection in columns `e ffn ..`, biases last. */
  down: ExpertMatrix;
}

/** The checkpoint's tensors of one layer's `mlp` (transformers' `GptOssMLP` names). */
export interface ExpertTensors {
  /** `router.weight` `[E, hidden]`. */
  router: Tensor;
  /** `router.bias` `[E]`. */
  routerBias: Float32Array;
  /** `experts.gate_up_proj` `[E, hidden, 2 ffn]` (input-major: `x @ W`). */
  gateUp: Tensor;
  /** `experts.gate_up_proj_bias` `[E, 2 ffn]`. */
  gateUpBias: Float32Array;
  /** `experts.down_proj` `[E, ffn, hidden]`. */
  down: Tensor;
  /** `experts.down_proj_bias` `[E, hidden]`. */
  downBias: Tensor;
}

/** Widens bf16/f16 bits to f32 (the only conversion the layout needs). */
export type Widen = (t: { dtype: FloatDtype; data: Float32Array | Uint16Array }) => Float32Array;

/** Rearranges a layer's expert tensors into {@linkcode ExpertWeights} (same dtype, no rounding). */
export function expertWeights(
  t: ExpertTensors,
  dims: { hidden: number; ffn: number; experts: number },
  widen: Widen,
): ExpertWeights {
  const { hidden, ffn, experts: E } = dims;
  const guRows = E * 2 * ffn;
  const like = (dtype: FloatDtype, n: number) =>
    dtype === "F32" ? new Float32Array(n) : new Uint16Array(n);
  const src = t.gateUp.data;
  const gu = like(t.gateUp.dtype, guRows * hidden);
  const gub = new Float32Array(guRows);
  // Stored column c of expert e: gate j = c / 2 (even c) or up j = (c - 1) / 2 (odd c).
  const rowOf = (e: number, c: number) => e * 2 * ffn + (c % 2 === 0 ? c / 2 : ffn + (c - 1) / 2);
  for (let e = 0; e < E; e++) {
    for (let c = 0; c < 2 * ffn; c++) {
      const row = rowOf(e, c);
      gub[row] = t.gateUpBias[e * 2 * ffn + c];
      for (let i = 0; i < hidden; i++) gu[row * hidden + i] = src[(e * hidden + i) * 2 * ffn + c];
    }
  }
  // Down and its bias share one matrix: widen both to f32 unless their dtypes agree.
  const same = t.down.dtype === t.downBias.dtype;
  const dtype: FloatDtype = same ? t.down.dtype : "F32";
  const downData = same ? t.down.data : widen(t.down);
  const biasData = same ? t.downBias.data : widen(t.downBias);
  const cols = E * ffn + E;
  const down = like(dtype, hidden * cols);
  for (let e = 0; e < E; e++) {
    for (let j = 0; j < ffn; j++) {
      const from = (e * ffn + j) * hidden;
      for (let o = 0; o < hidden; o++) down[o * cols + e * ffn + j] = downData[from + o];
    }
    for (let o = 0; o < hidden; o++) down[o * cols + E * ffn + e] = biasData[e * hidden + o];
  }
  return {
    router: { dtype: t.router.dtype, rows: E, cols: hidden, data: t.router.data },
    routerBias: t.routerBias,
    gateUp: { dtype: t.gateUp.dtype, rows: guRows, cols: hidden, data: gu },
    gateUpBias: gub,
    down: { dtype, rows: hidden, cols, data: down },
  };
}

/**
 * Routing, row by row: the `topK` largest router logits (ties to the lower expert), their
 * softmax in f32, written as dense weights (0 for the other experts) to the last `E` columns of
 * each row of `h` (`[rows][E * ffn + E]`).
 */
export function routeExperts(
  logits: Float32Array,
  rows: number,
  moe: MoeConfig,
  ffn: number,
  h: Float32Array,
): void {
  const E = moe.experts, hCols = E * (ffn + 1);
  const chosen: number[] = [];
  for (let r = 0; r < rows; r++) {
    const row = logits.subarray(r * E, (r + 1) * E);
    chosen.length = 0;
    for (let k = 0; k < moe.topK; k++) {
      let best = -1;
      for (let e = 0; e < E; e++) {
        if (!chosen.includes(e) && (best < 0 || row[e] > row[best])) best = e;
      }
      chosen.push(best);
    }
    const top = row[chosen[0]];
    const ex = chosen.map((e) => f(Math.exp(f(row[e] - top))));
    let sum = 0;
    for (const x of ex) sum = f(sum + x);
    const at = r * hCols + E * ffn;
    h.fill(0, at, at + E);
    chosen.forEach((e, k) => h[at + e] = f(ex[k] / sum));
  }
}

/**
 * The experts' clamped SwiGLU, weighted: `h[r][e ffn + j] = w_e (up + 1) gate sigmoid(alpha
 * gate)` from `gu` (`[rows][E * 2 ffn]` in `gateUp`'s row order) and the weights
 * {@linkcode routeExperts} left in `h`.
 */
export function expertActivation(
  gu: Float32Array,
  rows: number,
  moe: MoeConfig,
  ffn: number,
  h: Float32Array,
): void {
  const E = moe.experts, hCols = E * (ffn + 1), limit = f(moe.limit), alpha = f(moe.alpha);
  for (let r = 0; r < rows; r++) {
    for (let e = 0; e < E; e++) {
      const w = h[r * hCols + E * ffn + e];
      const src = r * E * 2 * ffn + e * 2 * ffn;
      for (let j = 0; j < ffn; j++) {
        if (w === 0) {
          h[r * hCols + e * ffn + j] = 0;
          continue;
        }
        const gate = Math.min(gu[src + j], limit);
        const up = Math.min(Math.max(gu[src + ffn + j], -limit), limit);
        const glu = f(gate * f(1 / f(1 + f(Math.exp(-f(gate * alpha))))));
        h[r * hCols + e * ffn + j] = f(w * f(f(up + 1) * glu));
      }
    }
  }
}
