/**
 * The WebGPU backend, for the runtime's WebGPU (Deno's `navigator.gpu`, a browser's), a `GPU` or
 * `GPUDevice` the caller passes, or Dawn (npm `webgpu`). It uploads the plan's tables, records
 * the decode dispatch and, when the plan has partial states, the merge dispatch in one compute
 * pass, and reads output and LSE back in one copy. Pipelines are cached by kernel spec; buffers
 * are pooled.
 *
 * @module
 */

import {
  DEFAULT_MAX_LANES,
  elementsPerLoad,
  kernelChoice,
  kernelParams,
  type KernelSpec,
  PARAMS_WORDS,
  specKey,
} from "../kernels/kernel_spec.ts";
import type {
  Backend,
  BackendName,
  BackendStats,
  BackendTiming,
  DeviceProfile,
  KernelTimingOptions,
} from "../plan/backend.ts";
import { BufferPool } from "./buffer_pool.ts";
import { CallGate } from "../core/call_gate.ts";
import { DeviceGuard } from "./device_guard.ts";
import { kvRowBytes } from "../plan/windows.ts";
import { schedLayout } from "./sched_layout.ts";
import { type KernelKind, PipelineCache } from "./pipeline_cache.ts";
import { deviceProfile, tableProfile } from "./device_profile.ts";
import {
  acceptsSubgroupsDirective,
  type AdapterSummary,
  BufferUsage,
  type KernelCaps,
  kernelCaps,
  MAP_READ,
  registeredDawn,
  requestDevice,
  summarizeAdapter,
} from "./gpu_runtime.ts";
import { timeWarm } from "./gpu_timing.ts";
import { mergeWorkgroups } from "../kernels/merge_kernel.ts";
import type { Plan } from "../plan/plan.ts";
import type { DecodeInput, DecodeOutput } from "../core/problem.ts";
import { notify, type ProgressListener } from "../core/progress.ts";
import { slotFloats } from "../core/reducer.ts";
import { DIRECT, PIECE, PIECE_STRIDE, REDUCE_STRIDE } from "../plan/schedule.ts";
import { BINDING, type BindingName, namedEntries } from "../kernels/abi.ts";
import { tileConfig, type TileOptions } from "../plan/tiles.ts";

/** Options for {@linkcode createWebGPUBackend}. */
export interface WebGPUBackendOptions extends TileOptions {
  /** Which WebGPU implementation: the runtime's (`"webgpu"`) or npm `webgpu` (`"dawn"`). */
  flavor: "webgpu" | "dawn";
  /** A `GPU` to request the adapter from. */
  gpu?: GPU;
  /** A caller-owned device; it is left alone by `dispose()`. */
  device?: GPUDevice;
  /** Fail unless the adapter is a hardware GPU (used by `"auto"`). */
  requireHardware?: boolean;
  /** Overrides the profile's grid. */
  grid?: number;
  /** Fill the output with NaN before every run, so an unwritten element shows (for tests). */
  poison?: boolean;
  /**
   * Largest K or V binding in bytes, capped to the device's `maxStorageBufferBindingSize` and
   * `maxBufferSize` (the default): larger caches are split into KV windows.
   */
  maxBindingBytes?: number;
  /** Kernel tuning: subgroup shuffles (default: when the device has them), lanes, unroll. */
  kernel?: KernelTuning;
  /** Hears of each stage: adapter, device, calibration, kernel compiles, ready. */
  onProgress?: ProgressListener;
}

/**
 * Kernel choices a backend makes for every plan (see `KernelSpec`).
 *
 * @example
 * ```ts
 * import type { DecoderOptions, KernelTuning } from "@lean/attention";
 * const kernel: KernelTuning = { subgroups: false, lanes: 8, unroll: 2, prefetch: true };
 * // Passed to createDecoder (GPU backends) or createAttentionEncoder.
 * const options: DecoderOptions = { backend: "webgpu", kernel };
 * console.log(options.kernel?.lanes); // 8
 * ```
 */
export interface KernelTuning {
  /** Use subgroup shuffles when the device offers them (default true). */
  subgroups?: boolean;
  /**
   * Threads per token (default: the kernel table's choice for the block's rows and head dim, at
   * most the smallest subgroup; see `KERNEL_TABLE` in `src/kernels/kernel_spec.ts`).
   */
  lanes?: number;
  /** Tokens each lane group loads per step (default: the kernel table's choice). */
  unroll?: number;
  /** Request the next step's K and V before this step's arithmetic (default true). */
  prefetch?: boolean;
  /**
   * Steps that mask no token skip the masking arithmetic (default true; false masks every step,
   * as kernels before 0.2 did: for measurements).
   */
  fastSteps?: boolean;
}

const STORAGE_IN = BufferUsage.STORAGE | BufferUsage.COPY_DST;
const STORAGE_OUT = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;
const UNIFORM = BufferUsage.UNIFORM | BufferUsage.COPY_DST;

/** Splits a workgroup count over x and y when it exceeds the per-dimension limit. */
export function dispatchSize(count: number, maxPerDim: number): [number, number] {
  if (count <= maxPerDim) return [count, 1];
  const y = Math.ceil(count / maxPerDim);
  return [Math.ceil(count / y), y];
}

/** A plan uploaded and bound, ready to record. */
export interface BoundPlan {
  readonly dispatches: ReadonlyArray<{
    pipeline: GPUComputePipeline;
    bindGroup: GPUBindGroup;
    size: [number, number];
  }>;
  readonly result: GPUBuffer;
  readonly resultBytes: number;
  /** Byte offset of the LSE in `result` (the output starts at 0). */
  readonly lseOffset: number;
}

/**
 * The kernel specialisation a plan needs on a device: lanes per token up to 16 and, with
 * subgroup shuffles, at most the adapter's smallest subgroup.
 */
export function kernelSpec(
  plan: { problem: { headDim: number; kvDtype: Plan["problem"]["kvDtype"] }; tiles: Plan["tiles"] },
  caps: KernelCaps = { subgroups: false, subgroupMinSize: 0 },
  tuning: KernelTuning = {},
  paged = false,
): KernelSpec {
  const { headDim, kvDtype } = plan.problem;
  const { tileTokens, rowsPerBlock, workgroupSize } = plan.tiles;
  const chunks = headDim / elementsPerLoad(kvDtype);
  const subgroups = caps.subgroups && tuning.subgroups !== false;
  const choice = kernelChoice(headDim, rowsPerBlock);
  let cap = Math.min(DEFAULT_MAX_LANES, workgroupSize, choice.lanes);
  if (subgroups) cap = Math.min(cap, caps.subgroupMinSize);
  let lanes = tuning.lanes ?? 1;
  if (tuning.lanes === undefined) {
    while (lanes * 2 <= cap && chunks % (lanes * 2) === 0) lanes *= 2;
  }
  const prefetch = tuning.prefetch ?? choice.prefetch ?? true;
  return {
    headDim,
    kvDtype,
    tileTokens,
    rowsPerBlock,
    workgroupSize,
    lanes,
    // The table's unroll goes with its prefetch choice; without prefetch (asked for by the
    // tuning only) twice as many tokens per step keep as many bytes in flight.
    unroll: tuning.unroll ??
      (prefetch || choice.prefetch === false ? choice.unroll : 2 * choice.unroll),
    subgroups: subgroups && lanes > 1 && lanes <= caps.subgroupMinSize,
    paged,
    prefetch,
    ...(tuning.fastSteps === false ? { fastSteps: false } : {}),
  };
}

class WebGPUBackend implements Backend {
  readonly name: BackendName;
  readonly profile: DeviceProfile;
  readonly adapter: AdapterSummary;
  #device: GPUDevice;
  #caps: KernelCaps;
  #tuning: KernelTuning;
  #ownsDevice: boolean;
  /** Device loss and error scopes. */
  #guard!: DeviceGuard;
  /** Held from upload to submit by each call. */
  #gate = new CallGate();
  #poison: boolean;
  #pool: BufferPool;
  #pipelines: PipelineCache;
  /** The GPU and adapter the device came from: Dawn's device breaks if they are collected. */
  #keepAlive: unknown[];

  constructor(
    name: BackendName,
    device: GPUDevice,
    ownsDevice: boolean,
    adapter: AdapterSummary,
    profile: DeviceProfile,
    poison: boolean,
    pool: BufferPool,
    pipelines: PipelineCache,
    keepAlive: unknown[],
    caps: KernelCaps,
    tuning: KernelTuning,
  ) {
    this.#caps = caps;
    this.#tuning = tuning;
    this.#pipelines = pipelines;
    this.#keepAlive = keepAlive;
    this.name = name;
    this.#device = device;
    this.#guard = new DeviceGuard(device);
    this.#ownsDevice = ownsDevice;
    this.adapter = adapter;
    this.profile = profile;
    this.#poison = poison;
    this.#pool = pool;
  }

  /** The device in use. */
  get device(): GPUDevice {
    return this.#device;
  }

  stats(): BackendStats {
    return {
      buffersCreated: this.#pool.created,
      buffersLive: this.#pool.live,
      pipelinesCreated: this.#pipelines.created,
    };
  }

  /** The kernel spec this backend uses for a plan. */
  spec(plan: Plan, paged = false): KernelSpec {
    return kernelSpec(plan, this.#caps, this.#tuning, paged);
  }

  /** The cached pipeline of a kernel spec, compiled on first use. */
  pipeline(kind: KernelKind, spec: KernelSpec): GPUComputePipeline {
    return this.#pipelines.get(kind, spec);
  }

  /** Compiles the kernels a plan needs (decode, and merge when it has partial states). */
  prepare(plan: Plan): void {
    const spec = this.spec(plan);
    this.pipeline("decode", spec);
    if (plan.schedule.reduce.length > 0) this.pipeline("merge", spec);
  }

  /**
   * Uploads a plan and its data and prepares both dispatches. `kvSet` picks which copy of the K/V
   * buffers to use: benchmarks rotate several so the L2 cache does not hold the whole cache.
   */
  bind(plan: Plan, input: DecodeInput, scale: number, kvSet = 0): BoundPlan {
    const { problem: p, tiles, schedule: s } = plan;
    const spec = this.spec(plan);
    const device = this.#device;
    const limits = device.limits;
    // K/V windows (src/plan/windows.ts): element ranges, each within one binding and one buffer.
    const windowLimit = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
    const rowElems = p.numKVHeads * p.headDim;
    const windows = s.windows.map((w) => {
      const bytes = (w.tokenEnd - w.tokenBegin) * kvRowBytes(p);
      if (bytes > windowLimit) {
        throw new RangeError(
          `maxBindingBytes must be at most the device's binding limit (${windowLimit} bytes): got a KV window of ${bytes} bytes`,
        );
      }
      return { begin: w.tokenBegin * rowElems, end: w.tokenEnd * rowElems };
    });
    const layout = schedLayout(s, limits.minStorageBufferOffsetAlignment);
    const sched = layout.data;
    const reduceBase = layout.reduceBase;
    const outLen = input.q.length;
    // Output then LSE in one buffer (one readback copy), the LSE at an aligned offset.
    const align = Math.max(256, limits.minStorageBufferOffsetAlignment);
    const lseOffset = Math.ceil((4 * outLen) / align) * align;
    const lseBytes = 4 * p.numSeqs * p.qLen * p.numHeads;
    const resultBytes = lseOffset + lseBytes;
    const params = (count: number, pieceBase = 0) =>
      kernelParams({ ...p, pieceBase, reduceBase, count, scale });
    const pool = this.#pool;
    const put = (role: string, data: ArrayBufferView, usage = STORAGE_IN) => {
      const buffer = pool.get(role, Math.max(16, data.byteLength), usage);
      device.queue.writeBuffer(buffer, 0, data as unknown as ArrayBuffer);
      return buffer;
    };
    const suffix = kvSet === 0 ? "" : ` ${kvSet}`;
    const bQ = put("q", input.q);
    // One K and one V buffer per window (`k` and `v` when the cache fits one binding), bound with
    // their data's size (a pooled buffer may be larger than a binding may be).
    const putKV = (name: string, data: Float32Array | Uint16Array): GPUBufferBinding[] =>
      windows.map(({ begin, end }, i) => {
        const one = windows.length === 1;
        const view = one ? data : data.subarray(begin, end);
        const buffer = put(one ? `${name}${suffix}` : `${name}${suffix} window ${i}`, view);
        return { buffer, offset: 0, size: Math.max(16, view.byteLength) };
      });
    const bK = putKV("k", input.k);
    const bV = putKV("v", input.v);
    const bSched = put("sched", sched);
    // One params block per window's decode dispatch (its count and piece_base), each aligned.
    const paramsStride = Math.max(256, limits.minUniformBufferOffsetAlignment);
    const paramsData = new Uint32Array((paramsStride / 4) * layout.sections.length);
    layout.sections.forEach((sec, i) =>
      paramsData.set(params(sec.workgroups, sec.pieceBase), (i * paramsStride) / 4)
    );
    const bParams = put("decode params", paramsData, UNIFORM);
    const bDecodeParams = layout.sections.map((_, i) => ({
      buffer: bParams,
      offset: i * paramsStride,
      size: 4 * PARAMS_WORDS,
    }));
    const bResult = pool.get("result", resultBytes, STORAGE_OUT);
    if (this.#poison) {
      device.queue.writeBuffer(bResult, 0, new Uint32Array(resultBytes / 4).fill(0x7fc00000));
    }
    const bPartials = pool.get(
      "partials",
      Math.max(16, 4 * s.partialSlots * slotFloats(tiles.rowsPerBlock, p.headDim)),
      STORAGE_OUT,
    );
    const maxDim = limits.maxComputeWorkgroupsPerDimension;
    const dispatch = (
      kind: KernelKind,
      resources: Partial<Record<BindingName, GPUBufferBinding>>,
      count: number,
    ) => ({
      pipeline: this.pipeline(kind, spec),
      bindGroup: device.createBindGroup({
        layout: this.#pipelines.layout(kind, spec).group,
        entries: namedEntries(BINDING, resources),
      }),
      size: dispatchSize(count, maxDim),
    });
    const out = { buffer: bResult, offset: 0, size: 4 * outLen };
    const lse = { buffer: bResult, offset: lseOffset, size: lseBytes };
    const dispatches = layout.sections.map((sec, i) =>
      dispatch(
        "decode",
        {
          params: bDecodeParams[i],
          sched: { buffer: bSched, offset: sec.offset, size: sec.size },
          q: { buffer: bQ },
          k: bK[i],
          v: bV[i],
          out,
          partials: { buffer: bPartials },
          lse,
        },
        sec.workgroups,
      )
    );
    const merges = s.reduce.length / REDUCE_STRIDE;
    if (merges > 0) {
      const bMergeParams = put("merge params", params(merges), UNIFORM);
      dispatches.push(
        dispatch(
          "merge",
          {
            params: { buffer: bMergeParams },
            sched: { buffer: bSched },
            partials: { buffer: bPartials },
            out,
            lse,
          },
          mergeWorkgroups(merges, tiles.rowsPerBlock),
        ),
      );
    }
    return { dispatches, result: bResult, resultBytes, lseOffset };
  }

  /** Records a bound plan's dispatches (decode, then merge) into a compute pass. */
  record(pass: GPUComputePassEncoder, bound: BoundPlan): void {
    for (const d of bound.dispatches) {
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(d.size[0], d.size[1]);
    }
  }

  /**
   * Waits for the gate when it is busy, with copies of the call's arrays taken now, before the
   * first `await`. (When the gate is free the caller takes it with `tryAcquire()` and uploads
   * its arrays synchronously.) Either way a call uses its inputs as they were when it was made,
   * whatever the caller does to them afterwards.
   */
  async #enter(input: DecodeInput): Promise<{ release: () => void; input: DecodeInput }> {
    this.#guard.check();
    const copy: DecodeInput = {
      ...input,
      q: input.q.slice(),
      k: input.k.slice(),
      v: input.v.slice(),
    };
    return { release: await this.#gate.acquire(), input: copy };
  }

  run(plan: Plan, input: DecodeInput, scale: number): Promise<DecodeOutput> {
    // Not async itself: when the gate is free, everything up to the upload runs in this call.
    const release = this.#gate.tryAcquire();
    if (release) return this.#run(plan, input, scale, release);
    return this.#enter(input).then((e) => this.#run(plan, e.input, scale, e.release));
  }

  async #run(
    plan: Plan,
    input: DecodeInput,
    scale: number,
    release: () => void,
  ): Promise<DecodeOutput> {
    const device = this.#device;
    // Upload to submit under the gate: while a call awaits its allocation check, no other call
    // may overwrite the pooled buffers it has written and not yet submitted.
    let bound!: BoundPlan;
    let readback!: GPUBuffer;
    try {
      // Error scopes: a failed allocation rejects the call and releases what it created.
      bound = await this.#guard.allocating(this.#pool, () => {
        const b = this.bind(plan, input, scale);
        readback = this.#pool.takeReadback(b.resultBytes);
        return b;
      });
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass({});
      this.record(pass, bound);
      pass.end();
      enc.copyBufferToBuffer(bound.result, 0, readback, 0, bound.resultBytes);
      device.queue.submit([enc.finish()]);
    } catch (e) {
      if (readback) this.#pool.releaseReadback(readback);
      throw e;
    } finally {
      release();
    }
    const bytes = bound.resultBytes;
    try {
      // A lost device rejects the map (or would leave it hanging): fail with the loss instead.
      await this.#guard.whileAlive(readback.mapAsync(MAP_READ, 0, bytes));
      const all = new Float32Array(readback.getMappedRange(0, bytes).slice(0));
      readback.unmap();
      return {
        out: all.subarray(0, input.q.length),
        lse: all.subarray(bound.lseOffset / 4),
      };
    } finally {
      this.#pool.releaseReadback(readback);
    }
  }

  async time(
    plan: Plan,
    input: DecodeInput,
    scale: number,
    options: KernelTimingOptions,
  ): Promise<BackendTiming> {
    const { runs, warmup, kvSets } = options;
    // Like run(): the gate and the error scopes, so that timing never binds into pooled buffers
    // that a decode in flight has written and not yet submitted.
    const now = this.#gate.tryAcquire();
    const entered = now ? { release: now, input } : await this.#enter(input);
    try {
      const bound = await this.#guard.allocating(
        this.#pool,
        () => Array.from({ length: kvSets }, (_, i) => this.bind(plan, entered.input, scale, i)),
      );
      const t = await this.#guard.whileAlive(timeWarm(
        this.#device,
        (pass, i) => this.record(pass, bound[i % kvSets]),
        { runs, warmup, warmupMs: options.warmupMs ?? 0 },
      ));
      return { samplesMs: t.samplesMs, warmMs: t.warmMs, lastWarmMs: t.lastWarmMs };
    } finally {
      entered.release();
    }
  }

  dispose(): Promise<void> {
    this.#pool.destroy();
    this.#pipelines.clear();
    if (this.#ownsDevice) this.#device.destroy();
    this.#keepAlive = [];
    return Promise.resolve();
  }
}

/** Rows-per-block classes the grid is calibrated for (see `gridFor`). */
const ROW_CLASSES = [1, 2, 4, 8];

/** Builds the calibration probe: `n` workgroups decoding identical pieces with the default spec. */
function calibrationProbe(
  device: GPUDevice,
  pool: BufferPool,
  pipelines: PipelineCache,
  software: boolean,
  tileOptions: TileOptions,
  specOf: (plan: Parameters<typeof kernelSpec>[0]) => KernelSpec,
  rows = 4,
): { probe: (pass: GPUComputePassEncoder, n: number) => void; key: string } {
  const tiles = tileConfig({ headDim: 128, rowsPerGroup: rows, kvDtype: "f16" }, tileOptions);
  const spec = specOf({ problem: { headDim: 128, kvDtype: "f16" }, tiles });
  const tokens = software ? 64 : 1024;
  const maxN = 8192;
  const sched = new Uint32Array(maxN + 1 + maxN * PIECE_STRIDE);
  for (let w = 0; w <= maxN; w++) sched[w] = w;
  // Every workgroup decodes the same piece: all tokens of sequence 0, head 0, row block 0.
  for (let w = 0; w < maxN; w++) {
    const f = maxN + 1 + w * PIECE_STRIDE;
    sched[f + PIECE.tokenBegin] = 0;
    sched[f + PIECE.tokenEnd] = tokens;
    sched[f + PIECE.slot] = DIRECT;
    sched[f + PIECE.kvStart] = 0;
    sched[f + PIECE.seqLen] = tokens;
  }
  const words = kernelParams({
    numHeads: rows,
    qLen: 1,
    groupSize: rows,
    rowsPerGroup: rows,
    numKVHeads: 1,
    headDim: 128,
    kvDtype: "f16",
    pieceBase: maxN + 1,
    reduceBase: 0,
    count: maxN,
    scale: 0,
  });
  const kv = new Uint32Array(tokens * 64).map((_, i) => 0x3c003c00 ^ (i & 0x3ff));
  const buffers: Partial<Record<BindingName, readonly [ArrayBufferView, number]>> = {
    params: [words, UNIFORM],
    sched: [sched, STORAGE_IN],
    q: [new Float32Array(rows * 128).fill(0.01), STORAGE_IN],
    k: [kv, STORAGE_IN],
    v: [kv, STORAGE_IN],
    out: [new Float32Array(rows * 128), STORAGE_OUT],
    partials: [new Float32Array(16), STORAGE_OUT],
    lse: [new Float32Array(Math.max(4, rows)), STORAGE_OUT],
  };
  const decode = pipelines.get("decode", spec);
  const resources: Partial<Record<BindingName, GPUBufferBinding>> = {};
  for (
    const [name, [data, usage]] of Object.entries(buffers) as [
      BindingName,
      [ArrayBufferView, number],
    ][]
  ) {
    const buffer = pool.get(`calibration ${BINDING[name]}`, data.byteLength, usage);
    device.queue.writeBuffer(buffer, 0, data as unknown as ArrayBuffer);
    resources[name] = { buffer };
  }
  const bindGroup = device.createBindGroup({
    layout: pipelines.layout("decode", spec).group,
    entries: namedEntries(BINDING, resources),
  });
  return {
    key: specKey("decode", spec),
    probe: (pass, n) => {
      pass.setPipeline(decode);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(n);
    },
  };
}

/**
 * Creates a WebGPU backend: finds the adapter, requests a device with the adapter's limits,
 * and profiles it (grid calibration, cached per adapter).
 */
export async function createWebGPUBackend(options: WebGPUBackendOptions): Promise<Backend> {
  const tileOptions: TileOptions = {
    tileTokens: options.tileTokens,
    workgroupSize: options.workgroupSize,
  };
  const onProgress = options.onProgress;
  let device = options.device;
  let adapterInfo: GPUAdapterInfo | undefined;
  const keepAlive: unknown[] = [];
  if (device) {
    adapterInfo = (device as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  } else {
    notify(onProgress, {
      stage: "adapter",
      message: `requesting a WebGPU adapter (${
        options.flavor === "dawn" ? "Dawn" : "the runtime's navigator.gpu"
      })`,
    });
    const gpu = options.flavor === "dawn"
      ? await registeredDawn()
      : options.gpu ?? globalThis.navigator?.gpu;
    if (!gpu) {
      throw new Error(`the ${options.flavor} backend needs WebGPU: navigator.gpu is not available`);
    }
    const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) throw new Error(`the ${options.flavor} backend found no WebGPU adapter`);
    adapterInfo = adapter.info;
    keepAlive.push(gpu, adapter);
    const found = summarizeAdapter(adapterInfo);
    if (options.requireHardware && found.software) {
      throw new Error(`adapter ${found.description} is a software adapter`);
    }
    notify(onProgress, { stage: "device", message: `opening a device on ${found.description}` });
    device = await requestDevice(adapter);
  }
  const summary = summarizeAdapter(adapterInfo);
  const owns = options.device === undefined;
  const pool = new BufferPool(device);
  const caps = kernelCaps(device, adapterInfo);
  const tuning = options.kernel ?? {};
  // Tint (Dawn, browsers) wants `enable subgroups;`; Naga (Deno) rejects the directive.
  const enableDirective = caps.subgroups && await acceptsSubgroupsDirective(device);
  const pipelines = new PipelineCache(
    device,
    { enableDirective },
    (kernel, done) =>
      notify(onProgress, {
        stage: "compile",
        message: `compiling kernel ${done + 1}: ${kernel}`,
        done,
        kernel,
      }),
  );
  let profile: DeviceProfile;
  if (options.grid !== undefined) {
    profile = { name: summary.description, grid: options.grid, source: "option" };
  } else if (summary.software) {
    // A software adapter runs about one workgroup per thread; calibrating it would only cost
    // kernel compiles.
    profile = tableProfile(summary.description, true);
  } else {
    const calibrationPool = new BufferPool(device);
    try {
      // Kernels holding more query rows keep more registers, so fewer run at once: one grid per
      // rows-per-block class.
      const grids: Record<number, number> = {};
      let source: DeviceProfile["source"] = "calibrated";
      for (const [i, rows] of ROW_CLASSES.entries()) {
        notify(onProgress, {
          stage: "calibrate",
          message: `calibrating the lean grid (${rows} row${rows > 1 ? "s" : ""} per block, ` +
            `${i + 1} of ${ROW_CLASSES.length})`,
          done: i,
          total: ROW_CLASSES.length,
        });
        const { probe, key } = calibrationProbe(
          device,
          calibrationPool,
          pipelines,
          false,
          tileOptions,
          (plan) => kernelSpec(plan, caps, tuning),
          rows,
        );
        // The first class warms the GPU (its clock idles low); the others follow right after.
        const warmupMs = rows === ROW_CLASSES[0] ? 300 : 50;
        const p = await deviceProfile(device, summary.description, false, probe, key, warmupMs);
        grids[rows] = p.grid;
        if (p.source !== "calibrated") source = p.source;
      }
      profile = { name: summary.description, grid: grids[1], source, gridByRows: grids };
    } catch {
      profile = tableProfile(summary.description, summary.software);
    } finally {
      calibrationPool.destroy();
    }
  }
  // KV windows: one binding and one buffer at most, or less where the caller asks (tests).
  const maxBindingBytes = Math.min(
    device.limits.maxStorageBufferBindingSize,
    device.limits.maxBufferSize,
    options.maxBindingBytes ?? Number.POSITIVE_INFINITY,
  );
  profile = { ...profile, maxBindingBytes, software: summary.software };
  notify(onProgress, {
    stage: "ready",
    message: `${options.flavor} backend ready on ${summary.description} (grid ${profile.grid}, ` +
      `${profile.source})`,
  });
  return new WebGPUBackend(
    options.flavor,
    device,
    owns,
    summary,
    profile,
    options.poison ?? false,
    pool,
    pipelines,
    keepAlive,
    caps,
    tuning,
  );
}
