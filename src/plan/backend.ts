/**
 * What every backend provides: a device profile for the planner and a way to execute a plan.
 *
 * @module
 */

import type { Plan } from "./plan.ts";
import type { DecodeInput, DecodeOutput, KVDtype, Problem } from "../core/problem.ts";
import { gridClassKey } from "../kernels/kernel_table.ts";

/**
 * Names of the backends; `"auto"` picks a hardware GPU when there is one, else the CPU.
 *
 * @example
 * ```ts
 * import type { BackendName } from "@lean/attention";
 * const name: BackendName = "dawn";
 * ```
 */
export type BackendName = "cpu" | "webgpu" | "dawn";

/**
 * What the planner needs to know about a device.
 *
 * @example
 * ```ts
 * import { createDecoder } from "@lean/attention";
 * const decoder = await createDecoder({ backend: "cpu" });
 * console.log(decoder.profile); // { name: "cpu (TypeScript, single thread)", grid: 16, source: "builtin" }
 * await decoder.dispose();
 * ```
 */
export interface DeviceProfile {
  /** Adapter or device description. */
  readonly name: string;
  /** Workgroups the device runs at once: the lean grid. */
  readonly grid: number;
  /** Where `grid` came from. */
  readonly source: "builtin" | "table" | "calibrated" | "option";
  /**
   * Lean grids calibrated per rows-per-block class (1, 2, 4, 8): kernels that hold more query
   * rows keep more registers, so fewer of them run at once. Absent: `grid` for every kernel.
   */
  readonly gridByRows?: Readonly<Record<number, number>>;
  /**
   * Lean grids calibrated per kernel class, keyed like the kernel table (`"r4 d64"`: rows per
   * block and head-dim class): the head dim changes a kernel's registers as much as its rows.
   * 8-bit classes (`"r1 d128 fp8e4m3"`) join on first use (see `Backend.calibrate`); without
   * theirs, their class's grid. Absent, or without the class: `gridByRows`.
   */
  readonly gridByClass?: Readonly<Record<string, number>>;
  /**
   * Largest K or V binding in bytes; a larger KV cache is split into windows. Absent: no limit.
   */
  readonly maxBindingBytes?: number;
  /**
   * GPU backends: whether the adapter is a software rasteriser (lavapipe, SwiftShader, WARP),
   * whose timings say nothing about GPUs. Absent on the CPU backend.
   */
  readonly software?: boolean;
  /**
   * GPU backends whose device runs the tiled kernel: plans cut blocks of up to 64 query rows for
   * head dims above 256 (`TileOptions.matrixBlocks`). Absent: false.
   */
  readonly matrixBlocks?: boolean;
  /**
   * GPU backends that run the matrix-unit kernel (`kernel: { matrixMath: true }` on a device with
   * Dawn's f16 subgroup matrices): plans cut blocks of 16-64 query rows for f16 or 8-bit K/V of head
   * dims up to 128, and of 16 rows up to 256 and over MLA's 576/512 (`TileOptions.matrixUnits`).
   * Absent: false.
   */
  readonly matrixUnits?: boolean;
}

/**
 * The lean grid of a profile for kernels holding `rowsPerBlock` query rows (of `headDim`, when
 * given and its class calibrated: `gridByClass`, the class of `kvDtype` first where it has its
 * own; `matrixUnits`: blocks cut for the matrix-unit kernel, `TileConfig.matrixUnits`): the grid
 * of the smallest calibrated class at least that large, else `profile.grid`.
 *
 * @example
 * ```ts
 * import { gridFor } from "@lean/attention/plan";
 * const profile = { name: "gpu", grid: 1000, source: "calibrated" as const, gridByRows: { 1: 1000, 2: 800, 4: 400, 8: 250 } };
 * console.log(gridFor(profile, 3)); // 400
 * const byClass = { ...profile, gridByClass: { "r1 d128": 502, "r1 d128 fp8e4m3": 264 } };
 * console.log(gridFor(byClass, 1, 128, "fp8e4m3"), gridFor(byClass, 1, 128, "int8")); // 264 502
 * ```
 */
export function gridFor(
  profile: DeviceProfile,
  rowsPerBlock: number,
  headDim?: number,
  kvDtype?: KVDtype,
  matrixUnits = false,
): number {
  if (headDim !== undefined && profile.gridByClass) {
    const own = profile.gridByClass[gridClassKey(headDim, rowsPerBlock, kvDtype, matrixUnits)];
    if (own !== undefined) return own;
    const byClass =
      profile.gridByClass[gridClassKey(headDim, rowsPerBlock, undefined, matrixUnits)];
    if (byClass !== undefined) return byClass;
  }
  const classes = profile.gridByRows;
  if (!classes) return profile.grid;
  const keys = Object.keys(classes).map(Number).sort((a, b) => a - b);
  const key = keys.find((k) => k >= rowsPerBlock) ?? keys[keys.length - 1];
  return classes[key] ?? profile.grid;
}

/**
 * Counters that show whether steady-state calls allocate.
 *
 * @example
 * ```ts
 * import { createDecoder } from "@lean/attention";
 * const decoder = await createDecoder({ backend: "cpu" });
 * console.log(decoder.stats().buffersCreated); // 0
 * await decoder.dispose();
 * ```
 */
export interface BackendStats {
  /** GPU buffers created since the backend was made. */
  readonly buffersCreated: number;
  /** GPU buffers alive now. */
  readonly buffersLive: number;
  /** Compute pipelines compiled since the backend was made. */
  readonly pipelinesCreated: number;
}

/**
 * How kernels are timed: warm-up passes, timed passes, and K/V copies rotated between them.
 *
 * @example
 * ```ts
 * import type { KernelTimingOptions } from "@lean/attention";
 * const options: KernelTimingOptions = { runs: 20, warmup: 3, kvSets: 1, warmupMs: 400 };
 * ```
 */
export interface KernelTimingOptions {
  /** Timed passes. */
  readonly runs: number;
  /** Untimed passes first. */
  readonly warmup: number;
  /** Copies of K and V rotated between passes. */
  readonly kvSets: number;
  /**
   * GPU backends: milliseconds of back-to-back passes of the same work right before the timed
   * ones, in the same submission (an idle GPU's clock is low; see `src/gpu/gpu_timing.ts`).
   */
  readonly warmupMs?: number;
  /**
   * Also time runs back to back: `runs` more samples, each over as many runs as fill about
   * this many milliseconds, at most 256 (default 0: not).
   */
  readonly streamMs?: number;
}

/** Runs in one back-to-back timing sample at most (as many as PyTorch's anchor puts in a graph). */
export const MAX_STREAM_RUNS = 256;

/**
 * What a backend's `time` measured.
 *
 * @example
 * ```ts
 * import type { BackendTiming } from "@lean/attention";
 * const t: BackendTiming = { samplesMs: [0.5, 0.52], warmMs: 412, lastWarmMs: 0.51 };
 * console.log(t.samplesMs.length); // 2
 * ```
 */
export interface BackendTiming {
  /** Milliseconds of each timed run. */
  readonly samplesMs: number[];
  /** GPU milliseconds of warm-up in the timed submission (0 on the CPU). */
  readonly warmMs: number;
  /** Milliseconds per run over the warm-up's last pass (NaN when there was none). */
  readonly lastWarmMs: number;
  /** With `streamMs`: milliseconds per run of each back-to-back sample. */
  readonly streamSamplesMs?: number[];
  /** With `streamMs`: runs in each back-to-back sample. */
  readonly runsPerStreamPass?: number;
}

/**
 * A backend executes plans; created by `createDecoder`.
 *
 * @example
 * ```ts
 * import { createDecoder } from "@lean/attention";
 * const decoder = await createDecoder({ backend: "cpu" }); // wraps a Backend
 * console.log(decoder.backend); // cpu
 * await decoder.dispose();
 * ```
 */
export interface Backend {
  /** Which backend this is. */
  readonly name: BackendName;
  /** The device profile the planner uses for this backend. */
  readonly profile: DeviceProfile;
  /** Executes a plan on validated input. */
  run(plan: Plan, input: DecodeInput, scale: number): Promise<DecodeOutput>;
  /**
   * Calibrates the lean grid of a problem's kernel class for its KV dtype where the profile has
   * none yet (8-bit K/V on hardware GPUs with a calibrated profile), so that plans made after it
   * resolves are cut for it. Returns `undefined` at once where there is nothing to calibrate, so
   * that calls needing none stay synchronous up to their run; absent on the CPU.
   */
  calibrate?(problem: Problem): Promise<void> | undefined;
  /**
   * Compiles what a plan will need ahead of its first run (GPU backends; absent on the CPU).
   * 8-bit K/V: `scales` (the inputs' `kScale` / `vScale`) pick per-tensor or per-token kernels.
   */
  prepare?(plan: Plan, scales?: Pick<DecodeInput, "kScale" | "vScale">): void;
  /**
   * Times the execution of a plan: GPU backends with `timestamp-query` around the compute pass
   * (no upload, no readback), the CPU with the wall clock.
   */
  time(
    plan: Plan,
    input: DecodeInput,
    scale: number,
    options: KernelTimingOptions,
  ): Promise<BackendTiming>;
  /** Allocation counters (all zero for the CPU). */
  stats(): BackendStats;
  /** Releases everything the backend created. */
  dispose(): Promise<void>;
}
