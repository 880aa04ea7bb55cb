/**
 * One GPU context: opening a device (or adopting the caller's) and everything the attention
 * front ends keep per device, set up in one place: the adapter summary, the kernel capabilities
 * (subgroups and whether WGSL may say `enable subgroups;`), the pipeline cache with its explicit
 * layouts, the buffer pool and the device guard. The dense backend and the runner's encoder both
 * start from it.
 *
 * @module
 */

import { BufferPool } from "./buffer_pool.ts";
import { DeviceGuard } from "./device_guard.ts";
import {
  acceptsSubgroupsDirective,
  type AdapterSummary,
  type KernelCaps,
  kernelCaps,
  probeSubgroupMatrix,
  registeredDawn,
  requestDevice,
  summarizeAdapter,
} from "./gpu_runtime.ts";
import { PipelineCache } from "./pipeline_cache.ts";
import { notify, type ProgressListener } from "../core/progress.ts";

/** What a front end needs of a device, made once per front end by {@linkcode openGpuContext}. */
export interface GpuContext {
  readonly device: GPUDevice;
  /** Whether the context opened the device (and its owner destroys it). */
  readonly ownsDevice: boolean;
  /** The adapter's description and whether it is a software one. */
  readonly adapter: AdapterSummary;
  /** Subgroup support and the other kernel capabilities. */
  readonly caps: KernelCaps;
  /** The kernels' pipelines and bind group layouts. */
  readonly pipelines: PipelineCache;
  /** Reused buffers. */
  readonly pool: BufferPool;
  /** Device loss and error scopes. */
  readonly guard: DeviceGuard;
  /** The GPU and adapter the device came from: Dawn's device breaks if they are collected. */
  readonly keepAlive: unknown[];
}

/** Options of {@linkcode openGpuContext}. */
export interface GpuContextOptions {
  /** A caller-owned device to adopt (left alone by the context's owner). */
  device?: GPUDevice;
  /** Which WebGPU implementation opens a device: the runtime's or npm `webgpu` (Dawn). */
  flavor?: "webgpu" | "dawn";
  /** A `GPU` to request the adapter from. */
  gpu?: GPU;
  /** Fail unless the adapter is a hardware GPU. */
  requireHardware?: boolean;
  /** Hears of the adapter and device stages and of each kernel compile. */
  onProgress?: ProgressListener;
  /** Ends the device-loss error's message: what the caller should create anew. */
  lostRemedy?: string;
}

/** Opens a device (or adopts `options.device`) and sets up its context. */
export async function openGpuContext(options: GpuContextOptions): Promise<GpuContext> {
  const { onProgress } = options;
  const flavor = options.flavor ?? "webgpu";
  let device = options.device;
  let info: GPUAdapterInfo | undefined;
  const keepAlive: unknown[] = [];
  if (device) {
    info = (device as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  } else {
    notify(onProgress, {
      stage: "adapter",
      message: `requesting a WebGPU adapter (${
        flavor === "dawn" ? "Dawn" : "the runtime's navigator.gpu"
      })`,
    });
    const gpu = flavor === "dawn"
      ? await registeredDawn()
      : options.gpu ?? globalThis.navigator?.gpu;
    if (!gpu) {
      throw new Error(`the ${flavor} backend needs WebGPU: navigator.gpu is not available`);
    }
    const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) throw new Error(`the ${flavor} backend found no WebGPU adapter`);
    info = adapter.info;
    keepAlive.push(gpu, adapter);
    const found = summarizeAdapter(info);
    if (options.requireHardware && found.software) {
      throw new Error(`adapter ${found.description} is a software adapter`);
    }
    notify(onProgress, { stage: "device", message: `opening a device on ${found.description}` });
    device = await requestDevice(adapter);
  }
  // A caller's device may come without the adapter's subgroup-matrix configurations.
  const caps = await probeSubgroupMatrix(device, info, kernelCaps(device, info));
  // Tint (Dawn, browsers) wants `enable subgroups;`; Naga (Deno) rejects the directive.
  const enableDirective = caps.subgroups && await acceptsSubgroupsDirective(device);
  return contextOf(device, {
    info,
    caps,
    enableDirective,
    owns: options.device === undefined,
    keepAlive,
    onProgress,
    lostRemedy: options.lostRemedy,
  });
}

/**
 * The context of a caller's device, set up at once (no `await`): for a front end whose kernels
 * use no subgroup operations (the KV cache's append kernel), so its capabilities say no
 * subgroups and nothing probes the WGSL directive.
 *
 * @example
 * ```ts ignore
 * const ctx = adoptGpuContext(device, { lostRemedy: "create a new device and a new cache on it" });
 * const { pipeline } = ctx.pipelines.append("f16");
 * ```
 */
export function adoptGpuContext(
  device: GPUDevice,
  options: { lostRemedy?: string; onProgress?: ProgressListener } = {},
): GpuContext {
  const info = (device as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  return contextOf(device, {
    info,
    caps: { subgroups: false, subgroupMinSize: 0 },
    enableDirective: false,
    owns: false,
    keepAlive: [],
    onProgress: options.onProgress,
    lostRemedy: options.lostRemedy,
  });
}

/** Builds a context around a device whose capabilities are known. */
function contextOf(device: GPUDevice, o: {
  info: GPUAdapterInfo | undefined;
  caps: KernelCaps;
  enableDirective: boolean;
  owns: boolean;
  keepAlive: unknown[];
  onProgress: ProgressListener | undefined;
  lostRemedy: string | undefined;
}): GpuContext {
  const { onProgress } = o;
  const pipelines = new PipelineCache(
    device,
    { enableDirective: o.enableDirective },
    onProgress &&
      ((kernel, done) =>
        notify(onProgress, {
          stage: "compile",
          message: `compiling kernel ${done + 1}: ${kernel}`,
          done,
          kernel,
        })),
  );
  return {
    device,
    ownsDevice: o.owns,
    adapter: summarizeAdapter(o.info),
    caps: o.caps,
    pipelines,
    pool: new BufferPool(device),
    guard: new DeviceGuard(device, o.lostRemedy),
    keepAlive: o.keepAlive,
  };
}
