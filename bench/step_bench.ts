/**
 * Host cost of one decode step for a runner: `attention.plan(cache, ...)` once, then
 * `attention.encode(...)` for 32 layers into the runner's compute pass (the first uploads the
 * step's tables), batch 8 with 4k-token contexts growing a token per step, GQA 32/8, head dim
 * 128, f16 KV in 16-token pages. Target: under 0.2 ms median. Only host work is timed (nothing is
 * submitted: each recorded step is dropped, and `attention.discardUpload(plan)` gives its upload
 * region back, as a runner that submits gets it back once the GPU has run the step). The WebGPU implementation validates recorded commands in `pass.end()`/`finish()`,
 * so their cost counts too: the host cost is plan + encode + finish, less the finish of an empty
 * encoder and pass (which the runner pays anyway).
 *
 * - `deno bench -A --unstable-webgpu bench/step_bench.ts`: `Deno.bench` cases.
 * - `deno run -A --unstable-webgpu bench/step_bench.ts [--backend webgpu|dawn] [--runs N]`:
 *   medians of each part, timed call by call.
 *
 * On a GPU with room for it the cache has 32 real layers (4.3 GB); on a software adapter it has 2
 * and the 32 encodes cycle over them (the host work per encode is the same: a cached bind group).
 *
 * @module
 */

import {
  type AttentionEncoderStats,
  createAttentionEncoder,
  createKVCache,
  type PagedPlan,
} from "../runner.ts";
import { loadDawn } from "../dawn.ts";
import { requestDevice, summarizeAdapter } from "../src/gpu/gpu_runtime.ts";

const LAYERS = 32;
const BATCH = 8;
const CONTEXT = 4096;
const HEADS = 32;
const KV_HEADS = 8;
const HEAD_DIM = 128;
const PAGE = 16;
const GRID = 1056; // H100: 132 SMs x 8

/** The benchmark's step: a device, cache, encoder and the runner's buffers. */
export interface StepBench {
  adapter: string;
  physicalLayers: number;
  device: GPUDevice;
  /**
   * Moves to the next decode step (untimed runner bookkeeping): every sequence gains a token;
   * every {@linkcode EPISODE} steps the batch starts again from fresh 4k-token sequences, so
   * contexts stay near 4k and plans see tile boundaries crossed as often as in a real run.
   */
  advance: () => void;
  plan: () => PagedPlan;
  /** Records the layers into the runner's open compute pass. */
  encodeInto: (pass: GPUComputePassEncoder, plan: PagedPlan) => void;
  /** Records the layers into the runner's command encoder (a compute pass per layer). */
  encodeEach: (encoder: GPUCommandEncoder, plan: PagedPlan) => void;
  /** Flushes the queued table uploads and gives back the plan's upload region (untimed). */
  flush: (plan?: PagedPlan) => void;
  stats: () => AttentionEncoderStats;
  release: () => void;
}

/** Steps before the benchmark's batch starts again from 4k-token sequences. */
export const EPISODE = 256;

/** A device, the cache, the encoder and the runner's buffers of the benchmark. */
export async function setupStep(backend: "webgpu" | "dawn" = "webgpu"): Promise<StepBench> {
  const gpu = backend === "dawn" ? await loadDawn() : navigator.gpu;
  const adapter = await gpu?.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new Error(`no WebGPU adapter for ${backend}`);
  const device = await requestDevice(adapter);
  const software = summarizeAdapter(adapter.info).software;
  const physicalLayers = software ? 2 : LAYERS;
  const cache = createKVCache({
    device,
    numLayers: physicalLayers,
    numKVHeads: KV_HEADS,
    headDim: HEAD_DIM,
    kvDtype: "f16",
    pageSize: PAGE,
    numPages: BATCH * ((CONTEXT + EPISODE) / PAGE + 1),
  });
  const attention = await createAttentionEncoder(device, { grid: GRID });
  let seqs: number[] = [];
  let stepInEpisode = 0;
  const restart = () => {
    for (const s of seqs) cache.free(s);
    seqs = Array.from({ length: BATCH }, () => cache.addSequence());
    cache.extend(seqs, CONTEXT - 7);
    stepInEpisode = 0;
  };
  restart();
  const buf = (bytes: number) =>
    device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const q = buf(4 * BATCH * HEADS * HEAD_DIM);
  const out = buf(4 * BATCH * HEADS * HEAD_DIM);
  const lse = buf(4 * BATCH * HEADS);
  const plan = () => attention.plan(cache, { seqs, numHeads: HEADS });
  const encodeInto = (pass: GPUComputePassEncoder, p: PagedPlan) => {
    for (let l = 0; l < LAYERS; l++) {
      attention.encode(pass, { plan: p, layer: l % physicalLayers, q, out, lse });
    }
  };
  const encodeEach = (enc: GPUCommandEncoder, p: PagedPlan) => {
    for (let l = 0; l < LAYERS; l++) {
      attention.encode(enc, { plan: p, layer: l % physicalLayers, q, out, lse });
    }
  };
  // Warm up: pipelines, bind groups, pooled buffers.
  const enc = device.createCommandEncoder();
  const warm = plan();
  encodeEach(enc, warm);
  enc.finish();
  attention.discardUpload(warm);
  device.queue.submit([]);
  await device.queue.onSubmittedWorkDone();
  return {
    adapter: summarizeAdapter(adapter.info).description,
    physicalLayers,
    device,
    advance: () => {
      if (++stepInEpisode === EPISODE) restart();
      else cache.extend(seqs, 1);
    },
    plan,
    encodeInto,
    encodeEach,
    flush: (p) => {
      device.queue.submit([]);
      if (p) attention.discardUpload(p);
    },
    stats: () => attention.stats(),
    release: () => {
      attention.dispose();
      cache.dispose();
      device.destroy();
      void [gpu, adapter];
    },
  };
}

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function quantile(xs: number[], q: number): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

if (import.meta.main) {
  const args = Deno.args;
  const backend = args.includes("--backend=dawn") || args.join(" ").includes("--backend dawn")
    ? "dawn"
    : "webgpu";
  const runsArg = args.find((a) => a.startsWith("--runs="));
  const runs = runsArg ? Number(runsArg.slice(7)) : 2000;
  const s = await setupStep(backend);
  const device = s.device;
  const planUs: number[] = [];
  const encodeUs: number[] = [];
  const finishUs: number[] = [];
  const emptyUs: number[] = [];
  const eachUs: number[] = [];
  const totalUs: number[] = [];
  // Warm-up: one episode, so every plan shape of the run has been seen (buffers sized).
  for (let i = 0; i < EPISODE; i++) {
    s.advance();
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    const p = s.plan();
    s.encodeInto(pass, p);
    pass.end();
    enc.finish();
    s.flush(p);
  }
  const before = s.stats();
  for (let i = 0; i < runs; i++) {
    // The runner's own fixed cost: an encoder and a pass with nothing of ours in them.
    let t = performance.now();
    const e0 = device.createCommandEncoder();
    e0.beginComputePass().end();
    e0.finish();
    emptyUs.push(1000 * (performance.now() - t));

    // A step recorded into the runner's one compute pass.
    s.advance();
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    const t0 = performance.now();
    const p = s.plan();
    const t1 = performance.now();
    s.encodeInto(pass, p);
    const t2 = performance.now();
    pass.end();
    enc.finish();
    const t3 = performance.now();
    planUs.push(1000 * (t1 - t0));
    encodeUs.push(1000 * (t2 - t1));
    finishUs.push(1000 * (t3 - t2));
    totalUs.push(1000 * (t3 - t0));
    s.flush(p);

    // The same step recorded with a compute pass per layer (the runner hands its encoder).
    t = performance.now();
    const enc2 = device.createCommandEncoder();
    s.encodeEach(enc2, p);
    enc2.finish();
    eachUs.push(1000 * (performance.now() - t));
    s.flush(p);
  }
  const us = (x: number) => `${x.toFixed(1)} us`;
  const empty = median(emptyUs);
  const ours = median(totalUs) - empty;
  console.log(
    `${backend} on ${s.adapter}: batch ${BATCH} x ${CONTEXT}-${
      CONTEXT + EPISODE
    } tokens (a token per step), ${LAYERS} layers (${s.physicalLayers} physical), grid ${GRID}, ${runs} steps`,
  );
  console.log(
    `plan (host, reused between tile boundaries): median ${us(median(planUs))}, p99 ${
      us(quantile(planUs, 0.99))
    }`,
  );
  console.log(`encode x ${LAYERS} layers into one pass: median ${us(median(encodeUs))}`);
  console.log(
    `pass.end() + finish() of that encoder: median ${us(median(finishUs))} (of which ${
      us(empty)
    } is an empty encoder and pass, the runner's own cost)`,
  );
  console.log(
    `host cost per step (plan + encode + our share of finish): median ${
      us(ours)
    } (target < 200 us); with the runner's empty encoder: ${us(median(totalUs))}`,
  );
  console.log(
    `with a compute pass per layer (encoder in, finish included): median ${
      us(median(eachUs) - empty)
    } beyond the empty encoder`,
  );
  console.log(
    `GPU objects created in steady state: ${
      JSON.stringify(before) === JSON.stringify(s.stats()) ? "none" : "some"
    }`,
  );
  // The floor: the very WebGPU calls one step's encode makes (5 per layer: two pipelines, one
  // bind group, two dispatches), recorded once and replayed with no library code in between.
  const calls: [string, unknown[]][] = [];
  const recorder = new Proxy({}, {
    get: (_, name) => (...args: unknown[]) => calls.push([String(name), args]),
  }) as GPUComputePassEncoder;
  s.advance();
  const recorded = s.plan();
  s.encodeInto(recorder, recorded);
  s.flush(recorded);
  const replayUs: number[] = [];
  const replayFinishUs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass() as unknown as Record<string, (...a: unknown[]) => void>;
    const t0 = performance.now();
    for (const [name, args] of calls) pass[name](...args);
    const t1 = performance.now();
    (pass as unknown as GPUComputePassEncoder).end();
    enc.finish();
    const t2 = performance.now();
    replayUs.push(1000 * (t1 - t0));
    replayFinishUs.push(1000 * (t2 - t0));
  }
  console.log(
    `floor: the same ${calls.length} WebGPU calls replayed without the library: median ${
      us(median(replayUs))
    }; with end() + finish(): ${us(median(replayFinishUs) - empty)} beyond the empty encoder`,
  );
  s.release();
} else {
  const s = await setupStep("webgpu").catch(() => undefined);
  Deno.bench({
    name: `plan + encode x ${LAYERS} layers into one pass + finish, batch ${BATCH} x ${CONTEXT}`,
    ignore: s === undefined,
    fn: (b) => {
      s!.advance();
      const enc = s!.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      b.start();
      const p = s!.plan();
      s!.encodeInto(pass, p);
      pass.end();
      enc.finish();
      b.end();
      s!.flush(p);
    },
  });
  Deno.bench({
    name: `plan only, batch ${BATCH} x ${CONTEXT}`,
    ignore: s === undefined,
    fn: (b) => {
      s!.advance();
      b.start();
      s!.plan();
      b.end();
    },
  });
}
