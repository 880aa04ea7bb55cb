/**
 * The KV dtype table: everything the library knows of a KV element type, one entry per dtype.
 * Host sizes, the host array type, the kernels' 16-byte loads and unpacking, the append kernel's
 * conversion and the host encode/decode all read their entry here, so a new dtype is one entry
 * (plus its conversions in `half.ts`).
 *
 * @module
 */

import type { KVArray, KVDtype } from "./problem.ts";
import { fromBf16Bits, fromF16Bits, toBf16Bits, toF16Bits } from "./half.ts";
import { checkKVScale, dynamicKv8Scales, type Kv8Format, type KVScale } from "./kv8.ts";
import { KV8_DTYPE_INFO } from "./kv8_dtypes.ts";

/** What the library knows of one KV dtype. */
export interface KVDtypeInfo {
  /** Bytes of one element. */
  readonly bytes: number;
  /** Elements in one 16-byte load of the decode kernel. */
  readonly elementsPerLoad: number;
  /** Elements stored as bit patterns, packed two (16-bit) or four (8-bit) per `u32` in the kernels. */
  readonly packed: boolean;
  /** Stored values are multiplied by a scale (`kScale` / `vScale`): the 8-bit formats. */
  readonly scaled: boolean;
  /** The host array K and V are stored in (bit patterns or codes for packed dtypes). */
  readonly HostArray:
    | Float32ArrayConstructor
    | Uint16ArrayConstructor
    | Int8ArrayConstructor
    | Uint8ArrayConstructor;
  /** The WGSL scalar a 16-byte load reads (`vec4<f32>` or `vec4<u32>` of packed elements). */
  readonly wgslWord: "f32" | "u32";
  /** WGSL of `unpack_kv(w)`: one loaded chunk as an array of `vec4<f32>`. */
  readonly wgslUnpack: string;
  /**
   * `unpack_kv` returns the stored values divided by this power of two, which the decode kernel
   * folds into its K and V scales, once per tensor or token instead of once per element
   * (default 1; FP8 E4M3: 256).
   */
  readonly unpackScale?: number;
  /**
   * WGSL of `unpack_kv(w: vec2<u32>)` for 8-byte loads (8-bit dtypes, whose head rows of a
   * head dim not a multiple of 16 are 8-byte multiples only), else "".
   */
  readonly wgslUnpack8: string;
  /**
   * WGSL of `unpack_kh(w)` for the packed f16 path (`KernelSpec.halfMath`; the kernel enables
   * `f16`): one 16-byte chunk (`vec4<u32>`) and one 8-byte chunk (`vec2<u32>`) as `vec4<f16>`s,
   * one per word, holding its bytes 0, 2, 1, 3 (two unpacked per operation); the values over
   * `unpackScale`, as `unpack_kv`'s. Only where f16 holds every code exactly and sums of a few
   * weighted codes stay far from f16's largest value (int8, FP8 E4M3); absent elsewhere.
   */
  readonly wgslUnpackHalf?: { readonly 16: string; readonly 8: string };
  /**
   * WGSL of `unpack_kv_raw(w)`, `nan_bytes(w)` and `nan_kv(v, w)` for a 16-byte and an 8-byte
   * chunk, where `unpack_kv` tests each word for NaN codes (FP8 E4M3): the decode kernel's
   * `nanSteps` unpacks a step's chunks raw and tests them all at once (see
   * `KernelSpec.nanSteps`); absent elsewhere.
   */
  readonly wgslNanSteps?: { readonly 16: string; readonly 8: string };
  /**
   * WGSL of the append kernel's conversion of packed dtypes: `half_bits(x: f32) -> u32` (16-bit)
   * or `byte_bits(x: f32) -> u32` (8-bit, of an already scaled value), else "".
   */
  readonly wgslPack: string;
  /** Encodes floats in this dtype (identity for `f32`); `scale` divides first (8-bit dtypes). */
  readonly encode: (values: Float32Array, scale?: KVScale) => KVArray;
  /** Decodes this dtype's data to floats; `scale` multiplies (8-bit dtypes). */
  readonly decode: (data: KVArray, scale?: KVScale) => Float32Array;
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
    scaled: false,
    HostArray: Float32Array,
    wgslWord: "f32",
    wgslUnpack: `
fn unpack_kv(w: vec4<f32>) -> array<vec4<f32>, 1> {
  return array<vec4<f32>, 1>(w);
}`,
    wgslUnpack8: "",
    wgslPack: "",
    encode: (values) => values,
    decode: (data) => data as Float32Array,
  },
  f16: {
    bytes: 2,
    elementsPerLoad: 8,
    packed: true,
    scaled: false,
    HostArray: Uint16Array,
    wgslWord: "u32",
    wgslUnpack: `fn unpack_pair(w: u32) -> vec2<f32> {
  return unpack2x16float(w);
}${UNPACK_PAIRS}`,
    wgslUnpack8: "",
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
    scaled: false,
    HostArray: Uint16Array,
    wgslWord: "u32",
    wgslUnpack: `fn unpack_pair(w: u32) -> vec2<f32> {
  return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}${UNPACK_PAIRS}`,
    wgslUnpack8: "",
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
  ...KV8_DTYPE_INFO,
};

/**
 * Options of {@linkcode encodeKV} and {@linkcode decodeKV}.
 *
 * @example
 * ```ts
 * import { encodeKV, type KVCodecOptions } from "@lean/attention";
 * const options: KVCodecOptions = { scale: 0.5 };
 * console.log(encodeKV(new Float32Array([1, -1]), "int8", options)); // Int8Array [ 2, -2 ]
 * ```
 */
export interface KVCodecOptions {
  /**
   * 8-bit dtypes: the dequantisation scale (stored value x scale = value), a finite number > 0
   * for the whole array (default 1), or a `Float32Array` with one scale per (token, KV head),
   * i.e. per run of `values.length / scale.length` consecutive elements. Other dtypes take none.
   */
  scale?: KVScale;
}

/** Checks the options of a conversion and returns its scale (undefined: none). */
function codecScale(
  dtype: KVDtype,
  options: KVCodecOptions | undefined,
  elements: number,
): KVScale | undefined {
  if (options === undefined) return undefined;
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `options must be an object: got ${options === null ? "null" : typeof options}`,
    );
  }
  if (options.scale === undefined) return undefined;
  if (!KV_DTYPE_INFO[dtype].scaled) {
    throw new RangeError(
      `scale applies to the 8-bit kvDtypes only: got a scale for kvDtype "${dtype}"`,
    );
  }
  return checkKVScale("scale", options.scale, undefined, elements);
}

function checkDtype(dtype: unknown): KVDtype {
  if (typeof dtype !== "string") {
    throw new TypeError(`kvDtype must be a string: got ${typeof dtype}`);
  }
  if (!Object.hasOwn(KV_DTYPE_INFO, dtype)) {
    throw new RangeError(
      `kvDtype must be one of ${Object.keys(KV_DTYPE_INFO).map((d) => `"${d}"`).join(", ")}: got ${
        JSON.stringify(dtype)
      }`,
    );
  }
  return dtype as KVDtype;
}

/**
 * Decodes KV data of any dtype to float32 values (8-bit codes times their scale).
 *
 * @example
 * ```ts
 * import { decodeKV, toBf16Bits } from "@lean/attention";
 * console.log(decodeKV(toBf16Bits(new Float32Array([0.5])), "bf16")); // Float32Array [0.5]
 * console.log(decodeKV(new Int8Array([3, -4]), "int8", { scale: 0.5 })); // Float32Array [ 1.5, -2 ]
 * ```
 */
export function decodeKV(data: KVArray, dtype: KVDtype, options?: KVCodecOptions): Float32Array {
  const info = KV_DTYPE_INFO[checkDtype(dtype)];
  if (!(data instanceof info.HostArray)) {
    throw new TypeError(
      `data must be a ${info.HostArray.name} (kvDtype "${dtype}"): got ${
        data?.constructor?.name ?? typeof data
      }`,
    );
  }
  return info.decode(data, codecScale(dtype, options, data.length));
}

/**
 * Encodes float32 values in a KV dtype (identity for `f32`). 8-bit dtypes divide by the scale,
 * round to nearest even and saturate to the format's largest finite value (`int8`: +-127; FP8
 * keeps NaN, `int8` rejects it).
 *
 * @example
 * ```ts
 * import { encodeKV } from "@lean/attention";
 * console.log(encodeKV(new Float32Array([1]), "f16")); // Uint16Array [15360]
 * console.log(encodeKV(new Float32Array([1, 1e6]), "fp8e5m2")); // Uint8Array [ 60, 123 ]
 * ```
 */
export function encodeKV(
  values: Float32Array,
  dtype: KVDtype,
  options?: KVCodecOptions,
): KVArray {
  const info = KV_DTYPE_INFO[checkDtype(dtype)];
  if (!(values instanceof Float32Array)) {
    throw new TypeError(
      `values must be a Float32Array: got ${
        (values as unknown as object)?.constructor?.name ?? typeof values
      }`,
    );
  }
  return info.encode(values, codecScale(dtype, options, values.length));
}

/**
 * The K and V of a decode input as float32 values (8-bit codes times their `kScale` /
 * `vScale`; f32 data as is). The input is validated by the caller.
 *
 * @example
 * ```ts
 * import { decodeInputKV } from "./dtypes.ts";
 * const { k, v } = decodeInputKV(
 *   { k: new Int8Array([2]), v: new Int8Array([4]), kScale: 0.5, vScale: new Float32Array([2]) },
 *   "int8",
 * );
 * console.log(k[0], v[0]); // 1 8
 * ```
 */
export function decodeInputKV(
  input: { k: KVArray; v: KVArray; kScale?: KVScale; vScale?: KVScale },
  dtype: KVDtype,
): { k: Float32Array; v: Float32Array } {
  const info = KV_DTYPE_INFO[dtype];
  return {
    k: info.decode(input.k, info.scaled ? input.kScale ?? 1 : undefined),
    v: info.decode(input.v, info.scaled ? input.vScale ?? 1 : undefined),
  };
}

/**
 * Dynamic scales for 8-bit K or V: one per (token, KV head) row of `headDim` values, the
 * smallest power of two that keeps the row's largest finite magnitude within the format (448
 * for fp8e4m3, 57344 for fp8e5m2, 127 for int8). Powers of two divide exactly, so
 * `encodeKV(values, dtype, { scale })` with them rounds each value once, and the cache's GPU
 * append (`kScale: "dynamic"`) finds the same scales and codes.
 *
 * @example
 * ```ts
 * import { dynamicKVScales, encodeKV } from "@lean/attention";
 * const k = new Float32Array([3, -1, 0.5, 0.25, 0, 0, 0, 0, 900, 1, 2, 3, 0, 0, 0, 0]);
 * const scale = dynamicKVScales(k, "fp8e4m3", { headDim: 8 });
 * console.log(scale); // Float32Array(2) [ 0.0078125, 4 ]
 * console.log(encodeKV(k, "fp8e4m3", { scale }).slice(8, 10)); // Uint8Array(2) [ 118, 40 ]
 * ```
 */
export function dynamicKVScales(
  values: Float32Array,
  dtype: KVDtype,
  options: { headDim: number },
): Float32Array {
  const info = KV_DTYPE_INFO[checkDtype(dtype)];
  if (!info.scaled) {
    throw new RangeError(
      `dynamicKVScales applies to the 8-bit kvDtypes only: got kvDtype "${dtype}"`,
    );
  }
  if (!(values instanceof Float32Array)) {
    throw new TypeError(
      `values must be a Float32Array: got ${
        (values as unknown as object)?.constructor?.name ?? typeof values
      }`,
    );
  }
  const headDim = options?.headDim;
  if (typeof headDim !== "number") {
    throw new TypeError(`headDim must be a number: got ${typeof headDim}`);
  }
  if (!Number.isInteger(headDim) || headDim < 1 || values.length % headDim !== 0) {
    throw new RangeError(
      `headDim must be a positive integer dividing the ${values.length} values: got ${headDim}`,
    );
  }
  return dynamicKv8Scales(values, dtype as Kv8Format, headDim);
}
