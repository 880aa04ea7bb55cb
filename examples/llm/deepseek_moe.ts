/**
 * DeepSeek-V3's mixture of experts on the host (`DeepseekV3MoE` in transformers): a sigmoid score
 * per routed expert; for the choice only, each score plus its correction bias; the groups with the
 * largest sums of their two best corrected scores first (`topk_group` of `n_group`), then the
 * `num_experts_per_tok` best corrected scores inside them; the chosen experts' uncorrected scores,
 * normalised to sum to 1 (`norm_topk_prob`) and scaled by `routed_scaling_factor`, weigh their
 * SwiGLU outputs; the shared expert's output is added unweighted.
 *
 * @module
 */

import type { DeepseekMoeConfig } from "./mla_config.ts";

/** One token's routing: the chosen experts and their weights. */
export interface Route {
  experts: number[];
  weights: number[];
}

/**
 * Routes one token from its router logits and the experts' correction biases.
 *
 * @example
 * ```ts
 * import { routeToken } from "./deepseek_moe.ts";
 * const moe = {
 *   experts: 4, topK: 2, groups: 2, topkGroup: 1, scale: 2, normTopK: true, width: 8,
 *   sharedWidth: 0, denseLayers: 0,
 * };
 * // Group 1 (experts 2 and 3) has the larger sum of its two best scores.
 * const r = routeToken(Float32Array.of(3, -3, 1, 1), new Float32Array(4), moe);
 * console.log(r.experts.sort(), r.weights.map((w) => w.toFixed(1))); // [ 2, 3 ] [ "1.0", "1.0" ]
 * ```
 */
export function routeToken(
  logits: Float32Array,
  correction: Float32Array,
  moe: DeepseekMoeConfig,
): Route {
  const E = moe.experts, per = E / moe.groups;
  const scores = Array.from(logits, (x) => Math.fround(1 / (1 + Math.exp(-x))));
  const choice = scores.map((s, e) => Math.fround(s + correction[e]));
  const groupScore = Array.from({ length: moe.groups }, (_, g) => {
    const top = choice.slice(g * per, (g + 1) * per).sort((a, b) => b - a);
    return top[0] + top[1];
  });
  const groups = new Set(best(groupScore, moe.topkGroup));
  const masked = choice.map((c, e) => groups.has(Math.floor(e / per)) ? c : -Infinity);
  const experts = best(masked, moe.topK);
  let weights = experts.map((e) => scores[e]);
  if (moe.normTopK) {
    const sum = weights.reduce((a, b) => a + b, 0) + 1e-20;
    weights = weights.map((w) => Math.fround(w / sum));
  }
  return { experts, weights: weights.map((w) => Math.fround(w * moe.scale)) };
}

/** Indices of the `k` largest values (the first of equal ones first). */
function best(values: number[], k: number): number[] {
  return values.map((v, i) => [v, i]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k)
    .map(([, i]) => i);
}
