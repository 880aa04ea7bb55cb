/**
 * Lean grids of 8-bit kernel classes, calibrated on first use. The backend calibrates one grid
 * per kernel class (rows per block, head dim) with its f16 kernel when it opens; an 8-bit kernel
 * of the same class may keep more registers, so fewer of its workgroups run at once, and a grid
 * sized for the f16 kernel then runs in a second, partial wave. On the H200 the 1-row d128 E4M3
 * kernel (236 registers against f16's 96) took 0.3228 ms at the f16 class's grid (502, 480 after
 * planning) and 0.2981 ms at 256, one wave of two workgroups per multiprocessor (session 38).
 * Calibrating every class for every dtype when the backend opens would triple its start; so an
 * 8-bit class is calibrated the first time a decode, warm-up or timing needs it, with its own
 * kernel, and its grid joins the profile's `gridByClass` under the class key with the dtype
 * (`"r1 d128 fp8e4m3"`). Its grid is the size before the largest step in its probe's time up to
 * the f16 class's grid (a new wave), never below the size where the probe takes 1.5x of one
 * workgroup's time, the f16 classes' rule, which alone would stop kernels of more arithmetic per
 * byte early (E5M2 at 375 where it runs best at 502; see `gridFromSweep` in device_profile.ts).
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { Problem } from "../core/problem.ts";
import { notify, type ProgressListener } from "../core/progress.ts";
import { gridClassKey, kernelTableKey } from "../kernels/kernel_table.ts";
import { type DeviceProfile, gridFor } from "../plan/backend.ts";
import { tileConfig, type TileOptions } from "../plan/tiles.ts";
import { BufferPool } from "./buffer_pool.ts";
import { calibrationProbe, HEAD_DIM_CLASSES } from "./calibration_probe.ts";
import { deviceProfile } from "./device_profile.ts";
import type { KernelCaps } from "./gpu_runtime.ts";
import { kernelSpec } from "./kernel_choice.ts";
import type { KernelTuning } from "./kernel_tuning.ts";
import type { PipelineCache } from "./pipeline_cache.ts";

/** What calibrating a class needs: the backend's device, pipelines, capabilities and tuning. */
export interface KVClassContext {
  readonly device: GPUDevice;
  readonly description: string;
  readonly pipelines: PipelineCache;
  readonly caps: KernelCaps;
  readonly tuning: KernelTuning;
  readonly tileOptions: TileOptions;
  /** A software adapter (tests): short probes, at most 64 workgroups. */
  readonly software?: boolean;
  /** Hears each calibration (stage `calibrate`). */
  readonly onProgress?: ProgressListener;
}

/**
 * The class key of a problem's kernels when it is an 8-bit class the profile has no grid for
 * yet (not the tiled kernel's, not MLA's), else undefined.
 *
 * @example
 * ```ts
 * import { missingKVClass } from "./kv_class_grids.ts";
 * const profile = { name: "gpu", grid: 502, source: "calibrated" as const, gridByClass: { "r1 d128": 502 } };
 * const problem = { headDim: 128, headDimV: 128, kvDtype: "fp8e4m3" as const, rowsPerGroup: 1 };
 * console.log(missingKVClass(profile, problem, {})); // r1 d128 fp8e4m3
 * ```
 */
export function missingKVClass(
  profile: DeviceProfile,
  problem: Pick<Problem, "headDim" | "headDimV" | "kvDtype" | "rowsPerGroup">,
  tileOptions: TileOptions,
): string | undefined {
  return missingClass(profile, problem, tileOptions)?.key;
}

/** {@linkcode missingKVClass}'s class: its key and rows per block. */
function missingClass(
  profile: DeviceProfile,
  problem: Pick<Problem, "headDim" | "headDimV" | "kvDtype" | "rowsPerGroup">,
  tileOptions: TileOptions,
): { key: string; rows: number } | undefined {
  const { headDim, kvDtype } = problem;
  if (profile.source !== "calibrated" || profile.gridByClass === undefined) return undefined;
  if (KV_DTYPE_INFO[kvDtype].bytes !== 1 || problem.headDimV !== headDim) return undefined;
  const rows = tileConfig(problem, {
    ...tileOptions,
    matrixBlocks: profile.matrixBlocks ?? false,
  }).rowsPerBlock;
  const key = gridClassKey(headDim, rows, kvDtype);
  if (key === gridClassKey(headDim, rows)) return undefined;
  return profile.gridByClass[key] === undefined ? { key, rows } : undefined;
}

/**
 * Calibrates a problem's 8-bit class: `undefined` at once where none is needed, else its key and
 * grid (`undefined` where the calibration fails).
 */
export type KVClassCalibrator = (
  profile: DeviceProfile,
  problem: Problem,
) => Promise<{ readonly key: string; readonly grid: number } | undefined> | undefined;

/**
 * A calibrator of 8-bit classes for one backend: given a problem whose class has no grid yet
 * (see {@linkcode missingKVClass}), that class's key and grid, calibrated with the class's 8-bit
 * kernel (at its head-dim class's head dim, per-tensor scales); concurrent calls for one class
 * share one calibration. Undefined at once where none is needed.
 */
export function kvClassCalibrator(ctx: KVClassContext): KVClassCalibrator {
  const pending = new Map<string, Promise<number | undefined>>();
  const calibrate = async (
    problem: Problem,
    rows: number,
    classGrid: number,
  ): Promise<number | undefined> => {
    const { kvDtype } = problem;
    const headDim =
      HEAD_DIM_CLASSES.find((d) =>
        kernelTableKey(d, rows) === kernelTableKey(problem.headDim, rows)
      ) ?? problem.headDim;
    const pool = new BufferPool(ctx.device);
    try {
      const { probe, key } = calibrationProbe(
        ctx.device,
        pool,
        ctx.pipelines,
        ctx.software ?? false,
        ctx.tileOptions,
        (plan) => kernelSpec(plan, ctx.caps, ctx.tuning),
        rows,
        headDim,
        headDim,
        kvDtype,
      );
      // The GPU may have idled (a low clock): warm it as the backend's first class does, sweep
      // twice (the least of each size), and look for the wave's step up to the f16 class's grid.
      const software = ctx.software ?? false;
      const p = await deviceProfile(ctx.device, ctx.description, software, probe, key, {
        warmupMs: software ? 0 : 300,
        sweeps: 2,
        stepWithin: classGrid,
      });
      return p.source === "calibrated" ? p.grid : undefined;
    } catch {
      return undefined;
    } finally {
      pool.destroy();
    }
  };
  return (profile, problem) => {
    const missing = missingClass(profile, problem, ctx.tileOptions);
    if (missing === undefined) return undefined;
    const { key, rows } = missing;
    let grid = pending.get(key);
    if (grid === undefined) {
      notify(ctx.onProgress, {
        stage: "calibrate",
        message: `calibrating the lean grid of the ${key} class`,
      });
      grid = calibrate(problem, rows, gridFor(profile, rows, problem.headDim));
      pending.set(key, grid);
    }
    return grid.then((value) => value === undefined ? undefined : { key, grid: value });
  };
}
