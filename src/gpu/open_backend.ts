/**
 * Opening the WebGPU backend: the adapter (the runtime's, a given `GPU`, Dawn) or a caller's
 * device, the kernel capabilities, the pipeline cache and the device profile (the lean grid,
 * calibrated per rows-per-block class on hardware adapters).
 *
 * @module
 */

import type { KernelSpec } from "../kernels/kernel_spec.ts";
import { specKey } from "../kernels/spec_key.ts";
import { kernelParams } from "../kernels/kernel_params.ts";
import { gridClassKey } from "../kernels/kernel_table.ts";
import type { Backend, DeviceProfile } from "../plan/backend.ts";
import { BufferPool } from "./buffer_pool.ts";
import type { PipelineCache } from "./pipeline_cache.ts";
import { deviceProfile, tableProfile } from "./device_profile.ts";
import { BufferUsage } from "./gpu_runtime.ts";
import { openGpuContext } from "./gpu_context.ts";
import { notify, type ProgressListener } from "../core/progress.ts";
import { DIRECT, PIECE, PIECE_STRIDE } from "../plan/schedule.ts";
import { BINDING, type BindingName, namedEntries } from "../kernels/abi.ts";
import { tileConfig, type TileOptions } from "../plan/tiles.ts";
import { tiledFitsDevice } from "../kernels/tiled_layout.ts";
import { kernelSpec, type KernelTuning } from "./kernel_choice.ts";
import { WebGPUBackend } from "./webgpu_backend.ts";

const STORAGE_IN = BufferUsage.STORAGE | BufferUsage.COPY_DST;
const STORAGE_OUT = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;
const UNIFORM = BufferUsage.UNIFORM | BufferUsage.COPY_DST;

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

/** Rows-per-block classes the grid is calibrated for (see `gridFor`). */
const ROW_CLASSES = [1, 2, 4, 8];
/** Head dims of the kernel table's head-dim classes (up to 64, up to 128, beyond). */
const HEAD_DIM_CLASSES = [128, 64, 256];

/** Builds the calibration probe: `n` workgroups decoding identical pieces with the default spec. */
function calibrationProbe(
  device: GPUDevice,
  pool: BufferPool,
  pipelines: PipelineCache,
  software: boolean,
  tileOptions: TileOptions,
  specOf: (plan: Parameters<typeof kernelSpec>[0]) => KernelSpec,
  rows = 4,
  headDim = 128,
  headDimV = headDim,
): { probe: (pass: GPUComputePassEncoder, n: number) => void; key: string; classKey: string } {
  const tiles = tileConfig({ headDim, headDimV, rowsPerGroup: rows, kvDtype: "f16" }, tileOptions);
  const spec = specOf({ problem: { headDim, headDimV, kvDtype: "f16" }, tiles });
  // A tiled workgroup (64 rows of MLA) does about 40x a decode workgroup's arithmetic per token,
  // and runs about one per multiprocessor: 512 tokens (about 0.9 ms on the H200) up to 1024
  // workgroups. With 256 tokens Dawn's probe times stayed flat up to 1010 workgroups (its
  // dispatch cost hid a workgroup's), and lean MLA on Dawn ran at half speed (session 25).
  const tokens = software ? 64 : tiles.rowsPerBlock > 8 ? 512 : 1024;
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
    sched[f + PIECE.qStart] = 0;
    sched[f + PIECE.qLen] = 1;
  }
  const words = kernelParams({
    numHeads: rows,
    qLen: 1,
    groupSize: rows,
    rowsPerGroup: rows,
    numKVHeads: 1,
    headDim,
    headDimV,
    kvDtype: "f16",
    pieceBase: maxN + 1,
    reduceBase: 0,
    count: maxN,
    scale: 0,
  });
  const halves = (dim: number) =>
    new Uint32Array(tokens * dim / 2).map((_, i) => 0x3c003c00 ^ (i & 0x3ff));
  const buffers: Partial<Record<BindingName, readonly [ArrayBufferView, number]>> = {
    params: [words, UNIFORM],
    sched: [sched, STORAGE_IN],
    q: [new Float32Array(rows * headDim).fill(0.01), STORAGE_IN],
    k: [halves(headDim), STORAGE_IN],
    v: [halves(headDimV), STORAGE_IN],
    out: [new Float32Array(rows * headDimV), STORAGE_OUT],
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
    layout: pipelines.layout(spec).group,
    entries: namedEntries(BINDING, resources),
  });
  return {
    key: specKey("decode", spec),
    classKey: gridClassKey(headDim, tiles.rowsPerBlock),
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
  const ctx = await openGpuContext(options);
  const { device, caps, pipelines } = ctx;
  const summary = ctx.adapter;
  const tuning = options.kernel ?? {};
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
      const classes: { headDim: number; rows: number; headDimV?: number }[] = HEAD_DIM_CLASSES
        .flatMap((headDim) => ROW_CLASSES.map((rows) => ({ headDim, rows })));
      // MLA's 64-row matrix blocks (the tiled kernel: one workgroup of 256 threads per block).
      const tiled = tuning.tiled !== false &&
        tiledFitsDevice(device.limits.maxComputeWorkgroupStorageSize);
      if (tiled) classes.push({ headDim: 576, headDimV: 512, rows: 64 });
      for (const [i, { headDim, rows, headDimV }] of classes.entries()) {
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
            { ...tileOptions, matrixBlocks: tiled },
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
        // The first class warms the GPU (its clock idles low); the others follow right after.
        const warmupMs = i === 0 ? 300 : 50;
        // One tiled workgroup per multiprocessor or so: 1024 workgroups are probe enough. Its
        // arithmetic fills a multiprocessor, so a second one there can only share it: this
        // class counts a size as one wave only within 1.25x of one workgroup's time (1.5x for
        // the others), and sweeps its sizes twice, each taking its least time (its compile, the
        // longest, leaves the GPU idle before a 50 ms warm-up). At 1.5x Dawn's probe gave 502,
        // 131, 1010, 264 and 131 in five runs, and MLA on Dawn ran faster at 131 than at 264
        // (b1 32k 0.429 against 0.517 ms); at 1.25x it gave 131, then 502 (session 26); with
        // the smallest sizes timed again after one sweep, 87, 131, 131 (session 27).
        const tiledClass = rows > 8;
        const p = await deviceProfile(
          device,
          summary.description,
          false,
          probe,
          key,
          tiledClass ? { warmupMs, maxSize: 1024, tolerance: 1.25, sweeps: 2 } : { warmupMs },
        );
        if (headDim === 128) grids[rows] = p.grid;
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
  };
  notify(onProgress, {
    stage: "ready",
    message: `${options.flavor} backend ready on ${summary.description} (grid ${profile.grid}, ` +
      `${profile.source})`,
  });
  return new WebGPUBackend(options.flavor, ctx, profile, options.poison ?? false, tuning);
}
