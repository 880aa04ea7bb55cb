/**
 * Creating an attention encoder on a runner's device: the grid (the caller's, or the table of
 * known adapters) and the device's context (`openGpuContext`: capabilities, pipeline cache,
 * device guard), as the dense backend sets up its own.
 *
 * @module
 */

import { tableProfile } from "../gpu/device_profile.ts";
import { summarizeAdapter } from "../gpu/gpu_runtime.ts";
import { openGpuContext } from "../gpu/gpu_context.ts";
import { AttentionEncoder } from "./attention_encoder.ts";
import type { AttentionEncoderOptions } from "./encoder_types.ts";

/**
 * Creates an attention encoder on a runner's device (Deno's WebGPU, a browser's, or Dawn's).
 * The device is the caller's: the encoder never destroys it.
 *
 * @example
 * ```ts ignore
 * import { createAttentionEncoder } from "@lean/attention/runner";
 * const device = await (await navigator.gpu.requestAdapter())!.requestDevice();
 * const attention = await createAttentionEncoder(device, { grid: 1056 });
 * console.log(attention.grid); // 1056
 * ```
 */
export async function createAttentionEncoder(
  device: GPUDevice,
  options: AttentionEncoderOptions = {},
): Promise<AttentionEncoder> {
  if (typeof device?.createBindGroup !== "function") {
    throw new TypeError(
      `device must be a GPUDevice: got ${device === null ? "null" : typeof device}`,
    );
  }
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `options must be an object: got ${options === null ? "null" : typeof options}`,
    );
  }
  for (const name of ["qDtype", "outDtype"] as const) {
    const dtype: unknown = options[name];
    if (dtype === undefined) continue;
    if (typeof dtype !== "string") {
      throw new TypeError(`${name} must be a string: got ${typeof dtype}`);
    }
    if (dtype !== "f32" && dtype !== "f16") {
      throw new RangeError(`${name} must be "f32" or "f16": got "${dtype}"`);
    }
  }
  const info = (device as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  let grid = options.grid;
  if (grid === undefined) {
    const summary = summarizeAdapter(info);
    grid = tableProfile(summary.description, summary.software).grid;
  } else if (typeof grid !== "number") {
    throw new TypeError(`grid must be a number: got ${typeof grid}`);
  } else if (!Number.isInteger(grid) || grid < 1) {
    throw new RangeError(`grid must be a positive integer: got ${grid}`);
  }
  const ctx = await openGpuContext({
    device,
    lostRemedy: "create a new device, cache and encoder",
  });
  return new AttentionEncoder(ctx, grid, options);
}
