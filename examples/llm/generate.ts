/**
 * Greedy generation from a Hugging Face checkpoint of the Llama family (`LlamaForCausalLM`,
 * `Qwen2ForCausalLM`, `MistralForCausalLM`), Gemma 2 (`Gemma2ForCausalLM`) or gpt-oss
 * (`GptOssForCausalLM`; f32, f16 or bf16 weights) with attention through
 * `@lean/attention`'s paged KV cache and attention encoder; DeepSeek-V3 and Kimi K2
 * (`DeepseekV3ForCausalLM`: MLA over a cache of latent rows, `vFromK`) on the CPU runner only.
 *
 * ```sh
 * deno run -A examples/llm/generate.ts --model DIR --prompt-ids "1,2,3;4,5,6,7" --max-new-tokens 32
 * deno run -A examples/llm/generate.ts --model DIR --prompt-ids "1,2,3" --max-new-tokens 8 --backend cpu --json
 * ```
 *
 * Flags: `--backend webgpu|dawn|cpu` (default `webgpu`), `--json` (the last line of standard
 * output is `{"tokens": [[...], ...], "msPerStep": ..., "tokensPerSecond": ...}`), `--kv
 * f32|f16|bf16` (KV cache dtype, default `f32`), `--logits-out FILE` (every sampled step's logits
 * as a safetensors file, `logits [prompt][step][vocab]`; reads them back each step, so timings
 * then include the readback), `--grid N` (the attention encoder's lean grid), `--sync-every N`
 * (wait for the GPU every N decode steps). Under Dawn run with `--v8-flags=--expose-gc`: the
 * runner then collects garbage after each step (Dawn in Deno stalls otherwise, see the README).
 *
 * `msPerStep` is the wall time of the decode steps (after the prefill) divided by their number,
 * GPU work included; `tokensPerSecond` is `batch x steps` over the same time.
 *
 * @module
 */

import { KV_DTYPES, type KVDtype } from "../../mod.ts";
import { loadCheckpoint } from "./checkpoint.ts";
import { CpuModel } from "./cpu_model.ts";
import { CpuMlaModel } from "./mla_model.ts";
import { type GpuBackend, openDevice } from "./device.ts";
import { generate, type GenerateResult, type ModelRunner } from "./generation.ts";
import { createGpuModel } from "./gpu_model.ts";
import { writeSafetensors } from "./safetensors.ts";

/** Parsed command line of {@linkcode main}. */
export interface GenerateArgs {
  model: string;
  prompts: number[][];
  maxNewTokens: number;
  backend: "cpu" | GpuBackend;
  json: boolean;
  kvDtype: KVDtype;
  logitsOut?: string;
  grid?: number;
  syncEvery: number;
}

function flag(args: string[], name: string): string | undefined {
  const i = args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return undefined;
  const a = args[i];
  const value = a.includes("=") ? a.slice(a.indexOf("=") + 1) : args[i + 1];
  if (value === undefined) throw new RangeError(`--${name} needs a value`);
  return value;
}

function intFlag(args: string[], name: string, fallback?: number): number {
  const raw = flag(args, name);
  if (raw === undefined) {
    if (fallback === undefined) throw new RangeError(`--${name} is required`);
    return fallback;
  }
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) {
    throw new RangeError(`--${name} must be a non-negative integer: got "${raw}"`);
  }
  return n;
}

/** Parses the command line; a bad flag throws `RangeError` naming it and its value. */
export function parseArgs(args: string[]): GenerateArgs {
  const model = flag(args, "model");
  if (!model) throw new RangeError("--model DIR is required");
  const ids = flag(args, "prompt-ids");
  if (!ids) throw new RangeError('--prompt-ids is required, e.g. "1,2,3;4,5"');
  const prompts = ids.split(";").map((p) =>
    p.split(",").map((t) => {
      const n = Number(t.trim());
      if (t.trim() === "" || !Number.isInteger(n) || n < 0) {
        throw new RangeError(`--prompt-ids must be ;-separated lists of token ids: got "${ids}"`);
      }
      return n;
    })
  );
  const maxNewTokens = intFlag(args, "max-new-tokens");
  if (maxNewTokens < 1) {
    throw new RangeError(`--max-new-tokens must be at least 1: got ${maxNewTokens}`);
  }
  const backend = flag(args, "backend") ?? "webgpu";
  if (backend !== "webgpu" && backend !== "dawn" && backend !== "cpu") {
    throw new RangeError(`--backend must be webgpu, dawn or cpu: got "${backend}"`);
  }
  const kvDtype = (flag(args, "kv") ?? "f32") as KVDtype;
  if (!KV_DTYPES.includes(kvDtype)) {
    throw new RangeError(`--kv must be f32, f16 or bf16: got "${kvDtype}"`);
  }
  const grid = flag(args, "grid") === undefined ? undefined : intFlag(args, "grid");
  return {
    model,
    prompts,
    maxNewTokens,
    backend,
    json: args.includes("--json"),
    kvDtype,
    logitsOut: flag(args, "logits-out"),
    grid,
    syncEvery: intFlag(args, "sync-every", 0),
  };
}

/** Loads the model, generates, and returns the result (and writes `--logits-out`). */
export async function run(a: GenerateArgs, log: (line: string) => void): Promise<GenerateResult> {
  const t0 = performance.now();
  const weights = await loadCheckpoint(a.model);
  const c = weights.config;
  log(
    `model: ${c.arch}, ${c.layers} layers, hidden ${c.hidden}, heads ${c.heads}/${c.kvHeads} x ${c.headDim}, ffn ${c.ffn}, vocab ${c.vocab}, weights ${weights.embed.dtype}, rope ${c.rope.type}${
      weights.lmHead === weights.embed ? ", tied embeddings" : ""
    }${c.moe ? `, ${c.moe.experts} experts (top ${c.moe.topK}), sinks` : ""}${
      c.mla
        ? `, MLA (latent ${c.mla.kvLoraRank} + RoPE ${c.mla.ropeDim}), ${c.deepseekMoe?.experts} experts (top ${c.deepseekMoe?.topK})`
        : ""
    } (loaded in ${(performance.now() - t0).toFixed(0)} ms)`,
  );
  const maxTokens = Math.max(...a.prompts.map((p) => p.length)) + a.maxNewTokens;
  if (c.slidingWindow > 0) {
    const windowed = c.layerWindows.filter((w) => w > 0).length;
    log(`sliding window ${c.slidingWindow} on ${windowed} of ${c.layers} layers`);
  }
  const options = { batch: a.prompts.length, maxTokens, kvDtype: a.kvDtype };
  let release = () => {};
  let runner: ModelRunner;
  if (c.mla && a.backend !== "cpu") {
    throw new RangeError(
      `--backend=${a.backend}: DeepSeek-V3 (MLA) runs on the CPU runner only (--backend=cpu)`,
    );
  }
  if (a.backend === "cpu") {
    runner = c.mla ? new CpuMlaModel(weights, options) : new CpuModel(weights, options);
  } else {
    const opened = await openDevice(a.backend);
    release = opened.release;
    log(`device: ${a.backend} on ${opened.adapter}`);
    runner = await createGpuModel(opened.device, weights, {
      ...options,
      grid: a.grid,
      maxGenerated: a.maxNewTokens,
    });
  }
  const gc = (globalThis as { gc?: () => void }).gc;
  const vocab = c.vocab;
  const logits = a.logitsOut
    ? new Float32Array(a.prompts.length * a.maxNewTokens * vocab)
    : undefined;
  try {
    const result = await generate(runner, {
      prompts: a.prompts,
      maxNewTokens: a.maxNewTokens,
      syncEvery: a.syncEvery,
      afterStep: a.backend === "dawn" ? gc : undefined,
      onLogits: logits
        ? (seqs, g, values) => {
          seqs.forEach((b, i) => {
            logits.set(
              values.subarray(i * vocab, (i + 1) * vocab),
              (b * a.maxNewTokens + g) * vocab,
            );
          });
        }
        : undefined,
    });
    if (a.logitsOut && logits) {
      await writeSafetensors(a.logitsOut, {
        logits: { dtype: "F32", shape: [a.prompts.length, a.maxNewTokens, vocab], data: logits },
      });
    }
    return result;
  } finally {
    runner.dispose();
    release();
  }
}

/** The command line: prints progress on standard error, the result on standard output. */
export async function main(args: string[]): Promise<number> {
  let a: GenerateArgs;
  try {
    a = parseArgs(args);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    return 2;
  }
  const r = await run(a, (line) => console.error(line));
  const steps = r.decodeSteps;
  const msPerStep = steps > 0 ? r.decodeMs / steps : 0;
  const tokensPerSecond = steps > 0 ? (a.prompts.length * steps) / (r.decodeMs / 1000) : 0;
  console.error(
    `prefill ${r.prefillMs.toFixed(1)} ms; decode ${steps} steps x ${a.prompts.length} sequences: ${
      msPerStep.toFixed(3)
    } ms per step, ${tokensPerSecond.toFixed(1)} tokens/s${
      a.logitsOut ? " (with logits readback)" : ""
    }`,
  );
  if (a.json) {
    console.log(JSON.stringify({ tokens: r.tokens, msPerStep, tokensPerSecond }));
  } else {
    r.tokens.forEach((t, i) => console.log(`prompt ${i}: ${t.join(" ")}`));
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
