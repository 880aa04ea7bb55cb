/**
 * The runner's GPU backend on a WebGPU device (Deno's, Dawn's or a browser's): weights uploaded
 * once in their stored dtype, one command buffer per forward pass with every dispatch in one
 * compute pass (or, with `timing`, one pass per stretch between attention calls, each with
 * timestamps), attention through the library's paged {@linkcode KVCache} and
 * {@linkcode AttentionEncoder}. Sampled tokens stay on the GPU: nothing is read back per step
 * unless logits are asked for.
 *
 * ```ts ignore
 * import { loadCheckpoint } from "./checkpoint.ts";
 * import { createGpuModel } from "./gpu_model.ts";
 * const device = await (await navigator.gpu.requestAdapter())!.requestDevice();
 * const runner = await createGpuModel(device, await loadCheckpoint("dir"), { batch: 4, maxTokens: 256 });
 * ```
 *
 * @module
 */

import {
  type AttentionEncoder,
  createAttentionEncoder,
  createKVCache,
  type KVCache,
} from "../../runner.ts";
import type { ModelWeights } from "./checkpoint.ts";
import type { ModelConfig } from "./config.ts";
import { layerPlans, type RunnerOptions } from "./cpu_model.ts";
import { type ForwardStep, type ModelRunner, PREFILL_CHUNK } from "./generation.ts";
import { GENERATED, NO_SLOT, type TableLayout, THREADS } from "./gpu_kernels.ts";
import {
  type FinalStage,
  GpuResources,
  type LayerStage,
  type Stage,
  U,
  uploadModel,
} from "./gpu_setup.ts";

/** Options of {@linkcode createGpuModel}. */
export interface GpuRunnerOptions extends RunnerOptions {
  /** Lean grid of the attention encoder (default: the adapter table's). */
  grid?: number;
  /** Generated tokens per sequence the history holds (default 4096). */
  maxGenerated?: number;
  /** Time passes with timestamp queries (splits each step at the attention calls). */
  timing?: boolean;
}

/** GPU time of one timed forward pass. */
export interface StepTiming {
  /** First pass begin to last pass end, ms. */
  totalMs: number;
  /** Sum of the attention passes (KV append excluded), ms. */
  attentionMs: number;
}

const MAX_QUERIES = 4096;

/** The model on a GPU; create it with {@linkcode createGpuModel}. */
export class GpuModel implements ModelRunner {
  readonly config: ModelConfig;
  readonly device: GPUDevice;
  readonly cache: KVCache;
  readonly attention: AttentionEncoder;
  /** Sequence ids of the batch in the cache. */
  readonly ids: number[];
  #t: TableLayout;
  #r: GpuResources;
  #b: Record<string, GPUBuffer>;
  #table: Uint32Array<ArrayBuffer>;
  #stepWords = new Uint32Array(4);
  #batch: number;
  #maxGenerated: number;
  #layers: Partial<Record<LayerStage, Stage>>[];
  /** Each layer's attention sinks (gpt-oss), or undefined. */
  #sinks: (Float32Array | undefined)[];
  /** Widths of the MLP's `gu` and `h` rows (gpt-oss: every expert's, see moe.ts). */
  #guCols: number;
  #hCols: number;
  #final: Partial<Record<FinalStage, Stage>>;
  #logitsStaging: GPUBuffer | undefined;
  #logitsPending = 0;
  #querySet: GPUQuerySet | undefined;
  #timing = false;
  #resolve: GPUBuffer | undefined;
  #queries = 0;
  #timed: { begin: number; passes: { attention: boolean; index: number }[] }[] = [];

  /** Use {@linkcode createGpuModel}. */
  constructor(
    device: GPUDevice,
    weights: ModelWeights,
    options: GpuRunnerOptions,
    attention: AttentionEncoder,
  ) {
    const c = weights.config;
    this.config = c;
    this.device = device;
    this.attention = attention;
    this.#batch = options.batch;
    this.#maxGenerated = options.maxGenerated ?? 4096;
    const maxRows = options.batch * PREFILL_CHUNK;
    this.#t = { maxRows, maxSeqs: options.batch };
    this.#table = new Uint32Array(2 * maxRows + options.batch);
    const pageSize = options.pageSize ?? 16;
    this.cache = createKVCache({
      device,
      numLayers: c.layers,
      numKVHeads: c.kvHeads,
      headDim: c.headDim,
      kvDtype: options.kvDtype ?? "f32",
      pageSize,
      numPages: options.batch * Math.ceil(options.maxTokens / pageSize),
    });
    this.ids = Array.from({ length: options.batch }, () => this.cache.addSequence());
    this.setTiming(options.timing ?? false);
    this.#r = new GpuResources(device);
    this.#b = this.#r.b;
    this.#sinks = weights.layers.map((l) => l.sinks);
    this.#guCols = weights.layers[0].gateUp.rows;
    this.#hCols = weights.layers[0].down.cols;
    ({ layers: this.#layers, final: this.#final } = uploadModel(this.#r, weights, this.#t, {
      maxTokens: options.maxTokens,
      maxGenerated: this.#maxGenerated,
    }));
  }

  forward(step: ForwardStep): void {
    const c = this.config;
    const { seqs, qLen } = step;
    const n = seqs.length;
    const rows = n * qLen;
    const { maxRows } = this.#t;
    const ids = seqs.map((s) => this.ids[s]);
    const table = this.#table;
    for (let s = 0; s < n; s++) {
      const len = this.cache.length(ids[s]);
      for (let p = 0; p < qLen; p++) {
        const r = s * qLen + p;
        table[r] = step.tokens ? step.tokens[r] : GENERATED;
        table[maxRows + r] = len + p;
      }
      table[2 * maxRows + s] = step.sample ? seqs[s] : NO_SLOT;
    }
    this.#stepWords.set([rows, n, qLen, step.genIndex * this.#batch]);
    const q = this.device.queue;
    q.writeBuffer(this.#b.step, 0, this.#stepWords);
    q.writeBuffer(this.#b.table, 0, table);
    const slots = this.cache.extend(ids, qLen);
    const plans = layerPlans(c, this.#sinks, ids, qLen, (s) => this.attention.plan(this.cache, s));
    const enc = this.device.createCommandEncoder();
    const f = this.#final;
    const wg = (count: number): [number, number] => {
      const groups = Math.ceil(count / THREADS);
      const y = Math.ceil(groups / 65535);
      return [Math.ceil(groups / y), y];
    };
    const cols = (count: number): [number, number] => {
      const y = Math.ceil(count / 65535);
      return [Math.ceil(count / y), y];
    };
    const timing = this.#timing && this.#queries + 4 * c.layers + 2 <= MAX_QUERIES;
    const record = timing
      ? { begin: this.#queries, passes: [] as { attention: boolean; index: number }[] }
      : undefined;
    const open = (attention: boolean): GPUComputePassEncoder => {
      if (!record) return enc.beginComputePass();
      const index = this.#queries;
      this.#queries += 2;
      record.passes.push({ attention, index });
      return enc.beginComputePass({
        timestampWrites: {
          querySet: this.#querySet!,
          beginningOfPassWriteIndex: index,
          endOfPassWriteIndex: index + 1,
        },
      });
    };
    let pass = open(false);
    const run = (stage: Stage | undefined, size: [number, number]) => {
      if (!stage) return; // a stage this architecture does not have
      pass.setPipeline(stage[0]);
      pass.setBindGroup(0, stage[1]);
      pass.dispatchWorkgroups(size[0], size[1]);
    };
    run(f.embed, wg((rows * c.hidden) / 2));
    const qkvDim = (c.heads + 2 * c.kvHeads) * c.headDim;
    for (let l = 0; l < c.layers; l++) {
      const st = this.#layers[l];
      run(st.attnNorm, [rows, 1]);
      run(st.qkv, cols(qkvDim));
      run(st.rope, wg((rows * qkvDim) / 2));
      this.cache.encodeAppend(pass, { slots, layer: l, k: this.#b.k, v: this.#b.v });
      if (record) {
        pass.end();
        pass = open(true);
      }
      this.attention.encode(pass, { plan: plans[l], layer: l, q: this.#b.q, out: this.#b.attn });
      if (record) {
        pass.end();
        pass = open(false);
      }
      run(st.o, cols(c.hidden));
      run(st.postAttn, [rows, 1]);
      run(st.mlpNorm, [rows, 1]);
      if (c.moe) {
        run(st.router, cols(c.moe.experts));
        run(st.route, wg(rows));
      }
      run(st.gu, cols(this.#guCols));
      // The dense MLP's activation writes ffn columns; the experts' E ffn (weights follow).
      run(st.swiglu, wg(rows * (c.moe ? c.moe.experts * c.ffn : this.#hCols)));
      run(st.down, cols(c.hidden));
      run(st.postMlp, [rows, 1]);
    }
    if (step.sample) {
      run(f.last, wg(n * c.hidden));
      run(f.norm, [n, 1]);
      run(f.lm, cols(c.vocab));
      run(f.softcap, wg(n * c.vocab));
      run(f.argmax, [n, 1]);
    }
    pass.end();
    if (record) this.#timed.push(record);
    if (step.sample) {
      this.#logitsStaging ??= this.#r.buffer(
        "logits staging",
        4 * this.#batch * c.vocab,
        U.MAP_READ | U.COPY_DST,
      );
      this.#logitsPending = n;
    }
    this.device.queue.submit([enc.finish()]);
  }

  async #read(src: GPUBuffer, bytes: number, staging?: GPUBuffer): Promise<ArrayBuffer> {
    const s = staging ??
      this.device.createBuffer({ size: Math.max(16, bytes), usage: U.MAP_READ | U.COPY_DST });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(src, 0, s, 0, bytes);
    this.device.queue.submit([enc.finish()]);
    await s.mapAsync(U.MAP_READ);
    const out = s.getMappedRange(0, bytes).slice(0);
    s.unmap();
    if (!staging) s.destroy();
    return out;
  }

  async readLogits(): Promise<Float32Array> {
    const bytes = 4 * this.#logitsPending * this.config.vocab;
    return new Float32Array(await this.#read(this.#b.logits, bytes, this.#logitsStaging));
  }

  async readTokens(generated: number): Promise<number[][]> {
    const B = this.#batch;
    const hist = new Uint32Array(await this.#read(this.#b.history, 4 * B * generated));
    return Array.from(
      { length: B },
      (_, s) => Array.from({ length: generated }, (_, g) => hist[g * B + s]),
    );
  }

  /**
   * Turns timestamped passes on or off for later steps (a no-op without `timestamp-query`).
   * Returns whether steps are timed now.
   */
  setTiming(on: boolean): boolean {
    if (on && !this.#querySet && this.device.features.has("timestamp-query")) {
      this.#querySet = this.device.createQuerySet({ type: "timestamp", count: MAX_QUERIES });
    }
    this.#timing = on && this.#querySet !== undefined;
    return this.#timing;
  }

  /** Forgets the timings read so far (frees the query slots). */
  resetTimings(): void {
    this.#timed = [];
    this.#queries = 0;
  }

  /** GPU times of the timed steps since the last reset (needs `timestamp-query`). */
  async readTimings(): Promise<StepTiming[]> {
    if (!this.#querySet || this.#queries === 0) return [];
    this.#resolve ??= this.#r.buffer("query resolve", 8 * MAX_QUERIES, U.QUERY | U.COPY_SRC);
    const resolve = this.#resolve;
    const enc = this.device.createCommandEncoder();
    enc.resolveQuerySet(this.#querySet, 0, this.#queries, resolve, 0);
    this.device.queue.submit([enc.finish()]);
    const ns = new BigUint64Array(await this.#read(resolve, 8 * this.#queries));
    const ms = (a: number, b: number) => Number(ns[b] - ns[a]) / 1e6;
    return this.#timed.map((r) => {
      const last = r.passes[r.passes.length - 1].index + 1;
      let attentionMs = 0;
      for (const p of r.passes) if (p.attention) attentionMs += ms(p.index, p.index + 1);
      return { totalMs: ms(r.begin, last), attentionMs };
    });
  }

  async sync(): Promise<void> {
    await this.device.queue.onSubmittedWorkDone();
  }

  dispose(): void {
    this.attention.dispose();
    this.cache.dispose();
    this.#querySet?.destroy();
    this.#r.destroy();
  }
}

/** Uploads a model to `device` and prepares its pipelines. */
export async function createGpuModel(
  device: GPUDevice,
  weights: ModelWeights,
  options: GpuRunnerOptions,
): Promise<GpuModel> {
  if (weights.config.mla) {
    throw new RangeError("createGpuModel: DeepSeek-V3 (MLA) runs on the CPU runner only");
  }
  const attention = await createAttentionEncoder(device, { grid: options.grid });
  device.pushErrorScope("validation");
  const model = new GpuModel(device, weights, options, attention);
  const error = await device.popErrorScope();
  if (error) {
    model.dispose();
    throw new Error(`creating the model's GPU buffers and pipelines failed: ${error.message}`);
  }
  return model;
}
