/**
 * The public entry point: `createDecoder` picks a backend, and the decoder validates, plans and
 * runs decode calls on it.
 *
 * @module
 */

import {
  type Backend,
  type BackendName,
  type BackendStats,
  type DeviceProfile,
  gridFor,
} from "./plan/backend.ts";
import { createCpuBackend } from "./cpu/cpu_backend.ts";
import { median } from "./gpu/gpu_timing.ts";
import { type Plan, planProblem, validateFlag, validateMaxBindingBytes } from "./plan/plan.ts";
import {
  type DecodeInput,
  type DecodeOutput,
  type DecodeShape,
  type Problem,
  resolveScale,
  STRATEGIES,
  type Strategy,
  validateInput,
  validateShape,
} from "./core/problem.ts";
import { notify, type ProgressListener } from "./core/progress.ts";
import { tileConfig, type TileOptions } from "./plan/tiles.ts";
import type { KernelTuning } from "./gpu/kernel_choice.ts";

/**
 * Options for {@linkcode createDecoder}.
 *
 * @example
 * ```ts
 * import { createDecoder, type DecoderOptions } from "@lean/attention";
 * const options: DecoderOptions = { backend: "cpu", grid: 8, tileTokens: 32 };
 * const decoder = await createDecoder(options);
 * console.log(decoder.backend, decoder.profile.grid); // cpu 8
 * await decoder.dispose();
 * ```
 */
export interface DecoderOptions extends TileOptions {
  /**
   * `"cpu"`, `"webgpu"` (the runtime's `navigator.gpu`, or the `gpu`/`device` given), `"dawn"`
   * (npm `webgpu`; import `@lean/attention/dawn` first), or `"auto"` (default): a hardware GPU
   * adapter through the runtime's WebGPU when there is one, else the CPU.
   */
  backend?: "auto" | BackendName;
  /** A `GPU` object to request the adapter from (for `"webgpu"`). */
  gpu?: GPU;
  /** A device the caller owns (for `"webgpu"`); it is not destroyed by `dispose()`. */
  device?: GPUDevice;
  /** Overrides the device profile's lean grid (workgroups run at once). */
  grid?: number;
  /**
   * Largest K or V binding in bytes (default, and at most: the device's
   * `maxStorageBufferBindingSize` and `maxBufferSize`; no limit on the CPU). A larger KV cache is
   * split into windows, each its own decode dispatch; a small value exercises that path.
   */
  maxBindingBytes?: number;
  /**
   * Plan batch-invariantly: a sequence's output is bitwise the same whatever other sequences share
   * its batch (fixed split points, merged in a fixed order). Default false.
   */
  batchInvariant?: boolean;
  /**
   * Kernel tuning for GPU backends: subgroup shuffles (default: used when the device has them),
   * lanes per token, unroll. The defaults are tuned; see `bench/notes.md`.
   */
  kernel?: KernelTuning;
  /**
   * Testing aid: fill GPU outputs with NaN before every run, so an element the kernels fail to
   * write shows up. Off by default.
   */
  poison?: boolean;
  /**
   * Hears what the decoder is doing while it gets ready: requesting the adapter, opening the
   * device, calibrating the grid, compiling kernels (on creation, in `warmup()` and in the first
   * call of each new kernel shape), and when it is ready. See {@linkcode DecoderProgress}.
   */
  onProgress?: ProgressListener;
}

/**
 * Options for {@linkcode Decoder.timeKernels}.
 *
 * @example
 * ```ts
 * import { createDecoder, type KernelTimingRequest } from "@lean/attention";
 * const decoder = await createDecoder({ backend: "cpu" });
 * const request: KernelTimingRequest = { runs: 3, warmup: 1 };
 * const timing = await decoder.timeKernels({
 *   q: new Float32Array(8), k: new Float32Array(24), v: new Float32Array(24),
 *   seqLens: [3], numHeads: 1, numKVHeads: 1, headDim: 8,
 * }, request);
 * console.log(timing.samplesMs.length); // 3
 * await decoder.dispose();
 * ```
 */
export interface KernelTimingRequest {
  /** Timed runs (default 20). */
  runs?: number;
  /** Untimed runs first (default 3). */
  warmup?: number;
  /** Copies of K and V rotated between runs, so a cache smaller than L2 is not timed from L2. */
  kvSets?: number;
  /**
   * GPU backends: milliseconds of back-to-back runs right before the timed ones, in the same
   * submission (default 400; 0 to time from cold). An idle GPU runs at a low clock and raises it
   * only after a while under load: an H200 timed without this measured a 128k-token decode
   * anywhere from 0.53 to 1.84 ms. The CPU backend ignores it.
   */
  warmupMs?: number;
}

/**
 * Kernel times of one decode call.
 *
 * @example
 * ```ts
 * import { createDecoder, type KernelTiming } from "@lean/attention";
 * const decoder = await createDecoder({ backend: "cpu" });
 * const timing: KernelTiming = await decoder.timeKernels({
 *   q: new Float32Array(8), k: new Float32Array(24), v: new Float32Array(24),
 *   seqLens: [3], numHeads: 1, numKVHeads: 1, headDim: 8,
 * }, { runs: 5, warmup: 0 });
 * const sorted = [...timing.samplesMs].sort((a, b) => a - b);
 * console.log(timing.samplesMs.length, timing.medianMs === sorted[2]); // 5 true
 * await decoder.dispose();
 * ```
 */
export interface KernelTiming {
  /** Milliseconds of each timed run. */
  samplesMs: number[];
  /** Median of the samples. */
  medianMs: number;
  /** GPU milliseconds of warm-up in the timed submission (0 on the CPU or with `warmupMs: 0`). */
  warmMs: number;
  /** Milliseconds per run over the warm-up's last pass: near `medianMs` once the GPU is warm. */
  lastWarmMs: number;
}

/**
 * Options for {@linkcode Decoder.plan}.
 *
 * @example
 * ```ts
 * import { createDecoder, type DecoderPlanOptions } from "@lean/attention";
 * const decoder = await createDecoder({ backend: "cpu", grid: 4 });
 * const options: DecoderPlanOptions = { strategy: "split" };
 * const plan = decoder.plan({ seqLens: [300], numHeads: 2, numKVHeads: 2, headDim: 8 }, options);
 * console.log(plan.strategy, plan.partition.splits); // split 2
 * await decoder.dispose();
 * ```
 */
export interface DecoderPlanOptions {
  /** Partition strategy (default `"lean"`). */
  strategy?: Strategy;
}

/**
 * Options for {@linkcode Decoder.warmup}.
 *
 * @example
 * ```ts
 * import { createDecoder, type WarmupOptions } from "@lean/attention";
 * const decoder = await createDecoder({ backend: "cpu" });
 * const options: WarmupOptions = { strategies: ["lean"] };
 * await decoder.warmup({ seqLens: [100], numHeads: 4, numKVHeads: 4, headDim: 64 }, options);
 * await decoder.dispose();
 * ```
 */
export interface WarmupOptions {
  /** Strategies whose kernels to compile (default: all three). */
  strategies?: readonly Strategy[];
}

/**
 * A decoder bound to one backend. `await using` disposes it at the end of the scope.
 *
 * @example
 * ```ts
 * import { createDecoder } from "@lean/attention";
 * await using decoder = await createDecoder({ backend: "cpu" });
 * console.log(decoder.backend, decoder.profile.grid); // cpu 16
 * ```
 */
export interface Decoder extends AsyncDisposable {
  /** The backend in use (what `"auto"` picked). */
  readonly backend: BackendName;
  /** The device profile the planner uses. */
  readonly profile: DeviceProfile;
  /** Plans a batch shape for this decoder's device without running it. */
  plan(shape: DecodeShape, options?: DecoderPlanOptions): Plan;
  /**
   * Times the kernels of one decode call: on GPUs the compute pass (decode and merge) measured by
   * `timestamp-query`, without upload or readback; on the CPU the plan's execution.
   */
  timeKernels(input: DecodeInput, options?: KernelTimingRequest): Promise<KernelTiming>;
  /** Allocation counters: steady same-shaped calls leave them unchanged. */
  stats(): BackendStats;
  /** Validates, plans and runs one decode call. */
  decode(input: DecodeInput): Promise<DecodeOutput>;
  /**
   * Compiles the kernels a batch shape needs, so that the first `decode` of that shape does not
   * wait for them (seconds on a software adapter). Reports each compile to `onProgress`. Nothing
   * to do on the CPU.
   */
  warmup(shape: DecodeShape, options?: WarmupOptions): Promise<void>;
  /**
   * Waits for the calls in flight, then releases the backend's resources; later calls reject
   * with an `Error` saying the decoder is disposed.
   */
  dispose(): Promise<void>;
}

class DecoderImpl implements Decoder {
  #backend: Backend;
  #tileOptions: TileOptions;
  #batchInvariant: boolean;
  #disposed = false;
  #inFlight = new Set<Promise<unknown>>();

  constructor(backend: Backend, tileOptions: TileOptions, batchInvariant: boolean) {
    this.#backend = backend;
    this.#tileOptions = tileOptions;
    this.#batchInvariant = batchInvariant;
  }

  /** Runs a backend call, tracked so that `dispose()` can wait for it. */
  async #track<T>(call: Promise<T>): Promise<T> {
    this.#inFlight.add(call);
    try {
      return await call;
    } finally {
      this.#inFlight.delete(call);
    }
  }

  get backend(): BackendName {
    return this.#backend.name;
  }

  get profile(): DeviceProfile {
    return this.#backend.profile;
  }

  stats(): BackendStats {
    return this.#backend.stats();
  }

  #live(): void {
    if (this.#disposed) {
      throw new Error("Decoder is disposed: create a new one with createDecoder()");
    }
  }

  plan(shape: DecodeShape, options: DecoderPlanOptions = {}): Plan {
    this.#live();
    return this.#planProblem(validateShape(shape), options.strategy);
  }

  /** Plans a validated shape (the decode paths validate their input once, then plan it). */
  #planProblem(problem: Problem, strategy: Strategy | undefined): Plan {
    const profile = this.#backend.profile;
    const grid = profile.gridByRows
      ? gridFor(profile, tileConfig(problem, this.#tileOptions).rowsPerBlock)
      : profile.grid;
    return planProblem(problem, {
      ...this.#tileOptions,
      strategy,
      grid,
      maxBindingBytes: this.#backend.profile.maxBindingBytes,
      batchInvariant: this.#batchInvariant,
    });
  }

  async decode(input: DecodeInput): Promise<DecodeOutput> {
    this.#live();
    const plan = this.#planProblem(validateInput(input), input.strategy);
    return await this.#track(this.#backend.run(plan, input, resolveScale(input)));
  }

  async timeKernels(input: DecodeInput, options: KernelTimingRequest = {}): Promise<KernelTiming> {
    this.#live();
    const problem = validateInput(input);
    const count = (name: string, value: number | undefined, fallback: number, min: number) => {
      const v = value ?? fallback;
      if (typeof v !== "number") throw new TypeError(`${name} must be a number: got ${typeof v}`);
      if (!Number.isInteger(v) || v < min || v > 1000) {
        throw new RangeError(`${name} must be an integer from ${min} to 1000: got ${v}`);
      }
      return v;
    };
    const runs = count("runs", options.runs, 20, 1);
    const warmup = count("warmup", options.warmup, 3, 0);
    const kvSets = count("kvSets", options.kvSets, 1, 1);
    const warmupMs = options.warmupMs ?? 400;
    if (typeof warmupMs !== "number") {
      throw new TypeError(`warmupMs must be a number: got ${typeof warmupMs}`);
    }
    if (!Number.isFinite(warmupMs) || warmupMs < 0 || warmupMs > 60_000) {
      throw new RangeError(`warmupMs must be from 0 to 60000: got ${warmupMs}`);
    }
    const plan = this.#planProblem(problem, input.strategy);
    const t = await this.#track(this.#backend.time(plan, input, resolveScale(input), {
      runs,
      warmup,
      kvSets,
      warmupMs,
    }));
    return { ...t, medianMs: median(t.samplesMs) };
  }

  // deno-lint-ignore require-await -- async so that bad input rejects like decode() does
  async warmup(shape: DecodeShape, options: WarmupOptions = {}): Promise<void> {
    this.#live();
    const problem = validateShape(shape);
    if (typeof options !== "object" || options === null) {
      throw new TypeError(
        `options must be an object: got ${options === null ? "null" : typeof options}`,
      );
    }
    const strategies = options.strategies ?? STRATEGIES;
    if (!Array.isArray(strategies)) {
      throw new TypeError(`strategies must be an array: got ${typeof strategies}`);
    }
    // Plan every strategy first: a bad one throws before anything compiles.
    const plans = strategies.map((strategy) => this.#planProblem(problem, strategy));
    for (const plan of plans) this.#backend.prepare?.(plan);
  }

  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    await Promise.allSettled([...this.#inFlight]);
    await this.#backend.dispose();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

async function openBackend(options: DecoderOptions): Promise<Backend> {
  const name = options.backend ?? "auto";
  const cpu = () => {
    const backend = createCpuBackend(options.grid, options.maxBindingBytes);
    notify(options.onProgress, {
      stage: "ready",
      message: `cpu backend ready (grid ${backend.profile.grid})`,
    });
    return backend;
  };
  if (name === "cpu") return cpu();
  if (name === "webgpu" || name === "dawn" || name === "auto") {
    const { createWebGPUBackend } = await import("./gpu/open_backend.ts");
    if (name !== "auto") return await createWebGPUBackend({ ...options, flavor: name });
    const gpu = await createWebGPUBackend({ ...options, flavor: "webgpu", requireHardware: true })
      .catch(() => undefined);
    return gpu ?? cpu();
  }
  if (typeof name !== "string") throw new TypeError(`backend must be a string: got ${typeof name}`);
  throw new RangeError(
    `backend must be one of "auto", "cpu", "webgpu", "dawn": got ${JSON.stringify(name)}`,
  );
}

/**
 * Creates a decoder on the requested backend.
 *
 * @example
 * ```ts
 * import { createDecoder } from "@lean/attention";
 * const decoder = await createDecoder({ backend: "cpu" });
 * const { out, lse } = await decoder.decode({
 *   q: new Float32Array(2 * 64).fill(0.1),
 *   k: new Float32Array(10 * 64).fill(0.2),
 *   v: new Float32Array(10 * 64).fill(0.3),
 *   seqLens: [10], numHeads: 2, numKVHeads: 1, headDim: 64,
 * });
 * console.log(out.length, lse.length); // 128 2
 * await decoder.dispose();
 * ```
 */
export async function createDecoder(options: DecoderOptions = {}): Promise<Decoder> {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `options must be an object: got ${options === null ? "null" : typeof options}`,
    );
  }
  if (options.grid !== undefined && typeof options.grid !== "number") {
    throw new TypeError(`grid must be a number: got ${typeof options.grid}`);
  }
  if (options.grid !== undefined && (!Number.isInteger(options.grid) || options.grid < 1)) {
    throw new RangeError(`grid must be a positive integer: got ${options.grid}`);
  }
  const tileOptions: TileOptions = {
    tileTokens: options.tileTokens,
    workgroupSize: options.workgroupSize,
  };
  // Reject bad tile and plan options now rather than on the first decode.
  tileConfig({ headDim: 8, rowsPerGroup: 1, kvDtype: "f32" }, tileOptions);
  validateMaxBindingBytes(options.maxBindingBytes);
  if (options.onProgress !== undefined && typeof options.onProgress !== "function") {
    throw new TypeError(`onProgress must be a function: got ${typeof options.onProgress}`);
  }
  const batchInvariant = validateFlag("batchInvariant", options.batchInvariant);
  return new DecoderImpl(await openBackend(options), tileOptions, batchInvariant);
}
