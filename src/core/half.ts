/**
 * Conversions between `Float32Array` and the 16-bit KV formats, as `Uint16Array` bit patterns.
 * Kernels read these two per `u32`, so no device needs the `shader-f16` feature.
 *
 * @module
 */

/** Whether the runtime has `Float16Array` (Deno, Chromium 135+; not Node 20). */
const HAS_FLOAT16 = typeof (globalThis as { Float16Array?: unknown }).Float16Array === "function";

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
  if (HAS_FLOAT16) return new Uint16Array(new Float16Array(values).buffer);
  return toF16BitsPortable(values);
}

/**
 * {@linkcode toF16Bits} without `Float16Array`, for runtimes that lack it (Node 20): round to
 * nearest even, subnormals, infinities; NaN becomes a quiet NaN.
 *
 * @example
 * ```ts
 * import { toF16BitsPortable } from "@lean/attention";
 * console.log(toF16BitsPortable(new Float32Array([1, -2, 65520]))); // Uint16Array [15360, 49152, 31744]
 * ```
 */
export function toF16BitsPortable(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.length);
  new Float32Array(bits.buffer).set(values);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    const sign = (b >>> 16) & 0x8000;
    const exp = (b >>> 23) & 0xff;
    const mant = b & 0x7fffff;
    const e = exp - 112; // f16 exponent field
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
    } else if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
    } else if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      // Subnormal: the value is m * 2^-24 with m = (1.mant) >> (14 - e), rounded.
      const full = mant | 0x800000;
      const shift = 14 - e;
      let half = full >>> shift;
      const rem = full & ((1 << shift) - 1);
      const mid = 1 << (shift - 1);
      if (rem > mid || (rem === mid && (half & 1) !== 0)) half++;
      out[i] = sign | half;
    } else {
      // A carry out of the mantissa moves to the next exponent, and to infinity past 65504.
      let half = (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && (half & 1) !== 0)) half++;
      out[i] = sign | half;
    }
  }
  return out;
}

let f16Table: Float32Array | undefined;

/**
 * Decodes f16 bit patterns without `Float16Array` (through a 65536-entry table built on first
 * use).
 *
 * @example
 * ```ts
 * import { fromF16BitsPortable } from "@lean/attention";
 * console.log(fromF16BitsPortable(new Uint16Array([15360, 49152, 1]))); // Float32Array [1, -2, 5.960464477539063e-8]
 * ```
 */
export function fromF16BitsPortable(bits: Uint16Array): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const e = (h >>> 10) & 0x1f;
      const m = h & 0x3ff;
      f16Table[h] = e === 0
        ? sign * m * 2 ** -24
        : e === 31
        ? (m !== 0 ? NaN : sign * Infinity)
        : sign * (1 + m / 1024) * 2 ** (e - 15);
    }
  }
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = f16Table[bits[i]];
  return out;
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

/** Decodes f16 bit patterns to floats (`Float16Array` where the runtime has it). */
export function fromF16Bits(bits: Uint16Array): Float32Array {
  if (!HAS_FLOAT16) return fromF16BitsPortable(bits);
  return new Float32Array(new Float16Array(bits.buffer, bits.byteOffset, bits.length));
}

/** Decodes bf16 bit patterns to floats (exact: a bf16 is the top half of an f32). */
export function fromBf16Bits(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
  return new Float32Array(out.buffer);
}
