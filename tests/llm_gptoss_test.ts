/**
 * gpt-oss in the LLM runner example (examples/llm/): YaRN RoPE against hand-computed bands and a
 * float64 definition, the experts (moe.ts) against transformers' own MLP on a probe, and the CPU
 * runner on a gpt-oss checkpoint made by transformers (tests/fixtures/llm_gptoss, made by
 * examples/llm/hf_reference.py's `gptoss_fixture` on the GPU machine: 2 layers, GQA 4/2 x 16,
 * sinks, an 8-token window on layer 0, 4 experts top 2, YaRN) against HF's tokens and logits. The
 * float64 reference of random gpt-oss checkpoints is in llm_test.ts with the other architectures.
 */

import assert from "node:assert/strict";
import { loadCheckpoint, toF32 } from "../examples/llm/checkpoint.ts";
import { parseModelConfig } from "../examples/llm/config.ts";
import { CpuModel } from "../examples/llm/cpu_model.ts";
import { expertActivation, routeExperts } from "../examples/llm/moe.ts";
import { ropeInvFreq, ropeTable } from "../examples/llm/rope.ts";
import { checkAgainstHf, hfFixture } from "./llm_hf_check.ts";
import { yarnReference } from "./llm_gptoss_reference.ts";
import { GPT_OSS_YARN, relL2, writeTinyCheckpoint } from "./llm_helpers.ts";

const FIXTURE = new URL("./fixtures/llm_gptoss", import.meta.url).pathname;

Deno.test("RoPE: YaRN as gpt-oss configures it: original, blended and interpolated bands", () => {
  const json = {
    architectures: ["GptOssForCausalLM"],
    hidden_size: 64,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 8,
    num_key_value_heads: 2,
    head_dim: 64,
    vocab_size: 100,
    num_local_experts: 8,
    num_experts_per_tok: 2,
    max_position_embeddings: 131072,
    rope_parameters: { rope_theta: 150000, rope_type: "yarn", ...GPT_OSS_YARN },
  };
  const c = parseModelConfig(json);
  // By hand: the ramp runs from dimension 64 ln(4096 / (32 * 2 pi)) / (2 ln 150000) = 8.093 to
  // 64 ln(4096 / (2 pi)) / (2 ln 150000) = 17.398 (not truncated); attention factor 0.1 ln 32 + 1.
  assert.equal(c.rope.type, "yarn");
  assert.equal(c.rope.factor, 32);
  assert.ok(Math.abs(c.rope.attentionScaling - 1.3465735902799727) < 1e-15);
  const inv = ropeInvFreq(c.rope, 64);
  const ref = yarnReference(json.rope_parameters, json, 64);
  for (let i = 0; i < 32; i++) {
    const original = Math.pow(150000, -(2 * i) / 64);
    if (i <= 8) assert.ok(Math.abs(inv[i] - original) <= 2e-7 * original, `band 1, [${i}]`);
    if (i >= 18) {
      assert.ok(Math.abs(inv[i] - original / 32) <= 2e-7 * inv[i], `band 3, inv_freq[${i}]`);
    }
    if (i > 8 && i < 18) {
      const ramp = (i - 8.0928) / (17.398 - 8.0928); // the bounds above, to 4 places
      const want = (original / 32) * ramp + original * (1 - ramp);
      assert.ok(Math.abs(inv[i] - want) <= 1e-4 * want, `blended inv_freq[${i}]: ${inv[i]}`);
    }
    assert.ok(Math.abs(inv[i] - ref.inv[i]) <= 4e-7 * ref.inv[i], `inv_freq[${i}] vs float64`);
  }
  // Truncated, the bounds round outwards to 8 and 18.
  const truncated = parseModelConfig({
    ...json,
    rope_parameters: { ...json.rope_parameters, truncate: true },
  });
  const t = ropeInvFreq(truncated.rope, 64);
  assert.ok(Math.abs(t[8] - Math.pow(150000, -16 / 64)) <= 2e-7 * t[8]);
  assert.ok(t[9] < inv[9] && t[17] > inv[17], "the wider ramp blends less at 9, more at 17");
  assert.ok(Math.abs(t[18] - Math.pow(150000, -36 / 64) / 32) <= 2e-7 * t[18]);
  // cos and sin carry the attention factor.
  const { cos, sin } = ropeTable(inv, 3, c.rope.attentionScaling);
  assert.ok(Math.abs(cos[0] - 1.3465736) < 1e-6 && sin[0] === 0);
  assert.ok(Math.abs(Math.hypot(cos[32 + 5], sin[32 + 5]) - 1.3465736) < 1e-6);
  // gpt-oss's defaults: windows on even layers (128), eps 1e-5, untied, experts.
  assert.deepStrictEqual(c.layerWindows, [128, 0]);
  assert.equal(c.eps, 1e-5);
  assert.deepStrictEqual(c.moe, { experts: 8, topK: 2, alpha: 1.702, limit: 7 });
  assert.equal(c.sinks, true);
  assert.throws(
    () => parseModelConfig({ ...json, num_experts_per_tok: 9 }),
    /num_experts_per_tok must be at most num_local_experts \(8\): got 9/,
  );
  assert.throws(
    () => parseModelConfig({ ...json, num_local_experts: 6, num_experts_per_tok: 2 }),
    /num_local_experts must be a multiple of 4: got 6/,
  );
  // A YaRN config without a context length to ramp over (gpt-oss's default is 131072).
  assert.throws(
    () =>
      parseModelConfig({
        ...json,
        architectures: ["LlamaForCausalLM"],
        rope_parameters: undefined,
        max_position_embeddings: undefined,
        rope_scaling: { rope_type: "yarn", factor: 4 },
      }),
    /YaRN RoPE needs max_position_embeddings or original_max_position_embeddings/,
  );
});

interface GptOssFacts {
  tensors: Record<string, number[]>;
  experts_alpha: number;
  experts_limit: number;
  rope_inv_freq: number[];
  rope_attention_scaling: number;
  mlp_probe_in: number[][];
  mlp_probe_out: number[][];
}

Deno.test("HF gpt-oss checkpoint: the experts and YaRN give transformers' own values", async () => {
  const w = await loadCheckpoint(FIXTURE);
  const c = w.config;
  const facts: GptOssFacts = JSON.parse(await Deno.readTextFile(`${FIXTURE}/hf_reference.json`))
    .gpt_oss;
  // What the loader assumes of transformers' GptOssMLP, as transformers itself recorded it.
  const E = c.moe!.experts, F = c.ffn, hidden = c.hidden;
  const p = "model.layers.0.mlp.";
  assert.deepStrictEqual(facts.tensors[`${p}experts.gate_up_proj`], [E, hidden, 2 * F]);
  assert.deepStrictEqual(facts.tensors[`${p}experts.down_proj`], [E, F, hidden]);
  assert.deepStrictEqual(facts.tensors[`${p}router.weight`], [E, hidden]);
  assert.equal(facts.experts_alpha, c.moe!.alpha);
  assert.equal(facts.experts_limit, c.moe!.limit);
  // RoPE: inv_freq within an f32 rounding of transformers', the same attention scaling.
  const inv = ropeInvFreq(c.rope, c.headDim);
  facts.rope_inv_freq.forEach((v, i) =>
    assert.ok(Math.abs(inv[i] - v) <= 2e-7 * v, `inv_freq[${i}]: ${inv[i]} vs ${v}`)
  );
  assert.equal(c.rope.attentionScaling, facts.rope_attention_scaling);
  // Layer 0's MLP on transformers' probe rows, through the runner's layout and host steps.
  const l = w.layers[0];
  const rows = facts.mlp_probe_in.length;
  const x = Float32Array.from(facts.mlp_probe_in.flat());
  const linear = (
    input: Float32Array,
    m: {
      rows: number;
      cols: number;
      dtype: "F32" | "F16" | "BF16";
      data: Float32Array | Uint16Array;
    },
    bias?: Float32Array,
  ) => {
    const wf = toF32(m), y = new Float32Array(rows * m.rows);
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < m.rows; o++) {
        let s = bias ? bias[o] : 0;
        for (let i = 0; i < m.cols; i++) s += input[r * m.cols + i] * wf[o * m.cols + i];
        y[r * m.rows + o] = s;
      }
    }
    return y;
  };
  const h = new Float32Array(rows * l.down.cols);
  routeExperts(linear(x, l.router!, l.routerBias), rows, c.moe!, F, h);
  expertActivation(linear(x, l.gateUp, l.gateUpBias), rows, c.moe!, F, h);
  const out = linear(h, l.down);
  const want = facts.mlp_probe_out.flat();
  const err = relL2(out, want);
  assert.ok(err < 1e-6, `MLP relative L2 ${err}`);
  // The check can fail: gate and up swapped (odd columns taken as gates) is far off.
  const swapped = linear(x, l.gateUp, l.gateUpBias);
  for (let r = 0; r < rows; r++) {
    for (let e = 0; e < E; e++) {
      const at = r * E * 2 * F + e * 2 * F;
      const gate = swapped.slice(at, at + F);
      swapped.copyWithin(at, at + F, at + 2 * F);
      swapped.set(gate, at + F);
    }
  }
  const h2 = new Float32Array(rows * l.down.cols);
  routeExperts(linear(x, l.router!, l.routerBias), rows, c.moe!, F, h2);
  expertActivation(swapped, rows, c.moe!, F, h2);
  assert.ok(relL2(linear(h2, l.down), want) > 1e-2, "swapped gate/up must not match");
});

Deno.test("HF gpt-oss checkpoint: the CPU runner gives transformers' tokens and logits", async () => {
  const weights = await loadCheckpoint(FIXTURE);
  const { ref } = await hfFixture(FIXTURE);
  const maxTokens = Math.max(...ref.prompts.map((p) => p.length)) + ref.tokens[0].length;
  // The prompts and generated tokens run past layer 0's 8-token window.
  assert.ok(maxTokens > 2 * weights.config.layerWindows[0] && weights.config.layerWindows[1] === 0);
  await checkAgainstHf(new CpuModel(weights, { batch: ref.prompts.length, maxTokens }), FIXTURE);
});

Deno.test("gpt-oss checkpoint: expert tensors of the wrong shape are named", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeTinyCheckpoint(dir, {
      arch: "GptOssForCausalLM",
      hidden: 16,
      ffn: 8,
      layers: 1,
      heads: 2,
      kvHeads: 1,
      headDim: 8,
      vocab: 16,
      dtype: "F32",
      tie: false,
      qkvBias: true,
      oBias: true,
      slidingWindow: 4,
      gptoss: { experts: 8, topK: 2, yarn: GPT_OSS_YARN },
    }, 1);
    const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({ ...config, num_local_experts: 4 }),
    );
    await assert.rejects(
      () => loadCheckpoint(dir),
      /tensor "model\.layers\.0\.mlp\.router\.weight" must have shape \[4,16\]: got \[8,16\]/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
