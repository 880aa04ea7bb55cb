/**
 * WGSL kernels of gpt-oss's mixture of experts on the runner's GPU backend, the two steps between
 * its matmuls (`moe.ts` describes the layout and has the same steps on the host): routing (top-k
 * of the router logits, softmax over them, dense weights into the last `E` columns of each row of
 * `h`) and the experts' weighted, clamped SwiGLU.
 *
 * ```ts
 * import { expertActivationWGSL, routeExpertsWGSL } from "./moe_kernels.ts";
 * const moe = { experts: 8, topK: 2, alpha: 1.702, limit: 7 };
 * console.log(routeExpertsWGSL(moe, 64).includes("@compute"), expertActivationWGSL(moe, 64).length > 0);
 * // true true
 * ```
 *
 * @module
 */

import type { MoeConfig } from "./config.ts";
import { f32, INDEX, STEP, THREADS } from "./gpu_kernels.ts";

/**
 * One thread per row: the `topK` largest of the row's `E` router logits (ties to the lower
 * expert), `exp(v - max)` over them normalised, written to `h[r][E ffn + e]` (0 for the others).
 */
export function routeExpertsWGSL(moe: MoeConfig, ffn: number): string {
  const E = moe.experts, K = moe.topK, hCols = E * (ffn + 1);
  return `${STEP}
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> h: array<f32>;
${INDEX}
@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
  let r = index(g, n);
  if (r >= step.rows) { return; }
  let base = r * ${E}u;
  let at = r * ${hCols}u + ${E * ffn}u;
  var used = array<u32, ${E}>();
  var chosen = array<u32, ${K}>();
  var vals = array<f32, ${K}>();
  for (var k = 0u; k < ${K}u; k++) {
    var best = ${E}u;
    var bv = 0.0;
    for (var e = 0u; e < ${E}u; e++) {
      let v = logits[base + e];
      if (used[e] == 0u && (best == ${E}u || v > bv)) { best = e; bv = v; }
    }
    used[best] = 1u;
    chosen[k] = best;
    vals[k] = bv;
  }
  var sum = 0.0;
  let top = vals[0];
  for (var k = 0u; k < ${K}u; k++) {
    vals[k] = exp(vals[k] - top);
    sum += vals[k];
  }
  for (var e = 0u; e < ${E}u; e++) { h[at + e] = 0.0; }
  for (var k = 0u; k < ${K}u; k++) { h[at + chosen[k]] = vals[k] / sum; }
}`;
}

/**
 * One thread per (row, expert, j): `h[r][e ffn + j] = w_e (up + 1) gate sigmoid(alpha gate)` with
 * `gate = min(gate, limit)`, `up = clamp(up, -limit, limit)`, from `gu` (`[row][E * 2 ffn]`:
 * expert `e`'s gate columns, then its up columns) and the routing weights in `h`.
 */
export function expertActivationWGSL(moe: MoeConfig, ffn: number): string {
  const E = moe.experts, hCols = E * (ffn + 1), limit = f32(moe.limit);
  return `${STEP}
@group(0) @binding(1) var<storage, read> gu: array<f32>;
@group(0) @binding(2) var<storage, read_write> h: array<f32>;
${INDEX}
@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
  let i = index(g, n);
  if (i >= step.rows * ${E * ffn}u) { return; }
  let r = i / ${E * ffn}u;
  let ej = i % ${E * ffn}u;
  let e = ej / ${ffn}u;
  let src = r * ${2 * E * ffn}u + e * ${2 * ffn}u + ej % ${ffn}u;
  let w = h[r * ${hCols}u + ${E * ffn}u + e];
  let gate = min(gu[src], ${limit});
  let up = clamp(gu[src + ${ffn}u], -${limit}, ${limit});
  let glu = gate / (1.0 + exp(-(gate * ${f32(moe.alpha)})));
  h[r * ${hCols}u + ej] = w * ((up + 1.0) * glu);
}`;
}
