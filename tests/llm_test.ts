/**
 * The LLM runner example (examples/llm/): its parts (safetensors, config, RoPE, prefill
 * schedule), the CPU backend against a float64 reference on random checkpoints of every
 * architecture (Llama, Qwen2, Mistral, Gemma 2, gpt-oss), and the runner on Hugging Face's tiny
 * checkpoint (tests/fixtures/llm_tiny, made by examples/llm/hf_reference.py on the GPU machine)
 * against HF's own tokens and logits, on the CPU and on Deno's WebGPU (lavapipe in CI). gpt-oss's
 * own parts and HF checkpoint: llm_gptoss_test.ts.
 *
 * Tolerance (llm_hf_check.ts): logits within 1e-4 relative L2 of the reference at every step.
 * Both sides compute in f32 (float64 for our reference) and differ only in summation order and
 * rounding of exp, cos and rsqrt: the measured errors are 2e-7 to 4e-7. A real mistake (a wrong
 * RoPE pairing, a missing bias or norm weight, mixed-up pages) moves logits by 1e-2 or more. Tokens
 * must match exactly, which is well posed: HF's smallest gap between the top two logits is
 * asserted to be 10 times the largest logit error.
 */

import assert from "node:assert/strict";
import { loadCheckpoint } from "../examples/llm/checkpoint.ts";
import { parseModelConfig } from "../examples/llm/config.ts";
import { CpuModel } from "../examples/llm/cpu_model.ts";
import { openDevice } from "../examples/llm/device.ts";
import { prefillSchedule } from "../examples/llm/generation.ts";
import { createGpuModel } from "../examples/llm/gpu_model.ts";
import { ropeInvFreq } from "../examples/llm/rope.ts";
import { openSafetensors, writeSafetensors } from "../examples/llm/safetensors.ts";
import { checkAgainstHf, hfFixture, LOGITS_TOLERANCE, run } from "./llm_hf_check.ts";
import {
  GPT_OSS_YARN,
  referenceGenerate,
  relL2,
  type TinySpec,
  writeTinyCheckpoint,
} from "./llm_helpers.ts";

const FIXTURE = new URL("./fixtures/llm_tiny", import.meta.url).pathname;
Deno.test("prefill schedule: chunks of at most 16, equal chunks grouped, last chunk samples", () => {
  const steps = prefillSchedule([4, 11, 16, 29, 40]);
  assert.deepStrictEqual(
    steps.map((s) => [s.seqs, s.start, s.qLen, s.sample]),
    [
      [[0], 0, 4, true],
      [[1], 0, 11, true],
      [[2], 0, 16, true],
      [[3, 4], 0, 16, false],
      [[3], 16, 13, true],
      [[4], 16, 16, false],
      [[4], 32, 8, true],
    ],
  );
  // Every prompt token is fed exactly once, in order.
  for (const [b, n] of [4, 11, 16, 29, 40].entries()) {
    const mine = steps.filter((s) => s.seqs.includes(b));
    assert.deepStrictEqual(mine.map((s) => s.start), mine.map((_, i) => 16 * i));
    assert.equal(mine.reduce((a, s) => a + s.qLen, 0), n);
    assert.ok(mine.at(-1)!.sample && mine.slice(0, -1).every((s) => !s.sample));
  }
});

Deno.test("safetensors: round trip, concurrent reads of one file, bad files named", async () => {
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  try {
    const a = Float32Array.from({ length: 1000 }, (_, i) => i * 0.5);
    const b = Uint16Array.from({ length: 30 }, (_, i) => 0x3c00 + i);
    await writeSafetensors(path, {
      a: { dtype: "F32", shape: [10, 100], data: a },
      b: { dtype: "BF16", shape: [30], data: b },
    });
    const f = await openSafetensors(path);
    const reads = await Promise.all([f.read("b"), f.read("a"), f.read("b"), f.read("a")]);
    assert.deepStrictEqual(reads[1].data, a);
    assert.deepStrictEqual(reads[3].data, a);
    assert.deepStrictEqual(reads[0].data, b);
    assert.deepStrictEqual(reads[2].shape, [30]);
    assert.equal(reads[0].dtype, "BF16");
    await assert.rejects(() => f.read("c"), /holds no tensor named "c"/);
    f.close();
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 8));
    await assert.rejects(() => openSafetensors(path), RangeError);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("config: transformers 4 and 5 RoPE spellings agree; unsupported settings throw", () => {
  const base = {
    architectures: ["LlamaForCausalLM"],
    hidden_size: 2048,
    intermediate_size: 8192,
    num_hidden_layers: 16,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    head_dim: 64,
    vocab_size: 128256,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: true,
  };
  const scaling = {
    rope_type: "llama3",
    factor: 32,
    low_freq_factor: 1,
    high_freq_factor: 4,
    original_max_position_embeddings: 8192,
  };
  const v4 = parseModelConfig({ ...base, rope_theta: 500000, rope_scaling: scaling });
  const v5 = parseModelConfig({ ...base, rope_parameters: { ...scaling, rope_theta: 500000 } });
  assert.deepStrictEqual(v4, v5);
  assert.equal(v4.rope.type, "llama3");
  assert.equal(v4.rope.theta, 500000);
  assert.throws(
    () => parseModelConfig({ ...base, architectures: ["GPT2LMHeadModel"] }),
    /architectures\[0\].*"GPT2LMHeadModel"/,
  );
  assert.throws(
    () => parseModelConfig({ ...base, rope_scaling: { rope_type: "longrope", factor: 4 } }),
    /rope type.*"longrope"/,
  );
  assert.throws(() => parseModelConfig({ ...base, num_key_value_heads: 5 }), /multiple/);
  const mistral = parseModelConfig({
    ...base,
    architectures: ["MistralForCausalLM"],
    sliding_window: 4096,
  });
  assert.equal(mistral.slidingWindow, 4096);
  const qwen = parseModelConfig({
    ...base,
    architectures: ["Qwen2ForCausalLM"],
    sliding_window: 4096,
  });
  assert.equal(qwen.slidingWindow, 0, "Qwen2 windows only with use_sliding_window");
});

Deno.test("RoPE: Llama 3 frequencies follow the three bands within f32 rounding", () => {
  const rope = {
    type: "llama3" as const,
    theta: 500000,
    factor: 32,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositions: 8192,
    betaFast: 32,
    betaSlow: 1,
    truncate: true,
    attentionScaling: 1,
  };
  const inv = ropeInvFreq(rope, 64);
  let bands = 0;
  for (let i = 0; i < 32; i++) {
    const f = 1 / Math.pow(500000, (2 * i) / 64);
    const wavelen = (2 * Math.PI) / f;
    let want = f;
    if (wavelen > 8192) want = f / 32;
    else if (wavelen >= 2048) {
      const s = (8192 / wavelen - 1) / 3;
      want = (1 - s) * (f / 32) + s * f;
      bands |= 2;
    }
    bands |= wavelen > 8192 ? 4 : wavelen < 2048 ? 1 : 0;
    assert.ok(Math.abs(inv[i] - want) <= 4e-7 * want, `inv_freq[${i}] = ${inv[i]}, want ${want}`);
  }
  assert.equal(bands, 7, "all three bands are exercised");
});

const CHECKPOINTS: [string, TinySpec][] = [
  ["llama, llama3 RoPE, tied, q/k/v/o biases, f32, two files, v5 config", {
    arch: "LlamaForCausalLM",
    hidden: 64,
    ffn: 96,
    layers: 2,
    heads: 8,
    kvHeads: 2,
    vocab: 97,
    dtype: "F32",
    tie: true,
    qkvBias: true,
    oBias: true,
    llama3: true,
    split: true,
    v5Config: true,
  }],
  ["qwen2, GQA 7:1, head dim 128, q/k/v biases, bf16, untied", {
    arch: "Qwen2ForCausalLM",
    hidden: 64,
    ffn: 64,
    layers: 2,
    heads: 7,
    kvHeads: 1,
    headDim: 128,
    vocab: 120,
    dtype: "BF16",
    tie: false,
    qkvBias: true,
    theta: 1000000,
    eps: 1e-6,
  }],
  ["mistral, sliding window 5 (every layer), f32", {
    arch: "MistralForCausalLM",
    hidden: 32,
    ffn: 48,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    vocab: 64,
    dtype: "F32",
    tie: false,
    slidingWindow: 5,
  }],
  ["gemma2, window 6 on even layers, soft-caps, query_pre_attn_scalar, post norms, GeGLU, tied", {
    arch: "Gemma2ForCausalLM",
    hidden: 32,
    ffn: 64,
    layers: 3,
    heads: 4,
    kvHeads: 2,
    headDim: 16,
    vocab: 80,
    dtype: "F32",
    tie: true,
    eps: 1e-6,
    slidingWindow: 6,
    gemma: { queryPreAttnScalar: 24, attnSoftCap: 2, finalSoftCap: 3 },
  }],
  ["gpt-oss: sinks, YaRN (not truncated), window 5 on even layers, 8 experts top-2, biases", {
    arch: "GptOssForCausalLM",
    hidden: 32,
    ffn: 16,
    layers: 3,
    heads: 4,
    kvHeads: 2,
    headDim: 16,
    vocab: 64,
    dtype: "F32",
    tie: false,
    qkvBias: true,
    oBias: true,
    theta: 150000,
    slidingWindow: 5,
    gptoss: {
      experts: 8,
      topK: 2,
      yarn: { ...GPT_OSS_YARN, original_max_position_embeddings: 1024 },
    },
  }],
  ["gpt-oss: bf16, 4 experts top-3, YaRN truncated, MHA, window 7", {
    arch: "GptOssForCausalLM",
    hidden: 48,
    ffn: 8,
    layers: 2,
    heads: 3,
    kvHeads: 3,
    headDim: 16,
    vocab: 72,
    dtype: "BF16",
    tie: false,
    qkvBias: true,
    oBias: true,
    theta: 150000,
    slidingWindow: 7,
    gptoss: { experts: 4, topK: 3, yarn: { ...GPT_OSS_YARN, truncate: true } },
  }],
  ["mistral, GQA 14:2, head dim 64, f16, untied", {
    arch: "MistralForCausalLM",
    hidden: 32,
    ffn: 48,
    layers: 2,
    heads: 14,
    kvHeads: 2,
    headDim: 64,
    vocab: 64,
    dtype: "F16",
    tie: false,
  }],
];

for (const [name, spec] of CHECKPOINTS) {
  Deno.test(`CPU runner equals the float64 reference: ${name}`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      await writeTinyCheckpoint(dir, spec, 11);
      const prompts = [[1, 2, 3], Array.from({ length: 21 }, (_, i) => (i * 7) % spec.vocab), [5], [
        ...Array(16).keys(),
      ]];
      const steps = 10;
      const ref = await referenceGenerate(dir, prompts, steps);
      const weights = await loadCheckpoint(dir);
      assert.equal(weights.lmHead === weights.embed, spec.tie);
      const runner = new CpuModel(weights, { batch: prompts.length, maxTokens: 40 });
      const { tokens, logits } = await run(runner, prompts, steps);
      assert.deepStrictEqual(tokens, ref.tokens);
      for (let b = 0; b < prompts.length; b++) {
        for (let g = 0; g < steps; g++) {
          const err = relL2(logits[b][g], ref.logits[b][g]);
          assert.ok(err < LOGITS_TOLERANCE, `prompt ${b} step ${g}: relative L2 ${err}`);
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("HF tiny checkpoint: the CPU runner gives transformers' tokens and logits", async () => {
  const weights = await loadCheckpoint(FIXTURE);
  const { ref } = await hfFixture(FIXTURE);
  const maxTokens = Math.max(...ref.prompts.map((p) => p.length)) + ref.tokens[0].length;
  await checkAgainstHf(
    new CpuModel(weights, { batch: ref.prompts.length, maxTokens }),
    FIXTURE,
  );
});

const wantWebgpu = (Deno.env.get("LEAN_TEST_BACKENDS") ?? "webgpu").split(",").includes("webgpu");
const probe = wantWebgpu
  ? await openDevice("webgpu").catch((e: Error) => e.message)
  : "not listed in LEAN_TEST_BACKENDS";
if (typeof probe === "string") console.log(`skipping the LLM runner on "webgpu": ${probe}`);
else probe.release();

Deno.test({
  name: "HF tiny checkpoint: the WebGPU runner gives transformers' tokens and logits [webgpu]",
  ignore: typeof probe === "string",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const opened = await openDevice("webgpu");
    try {
      const weights = await loadCheckpoint(FIXTURE);
      const { ref } = await hfFixture(FIXTURE);
      const maxTokens = Math.max(...ref.prompts.map((p) => p.length)) + ref.tokens[0].length;
      const runner = await createGpuModel(opened.device, weights, {
        batch: ref.prompts.length,
        maxTokens,
        maxGenerated: ref.tokens[0].length,
      });
      await checkAgainstHf(runner, FIXTURE);
    } finally {
      opened.release();
    }
  },
});

Deno.test("generate.ts: --json on the CPU gives HF's tokens; a bad flag exits 2 naming it", async () => {
  const { ref } = await hfFixture(FIXTURE);
  const script = new URL("../examples/llm/generate.ts", import.meta.url).pathname;
  const ids = ref.prompts.slice(0, 2).map((p) => p.join(",")).join(";");
  const cmd = (args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", script, ...args],
      stdout: "piped",
      stderr: "piped",
    })
      .output();
  const ok = await cmd([
    "--model",
    FIXTURE,
    "--prompt-ids",
    ids,
    "--max-new-tokens",
    "8",
    "--backend",
    "cpu",
    "--json",
  ]);
  const out = new TextDecoder().decode(ok.stdout).trim().split("\n");
  assert.equal(ok.code, 0, new TextDecoder().decode(ok.stderr));
  const result = JSON.parse(out[out.length - 1]);
  assert.deepStrictEqual(result.tokens, ref.tokens.slice(0, 2).map((t) => t.slice(0, 8)));
  assert.ok(result.msPerStep > 0 && result.tokensPerSecond > 0);
  const bad = await cmd([
    "--model",
    FIXTURE,
    "--prompt-ids",
    ids,
    "--max-new-tokens",
    "8",
    "--backend",
    "tpu",
  ]);
  assert.equal(bad.code, 2);
  assert.match(
    new TextDecoder().decode(bad.stderr),
    /--backend must be webgpu, dawn or cpu: got "tpu"/,
  );
});
