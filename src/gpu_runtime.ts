/**
 * Finding a WebGPU implementation and a device: the runtime's own `navigator.gpu`, or Dawn from
 * npm `webgpu`, imported only when asked. Flag values are spelled out here so the backend works
 * where the WebGPU globals (`GPUBufferUsage`, ...) are not installed, as under Dawn in Node.
 *
 * @module
 */

/** `GPUBufferUsage` bits. */
export const BufferUsage = {
  MAP_READ: 0x1,
  COPY_SRC: 0x4,
  COPY_DST: 0x8,
  UNIFORM: 0x40,
  STORAGE: 0x80,
  QUERY_RESOLVE: 0x200,
} as const;
/** `GPUMapMode.READ`. */
export const MAP_READ = 0x1;

/**
 * Dawn instance toggles. Timestamps are otherwise quantised (to 65.5 us, seen on lavapipe), too
 * coarse for kernel timing. No `shader-f16` toggle is needed: KV halves are unpacked from `u32`.
 */
const DAWN_OPTIONS: string[] = ["disable-dawn-features=timestamp_quantization"];

let dawn: Promise<GPU> | undefined;

/**
 * Loads Dawn (npm `webgpu`) lazily and returns its `GPU`: one instance per process, shared by
 * every caller. Each instance owns a Vulkan instance and native threads; a process that made one
 * per device kept dozens alive for the garbage collector to finalise at exit, in any order.
 */
export function loadDawn(): Promise<GPU> {
  dawn ??= (async () => {
    let mod: { create: (options: string[]) => GPU };
    try {
      mod = await import("webgpu");
    } catch (e) {
      throw new Error(`the dawn backend needs the npm package "webgpu": ${(e as Error).message}`);
    }
    return mod.create(DAWN_OPTIONS);
  })();
  // A failed load is not cached: the next call tries again.
  dawn.catch(() => (dawn = undefined));
  return dawn;
}

/** What a device offers the decode kernel beyond core WebGPU. */
export interface KernelCaps {
  /** The `subgroups` feature is enabled on the device. */
  readonly subgroups: boolean;
  /** The adapter's smallest subgroup size (0 when unknown). */
  readonly subgroupMinSize: number;
}

/** Reads a device's kernel capabilities (the adapter info may come from the device). */
export function kernelCaps(device: GPUDevice, info: GPUAdapterInfo | undefined): KernelCaps {
  const min = Number((info as { subgroupMinSize?: number } | undefined)?.subgroupMinSize ?? 0);
  const subgroups = device.features.has("subgroups" as GPUFeatureName) && min >= 1;
  return { subgroups, subgroupMinSize: subgroups ? min : 0 };
}

/** Adapter facts the backend reports. */
export interface AdapterSummary {
  /** Human description, e.g. `"NVIDIA H100 80GB HBM3"` or `"llvmpipe (LLVM 15.0.6, 256 bits)"`. */
  readonly description: string;
  readonly vendor: string;
  readonly architecture: string;
  /** True for software adapters (lavapipe, SwiftShader, WARP). */
  readonly software: boolean;
}

/** Reads an adapter's info in the same way for Deno and Dawn. */
export function summarizeAdapter(info: GPUAdapterInfo | undefined): AdapterSummary {
  // Deno's wgpu puts the device name in `description`; Dawn puts the driver there (e.g.
  // "NVIDIA: 580.159.04 ...") and a slug of the device name in `device`: show both.
  const raw = String(info?.description ?? "");
  const device = String(info?.device ?? "");
  const driverOnly = /^[\w ]+: \S/.test(raw) && /[a-z]/i.test(device);
  const description = driverOnly ? `${device} (${raw})` : raw || device || "unknown adapter";
  const fallback =
    (info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter === true;
  return {
    description,
    vendor: String(info?.vendor ?? ""),
    architecture: String(info?.architecture ?? ""),
    software: fallback || /llvmpipe|lavapipe|swiftshader|warp|software/i.test(description),
  };
}

/** Features the backend uses when the adapter has them. */
const OPTIONAL_FEATURES = ["timestamp-query"] as GPUFeatureName[];

/**
 * Requests a device with the adapter's own limits (not the defaults) and useful features.
 * `subgroups` is asked for even when the adapter does not list it: Deno's WebGPU grants it on
 * GPUs whose Vulkan driver has subgroup operations without listing it; a refusal just means
 * the kernels reduce through workgroup memory.
 */
export async function requestDevice(adapter: GPUAdapter): Promise<GPUDevice> {
  const l = adapter.limits;
  const features = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
  const descriptor = (requiredFeatures: GPUFeatureName[]): GPUDeviceDescriptor => ({
    requiredFeatures,
    requiredLimits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    },
  });
  try {
    return await adapter.requestDevice(
      descriptor([...features, "subgroups" as GPUFeatureName]),
    );
  } catch {
    return await adapter.requestDevice(descriptor(features));
  }
}

/**
 * Whether the device's WGSL compiler accepts `enable subgroups;`: Tint (Dawn, browsers) wants
 * the directive before subgroup built-ins, Naga (Deno) rejects it.
 *
 * @example
 * ```ts ignore
 * import { acceptsSubgroupsDirective } from "./gpu_runtime.ts";
 * const adapter = await navigator.gpu.requestAdapter();
 * const device = await adapter!.requestDevice();
 * console.log(await acceptsSubgroupsDirective(device));
 * ```
 */
export async function acceptsSubgroupsDirective(device: GPUDevice): Promise<boolean> {
  device.pushErrorScope("validation");
  device.createShaderModule({
    code: "enable subgroups;\n@compute @workgroup_size(1) fn main() {}",
  });
  return (await device.popErrorScope()) === null;
}
