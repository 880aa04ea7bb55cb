/**
 * Opening the WebGPU backend: the adapter (the runtime's, a given `GPU`, Dawn) or a caller's
 * device, the kernel capabilities, the pipeline cache and the device profile (the lean grid,
 * calibrated per kernel class on hardware adapters; 8-bit classes on first use).
 *
 * @module
 */

import type { Backend, DeviceProfile } from "../plan/backend.ts";
import { BufferPool } from "./buffer_pool.ts";
import { deviceProfile, tableProfile } from "./device_profile.ts";
import { openGpuContext } from "./gpu_context.ts";
import { notify, type ProgressListener } from "../core/progress.ts";
import type { TileOptions } from "../plan/tiles.ts";
import { tiledFitsDevice } from "../kernels/tiled_layout.ts";
import { MATRIX_MAX_HEAD_DIM } from "../kernels/matrix_layout.ts";
import { kernelSpec, matrixUnitsOn } from "./kernel_choice.ts";
import type { KernelTuning } from "./kernel_tuning.ts";
import { WebGPUBackend } from "./webgpu_backend.ts";
import { calibrationProbe, HEAD_DIM_CLASSES, ROW_CLASSES } from "./calibration_probe.ts";
import { kvClassCalibrator } from "./kv_class_grids.ts";

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
 * Creates a WebGPU backend: finds the adapter, requests a device with the adapter's limits,
 * and profiles it (grid calibration, cached per adapter).
 */
export async function createWebGPUBackend(options: WebGPUBackendOptions): Promise<Backend> {
  const tileOptions: TileOptions = {
    tileTokens: options.tileTokens,
    workgroupSize: options.workgroupSize,
  };
  const onProgress = options.onProgress;
  const ctx = await openGpuContext(options);
  const { device, caps, pipelines } = ctx;
  const summary = ctx.adapter;
  const tuning = options.kernel ?? {};
  const matrixUnits = tuning.matrixMath === true && matrixUnitsOn(caps);
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
      // Kernels holding more query rows, or longer rows, keep more registers, so fewer run at
      // once: one grid per kernel-table class (rows per block x head-dim class). The d128
      // grids are also the per-rows grids (`gridByRows`) for other head dims.
      const grids: Record<number, number> = {};
      const byClass: Record<string, number> = {};
      let source: DeviceProfile["source"] = "calibrated";
      // (`matrix`: a class of the matrix kernel's blocks.)
      const classes: { headDim: number; rows: number; headDimV?: number; matrix?: boolean }[] =
        HEAD_DIM_CLASSES.flatMap((headDim) => ROW_CLASSES.map((rows) => ({ headDim, rows })));
      // MLA's 64-row matrix blocks (the tiled kernel: one workgroup of 256 threads per block).
      // With the matrix kernel on, f16 MLA takes its blocks, but bf16 and 8-bit MLA keep the
      // tiled kernel's, so its class is calibrated either way.
      const tiled = tuning.tiled !== false &&
        tiledFitsDevice(device.limits.maxComputeWorkgroupStorageSize);
      if (tiled) classes.push({ headDim: 576, headDimV: 512, rows: 64 });
      // The matrix kernel's blocks, where it runs (head dims above 128: blocks of 16 rows alone).
      if (matrixUnits) {
        classes.push(
          ...[16, 32, 64].map((rows) => ({ headDim: 128, rows, matrix: true })),
          { headDim: MATRIX_MAX_HEAD_DIM, rows: 16, matrix: true },
          { headDim: 576, headDimV: 512, rows: 16, matrix: true },
        );
      }
      // When the last probe ended (the GPU idles from there through the next class's compile).
      let probedAt = performance.now();
      for (const [i, { headDim, rows, headDimV, matrix }] of classes.entries()) {
        const matrixClass = matrix === true;
        notify(onProgress, {
          stage: "calibrate",
          message: `calibrating the lean grid (${rows} row${rows > 1 ? "s" : ""} per block, ` +
            `head dim ${headDim}, ${i + 1} of ${classes.length})`,
          done: i,
          total: classes.length,
        });
        // A class whose kernel cannot be built with the caller's tuning keeps the per-rows grid.
        let made: ReturnType<typeof calibrationProbe>;
        try {
          made = calibrationProbe(
            device,
            calibrationPool,
            pipelines,
            false,
            { ...tileOptions, matrixBlocks: tiled, matrixUnits: matrixClass },
            (plan) => kernelSpec(plan, caps, tuning),
            rows,
            headDim,
            headDimV,
          );
        } catch (e) {
          if (headDim === 128) throw e;
          continue;
        }
        const { probe, key, classKey } = made;
        // The first class warms the GPU (its clock idles low); the others follow right after,
        // but a class of many rows warms as long as the GPU idled during its compile (up to 300
        // ms): after 1.5 s idle and 50 ms of warm-up the MLA matrix class's one workgroup took
        // 2.3-4.3x its busy time, and in one sweep of four its times fell midway as the clock
        // rose (the grid it took was right, but a clock rising early in the sweep makes every
        // size look cheap: that class took 1010 workgroups once, session 57); with 300 ms all
        // four took the busy time (bench/calibration_sweep.ts, session 58).
        const idleMs = performance.now() - probedAt;
        const warmupMs = i === 0 ? 300 : rows > 8 ? Math.min(300, Math.max(50, idleMs)) : 50;
        // One tiled workgroup per multiprocessor or so: 1024 workgroups are probe enough. Its
        // arithmetic fills a multiprocessor, so a second one there can only share it: this
        // class counts a size as one wave only within 1.25x of one workgroup's time (1.5x for
        // the others), and sweeps its sizes twice, each taking its least time (its compile, the
        // longest, leaves the GPU idle before a 50 ms warm-up). At 1.5x Dawn's probe gave 502,
        // 131, 1010, 264 and 131 in five runs, and MLA on Dawn ran faster at 131 than at 264
        // (b1 32k 0.429 against 0.517 ms); at 1.25x it gave 131, then 502 (session 26); with
        // the smallest sizes timed again after one sweep, 87, 131, 131 (session 27).
        // The matrix kernel's classes fit two workgroups per multiprocessor (about 23 KB of
        // workgroup memory each; NVIDIA's driver fits about 56 KB per multiprocessor): two take
        // 1.30-1.42x one's time on the H200 and a second wave 2.24x or more, so they count a size
        // as one wave within 1.6x. At 1.25x they took 175-249 workgroups, and ran the many-row
        // cases 1.1-1.3x slower than at 264 (session 50, bench/results/h200_session50/fw3/).
        const tiledClass = rows > 8;
        const p = await deviceProfile(
          device,
          summary.description,
          false,
          probe,
          key,
          matrixClass
            ? { warmupMs, maxSize: 1024, tolerance: 1.6, sweeps: 2 }
            : tiledClass
            ? { warmupMs, maxSize: 1024, tolerance: 1.25, sweeps: 2 }
            : { warmupMs },
        );
        probedAt = performance.now();
        // (The matrix classes' grids stay out of the per-rows grids of the decode kernel.)
        if (headDim === 128 && !matrixClass) grids[rows] = p.grid;
        byClass[classKey] ??= p.grid;
        if (p.source !== "calibrated") source = p.source;
      }
      profile = {
        name: summary.description,
        grid: grids[1],
        source,
        gridByRows: grids,
        gridByClass: byClass,
      };
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
  profile = {
    ...profile,
    maxBindingBytes,
    software: summary.software,
    matrixBlocks: tuning.tiled !== false &&
      tiledFitsDevice(device.limits.maxComputeWorkgroupStorageSize),
    ...(matrixUnits ? { matrixUnits } : {}),
  };
  notify(onProgress, {
    stage: "ready",
    message: `${options.flavor} backend ready on ${summary.description} (grid ${profile.grid}, ` +
      `${profile.source})`,
  });
  // 8-bit classes calibrate on first use, with their own kernels (kv_class_grids.ts).
  const calibrator = kvClassCalibrator({
    device,
    description: summary.description,
    pipelines,
    caps,
    tuning,
    tileOptions,
    software: summary.software,
    onProgress,
  });
  return new WebGPUBackend(
    options.flavor,
    ctx,
    profile,
    options.poison ?? false,
    tuning,
    calibrator,
  );
}
