/**
 * The decoder's public types: its options, the `Decoder` interface and the timing, planning and
 * warm-up options of its calls.
 *
 * @module
 */

import type { BackendName, BackendStats, DeviceProfile } from "./plan/backend.ts";
import type { Plan } from "./plan/plan.ts";
import type { DecodeInput, DecodeOutput, DecodeShape, Strategy } from "./core/problem.ts";
import type { ProgressListener } from "./core/progress.ts";
import type { TileOptions } from "./plan/tiles.ts";
import type { KernelTuning } from "./gpu/kernel_tuning.ts";

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
   * anywhere from 0.53 to 1.84 ms. A warm-up holds at most 250,000 runs (an H200 ran a
   * 940-token decode in 8.8 us: 400 ms of it took about 75,000 runs and 2-6 s of wall time, most
   * of it encoding the runs); with runs too short to fill the time in so many, it is shorter. The
   * CPU backend ignores it.
   */
  warmupMs?: number;
  /**
   * Also time runs back to back (default 0: not): after the timed runs, `runs` samples in the
   * same submission, each over as many runs as fill about this many milliseconds (at most 256),
   * reported per run in {@linkcode KernelTiming.stream}. A run timed alone also pays for the GPU
   * starting its first dispatch and draining its last; back-to-back runs, like a model's layers
   * or the CUDA graphs other libraries are timed with, overlap or hide that. From 0 to 1000.
   */
  streamMs?: number;
}

/**
 * Runs timed back to back (see {@linkcode KernelTimingRequest.streamMs}).
 *
 * @example
 * ```ts
 * import { createDecoder, type StreamTiming } from "@lean/attention";
 * const decoder = await createDecoder({ backend: "cpu" });
 * const timing = await decoder.timeKernels({
 *   q: new Float32Array(8), k: new Float32Array(24), v: new Float32Array(24),
 *   seqLens: [3], numHeads: 1, numKVHeads: 1, headDim: 8,
 * }, { runs: 3, warmup: 0, streamMs: 1 });
 * const stream: StreamTiming = timing.stream!;
 * console.log(stream.samplesMs.length, stream.runsPerSample >= 1); // 3 true
 * await decoder.dispose();
 * ```
 */
export interface StreamTiming {
  /** Milliseconds per run of each sample (its runs' time over their count). */
  samplesMs: number[];
  /** Median of the samples. */
  medianMs: number;
  /** Runs back to back in each sample. */
  runsPerSample: number;
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
  /** Runs timed back to back, when `streamMs` asked for them. */
  stream?: StreamTiming;
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
  /**
   * Plans a batch shape for this decoder's device without running it. An 8-bit K/V class's lean
   * grid is calibrated by the first `decode`, `warmup` or `timeKernels` of that class on a
   * hardware GPU; plans made before then use its f16 class's grid.
   */
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
   * to do on the CPU. 8-bit K/V with per-token scales compile kernels of their own: pass the
   * decode input itself (or the shape with its `kScale` / `vScale`) to warm those. An 8-bit
   * class's lean grid is calibrated here first, where the device profile has none yet.
   */
  warmup(shape: DecodeShape, options?: WarmupOptions): Promise<void>;
  /**
   * Waits for the calls in flight, then releases the backend's resources; later calls reject
   * with an `Error` saying the decoder is disposed. A GPU decoder that opened its own device
   * destroys it and resolves once the runtime reports the device lost (a few milliseconds).
   */
  dispose(): Promise<void>;
}
