/**
 * A decode loop of a small llama-style model (embedding, RMSNorm, RoPE, GQA attention through
 * `@lean/attention`'s paged KV cache and runner API, SwiGLU MLP, greedy sampling) with random
 * weights from a fixed seed. A batch of sequences with prompts of different lengths advances one
 * token per step: a sequence still in its prompt is fed its next prompt token, the others their
 * last generated token (which never leaves the GPU). Prints per-token latency and tokens/s.
 *
 * ```sh
 * deno run examples/decode_loop.ts --backend webgpu
 * deno run --allow-ffi examples/decode_loop.ts --backend dawn --large --sync-every 1
 * deno run examples/decode_loop.ts --help
 * ```
 *
 * The options are in {@linkcode DECODE_LOOP_USAGE}. The model's own dispatches (weights, norms,
 * projections, RoPE, MLP, sampling) are in examples/toy_model.ts, so the step loop here shows what a
 * runner does around them: extend the cache, plan once per step, then per layer append the new K/V
 * rows and encode the attention.
 *
 * @module
 */

import type { KVArray, KVDtype } from "../mod.ts";
import {
  type AppendSlots,
  createAttentionEncoder,
  createKVCache,
  type KVCache,
} from "../runner.ts";
import { openDevice } from "./llm/device.ts";
import { GENERATED } from "./model_kernels.ts";
import {
  createToyModel,
  LARGE_MODEL,
  type ModelConfig,
  readFloats,
  SMALL_MODEL,
  USAGE,
} from "./toy_model.ts";

export { LARGE_MODEL, type ModelConfig, SMALL_MODEL };

/** What `--help` prints. */
export const DECODE_LOOP_USAGE: string =
  `usage: deno run [--allow-ffi] examples/decode_loop.ts [options]

Decodes a batch of sequences with a small llama-style model (random weights from a seed) through
@lean/attention's paged KV cache and runner API, and prints per-token latency and tokens/s.

options:
  --backend webgpu|dawn  WebGPU implementation (default webgpu, Deno's own; dawn needs --allow-ffi)
  --large                a ~1B-parameter shape for real GPUs (default: a small CI shape)
  --steps N              tokens each sequence generates (default 16; 128 with --large)
  --batch N              sequences (default 3; 8 with --large)
  --kv f32|f16|bf16      KV cache dtype (default f16)
  --sync-every N         wait for the GPU every N steps; 1 measures per-token latency (default 1)
  --seed N               weight and prompt seed (default 1)
  --step-times FILE      write every step's latency, host and GPU time as JSON (needs --allow-write)
  --gc                   collect garbage every step (run with --v8-flags=--expose-gc): removes
                         Dawn's completion stalls in Deno, see the README
  -h, --help             print this text`;

/**
 * A decode-loop progress bar on standard error: redrawn in place on a terminal; elsewhere (logs,
 * pipes) one line when the loop is done.
 */
export function stepProgress(
  write: (text: string) => void,
  isTerminal: boolean,
  width = 30,
): (done: number, total: number) => void {
  return (done, total) => {
    const fill = Math.round((done / total) * width);
    const bar = `[${"#".repeat(fill)}${".".repeat(width - fill)}] ${done}/${total} steps`;
    if (isTerminal) write(done === total ? `\r${bar}\n` : `\r${bar}`);
    else if (done === total) write(`${bar}\n`);
  };
}

/** Options of {@linkcode runDecodeLoop}. */
export interface DecodeLoopOptions {
  device: GPUDevice;
  model: ModelConfig;
  /** Prompt token ids of each sequence (lengths may differ; each at least 1). */
  prompts: number[][];
  /** Tokens each sequence generates. */
  steps: number;
  kvDtype?: KVDtype;
  /** Tokens per KV page (default 16). */
  pageSize?: number;
  /** Weight seed (default 1). */
  seed?: number;
  /** Wait for the GPU every this many steps (default 1: per-token latency). */
  syncEvery?: number;
  /** Lean grid of the attention (default: the adapter table's). */
  grid?: number;
  /** Called after each step is submitted (progress). */
  onStep?: (step: number, total: number) => void;
  /** Capture one layer's attention input and output at one step (for checks). */
  inspect?: { step: number; layer: number };
}

/** One layer's attention at one step, with the K/V it read (dense, storage dtype). */
export interface Inspection {
  q: Float32Array;
  out: Float32Array;
  seqLens: number[];
  k: KVArray[];
  v: KVArray[];
}

/** What a run produced and how fast. */
export interface DecodeLoopResult {
  /** Generated tokens of each sequence (`steps` each). */
  tokens: number[][];
  /** Steps run (prompt steps included). */
  totalSteps: number;
  /** Wall milliseconds from submit to completion of each synced group, per step. */
  stepMs: number[];
  /** GPU milliseconds of each step's compute pass (timestamp queries), when available. */
  gpuMs: number[];
  /** Host milliseconds to plan and record each step. */
  hostMs: number[];
  /** Wall milliseconds of the whole loop. */
  totalMs: number;
  /** Generated tokens per second over the loop. */
  tokensPerSecond: number;
  inspection?: Inspection;
}

/** Runs the decode loop; everything stays on `device` until the tokens are read at the end. */
export async function runDecodeLoop(options: DecodeLoopOptions): Promise<DecodeLoopResult> {
  const { device, model: m, prompts, steps } = options;
  const B = prompts.length;
  const maxPrompt = Math.max(...prompts.map((p) => p.length));
  const totalSteps = maxPrompt + steps - 1;
  const pageSize = options.pageSize ?? 16;
  const syncEvery = options.syncEvery ?? 1;
  const pagesPerSeq = Math.ceil((totalSteps + 1) / pageSize);
  const model = createToyModel(device, m, B, totalSteps, options.seed ?? 1);
  const { headDim, q, k, v, attn } = model;

  // The library: a paged KV cache for every layer and the attention encoder.
  const cache: KVCache = createKVCache({
    device,
    numLayers: m.layers,
    numKVHeads: m.kvHeads,
    headDim,
    kvDtype: options.kvDtype ?? "f16",
    pageSize,
    numPages: B * pagesPerSeq,
  });
  const attention = await createAttentionEncoder(device, { grid: options.grid });
  const seqs = prompts.map(() => cache.addSequence());

  const timestamps = device.features.has("timestamp-query");
  const maxTimed = Math.min(totalSteps, 2048);
  const querySet = timestamps
    ? device.createQuerySet({ type: "timestamp", count: 2 * maxTimed })
    : undefined;
  const resolve = timestamps
    ? model.buffer(4 * maxTimed, USAGE.QUERY_RESOLVE | USAGE.COPY_SRC)
    : undefined;

  const inspectAt = options.inspect;
  const inspectQ = inspectAt ? model.buffer(B * m.heads * headDim) : undefined;
  const inspectOut = inspectAt ? model.buffer(B * m.heads * headDim) : undefined;
  let inspection: Inspection | undefined;

  await device.queue.onSubmittedWorkDone();
  const forcedHost = new Uint32Array(B);
  const posHost = new Uint32Array(B);
  const stepMs: number[] = [];
  const hostMs: number[] = [];
  // Throughput counts from the end of step 0 (which compiles the pipelines).
  let t0 = performance.now();
  let groupStart = t0;
  let groupSteps = 0;
  for (let step = 0; step < totalSteps; step++) {
    const h0 = performance.now();
    for (let s = 0; s < B; s++) {
      forcedHost[s] = step < prompts[s].length ? prompts[s][step] : GENERATED;
      posHost[s] = cache.length(seqs[s]);
    }
    model.setStep(step, forcedHost, posHost);
    const slots: AppendSlots = cache.extend(seqs, 1);
    const plan = attention.plan(cache, { seqs, numHeads: m.heads });
    const enc = device.createCommandEncoder();
    const timed = querySet && step < maxTimed;
    let pass = enc.beginComputePass(
      timed
        ? {
          timestampWrites: {
            querySet,
            beginningOfPassWriteIndex: 2 * step,
            endOfPassWriteIndex: 2 * step + 1,
          },
        }
        : {},
    );
    model.encodeEmbed(pass);
    for (let l = 0; l < m.layers; l++) {
      model.encodeQKV(pass, l);
      // The library's part of a layer: this step's K/V rows into the cache, then attention.
      cache.encodeAppend(pass, { slots, layer: l, k, v });
      attention.encode(pass, { plan, layer: l, q, out: attn });
      if (inspectAt?.step === step && inspectAt.layer === l) {
        pass.end();
        enc.copyBufferToBuffer(q, 0, inspectQ!, 0, q.size);
        enc.copyBufferToBuffer(attn, 0, inspectOut!, 0, attn.size);
        pass = enc.beginComputePass();
      }
      model.encodeMLP(pass, l);
    }
    model.encodeHead(pass);
    pass.end();
    device.queue.submit([enc.finish()]);
    hostMs.push(performance.now() - h0);
    groupSteps++;
    options.onStep?.(step + 1, totalSteps);
    if (inspectAt?.step === step) {
      await device.queue.onSubmittedWorkDone();
      const lens = seqs.map((s) => cache.length(s));
      const kv = await Promise.all(seqs.map((s) => cache.read(inspectAt.layer, s)));
      inspection = {
        q: await readFloats(device, inspectQ!, B * m.heads * headDim),
        out: await readFloats(device, inspectOut!, B * m.heads * headDim),
        seqLens: lens,
        k: kv.map((x) => x.k),
        v: kv.map((x) => x.v),
      };
      groupStart = performance.now();
      groupSteps = 0;
    } else if (groupSteps === syncEvery || step === totalSteps - 1) {
      await device.queue.onSubmittedWorkDone();
      const now = performance.now();
      for (let i = 0; i < groupSteps; i++) stepMs.push((now - groupStart) / groupSteps);
      if (step === 0) t0 = now;
      groupStart = now;
      groupSteps = 0;
    }
  }
  const totalMs = performance.now() - t0;

  const hist = await model.readHistory();
  const tokens = prompts.map((prompt, s) => {
    const out: number[] = [];
    for (let step = prompt.length - 1; out.length < steps; step++) out.push(hist[step * B + s]);
    return out;
  });
  // Tokens generated after step 0 (a sequence generates from its last prompt step on).
  const first = syncEvery === 1 && inspectAt?.step !== 0 ? 1 : 0;
  const timedTokens = tokens.reduce(
    (n, t, s) => n + Math.min(t.length, totalSteps - Math.max(first, prompts[s].length - 1)),
    0,
  );
  let gpuMs: number[] = [];
  if (querySet && resolve) {
    const enc = device.createCommandEncoder();
    enc.resolveQuerySet(querySet, 0, 2 * maxTimed, resolve, 0);
    device.queue.submit([enc.finish()]);
    const ns = new BigUint64Array((await readFloats(device, resolve, 4 * maxTimed)).buffer);
    gpuMs = Array.from({ length: maxTimed }, (_, i) => Number(ns[2 * i + 1] - ns[2 * i]) / 1e6);
    querySet.destroy();
  }
  attention.dispose();
  cache.dispose();
  model.destroy();
  return {
    tokens,
    totalSteps,
    stepMs,
    gpuMs,
    hostMs,
    totalMs,
    tokensPerSecond: timedTokens / (totalMs / 1000),
    inspection,
  };
}

/** Opens a device on Deno's WebGPU or on Dawn (the LLM runner's); `release` destroys it. */
export { openDevice };

/** Prompts of different lengths with token ids from a seed. */
export function makePrompts(batch: number, vocab: number, lengths: number[]): number[][] {
  return Array.from(
    { length: batch },
    (_, s) =>
      Array.from(
        { length: lengths[s % lengths.length] + s },
        (_, i) => (s * 7919 + i * 104729) % vocab,
      ),
  );
}

function quantile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = values.slice().sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function flag(args: string[], name: string): string | undefined {
  const i = args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return undefined;
  const a = args[i];
  return a.includes("=") ? a.slice(a.indexOf("=") + 1) : args[i + 1];
}

function intFlag(args: string[], name: string, fallback: number): number {
  const raw = flag(args, name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`--${name} must be a positive integer: got ${raw}`);
  }
  return n;
}

async function main(args: string[]): Promise<void> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(DECODE_LOOP_USAGE);
    return;
  }
  const backend = flag(args, "backend") ?? "webgpu";
  if (backend !== "webgpu" && backend !== "dawn") {
    throw new RangeError(`--backend must be "webgpu" or "dawn": got ${JSON.stringify(backend)}`);
  }
  const large = args.includes("--large");
  const model = large ? LARGE_MODEL : SMALL_MODEL;
  const batch = intFlag(args, "batch", large ? 8 : 3);
  const steps = intFlag(args, "steps", large ? 128 : 16);
  const syncEvery = intFlag(args, "sync-every", 1);
  const seed = intFlag(args, "seed", 1);
  const kvDtype = (flag(args, "kv") ?? "f16") as KVDtype;
  if (!["f32", "f16", "bf16"].includes(kvDtype)) {
    throw new RangeError(`--kv must be "f32", "f16" or "bf16": got ${JSON.stringify(kvDtype)}`);
  }
  const prompts = makePrompts(batch, model.vocab, large ? [512, 64, 1500, 200] : [5, 2, 11]);
  // Dawn in Deno: a completion can wait 0.7-2 s while earlier steps' command objects wait for
  // the garbage collector; collecting every step (`--gc`) removes those stalls.
  let collect: (() => void) | undefined;
  if (args.includes("--gc")) {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (typeof gc !== "function") {
      throw new TypeError("--gc needs the garbage collector exposed: add --v8-flags=--expose-gc");
    }
    collect = gc;
  }
  const { device, adapter, release } = await openDevice(backend);
  const enc = new TextEncoder();
  const progress = stepProgress(
    (text) => Deno.stderr.writeSync(enc.encode(text)),
    Deno.stderr.isTerminal(),
  );
  try {
    console.log(
      `model: ${
        large ? "large" : "small"
      } (dim ${model.dim}, ${model.layers} layers, ${model.heads}/${model.kvHeads} heads, ffn ${model.ffn}, vocab ${model.vocab}), KV ${kvDtype}`,
    );
    console.log(`device: ${backend} on ${adapter}`);
    console.log(
      `batch ${batch}, prompt lengths [${
        prompts.map((p) => p.length).join(", ")
      }], ${steps} new tokens each, sync every ${syncEvery} step(s)`,
    );
    const result = await runDecodeLoop({
      device,
      model,
      prompts,
      steps,
      kvDtype,
      seed,
      syncEvery,
      onStep: (done, total) => {
        collect?.();
        progress(done, total);
      },
    });
    const ms = (x: number) => `${x.toFixed(3)} ms`;
    console.log(
      `per-token latency (submit to completion, per step): median ${
        ms(quantile(result.stepMs, 0.5))
      }, p90 ${ms(quantile(result.stepMs, 0.9))}, p99 ${ms(quantile(result.stepMs, 0.99))}, mean ${
        ms(result.stepMs.reduce((a, b) => a + b, 0) / Math.max(1, result.stepMs.length))
      }`,
    );
    if (result.gpuMs.length > 0) {
      console.log(`GPU time per step (timestamps): median ${ms(quantile(result.gpuMs, 0.5))}`);
    }
    console.log(
      `host time per step (plan + record + submit): median ${ms(quantile(result.hostMs, 0.5))}`,
    );
    console.log(
      `throughput: ${
        result.tokensPerSecond.toFixed(1)
      } generated tokens/s (${result.totalSteps} steps in ${result.totalMs.toFixed(1)} ms)`,
    );
    const timesFile = flag(args, "step-times");
    if (timesFile !== undefined) {
      const { stepMs, hostMs, gpuMs } = result;
      Deno.writeTextFileSync(timesFile, JSON.stringify({ stepMs, hostMs, gpuMs }));
    }
    result.tokens.forEach((t, s) =>
      console.log(`seq ${s}: ${t.slice(0, 16).join(" ")}${t.length > 16 ? " ..." : ""}`)
    );
  } finally {
    release();
  }
}

if (import.meta.main) await main(Deno.args);
