/**
 * DeepSeek-V3 (`DeepseekV3ForCausalLM`, Kimi K2's architecture) through the LLM runner's MLA model
 * (examples/llm/mla_model.ts) against transformers: tests/fixtures/llm_deepseek, made by
 * `examples/llm/hf_reference.py OUT deepseek_fixture` (transformers 5.17, float32, eager; on the
 * development machine's CPU wheel of PyTorch 2.13): 3 layers (the first dense), 4 heads of MLA
 * with LoRA queries and interleaved YaRN RoPE, 8 routed experts in 4 groups with score
 * corrections, a shared expert; four prompts of 4-29 tokens and 32 greedy tokens each. The
 * runner decodes attention through the library as one latent KV head (`vFromK`: V is each K
 * row's latent) with absorbed queries, in the paged plans a GPU encoder would run, on the CPU. A
 * second fixture (tests/fixtures/llm_deepseek_plain) takes the architecture's other branches.
 */

import assert from "node:assert/strict";
import { loadCheckpoint } from "../examples/llm/checkpoint.ts";
import { parseModelConfig } from "../examples/llm/config.ts";
import { routeToken } from "../examples/llm/deepseek_moe.ts";
import { CpuMlaModel } from "../examples/llm/mla_model.ts";
import { CpuModel } from "../examples/llm/cpu_model.ts";
import { run as generateRun } from "../examples/llm/generate.ts";
import { createGpuModel } from "../examples/llm/gpu_model.ts";
import { checkAgainstHf, hfFixture, run } from "./llm_hf_check.ts";
import { relL2 } from "./llm_helpers.ts";

const FIXTURE = new URL("./fixtures/llm_deepseek", import.meta.url).pathname;
const CONFIG = JSON.parse(await Deno.readTextFile(`${FIXTURE}/config.json`));

Deno.test("DeepSeek-V3 config: MLA as one latent KV head, experts, YaRN's softmax scale", () => {
  const c = parseModelConfig(CONFIG);
  assert.equal(c.arch, "deepseekv3");
  // The library's shape: K rows of the latent (32) and the roped key (8); V the latent.
  assert.deepEqual([c.heads, c.kvHeads, c.headDim, c.mla?.kvLoraRank], [4, 1, 40, 32]);
  assert.deepEqual(
    [c.mla?.qLoraRank, c.mla?.nopeDim, c.mla?.ropeDim, c.mla?.vHeadDim, c.mla?.ropeInterleave],
    [32, 16, 8, 16, true],
  );
  // transformers: (16 + 8)^-0.5 times YaRN's mscale (0.1 ln 4 + 1) squared.
  const mscale = 0.1 * Math.log(4) + 1;
  assert.ok(Math.abs(c.attnScale - (mscale * mscale) / Math.sqrt(24)) < 1e-12);
  assert.deepEqual(c.deepseekMoe, {
    experts: 8,
    topK: 2,
    groups: 4,
    topkGroup: 2,
    scale: 2.5,
    normTopK: true,
    width: 16,
    sharedWidth: 16,
    denseLayers: 1,
  });
  // Bad values are named.
  for (
    const [key, value, message] of [
      ["kv_lora_rank", 30, /kv_lora_rank must be a multiple of 8: got 30/],
      ["n_group", 3, /n_routed_experts \(8\) must be a multiple of n_group/],
      ["num_experts_per_tok", 9, /num_experts_per_tok \(9\) must fit/],
      ["attention_bias", true, /attention_bias must be false/],
      ["routed_scaling_factor", -1, /routed_scaling_factor must be a number > 0: got -1/],
    ] as const
  ) {
    assert.throws(() => parseModelConfig({ ...CONFIG, [key]: value }), message, key);
  }
});

Deno.test("DeepSeek-V3 routing: groups first, corrected scores choose, plain scores weigh", () => {
  const moe = parseModelConfig(CONFIG).deepseekMoe!;
  const logit = (p: number) => Math.log(p / (1 - p));
  // Scores by group: [0.9, 0.1], [0.6, 0.6], [0.8, 0.7], [0.2, 0.3]. Groups by their two best:
  // 1.5 (group 2), 1.2 (group 1), 1.0 (group 0): groups 2 and 1; experts 4 and 5.
  const logits = Float32Array.from([0.9, 0.1, 0.6, 0.6, 0.8, 0.7, 0.2, 0.3].map(logit));
  let r = routeToken(logits, new Float32Array(8), moe);
  assert.deepEqual(r.experts, [4, 5]);
  assert.ok(Math.abs(r.weights[0] - (2.5 * 0.8) / 1.5) < 1e-6);
  // A correction of +0.3 for expert 2 moves the choice to it, and its plain score weighs it.
  const correction = new Float32Array(8);
  correction[2] = 0.3;
  r = routeToken(logits, correction, moe);
  assert.deepEqual(r.experts, [2, 4]);
  assert.ok(Math.abs(r.weights[0] - (2.5 * 0.6) / 1.4) < 1e-6);
  // Expert 0's high score is out of reach: its group's best two sum to 1.0.
  assert.ok(!r.experts.includes(0));
});

Deno.test("HF DeepSeek-V3 checkpoint: the CPU runner gives transformers' tokens and logits", async () => {
  const weights = await loadCheckpoint(FIXTURE);
  assert.equal(weights.layers.length, 0);
  assert.equal(weights.mlaLayers?.length, 3);
  assert.ok(weights.mlaLayers[0].dense && !weights.mlaLayers[0].experts);
  assert.ok(weights.mlaLayers[2].experts?.shared && !weights.mlaLayers[2].dense);
  const { ref } = await hfFixture(FIXTURE);
  const maxTokens = Math.max(...ref.prompts.map((p) => p.length)) + ref.tokens[0].length;
  const runner = new CpuMlaModel(weights, { batch: ref.prompts.length, maxTokens });
  // The cache holds K pages only: one latent row of 40 floats per token and layer.
  assert.equal(runner.cache.layerData(0).v, undefined);
  await checkAgainstHf(runner, FIXTURE);
  // The GQA runner refuses the checkpoint, naming the MLA runner; the GPU runner and generate.ts
  // on a GPU backend refuse it before touching a device, naming the CPU runner.
  assert.throws(() => new CpuModel(weights, { batch: 1, maxTokens: 8 }), /CpuMlaModel/);
  await assert.rejects(
    createGpuModel({} as GPUDevice, weights, { batch: 1, maxTokens: 8 }),
    (e: unknown) => e instanceof RangeError && /CPU runner only/.test(e.message),
  );
  const args = {
    model: FIXTURE,
    prompts: [ref.prompts[1]],
    maxNewTokens: 3,
    json: false,
    kvDtype: "f32" as const,
    syncEvery: 0,
  };
  await assert.rejects(
    generateRun({ ...args, backend: "webgpu" }, () => {}),
    (e: unknown) =>
      e instanceof RangeError && /--backend=webgpu: .*CPU runner only/.test(e.message),
  );
  // generate.ts on the CPU runs it: HF's first three tokens of the prompt.
  const result = await generateRun({ ...args, backend: "cpu" }, () => {});
  assert.deepEqual(result.tokens, [ref.tokens[1].slice(0, 3)]);
});

Deno.test("HF DeepSeek-V3 checkpoint, its other branches: a full q_proj, RoPE in halves, no shared expert", async () => {
  // tests/fixtures/llm_deepseek_plain (`hf_reference.py OUT deepseek_plain`): no query LoRA (as
  // DeepSeek-V2-Lite's), rope_interleave false, plain RoPE, no shared expert, weights not
  // normalised; 2 layers, three prompts of 5-23 tokens and 24 greedy tokens each.
  const dir = new URL("./fixtures/llm_deepseek_plain", import.meta.url).pathname;
  const weights = await loadCheckpoint(dir);
  const c = weights.config;
  assert.deepEqual(
    [c.mla?.qLoraRank, c.mla?.ropeInterleave, c.deepseekMoe?.sharedWidth, c.rope.type],
    [0, false, 0, "default"],
  );
  assert.ok(!weights.mlaLayers![0].qA && !weights.mlaLayers![1].experts?.shared);
  const { ref } = await hfFixture(dir);
  const maxTokens = Math.max(...ref.prompts.map((p) => p.length)) + ref.tokens[0].length;
  await checkAgainstHf(new CpuMlaModel(weights, { batch: ref.prompts.length, maxTokens }), dir);
});

Deno.test("HF DeepSeek-V3 checkpoint: the check can fail (RoPE pairs taken as halves)", async () => {
  const weights = await loadCheckpoint(FIXTURE);
  const { ref, logits, shape } = await hfFixture(FIXTURE);
  const [, N, V] = shape;
  const halves = {
    ...weights,
    config: { ...weights.config, mla: { ...weights.config.mla!, ropeInterleave: false } },
  };
  const prompts = ref.prompts.slice(3);
  const maxTokens = prompts[0].length + 2;
  const mine = await run(new CpuMlaModel(halves, { batch: 1, maxTokens }), prompts, 2);
  const err = relL2(mine.logits[0][1], logits.subarray((3 * N + 1) * V, (3 * N + 2) * V));
  assert.ok(err > 1e-3, `halves' logits must not match: relative L2 ${err}`);
});
