/**
 * The WebGPU backend (Deno's built-in WebGPU, a caller's device, or Dawn). Placeholder until the
 * kernels land.
 *
 * @module
 */

import type { Backend } from "./backend.ts";

/** Options for {@linkcode createWebGPUBackend}. */
export interface WebGPUBackendOptions {
  /** Which WebGPU implementation: the runtime's (`"webgpu"`) or npm `webgpu` (`"dawn"`). */
  flavor: "webgpu" | "dawn";
  /** A `GPU` to request the adapter from. */
  gpu?: GPU;
  /** A caller-owned device. */
  device?: GPUDevice;
  /** Fail unless the adapter is a hardware GPU (used by `"auto"`). */
  requireHardware?: boolean;
  /** Overrides the profile's grid. */
  grid?: number;
}

/** Creates a WebGPU backend. */
export function createWebGPUBackend(options: WebGPUBackendOptions): Promise<Backend> {
  return Promise.reject(new Error(`the ${options.flavor} backend is not implemented yet`));
}
