/**
 * Host cost of one decode step for a runner: `attention.plan(cache, ...)` once, then
 * `attention.encode(...)` for 32 layers into a command encoder (the first uploads the step's
 * tables), batch 8 with 4k-token contexts, GQA 32/8, head dim 128, f16 KV in 16-token pages.
 * Target: under 0.2 ms median. Only host work is timed (nothing is submitted in the timed part).
 *
 * - `deno bench -A --unstable-webgpu bench/step_bench.ts`: `Deno.bench` cases.
 * - `deno run -A --unstable-webgpu bench/step_bench.ts [--backend webgpu|dawn] [--runs N]`:
 *   medians of plan, encode x 32 and both, timed call by call.
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
} from "../mod.ts";
import { loadDawn, requestDevice, summarizeAdapter } from "../src/gpu_runtime.ts";

const LAYERS = 32;
const BATCH = 8;
const CONTEXT = 4096;
const HEADS = 32;
const KV_HEADS = 8;
const HEAD_DIM = 128;
const PAGE = 16;
const GRID = 1056; // H100: 132 SMs x 8

/** The benchmark's step: plan and encode closures over a device, cache and encoder. */
export interface StepBench {
  adapter: string;
  physicalLayers: number;
  plan: () => PagedPlan;
  encode: (plan: PagedPlan) => GPUCommandBuffer;
  /** The same layers recorded into one compute pass (the runner passes its pass). */
  encodeOnePass: (plan: PagedPlan) => GPUCommandBuffer;
  flush: () => void;
  stats: () => AttentionEncoderStats;
  release: () => void;
}

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
    numPages: BATCH * (CONTEXT / PAGE + 1),
  });
  const attention = await createAttentionEncoder(device, { grid: GRID });
  const seqs = Array.from({ length: BATCH }, () => cache.addSequence());
  cache.extend(seqs, CONTEXT - 7);
  const buf = (bytes: number) =>
    device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const q = buf(4 * BATCH * HEADS * HEAD_DIM);
  const out = buf(4 * BATCH * HEADS * HEAD_DIM);
  const lse = buf(4 * BATCH * HEADS);
  const plan = () => attention.plan(cache, { seqs, numHeads: HEADS });
  const encode = (p: PagedPlan) => {
    const enc = device.createCommandEncoder();
    for (let l = 0; l < LAYERS; l++) {
      attention.encode(enc, { plan: p, layer: l % physicalLayers, q, out, lse });
    }
    return enc.finish();
  };
  // A runner that records its whole step into one compute pass hands that pass to every layer.
  const encodeOnePass = (p: PagedPlan) => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (let l = 0; l < LAYERS; l++) {
      attention.encode(pass, { plan: p, layer: l % physicalLayers, q, out, lse });
    }
    pass.end();
    return enc.finish();
  };
  // Warm up: pipelines, bind groups, pooled buffers.
  encode(plan());
  device.queue.submit([]);
  await device.queue.onSubmittedWorkDone();
  return {
    adapter: summarizeAdapter(adapter.info).description,
    physicalLayers,
    plan,
    encode,
    encodeOnePass,
    /** Flushes the queued table uploads (untimed). */
    flush: () => device.queue.submit([]),
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

if (import.meta.main) {
  const args = Deno.args;
  const backend = args.includes("--backend=dawn") || args.join(" ").includes("--backend dawn")
    ? "dawn"
    : "webgpu";
  const runsArg = args.find((a) => a.startsWith("--runs="));
  const runs = runsArg ? Number(runsArg.slice(7)) : 2000;
  const s = await setupStep(backend);
  const planMs: number[] = [];
  const encodeMs: number[] = [];
  const stepMs: number[] = [];
  const onePassMs: number[] = [];
  const before = s.stats();
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const p = s.plan();
    const t1 = performance.now();
    s.encode(p);
    const t2 = performance.now();
    planMs.push(t1 - t0);
    encodeMs.push(t2 - t1);
    stepMs.push(t2 - t0);
    s.flush();
    const t3 = performance.now();
    s.encodeOnePass(s.plan());
    onePassMs.push(performance.now() - t3);
    s.flush();
  }
  const us = (x: number) => `${(1000 * x).toFixed(1)} us`;
  console.log(
    `${backend} on ${s.adapter}: batch ${BATCH} x ${CONTEXT} tokens, ${LAYERS} layers (${s.physicalLayers} physical), grid ${GRID}, ${runs} runs`,
  );
  console.log(`plan (host): median ${us(median(planMs))}`);
  console.log(`encode x ${LAYERS} layers: median ${us(median(encodeMs))}`);
  console.log(`plan + encode per step: median ${us(median(stepMs))} (target < 200 us)`);
  console.log(
    `plan + encode per step, all layers in one compute pass: median ${us(median(onePassMs))}`,
  );
  console.log(
    `GPU objects created in steady state: ${
      JSON.stringify(before) === JSON.stringify(s.stats()) ? "none" : "some"
    }`,
  );
  s.release();
} else {
  const s = await setupStep("webgpu").catch(() => undefined);
  Deno.bench({
    name: `plan + encode x ${LAYERS} layers, batch ${BATCH} x ${CONTEXT}`,
    ignore: s === undefined,
    fn: (b) => {
      b.start();
      s!.encode(s!.plan());
      b.end();
      s!.flush();
    },
  });
  Deno.bench({
    name: `plan only, batch ${BATCH} x ${CONTEXT}`,
    ignore: s === undefined,
    fn: () => {
      s!.plan();
    },
  });
}
