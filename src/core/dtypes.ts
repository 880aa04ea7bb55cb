/**
 * The KV dtype table: everything the library knows of a KV element type, one entry per dtype.
 * Host sizes, the host array type, the kernels' 16-byte loads and unpacking, the append kernel's
 * conversion and the host encode/decode all read their entry here, so a new dtype is one entry
 * (plus its conversions in `half.ts`).
 *
 * @module
 */

import type { KVDtype } from "./problem.ts";
import { fromBf16Bits, fromF16Bits, toBf16Bits, toF16Bits } from "./half.ts";

/** What the library knows of one KV dtype. */
export interface KVDtypeInfo {
  /** Bytes of one element. */
  readonly bytes: number;
  /** Elements in one 16-byte load of the decode kernel. */
  readonly elementsPerLoad: number;
  /** Elements stored as bit patterns, packed two per `u32` in the kernels. */
  readonly packed: boolean;
  /** The host array K and V are stored in (`Uint16Array` bit patterns for packed dtypes). */
  readonly HostArray: Float32ArrayConstructor | Uint16ArrayConstructor;
  /** The WGSL scalar a 16-byte load reads (`vec4<f32>` or `vec4<u32>` of packed pairs). */
  readonly wgslWord: "f32" | "u32";
  /** WGSL of `unpack_kv(w)`: one loaded chunk as an array of `vec4<f32>`. */
  readonly wgslUnpack: string;
  /** WGSL of `half_bits(x: f32) -> u32` for the append kernel (packed dtypes), else "". */
  readonly wgslPack: string;
  /** Encodes floats in this dtype (identity for `f32`). */
  readonly encode: (values: Float32Array) => Float32Array | Uint16Array;
  /** Decodes this dtype's data to floats. */
  readonly decode: (data: Float32Array | Uint16Array) => Float32Array;
}

const UNPACK_PAIRS = `
fn unpack_kv(w: vec4<u32>) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(
    vec4<f32>(unpack_pair(w.x), unpack_pair(w.y)),
    vec4<f32>(unpack_pair(w.z), unpack_pair(w.w)),
  );
}`;

/**
 * The dtype table.
 *
 * @example
 * ```ts
 * import { KV_DTYPE_INFO } from "./dtypes.ts";
 * const { bytes, elementsPerLoad, HostArray } = KV_DTYPE_INFO.bf16;
 * console.log(bytes, elementsPerLoad, HostArray.name); // 2 8 Uint16Array
 * ```
 */
export const KV_DTYPE_INFO: Readonly<Record<KVDtype, KVDtypeInfo>> = {
  f32: {
    bytes: 4,
    elementsPerLoad: 4,
    packed: false,
    HostArray: Float32Array,
    wgslWord: "f32",
    wgslUnpack: `
fn unpack_kv(w: vec4<f32>) -> array<vec4<f32>, 1> {
  return array<vec4<f32>, 1>(w);
}`,
    wgslPack: "",
    encode: (values) => values,
    decode: (data) => data as Float32Array,
  },
  f16: {
    bytes: 2,
    elementsPerLoad: 8,
    packed: true,
    HostArray: Uint16Array,
    wgslWord: "u32",
    wgslUnpack: `fn unpack_pair(w: u32) -> vec2<f32> {
  return unpack2x16float(w);
}${UNPACK_PAIRS}`,
    wgslPack: `fn half_bits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let sign = (b >> 16u) & 0x8000u;
  let a = b & 0x7fffffffu;
  if (a > 0x7f800000u) {
    return sign | 0x7e00u | ((a >> 13u) & 0x3ffu);
  }
  if (a >= 0x477ff000u) {
    return sign | 0x7c00u;
  }
  if (a < 0x38800000u) {
    // Subnormal or zero: x * 2^24 is exact in f32; round() rounds half to even.
    return sign | u32(round(bitcast<f32>(a) * 16777216.0));
  }
  let r = a - 0x38000000u;
  return sign | ((r + 0xfffu + ((r >> 13u) & 1u)) >> 13u);
}`,
    encode: (values) => toF16Bits(values),
    decode: (data) => fromF16Bits(data as Uint16Array),
  },
  bf16: {
    bytes: 2,
    elementsPerLoad: 8,
    packed: true,
    HostArray: Uint16Array,
    wgslWord: "u32",
    wgslUnpack: `fn unpack_pair(w: u32) -> vec2<f32> {
  return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}${UNPACK_PAIRS}`,
    wgslPack: `fn half_bits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x7fffffu) != 0u) {
    return (b >> 16u) | 0x40u;
  }
  return ((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u) & 0xffffu;
}`,
    encode: (values) => toBf16Bits(values),
    decode: (data) => fromBf16Bits(data as Uint16Array),
  },
};

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
  return KV_DTYPE_INFO[dtype].decode(data);
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
  return KV_DTYPE_INFO[dtype].encode(values);
}
