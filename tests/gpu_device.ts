/**
 * The GPU devices of the runner-API tests: one per WebGPU implementation that opens here and is
 * listed in `LEAN_TEST_BACKENDS` (all when it is unset), with small buffer helpers.
 *
 * @module
 */

import { loadDawn } from "../dawn.ts";
import { requestDevice, summarizeAdapter } from "../src/gpu/gpu_runtime.ts";
import { envVar, EXHAUSTIVE_ENV } from "./kernel_set.ts";

/** A device under test. */
export interface GpuUnderTest {
  name: "webgpu" | "dawn";
  device: GPUDevice;
  adapter: GPUAdapter;
  keepAlive: unknown[];
  /** Any kernel may compile: a hardware GPU, or LEAN_TEST_EXHAUSTIVE=1 (see tests/kernel_set.ts). */
  exhaustive: boolean;
}

/** Opens a device of one implementation, or says why not. */
export async function openGpu(name: "webgpu" | "dawn"): Promise<GpuUnderTest | string> {
  const wanted = envVar("LEAN_TEST_BACKENDS");
  if (wanted !== undefined && !wanted.split(",").map((s) => s.trim()).includes(name)) {
    return "not listed in LEAN_TEST_BACKENDS";
  }
  try {
    const gpu = name === "dawn" ? await loadDawn() : navigator.gpu;
    if (!gpu) return "navigator.gpu is not available";
    const adapter = await gpu.requestAdapter();
    if (!adapter) return "no adapter";
    const exhaustive = EXHAUSTIVE_ENV || !summarizeAdapter(adapter.info).software;
    const device = await requestDevice(adapter);
    return { name, device, adapter, keepAlive: [gpu, adapter], exhaustive };
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/**
 * A second device of the same implementation, from a fresh adapter: an adapter that made a device
 * is consumed (Dawn refuses a second request, as the WebGPU spec says).
 */
export async function secondDevice(g: GpuUnderTest): Promise<GPUDevice> {
  const gpu = g.keepAlive[0] as GPU;
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error(`no second ${g.name} adapter`);
  g.keepAlive.push(adapter); // Dawn breaks if the adapter is collected while its device lives
  return await requestDevice(adapter);
}

/** `STORAGE | COPY_DST | COPY_SRC`. */
export const STORAGE = 0x80 | 0x8 | 0x4;

/** A storage buffer holding `data`, or `data` bytes of zeros. */
export function gpuBuffer(device: GPUDevice, data: Float32Array | number): GPUBuffer {
  const bytes = typeof data === "number" ? data : data.byteLength;
  const b = device.createBuffer({ size: Math.max(16, bytes), usage: STORAGE });
  if (typeof data !== "number") device.queue.writeBuffer(b, 0, data as unknown as ArrayBuffer);
  return b;
}

/** A storage buffer holding any array's bytes (padded to 4). */
export function bytesBuffer(device: GPUDevice, data: ArrayBufferView): GPUBuffer {
  const size = Math.max(16, Math.ceil(data.byteLength / 4) * 4);
  const b = device.createBuffer({ size, usage: STORAGE });
  const padded = new Uint8Array(size);
  padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  device.queue.writeBuffer(b, 0, padded);
  return b;
}

/** Reads `floats` f32 values back from a buffer. */
export async function readF32(
  device: GPUDevice,
  buffer: GPUBuffer,
  floats: number,
): Promise<Float32Array> {
  const staging = device.createBuffer({ size: Math.max(16, 4 * floats), usage: 0x1 | 0x8 });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buffer, 0, staging, 0, 4 * floats);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(0x1);
  const out = new Float32Array(staging.getMappedRange().slice(0, 4 * floats));
  staging.unmap();
  staging.destroy();
  return out;
}
