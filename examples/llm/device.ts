/**
 * Opens a GPU device for the runner: Deno's own WebGPU (`navigator.gpu`) or Dawn (npm
 * `webgpu`). The only place the runner touches Dawn, so moving Dawn behind its own package entry
 * changes this file alone.
 *
 * ```ts ignore
 * import { openDevice } from "./device.ts";
 * const { device, adapter, release } = await openDevice("webgpu");
 * console.log(adapter);
 * release();
 * ```
 *
 * @module
 */

import { loadDawn } from "../../dawn.ts";
import { requestDevice } from "../../src/gpu/gpu_runtime.ts";

/** GPU backends of the runner. */
export type GpuBackend = "webgpu" | "dawn";

/** An open device; `release` destroys it (Dawn needs that before the process exits). */
export interface OpenDevice {
  device: GPUDevice;
  /** The adapter's description. */
  adapter: string;
  release: () => void;
}

/** Opens the adapter's device with its own limits (large weight buffers need them). */
export async function openDevice(backend: GpuBackend): Promise<OpenDevice> {
  const gpu = backend === "dawn" ? await loadDawn() : navigator.gpu;
  if (!gpu) throw new Error(`the ${backend} backend needs WebGPU: navigator.gpu is not available`);
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new Error(`the ${backend} backend found no WebGPU adapter`);
  const device = await requestDevice(adapter);
  const keep = [gpu, adapter]; // Dawn breaks if these are collected while the device lives
  const info = adapter.info;
  return {
    device,
    adapter: [info.description, info.device, info.vendor].filter(Boolean).join(" / ") || "unknown",
    release: () => {
      device.destroy();
      keep.length = 0;
    },
  };
}
