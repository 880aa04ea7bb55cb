/**
 * The public entry point: `createDecoder` picks a backend, and the decoder validates, plans and
 * runs decode calls on it.
 *
 * @module
 */

import { copyInputArrays } from "./core/input_copy.ts";
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
import { notify } from "./core/progress.ts";
import { tileConfig, type TileOptions } from "./plan/tiles.ts";

import type {
  Decoder,
  DecoderOptions,
  DecoderPlanOptions,
  KernelTiming,
  KernelTimingRequest,
  WarmupOptions,
} from "./decoder_types.ts";

/**
 * The decoder over a backend, as `createDecoder` makes it (exported for tests that drive it with
 * a backend of their own).
 *
 * @example
 * ```ts
 * import { DecoderImpl } from "./decoder.ts";
 * import { createCpuBackend } from "./cpu/cpu_backend.ts";
 * const decoder = new DecoderImpl(createCpuBackend(4), {}, false);
 * console.log(decoder.profile.grid); // 4
 * await decoder.dispose();
 * ```
 */
export class DecoderImpl implements Decoder {
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

  /**
   * Runs `body` on `input` once the problem's kernel class has its lean grid (see
   * `Backend.calibrate`): at once where the backend has nothing to calibrate, else after the
   * calibration on a copy of the input's arrays taken now, since a call takes its inputs at call
   * time; tracked as one call, so `dispose()` waits for the calibration and the body alike.
   */
  #withGrid<T>(
    problem: Problem,
    input: DecodeInput,
    body: (input: DecodeInput) => Promise<T>,
  ): Promise<T> {
    const calibrating = this.#backend.calibrate?.(problem);
    if (calibrating === undefined) return body(input);
    const held = copyInputArrays(input);
    return this.#track(calibrating.then(() => body(held)));
  }

  /** Plans a validated shape (the decode paths validate their input once, then plan it). */
  #planProblem(problem: Problem, strategy: Strategy | undefined): Plan {
    const profile = this.#backend.profile;
    const tileOptions = {
      ...this.#tileOptions,
      matrixBlocks: profile.matrixBlocks ?? false,
      matrixUnits: profile.matrixUnits ?? false,
    };
    const tiles = tileConfig(problem, tileOptions);
    const grid = profile.gridByRows
      ? gridFor(
        profile,
        tiles.rowsPerBlock,
        problem.headDim,
        problem.kvDtype,
        tiles.matrixUnits,
      )
      : profile.grid;
    return planProblem(problem, {
      ...tileOptions,
      strategy,
      grid,
      maxBindingBytes: this.#backend.profile.maxBindingBytes,
      batchInvariant: this.#batchInvariant,
    });
  }

  async decode(input: DecodeInput): Promise<DecodeOutput> {
    this.#live();
    const problem = validateInput(input);
    return await this.#withGrid(problem, input, (held) => {
      const plan = this.#planProblem(problem, held.strategy);
      return this.#track(this.#backend.run(plan, held, resolveScale(held)));
    });
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
    const streamMs = options.streamMs ?? 0;
    if (typeof streamMs !== "number") {
      throw new TypeError(`streamMs must be a number: got ${typeof streamMs}`);
    }
    if (!Number.isFinite(streamMs) || streamMs < 0 || streamMs > 1000) {
      throw new RangeError(`streamMs must be from 0 to 1000: got ${streamMs}`);
    }
    const t = await this.#withGrid(problem, input, (held) => {
      const plan = this.#planProblem(problem, held.strategy);
      return this.#track(this.#backend.time(plan, held, resolveScale(held), {
        runs,
        warmup,
        kvSets,
        warmupMs,
        streamMs,
      }));
    });
    const { streamSamplesMs, runsPerStreamPass, ...alone } = t;
    return {
      ...alone,
      medianMs: median(t.samplesMs),
      ...(streamSamplesMs === undefined ? {} : {
        stream: {
          samplesMs: streamSamplesMs,
          medianMs: median(streamSamplesMs),
          runsPerSample: runsPerStreamPass ?? 1,
        },
      }),
    };
  }

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
    // Plan every strategy first: a bad one throws before anything compiles (or calibrates); plan
    // again where an 8-bit class's calibration gave it a grid of its own.
    const profile = this.#backend.profile;
    let plans = strategies.map((strategy) => this.#planProblem(problem, strategy));
    const calibrating = this.#backend.calibrate?.(problem);
    if (calibrating !== undefined) await this.#track(calibrating);
    if (this.#backend.profile !== profile) {
      plans = strategies.map((strategy) => this.#planProblem(problem, strategy));
    }
    // A decode input given as the shape brings its 8-bit scales: per-token scales compile
    // kernels of their own, which a shape alone would not warm.
    const { kScale, vScale } = shape as Partial<DecodeInput>;
    for (const plan of plans) this.#backend.prepare?.(plan, { kScale, vScale });
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
    ...(options.kernel?.matrixRows === undefined
      ? {}
      : { matrixUnitRows: options.kernel.matrixRows }),
    ...(options.kernel?.matrixMinRows === undefined
      ? {}
      : { matrixUnitMinRows: options.kernel.matrixMinRows }),
    ...(options.kernel?.padRows === undefined ? {} : { padRows: options.kernel.padRows }),
  };
  // Reject bad tile and plan options now rather than on the first decode.
  tileConfig({ headDim: 8, rowsPerGroup: 1, kvDtype: "f32" }, tileOptions);
  tileConfig({ headDim: 16, rowsPerGroup: 16, kvDtype: "f16" }, {
    ...tileOptions,
    matrixUnits: true,
  });
  validateMaxBindingBytes(options.maxBindingBytes);
  if (options.onProgress !== undefined && typeof options.onProgress !== "function") {
    throw new TypeError(`onProgress must be a function: got ${typeof options.onProgress}`);
  }
  const batchInvariant = validateFlag("batchInvariant", options.batchInvariant);
  return new DecoderImpl(await openBackend(options), tileOptions, batchInvariant);
}
