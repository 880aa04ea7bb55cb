/**
 * Argument checks shared by the runner's objects: positive integers, and duck-typed WebGPU
 * objects (the runner takes objects from any WebGPU implementation, so no `instanceof`).
 *
 * @module
 */

/** A positive integer up to `max`; TypeError for a non-number, RangeError otherwise. */
export function positiveInt(name: string, value: unknown, max = 0x7fffffff): number {
  if (typeof value !== "number") {
    throw new TypeError(`${name} must be a number: got ${typeof value}`);
  }
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new RangeError(`${name} must be an integer from 1 to ${max}: got ${value}`);
  }
  return value;
}

/** Whether `x` looks like a `GPUCommandEncoder`. */
export function isCommandEncoder(x: unknown): x is GPUCommandEncoder {
  return typeof (x as GPUCommandEncoder)?.beginComputePass === "function";
}

/** Whether `x` looks like a `GPUComputePassEncoder`. */
export function isComputePass(x: unknown): x is GPUComputePassEncoder {
  return typeof (x as GPUComputePassEncoder)?.dispatchWorkgroups === "function";
}

/** Whether `x` looks like a `GPUBuffer`. */
export function isBuffer(x: unknown): x is GPUBuffer {
  return typeof (x as GPUBuffer)?.destroy === "function" &&
    typeof (x as GPUBuffer)?.size === "number";
}
