/**
 * Conversions between `Float32Array` and the 16-bit KV formats, as `Uint16Array` bit patterns.
 * Kernels read these two per `u32`, so no device needs the `shader-f16` feature.
 *
 * @module
 */

import type { KVDtype } from "./problem.ts";

/**
 * Encodes floats as f16 bit patterns (round to nearest even).
 *
 * @example
 * ```ts
 * import { toF16Bits } from "@lean/attention";
 * console.log(toF16Bits(new Float32Array([1, -2]))); // Uint16Array [15360, 49152]
 * ```
 */
export function toF16Bits(values: Float32Array): Uint16Array {
  return new Uint16Array(new Float16Array(values).buffer);
}

/**
 * Encodes floats as bf16 bit patterns (round to nearest even; NaN stays NaN).
 *
 * @example
 * ```ts
 * import { toBf16Bits } from "@lean/attention";
 * console.log(toBf16Bits(new Float32Array([1, -2]))); // Uint16Array [16256, 49152]
 * ```
 */
export function toBf16Bits(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) {
      out[i] = (b >>> 16) | 0x40;
    } else {
      out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}

/**
 * Decodes KV data of any dtype to float32 values.
 *
 * @example
 * ```ts
 * import { decodeKV, toBf16Bits } from "@lean/attention";
 * console.log(decodeKV(toBf16Bits(new Float32Array([0.5])), "bf16")); // Float32Array [0.5]
 * ```
 */
export function decodeKV(data: Float32Array | Uint16Array, dtype: KVDtype): Float32Array {
  if (dtype === "f32") return data as Float32Array;
  if (dtype === "f16") {
    return new Float32Array(new Float16Array(data.buffer, data.byteOffset, data.length));
  }
  const out = new Uint32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i] << 16;
  return new Float32Array(out.buffer);
}

/**
 * Encodes float32 values in a KV dtype (identity for `f32`).
 *
 * @example
 * ```ts
 * import { encodeKV } from "@lean/attention";
 * console.log(encodeKV(new Float32Array([1]), "f16")); // Uint16Array [15360]
 * ```
 */
export function encodeKV(values: Float32Array, dtype: KVDtype): Float32Array | Uint16Array {
  return dtype === "f32" ? values : dtype === "f16" ? toF16Bits(values) : toBf16Bits(values);
}
