/**
 * Runner soak: a decode loop through the runner API (`createKVCache`, `createAttentionEncoder`)
 * the way a server drives it. Requests arrive (a new sequence and its prompt) and finish or are
 * cancelled (the sequence is freed, its pages go to later requests); every step each live
 * sequence gains a token, the step is planned, and each layer's new K/V rows and attention are
 * recorded from buffers the runner makes fresh for the step (q, out and the K/V rows; half of
 * them destroyed, half just dropped). It samples the process's memory, the library's GPU buffers
 * and bind groups, and the runner buffers still alive (after a collection), and checks sampled
 * steps against the float64 reference. Memory must be flat after warm-up.
 *
 *     deno task soak:runner [--backend=webgpu|dawn|cpu] [--steps=10000] [--seed=1]
 *
 * The last line is `runner soak: PASS ...` or `runner soak: FAIL ...`; the exit status follows
 * it. tests/runner_soak_test.ts runs a short version.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { referenceAttention } from "../mod.ts";
import {
  type AttentionEncoder,
  createAttentionEncoder,
  createKVCache,
  executePagedPlanOnCpu,
  type KVCache,
  planForCache,
} from "../runner.ts";
import { loadDawn } from "../dawn.ts";
import { requestDevice } from "../src/gpu/gpu_runtime.ts";
import { collectGarbage } from "../tests/gc.ts";
import { mulberry32 } from "./random.ts";

/** The soak's model shape: the paged tests' kernel (f16, head dim 64, GQA 8/2). */
export const RUNNER_SOAK_SHAPE = {
  numLayers: 2,
  numHeads: 8,
  numKVHeads: 2,
  headDim: 64,
  pageSize: 16,
  kvDtype: "f16",
} as const;

/** Options of {@linkcode runnerSoak}. */
export interface RunnerSoakOptions {
  /** `"cpu"` (host cache, CPU execution) or a WebGPU implementation. */
  backend: "cpu" | "webgpu" | "dawn";
  /** Decode steps. */
  steps: number;
  seed: number;
  /** Sample memory (after a collection) every this many steps; the GPU is waited for then. */
  sampleEvery: number;
  /** Check one step in this many against the reference (and the last). */
  checkEvery: number;
  /** Longest sequence (a request finishes there). */
  maxTokens?: number;
  /** Sequences decoded at once, at most. */
  maxBatch?: number;
  /** Called at each sample. */
  progress?: (line: string) => void;
}

/** What the soak saw at one sample. */
export interface RunnerSoakSample {
  step: number;
  /** Process resident set and JS heap, bytes. */
  rss: number;
  heapUsed: number;
  /** The library's GPU buffers alive (encoder and cache). */
  buffersLive: number;
  /** The library's GPU buffers created so far. */
  buffersCreated: number;
  /** The library's bind groups not yet collected. */
  bindGroupsLive: number;
  /** The runner's per-step buffers not yet collected (made and dropped by the soak). */
  runnerBuffersAlive: number;
  /** Upload regions of plan tables and append rows. */
  regions: number;
}

/** What a runner soak saw. */
export interface RunnerSoakReport {
  backend: string;
  steps: number;
  requests: number;
  cancelled: number;
  checked: number;
  mismatches: string[];
  samples: RunnerSoakSample[];
  ms: number;
}

/** A request's prompt: random K/V rows for every layer. */
function prompt(
  rng: () => number,
  tokens: number,
  row: number,
  layers: number,
): { k: Float32Array[]; v: Float32Array[] } {
  const rows = () => Float32Array.from({ length: tokens * row }, () => rng() * 2 - 1);
  return {
    k: Array.from({ length: layers }, rows),
    v: Array.from({ length: layers }, rows),
  };
}

/** The float64 reference of a batch from the cache's stored rows. */
async function reference(
  cache: KVCache,
  seqs: number[],
  layer: number,
  q: Float32Array,
): Promise<Float64Array> {
  const parts = await Promise.all(seqs.map((s) => cache.read(layer, s)));
  const cat = (key: "k" | "v") => {
    const all = new Uint16Array(parts.reduce((n, p) => n + p[key].length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p[key] as Uint16Array, at);
      at += p[key].length;
    }
    return all;
  };
  const s = RUNNER_SOAK_SHAPE;
  return referenceAttention({
    q,
    k: cat("k"),
    v: cat("v"),
    seqLens: seqs.map((id) => cache.length(id)),
    numHeads: s.numHeads,
    numKVHeads: s.numKVHeads,
    headDim: s.headDim,
    kvDtype: s.kvDtype,
  }).out;
}

function relativeError(got: Float32Array, want: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

async function openDevice(backend: "webgpu" | "dawn"): Promise<GPUDevice> {
  const gpu = backend === "dawn" ? await loadDawn() : navigator.gpu;
  const adapter = await gpu?.requestAdapter();
  if (!adapter) throw new Error(`no ${backend} adapter`);
  return await requestDevice(adapter);
}

/** Runs the soak; the caller's device (GPU backends) is made and destroyed here. */
export async function runnerSoak(options: RunnerSoakOptions): Promise<RunnerSoakReport> {
  const s = RUNNER_SOAK_SHAPE;
  const rng = mulberry32(options.seed);
  const maxTokens = options.maxTokens ?? 600;
  const maxBatch = options.maxBatch ?? 6;
  const device = options.backend === "cpu" ? undefined : await openDevice(options.backend);
  const row = s.numKVHeads * s.headDim;
  const numPages = maxBatch * Math.ceil((maxTokens + 1) / s.pageSize) + 8;
  const cache = createKVCache({ ...s, numPages, device });
  const attention: AttentionEncoder | undefined = device
    ? await createAttentionEncoder(device, { grid: 8 })
    : undefined;
  const report: RunnerSoakReport = {
    backend: options.backend,
    steps: options.steps,
    requests: 0,
    cancelled: 0,
    checked: 0,
    mismatches: [],
    samples: [],
    ms: 0,
  };
  let alive = 0;
  const finalized = new FinalizationRegistry(() => alive--);
  const fresh = (bytes: number, data?: Float32Array): GPUBuffer => {
    const b = device!.createBuffer({ size: Math.max(16, bytes), usage: 0x80 | 0x8 | 0x4 });
    if (data) device!.queue.writeBuffer(b, 0, data as Float32Array<ArrayBuffer>);
    alive++;
    finalized.register(b, undefined);
    return b;
  };
  const live: number[] = [];
  const admit = () => {
    const seq = cache.addSequence();
    cache.append(seq, prompt(rng, 1 + Math.floor(rng() * 200), row, s.numLayers));
    live.push(seq);
    report.requests++;
  };
  const t0 = performance.now();
  // In a function of its own, so that the last step's buffers are not kept by this frame.
  const step = async (i: number) => {
    // Requests finish at maxTokens or are cancelled; new ones fill the batch.
    for (let j = live.length - 1; j >= 0; j--) {
      if (cache.length(live[j]) >= maxTokens || rng() < 0.01) {
        if (cache.length(live[j]) < maxTokens) report.cancelled++;
        cache.free(live[j]);
        live.splice(j, 1);
      }
    }
    while (live.length < maxBatch && (live.length === 0 || rng() < 0.2)) admit();
    const seqs = live.slice();
    const slots = cache.extend(seqs, 1);
    const qData = Float32Array.from(
      { length: seqs.length * s.numHeads * s.headDim },
      () => rng() * 2 - 1,
    );
    const kvData = Float32Array.from({ length: seqs.length * row }, () => rng() * 2 - 1);
    const check = i % options.checkEvery === options.checkEvery - 1 || i === options.steps - 1;
    const layer = i % s.numLayers;
    let out: Float32Array | undefined;
    if (!device) {
      for (let l = 0; l < s.numLayers; l++) cache.write(slots, l, { k: kvData, v: kvData });
      const plan = planForCache(cache, { seqs, numHeads: s.numHeads }, { grid: 16 });
      out = executePagedPlanOnCpu(plan, { q: qData, ...cache.layerData(layer) }).out;
    } else {
      const plan = attention!.plan(cache, { seqs, numHeads: s.numHeads });
      const q = fresh(4 * qData.length, qData);
      const outBuf = fresh(4 * qData.length);
      const kv = fresh(4 * kvData.length, kvData);
      const enc = device.createCommandEncoder();
      // Every layer writes out: the layer a check reads goes last.
      for (let n = 1; n <= s.numLayers; n++) {
        const l = (layer + n) % s.numLayers;
        cache.encodeAppend(enc, { slots, layer: l, k: kv, v: kv });
        attention!.encode(enc, { plan, layer: l, q, out: outBuf });
      }
      device.queue.submit([enc.finish()]);
      if (check) out = await readBack(device, outBuf, qData.length);
      if (i % 2 === 0) { for (const b of [q, outBuf, kv]) b.destroy(); }
    }
    if (check) {
      const want = await reference(cache, seqs, layer, qData);
      const err = relativeError(out!, want);
      report.checked++;
      if (!(err < 2e-5)) report.mismatches.push(`step ${i}: relative L2 error ${err}`);
    }
  };
  for (let i = 0; i < options.steps; i++) {
    await step(i);
    if (i % options.sampleEvery === options.sampleEvery - 1 || i === options.steps - 1) {
      if (device) await device.queue.onSubmittedWorkDone();
      // A collection's finalisers run as tasks, and a GPU runtime may hold its wrappers until
      // its own turn: collect again while the counts still fall (at most four collections), so
      // a sample counts what stays alive, not what is still being released.
      const held = () =>
        alive + (attention?.stats().bindGroupsLive ?? 0) + cache.stats().bindGroupsLive;
      for (let k = 0, last = Infinity; k < 4 && held() < last; k++) {
        last = held();
        await collectGarbage();
      }
      const a = attention?.stats();
      const c = cache.stats();
      const mem = Deno.memoryUsage();
      const sample: RunnerSoakSample = {
        step: i + 1,
        rss: mem.rss,
        heapUsed: mem.heapUsed,
        buffersLive: (a?.buffersLive ?? 0) + c.buffersLive,
        buffersCreated: (a?.buffersCreated ?? 0) + c.buffersCreated,
        bindGroupsLive: (a?.bindGroupsLive ?? 0) + c.bindGroupsLive,
        runnerBuffersAlive: alive,
        regions: (a?.tableRegions ?? 0) + c.appendRegions,
      };
      report.samples.push(sample);
      options.progress?.(
        `  step ${sample.step}: rss ${mib(sample.rss)}, heap ${mib(sample.heapUsed)}, ` +
          `library buffers ${sample.buffersLive} (${sample.buffersCreated} made), bind groups ` +
          `${sample.bindGroupsLive}, runner buffers alive ${sample.runnerBuffersAlive}, ` +
          `regions ${sample.regions}, ${report.requests} requests`,
      );
    }
  }
  report.ms = performance.now() - t0;
  attention?.dispose();
  cache.dispose();
  if (device) {
    await device.queue.onSubmittedWorkDone();
    device.destroy();
  }
  return report;
}

async function readBack(device: GPUDevice, buffer: GPUBuffer, floats: number) {
  const staging = device.createBuffer({ size: 4 * floats, usage: 0x1 | 0x8 });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buffer, 0, staging, 0, 4 * floats);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(0x1);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  staging.destroy();
  return out;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/**
 * The verdicts of a report (empty when it passes): sampled steps match the reference, and after
 * warm-up (the first quarter) memory is flat: process memory and heap grow by at most 25% + 64 MiB
 * and 25% + 32 MiB, the library holds no more GPU buffers (its readbacks for the checks come and
 * go), bind groups or upload regions than at the end of warm-up (plus slack), and the runner's
 * dropped buffers are collected.
 */
export function runnerSoakFailures(report: RunnerSoakReport): string[] {
  const failures = [...report.mismatches];
  const samples = report.samples;
  if (samples.length < 4) return [...failures, `only ${samples.length} samples`];
  const warm = samples[Math.floor(samples.length / 4)];
  const late = samples.slice(Math.floor(samples.length / 2));
  const max = (key: keyof RunnerSoakSample) => Math.max(...late.map((x) => x[key]));
  const grew = (key: keyof RunnerSoakSample, bound: number) => {
    if (max(key) > bound) failures.push(`${key} grew from ${warm[key]} to ${max(key)}`);
  };
  grew("rss", warm.rss * 1.25 + 64 * 2 ** 20);
  grew("heapUsed", warm.heapUsed * 1.25 + 32 * 2 ** 20);
  grew("bindGroupsLive", 2 * warm.bindGroupsLive + 16);
  grew("regions", 2 * warm.regions + 8);
  grew("runnerBuffersAlive", 2 * warm.runnerBuffersAlive + 16);
  grew("buffersLive", warm.buffersLive + 4);
  if (report.checked === 0) failures.push("no step was checked");
  return failures;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      backend: { type: "string", default: "webgpu" },
      steps: { type: "string", default: "10000" },
      seed: { type: "string", default: "1" },
      "sample-every": { type: "string", default: "250" },
      "check-every": { type: "string", default: "500" },
    },
  });
  const backend = values.backend as RunnerSoakOptions["backend"];
  const steps = Number(values.steps);
  console.log(`runner soak: ${steps} steps on ${backend}`);
  const report = await runnerSoak({
    backend,
    steps,
    seed: Number(values.seed),
    sampleEvery: Number(values["sample-every"]),
    checkEvery: Number(values["check-every"]),
    progress: (line) => console.log(line),
  });
  const failures = runnerSoakFailures(report);
  const first = report.samples[Math.floor(report.samples.length / 4)];
  const last = report.samples[report.samples.length - 1];
  const summary = `${report.steps} steps in ${(report.ms / 1000).toFixed(1)} s, ` +
    `${report.requests} requests (${report.cancelled} cancelled), ${report.checked} steps ` +
    `checked; after warm-up rss ${mib(first.rss)} -> ${mib(last.rss)}, library buffers ` +
    `${first.buffersLive} -> ${last.buffersLive}, bind groups ${first.bindGroupsLive} -> ` +
    `${last.bindGroupsLive}, runner buffers alive ${first.runnerBuffersAlive} -> ` +
    `${last.runnerBuffersAlive}`;
  for (const f of failures) console.log(`  failure: ${f}`);
  console.log(`runner soak: ${failures.length === 0 ? "PASS" : "FAIL"} ${summary}`);
  Deno.exit(failures.length === 0 ? 0 : 1);
}
