/**
 * What WebGPU this process can reach: the runtime's own `navigator.gpu` (Deno, a browser) and
 * Dawn (npm `webgpu`, loaded through the `@lean/attention/dawn` entry only when asked). Used by
 * `info` and by the CLI's choice of the best backend.
 *
 * @module
 */

import { registeredDawn, summarizeAdapter } from "../gpu/gpu_runtime.ts";
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

async function report(backend: "webgpu" | "dawn", gpu: GPU | undefined): Promise<AdapterReport> {
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
  };
}

/**
 * Probes the runtime's WebGPU, and Dawn when `dawn` is true (it loads the `@lean/attention/dawn`
 * entry, and with it npm `webgpu`).
 *
 * @example
 * ```ts
 * import { probeAdapters } from "@lean/attention/cli";
 * const [runtime] = await probeAdapters({ dawn: false });
 * console.log(runtime.backend); // webgpu
 * ```
 */
export async function probeAdapters(
  options: { dawn?: boolean } = {},
): Promise<AdapterReport[]> {
  const reports = [await report("webgpu", globalThis.navigator?.gpu)];
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
    reports.push(await report("dawn", gpu));
  }
  return reports;
}
