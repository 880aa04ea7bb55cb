/**
 * gpt-oss's parts of the LLM runner's float64 reference (llm_helpers.ts), written from
 * transformers' definitions independently of the runner's code: YaRN's inverse frequencies and
 * attention factor, and `GptOssMLP` on the checkpoint's own tensors (interleaved gate/up columns,
 * no re-layout).
 *
 * @module
 */

/**
 * YaRN's inverse frequencies and attention factor in float64, from the YaRN paper's definition
 * as transformers 5 configures it: the ramp between the dimensions where `beta_fast` and
 * `beta_slow` rotations fit `original_max_position_embeddings`, `factor` the ratio of
 * `max_position_embeddings` to it, attention factor `0.1 ln(factor) + 1`.
 */
export function yarnReference(
  rope: Record<string, number | boolean | string>,
  cfg: { max_position_embeddings?: number },
  D: number,
): { inv: number[]; attentionFactor: number } {
  const base = rope.rope_theta as number;
  const old = (rope.original_max_position_embeddings ?? cfg.max_position_embeddings) as number;
  const factor = rope.original_max_position_embeddings && cfg.max_position_embeddings
    ? cfg.max_position_embeddings / old
    : rope.factor as number;
  const at = (rotations: number) =>
    D * Math.log(old / (rotations * 2 * Math.PI)) / (2 * Math.log(base));
  let lo = at((rope.beta_fast as number) || 32), hi = at((rope.beta_slow as number) || 1);
  if (rope.truncate !== false) [lo, hi] = [Math.floor(lo), Math.ceil(hi)];
  lo = Math.max(lo, 0);
  hi = Math.min(hi, D - 1);
  const inv = Array.from({ length: D / 2 }, (_, i) => {
    const f = Math.pow(base, -(2 * i) / D);
    const ramp = Math.min(1, Math.max(0, (i - lo) / (hi === lo ? 0.001 : hi - lo)));
    return (f / factor) * ramp + f * (1 - ramp); // ramp 0: original, 1: interpolated
  });
  return { inv, attentionFactor: 0.1 * Math.log(factor) + 1 };
}

/**
 * gpt-oss's MLP (GptOssMLP) of one token in float64: router logits, the top `k` experts, a softmax
 * over their logits, and per expert `(up + 1) gate sigmoid(1.702 gate)` with `gate <= 7`,
 * `|up| <= 7`, gate the even and up the odd columns of `gate_up_proj` `[E, hidden, 2 ffn]`, then
 * `down_proj` `[E, ffn, hidden]` and its bias, weighted and summed. `p` is the layer's `mlp.`
 * prefix, `get` reads a tensor by name.
 */
export function gptOssMlpReference(
  xm: Float64Array,
  p: string,
  get: (name: string) => Float64Array,
  cfg: { num_local_experts: number; num_experts_per_tok: number; intermediate_size: number },
): Float64Array {
  const E = cfg.num_local_experts, K = cfg.num_experts_per_tok, F = cfg.intermediate_size;
  const hidden = xm.length;
  const rw = get(`${p}router.weight`), rb = get(`${p}router.bias`);
  const logits = Array.from({ length: E }, (_, e) => {
    let s = rb[e];
    for (let i = 0; i < hidden; i++) s += xm[i] * rw[e * hidden + i];
    return s;
  });
  const top = [...logits.keys()].sort((a, b) => logits[b] - logits[a] || a - b).slice(0, K);
  const ex = top.map((e) => Math.exp(logits[e] - logits[top[0]]));
  const z = ex.reduce((a, b) => a + b, 0);
  const gu = get(`${p}experts.gate_up_proj`), gub = get(`${p}experts.gate_up_proj_bias`);
  const dn = get(`${p}experts.down_proj`), dnb = get(`${p}experts.down_proj_bias`);
  const out = new Float64Array(hidden);
  top.forEach((e, k) => {
    const act = new Float64Array(F);
    for (let j = 0; j < F; j++) {
      // Column 2j of the expert's [hidden, 2F] gate_up_proj is gate j, column 2j + 1 up j.
      let g = gub[e * 2 * F + 2 * j], u = gub[e * 2 * F + 2 * j + 1];
      for (let i = 0; i < hidden; i++) {
        g += xm[i] * gu[(e * hidden + i) * 2 * F + 2 * j];
        u += xm[i] * gu[(e * hidden + i) * 2 * F + 2 * j + 1];
      }
      g = Math.min(g, 7);
      u = Math.max(-7, Math.min(u, 7));
      act[j] = (u + 1) * g / (1 + Math.exp(-1.702 * g));
    }
    for (let o = 0; o < hidden; o++) {
      let d = dnb[e * hidden + o];
      for (let j = 0; j < F; j++) d += act[j] * dn[(e * F + j) * hidden + o];
      out[o] += (ex[k] / z) * d;
    }
  });
  return out;
}
