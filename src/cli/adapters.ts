/**
 * What WebGPU this process can reach: the runtime's own `navigator.gpu` (Deno, a browser) and
 * Dawn (npm `webgpu`, loaded through the `@lean/attention/dawn` entry only when asked). Used by
 * `info` and by the CLI's choice of the best backend.
 *
 * @module
 */

import {
  kernelCaps,
  probeSubgroupMatrix,
  registeredDawn,
  requestDevice,
  SUBGROUP_MATRIX_FEATURE,
  summarizeAdapter,
} from "../gpu/gpu_runtime.ts";
import { loadDawnEntry } from "./dawn_entry.ts";

/**
 * An adapter as the CLI shows it.
 *
 * @example
 * ```ts
 * import type { AdapterDescription } from "@lean/attention/cli";
 * const a: AdapterDescription = {
 *   description: "llvmpipe (LLVM 15.0.6, 256 bits)", vendor: "mesa", architecture: "", software: true,
 * };
 * ```
 */
export interface AdapterDescription {
  /** Human description, e.g. `"NVIDIA H100 80GB HBM3"` or `"llvmpipe (LLVM 15.0.6, 256 bits)"`. */
  readonly description: string;
  /** Vendor, as the adapter reports it. */
  readonly vendor: string;
  /** Architecture, as the adapter reports it. */
  readonly architecture: string;
  /** True for software adapters (lavapipe, SwiftShader, WARP). */
  readonly software: boolean;
}

/**
 * One WebGPU implementation and the adapter it offers, or why it offers none.
 *
 * @example
 * ```ts
 * import type { AdapterReport } from "@lean/attention/cli";
 * const none: AdapterReport = { backend: "webgpu", available: false, reason: "no adapter" };
 * ```
 */
export interface AdapterReport {
  /** `"webgpu"`: the runtime's `navigator.gpu`; `"dawn"`: npm `webgpu`. */
  readonly backend: "webgpu" | "dawn";
  /** Whether an adapter was found. */
  readonly available: boolean;
  /** Why there is no adapter (when `available` is false). */
  readonly reason?: string;
  /** Adapter description, vendor, architecture and whether it is a software rasteriser. */
  readonly summary?: AdapterDescription;
  /** Adapter features, sorted. */
  readonly features?: readonly string[];
  /** Adapter limits that matter to the kernels. */
  readonly limits?: Readonly<Record<string, number>>;
  /** The optional kernel paths a device of the backend's gets (`probeAdapters({ kernels })`). */
  readonly kernels?: KernelPaths;
}

/**
 * The optional kernel paths a device gets, as the backend opens it: subgroup operations (the
 * lanes' sums by shuffles), `shader-f16` (`kernel: { halfMath: true }`) and matrix units (`kernel:
 * { matrixMath: true }`), with why not where it has none.
 *
 * @example
 * ```ts
 * import type { KernelPaths } from "@lean/attention/cli";
 * const k: KernelPaths = {
 *   subgroups: 32, shaderF16: true, matrixUnits: false, matrixReason: "no subgroup matrices",
 * };
 * ```
 */
export interface KernelPaths {
  /** The subgroup size the kernels take (0: none; their sums go through workgroup memory). */
  readonly subgroups: number;
  /** Whether the device has `shader-f16` (packed f16 scores, `halfMath`). */
  readonly shaderF16: boolean;
  /** Whether `matrixMath` runs on this device's matrix units. */
  readonly matrixUnits: boolean;
  /** Why not, where `matrixUnits` is false. */
  readonly matrixReason?: string;
  /** Why the device could not be opened (the other fields are then false and 0). */
  readonly deviceError?: string;
}

/**
 * Limits printed by `info`.
 *
 * @example
 * ```ts
 * import { REPORTED_LIMITS } from "@lean/attention/cli";
 * console.log(REPORTED_LIMITS[0]); // maxStorageBufferBindingSize
 * ```
 */
export const REPORTED_LIMITS: readonly string[] = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
];

/** Dawn's `GPU` objects must outlive every adapter and device taken from them. */
const keepAlive: unknown[] = [];

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Why a device without matrix units has none, in the words a user can act on. */
function noMatrixReason(
  backend: "webgpu" | "dawn",
  device: GPUDevice,
  adapter: GPUAdapter,
  subgroups: number,
): string {
  if (!device.features.has(SUBGROUP_MATRIX_FEATURE as GPUFeatureName)) {
    const deno = backend === "webgpu" && "Deno" in globalThis;
    return `no ${SUBGROUP_MATRIX_FEATURE} feature` +
      (deno
        ? " (Deno's WebGPU does not offer it: Deno opens devices with wgpu's experimental" +
          " features, its cooperative matrices among them, off; --dawn shows Dawn's)"
        : "");
  }
  if (!device.features.has("shader-f16")) return "no shader-f16 feature";
  if (subgroups !== 32 || Number(adapter.info.subgroupMaxSize) !== 32) {
    return "its subgroups are not of exactly 32 lanes";
  }
  return "no f16 x f16 -> f32 16 x 16 x 16 subgroup matrices";
}

/** Opens a device as the backend does and reads its optional kernel paths. */
async function kernelPaths(
  backend: "webgpu" | "dawn",
  adapter: GPUAdapter,
): Promise<KernelPaths> {
  let device: GPUDevice;
  try {
    device = await requestDevice(adapter);
  } catch (error) {
    return {
      subgroups: 0,
      shaderF16: false,
      matrixUnits: false,
      deviceError: describeError(error),
    };
  }
  try {
    const caps = await probeSubgroupMatrix(
      device,
      adapter.info,
      kernelCaps(device, adapter.info),
    );
    const subgroups = caps.subgroups ? caps.subgroupMinSize : 0;
    return {
      subgroups,
      shaderF16: caps.shaderF16 === true,
      matrixUnits: caps.subgroupMatrix === true,
      ...(caps.subgroupMatrix
        ? {}
        : { matrixReason: noMatrixReason(backend, device, adapter, subgroups) }),
    };
  } finally {
    device.destroy();
  }
}

async function report(
  backend: "webgpu" | "dawn",
  gpu: GPU | undefined,
  kernels: boolean,
): Promise<AdapterReport> {
  if (!gpu) {
    return { backend, available: false, reason: "navigator.gpu is not available" };
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (error) {
    return { backend, available: false, reason: `requestAdapter failed: ${describeError(error)}` };
  }
  if (!adapter) return { backend, available: false, reason: "requestAdapter returned no adapter" };
  keepAlive.push(adapter);
  const limits: Record<string, number> = {};
  const all = adapter.limits as unknown as Record<string, number>;
  for (const name of REPORTED_LIMITS) limits[name] = Number(all[name]);
  const s = summarizeAdapter(adapter.info);
  return {
    backend,
    available: true,
    summary: {
      description: s.description,
      vendor: s.vendor,
      architecture: s.architecture,
      software: s.software,
    },
    features: [...adapter.features].map(String).sort(),
    limits,
    ...(kernels ? { kernels: await kernelPaths(backend, adapter) } : {}),
  };
}

/**
 * Probes the runtime's WebGPU, and Dawn when `dawn` is true (it loads the `@lean/attention/dawn`
 * entry, and with it npm `webgpu`); with `kernels`, also opens a device on each adapter, as the
 * backend would, to report its optional kernel paths (`AdapterReport.kernels`).
 *
 * @example
 * ```ts
 * import { probeAdapters } from "@lean/attention/cli";
 * const [runtime] = await probeAdapters({ dawn: false });
 * console.log(runtime.backend); // webgpu
 * ```
 */
export async function probeAdapters(
  options: { dawn?: boolean; kernels?: boolean } = {},
): Promise<AdapterReport[]> {
  const kernels = options.kernels === true;
  const reports = [await report("webgpu", globalThis.navigator?.gpu, kernels)];
  if (options.dawn) {
    let gpu: GPU | undefined;
    try {
      await loadDawnEntry();
      gpu = await registeredDawn();
      keepAlive.push(gpu);
    } catch (error) {
      reports.push({ backend: "dawn", available: false, reason: describeError(error) });
      return reports;
    }
    reports.push(await report("dawn", gpu, kernels));
  }
  return reports;
}
