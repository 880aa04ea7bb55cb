/**
 * The WebGPU backend, for the runtime's WebGPU (Deno's `navigator.gpu`, a browser's), a `GPU` or
 * `GPUDevice` the caller passes, or Dawn (npm `webgpu`). It runs the attention program of
 * `attention_program.ts` (the plan's tables in one buffer, the decode dispatch per KV window and,
 * when the plan has partial states, the merge dispatch, in one compute pass) and reads output
 * and LSE back in one copy. Pipelines are cached by kernel spec; buffers
 * are pooled.
 *
 * @module
 */

import type { KernelSpec } from "../kernels/kernel_spec.ts";
import type {
  Backend,
  BackendName,
  BackendStats,
  BackendTiming,
  DeviceProfile,
  KernelTimingOptions,
} from "../plan/backend.ts";
import type { BufferPool } from "./buffer_pool.ts";
import { CallGate } from "../core/call_gate.ts";
import type { DeviceGuard } from "./device_guard.ts";
import { kvRowBytes } from "../plan/windows.ts";
import type { KernelKind, PipelineCache } from "./pipeline_cache.ts";
import { type AdapterSummary, BufferUsage, type KernelCaps, MAP_READ } from "./gpu_runtime.ts";
import { timeWarm } from "./gpu_timing.ts";
import type { Plan } from "../plan/plan.ts";
import type { DecodeInput, DecodeOutput, KVArray, Problem } from "../core/problem.ts";
import type { KVClassCalibrator } from "./kv_class_grids.ts";
import { copyInputArrays } from "../core/input_copy.ts";
import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import { kvScaleMode, kvScaleTable } from "../core/kv8.ts";
import { slotFloats } from "../core/reducer.ts";
import { kernelSpec } from "./kernel_choice.ts";
import type { KernelTuning } from "./kernel_tuning.ts";
import {
  bindProgram,
  programAlign,
  programKernels,
  programLayout,
  type ProgramRun,
  programRun,
  recordProgram,
  writeProgramTables,
} from "./attention_program.ts";
import type { GpuContext } from "./gpu_context.ts";
import { valueScaleOf } from "../core/values_from_keys.ts";

const STORAGE_IN = BufferUsage.STORAGE | BufferUsage.COPY_DST;
const STORAGE_OUT = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;
/** Params (uniform) and schedule (read-only storage) of a plan: one buffer. */
const TABLES = BufferUsage.UNIFORM | BufferUsage.STORAGE | BufferUsage.COPY_DST;

/** A plan uploaded and bound, ready to record. */
export interface BoundPlan {
  /** The kernels and workgroups of each dispatch. */
  readonly run: ProgramRun;
  /** One bind group per KV window. */
  readonly groups: readonly GPUBindGroup[];
  readonly result: GPUBuffer;
  readonly resultBytes: number;
  /** Byte offset of the LSE in `result` (the output starts at 0). */
  readonly lseOffset: number;
}

export class WebGPUBackend implements Backend {
  readonly name: BackendName;
  readonly adapter: AdapterSummary;
  #profile: DeviceProfile;
  /** Calibrates an 8-bit class's grid (see kv_class_grids.ts); absent: none are. */
  #calibrator?: KVClassCalibrator;
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

  /** A backend on a device's context (see `openGpuContext`); `profile` gives its grid. */
  constructor(
    name: BackendName,
    ctx: GpuContext,
    profile: DeviceProfile,
    poison: boolean,
    tuning: KernelTuning,
    calibrator?: KVClassCalibrator,
  ) {
    this.#caps = ctx.caps;
    this.#tuning = tuning;
    this.#pipelines = ctx.pipelines;
    this.#keepAlive = ctx.keepAlive;
    this.name = name;
    this.#device = ctx.device;
    this.#guard = ctx.guard;
    this.#ownsDevice = ctx.ownsDevice;
    this.adapter = ctx.adapter;
    this.#profile = profile;
    this.#calibrator = calibrator;
    this.#poison = poison;
    this.#pool = ctx.pool;
  }

  /** The device profile: the class grids calibrated so far. */
  get profile(): DeviceProfile {
    return this.#profile;
  }

  calibrate(problem: Problem): Promise<void> | undefined {
    const calibrating = this.#calibrator?.(this.#profile, problem);
    if (calibrating === undefined) return undefined;
    return calibrating.then((found) => {
      if (found === undefined) return;
      // Into the profile as it is now: other classes may have joined while this one calibrated.
      const byClass = { ...this.#profile.gridByClass, [found.key]: found.grid };
      this.#profile = { ...this.#profile, gridByClass: byClass };
    });
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

  /**
   * The kernel spec this backend uses for a plan (with an input: where its 8-bit scales come
   * from).
   */
  spec(plan: Plan, paged = false, input?: Pick<DecodeInput, "kScale" | "vScale">): KernelSpec {
    const scaled = input !== undefined && KV_DTYPE_INFO[plan.problem.kvDtype].scaled;
    return kernelSpec(
      plan,
      this.#caps,
      this.#tuning,
      paged,
      scaled ? kvScaleMode(input) : undefined,
    );
  }

  /** The cached pipeline of a kernel spec, compiled on first use. */
  pipeline(kind: KernelKind, spec: KernelSpec): GPUComputePipeline {
    return this.#pipelines.get(kind, spec);
  }

  /**
   * Compiles the kernels a plan needs (decode, and merge when it has partial states); 8-bit
   * K/V with the kernels of `scales`' mode (per-token scales are a pipeline of their own).
   */
  prepare(plan: Plan, scales?: Pick<DecodeInput, "kScale" | "vScale">): void {
    const spec = this.spec(plan, false, scales);
    this.pipeline("decode", spec);
    if (plan.schedule.reduce.length > 0) this.pipeline("merge", spec);
  }

  /**
   * Uploads a plan and its data and prepares its dispatches (see `attention_program.ts`: the
   * tables in one buffer, in one write). `kvSet` picks which copy of the K/V buffers to use:
   * benchmarks rotate several so the L2 cache does not hold the whole cache.
   */
  bind(plan: Plan, input: DecodeInput, scale: number, kvSet = 0): BoundPlan {
    const { problem: p, tiles, schedule: s } = plan;
    const spec = this.spec(plan, false, input);
    const device = this.#device;
    const limits = device.limits;
    // K/V windows (src/plan/windows.ts): element ranges, each within one binding and one buffer.
    const windowLimit = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
    const rowElems = p.numKVHeads * p.headDim;
    const rowElemsV = p.numKVHeads * p.headDimV;
    const windows = s.windows.map((w) => {
      const bytes = (w.tokenEnd - w.tokenBegin) * kvRowBytes(p);
      if (bytes > windowLimit) {
        throw new RangeError(
          `maxBindingBytes must be at most the device's binding limit (${windowLimit} bytes): got a KV window of ${bytes} bytes`,
        );
      }
      return { begin: w.tokenBegin, end: w.tokenEnd };
    });
    const layout = programLayout(plan, programAlign(limits));
    const outLen = p.totalQueries * p.numHeads * p.headDimV;
    // Output then LSE in one buffer (one readback copy), the LSE at an aligned offset.
    const align = Math.max(256, limits.minStorageBufferOffsetAlignment);
    const lseOffset = Math.ceil((4 * outLen) / align) * align;
    const lseBytes = 4 * p.totalQueries * p.numHeads;
    const resultBytes = lseOffset + lseBytes;
    // 8-bit K/V with per-tensor scales: the scales go into the params blocks.
    const tensorScales = spec.kvScales === "tensor"
      ? { kScale: input.kScale as number, vScale: valueScaleOf(input, p) as number }
      : undefined;
    const pool = this.#pool;
    const put = (role: string, data: ArrayBufferView, usage = STORAGE_IN) => {
      const buffer = pool.get(role, Math.max(16, data.byteLength), usage);
      // Nothing to write for a batch of empty requests' K/V (Deno's writeBuffer panics on 0 bytes).
      if (data.byteLength > 0) device.queue.writeBuffer(buffer, 0, data as unknown as ArrayBuffer);
      return buffer;
    };
    const suffix = kvSet === 0 ? "" : ` ${kvSet}`;
    const bQ = put("q", input.q);
    // One K and one V buffer per window (`k` and `v` when the cache fits one binding), bound with
    // their data's size (a pooled buffer may be larger than a binding may be).
    const putKV = (name: string, data: KVArray, perToken = rowElems): GPUBufferBinding[] =>
      windows.map(({ begin, end }, i) => {
        const one = windows.length === 1;
        const view = one ? data : data.subarray(begin * perToken, end * perToken);
        const buffer = put(one ? `${name}${suffix}` : `${name}${suffix} window ${i}`, view);
        return { buffer, offset: 0, size: Math.max(16, view.byteLength) };
      });
    const bK = putKV("k", input.k);
    // V as a prefix of K's rows (`vFromK`, MLA's latent): the kernels read it from K's binding.
    const bV = p.vFromK ? bK : putKV("v", input.v!, rowElemsV);
    // Per-token 8-bit scales: one (k, v) pair per row and KV head, windowed like K and V.
    const bScales = spec.kvScales === "token"
      ? putKV(
        "kv scales",
        kvScaleTable(input.kScale, valueScaleOf(input, p), 0, p.totalTokens * p.numKVHeads),
        2 * p.numKVHeads,
      )
      : undefined;
    // Params, schedule sections and reduce records: one buffer, one write.
    const staging = new Uint32Array(layout.bytes / 4);
    writeProgramTables(staging, plan, layout, scale, tensorScales);
    const bTables = put("tables", staging, TABLES);
    const bResult = pool.get("result", resultBytes, STORAGE_OUT);
    if (this.#poison) {
      device.queue.writeBuffer(bResult, 0, new Uint32Array(resultBytes / 4).fill(0x7fc00000));
    }
    const bPartials = pool.get(
      "partials",
      Math.max(16, 4 * s.partialSlots * slotFloats(tiles.rowsPerBlock, p.headDimV)),
      STORAGE_OUT,
    );
    const kernels = programKernels(this.#pipelines, spec, layout.merges);
    const tables = { buffer: bTables, offset: 0 };
    const groups = windows.map((_, i) =>
      bindProgram(device, kernels.group, layout, tables, i, {
        q: { buffer: bQ },
        k: bK[i],
        v: bV[i],
        out: { buffer: bResult, offset: 0, size: 4 * outLen },
        lse: { buffer: bResult, offset: lseOffset, size: lseBytes },
        partials: { buffer: bPartials },
        ...(bScales ? { kvScales: bScales[i] } : {}),
      })
    );
    const run = programRun(
      kernels,
      layout,
      tiles.rowsPerBlock,
      limits.maxComputeWorkgroupsPerDimension,
    );
    return { run, groups, result: bResult, resultBytes, lseOffset };
  }

  /** Records a bound plan's dispatches (decode per window, then merge) into a compute pass. */
  record(pass: GPUComputePassEncoder, bound: BoundPlan): void {
    recordProgram(pass, bound.run, bound.groups);
  }

  /**
   * Waits for the gate when it is busy, with copies of the call's arrays taken now, before the
   * first `await`. (When the gate is free the caller takes it with `tryAcquire()` and uploads
   * its arrays synchronously.) Either way a call uses its inputs as they were when it was made,
   * whatever the caller does to them afterwards.
   */
  async #enter(input: DecodeInput): Promise<{ release: () => void; input: DecodeInput }> {
    this.#guard.check();
    const copy = copyInputArrays(input);
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
        out: all.subarray(
          0,
          plan.problem.totalQueries * plan.problem.numHeads * plan.problem.headDimV,
        ),
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
        { runs, warmup, warmupMs: options.warmupMs ?? 0, streamMs: options.streamMs ?? 0 },
      ));
      return {
        samplesMs: t.samplesMs,
        warmMs: t.warmMs,
        lastWarmMs: t.lastWarmMs,
        ...(t.streamSamplesMs === undefined ? {} : {
          streamSamplesMs: t.streamSamplesMs,
          runsPerStreamPass: t.runsPerStreamPass,
        }),
      };
    } finally {
      entered.release();
    }
  }

  async dispose(): Promise<void> {
    this.#pool.destroy();
    this.#pipelines.clear();
    if (this.#ownsDevice) {
      this.#device.destroy();
      // Resolve once the runtime has delivered the loss (1-4 ms on Deno's WebGPU and Dawn), so
      // the next device a process opens never overlaps this one's last callbacks; bounded, in
      // case a runtime never reports it. (Dawn under Deno stalled where tests open a device
      // right after destroying one: bench/notes.md, session 31.)
      await settleWithin(this.#device.lost, LOSS_WAIT_MS);
    }
    this.#keepAlive = [];
  }
}

/** The longest `dispose()` waits for an owned device's `lost` to resolve. */
const LOSS_WAIT_MS = 1000;

/** Waits for `promise` to settle, or `ms` milliseconds, whichever comes first. */
async function settleWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  try {
    await Promise.race([promise.then(() => {}, () => {}), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
