/**
 * Decode speed of the runner at long contexts: loads a checkpoint onto a GPU, makes the batch's
 * contexts `N` tokens long without a prefill (the KV cache is extended and left zero-filled:
 * attention reads the same number of bytes whatever they hold), then times decode steps.
 *
 * ```sh
 * deno run -A --v8-flags=--expose-gc examples/llm/speed.ts --model DIR --backend dawn \
 *   --batches 1,8 --contexts 4096,32768 --kv f16 --out speed.json
 * ```
 *
 * For each context (ascending) and batch: 4 warm-up steps; `--steps` steps submitted back to
 * back with one wait at the end (throughput: wall ms per step, tokens/s); 16 steps each waited
 * for (latency: median wall ms per step); then 16 steps split at every attention call into
 * compute passes with timestamps (GPU ms per step and the share spent in the attention passes).
 *
 * @module
 */

import { KV_DTYPES, type KVDtype } from "../../mod.ts";
import { loadCheckpoint } from "./checkpoint.ts";
import { type GpuBackend, openDevice } from "./device.ts";
import { createGpuModel, type GpuModel } from "./gpu_model.ts";

function flag(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
}

const median = (v: number[]) => v.slice().sort((a, b) => a - b)[Math.floor(v.length / 2)];

/** One measured case. */
export interface SpeedCase {
  batch: number;
  context: number;
  throughputMsPerStep: number;
  tokensPerSecond: number;
  latencyMsMedian: number;
  gpuMsPerStep?: number;
  attentionMsPerStep?: number;
  attentionShare?: number;
}

async function measure(
  model: GpuModel,
  seqs: number[],
  context: number,
  steps: number,
  gen: { index: number },
): Promise<SpeedCase> {
  const batch = seqs.length;
  const gc = (globalThis as { gc?: () => void }).gc;
  const step = () => {
    model.forward({ seqs, qLen: 1, sample: true, genIndex: gen.index++ % MAX_GENERATED });
    gc?.();
  };
  for (let i = 0; i < 4; i++) step();
  await model.sync();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) step();
  await model.sync();
  const wall = (performance.now() - t0) / steps;
  const lat: number[] = [];
  for (let i = 0; i < 16; i++) {
    const t = performance.now();
    step();
    await model.sync();
    lat.push(performance.now() - t);
  }
  const r: SpeedCase = {
    batch,
    context,
    throughputMsPerStep: wall,
    tokensPerSecond: (batch * 1000) / wall,
    latencyMsMedian: median(lat),
  };
  if (model.setTiming(true)) {
    model.resetTimings();
    for (let i = 0; i < 16; i++) step();
    await model.sync();
    const t = await model.readTimings();
    model.setTiming(false);
    if (t.length > 0) {
      r.gpuMsPerStep = median(t.map((x) => x.totalMs));
      r.attentionMsPerStep = median(t.map((x) => x.attentionMs));
      r.attentionShare = r.attentionMsPerStep / r.gpuMsPerStep;
    }
  }
  return r;
}

const MAX_GENERATED = 2048;

async function main(args: string[]): Promise<void> {
  const backend = flag(args, "backend", "webgpu") as GpuBackend;
  const batches = flag(args, "batches", "1,8").split(",").map(Number);
  const contexts = flag(args, "contexts", "4096,32768").split(",").map(Number).sort((a, b) =>
    a - b
  );
  const steps = Number(flag(args, "steps", "32"));
  const kvDtype = flag(args, "kv", "f16") as KVDtype;
  if (!KV_DTYPES.includes(kvDtype)) {
    throw new RangeError(`--kv must be f32, f16 or bf16: got ${kvDtype}`);
  }
  const t0 = performance.now();
  const weights = await loadCheckpoint(flag(args, "model", ""));
  const opened = await openDevice(backend);
  const c = weights.config;
  // Each batch size has sequences of its own; each case adds 4 + steps + 32 tokens to them and
  // the next context extends them to N again.
  const first = batches.map((_, i) => batches.slice(0, i).reduce((a, b) => a + b, 0));
  const maxContext = contexts[contexts.length - 1];
  const model = await createGpuModel(opened.device, weights, {
    batch: batches.reduce((a, b) => a + b, 0),
    maxTokens: maxContext + steps + 40,
    kvDtype,
    maxGenerated: MAX_GENERATED,
  });
  console.error(
    `${backend} on ${opened.adapter}: ${c.arch} ${c.layers} layers, weights ${weights.embed.dtype}, KV ${kvDtype} (ready in ${
      (performance.now() - t0).toFixed(0)
    } ms)`,
  );
  const cases: SpeedCase[] = [];
  const gen = { index: 0 };
  try {
    for (const context of contexts) {
      for (let i = 0; i < batches.length; i++) {
        // Every sequence of the batch exactly `context` tokens long before the first step.
        const seqs = Array.from({ length: batches[i] }, (_, j) => first[i] + j);
        const ids = seqs.map((s) => model.ids[s]);
        const grow = ids.map((id) => context - model.cache.length(id));
        if (grow.some((n) => n <= 0)) throw new RangeError(`contexts must grow by > ${steps + 36}`);
        model.cache.extend(ids, grow);
        const r = await measure(model, seqs, context, steps, gen);
        cases.push(r);
        console.error(JSON.stringify(r));
      }
    }
  } finally {
    model.dispose();
    opened.release();
  }
  const out = flag(args, "out", "");
  const report = {
    backend,
    adapter: opened.adapter,
    model: {
      arch: c.arch,
      layers: c.layers,
      hidden: c.hidden,
      heads: c.heads,
      kvHeads: c.kvHeads,
      headDim: c.headDim,
      vocab: c.vocab,
      weights: weights.embed.dtype,
    },
    kvDtype,
    steps,
    cases,
  };
  if (out) await Deno.writeTextFile(out, JSON.stringify(report, null, 2));
  console.log(JSON.stringify(report));
}

if (import.meta.main) await main(Deno.args);
