/**
 * Unpacking of KV chunks to `vec4<f32>`s. f16 and bf16 arrive packed two per `u32`, the 8-bit
 * formats four per `u32`, so no kernel needs the `shader-f16` feature; the kernel loads raw
 * chunks first and unpacks them after, so the loads of a step are all in flight together.
 * Chunks are 16 bytes, or 8 for 8-bit rows that are not a multiple of 16 bytes (see
 * `kvLoadBytes`).
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { KVDtype } from "../core/problem.ts";
import { kvLoadBytes } from "./kernel_layout.ts";

/**
 * WGSL of `unpack_kv(w)`: one raw chunk (a `vec4<f32>`, or a `vec4<u32>` / `vec2<u32>` of
 * packed elements) as an array of `vec4<f32>`. `headDim` picks 8-byte chunks where needed.
 *
 * @example
 * ```ts
 * import { kvLoadWGSL } from "./kv_load.ts";
 * console.log(kvLoadWGSL("f16").includes("unpack2x16float")); // true
 * console.log(kvLoadWGSL("int8", 24).includes("w: vec2<u32>")); // true
 * ```
 */
export function kvLoadWGSL(kvDtype: KVDtype, headDim?: number): string {
  const info = KV_DTYPE_INFO[kvDtype];
  return kvLoadBytes(kvDtype, headDim) === 8 ? info.wgslUnpack8 : info.wgslUnpack;
}

/**
 * The WGSL type of one raw chunk: `vec4<f32>`, `vec4<u32>` or (8-byte loads) `vec2<u32>`.
 *
 * @example
 * ```ts
 * import { kvChunkWGSL } from "./kv_load.ts";
 * console.log(kvChunkWGSL("fp8e4m3", 8), kvChunkWGSL("bf16", 8)); // vec2<u32> vec4<u32>
 * ```
 */
export function kvChunkWGSL(kvDtype: KVDtype, headDim?: number): string {
  const word = KV_DTYPE_INFO[kvDtype].wgslWord;
  return kvLoadBytes(kvDtype, headDim) === 8 ? `vec2<${word}>` : `vec4<${word}>`;
}

/**
 * WGSL of `unpack_kh(w)` (the packed f16 path's unpacking of 8-bit chunks into `vec4<f16>`s,
 * bytes 0, 2, 1, 3 of each word), or "" where the dtype has none (see
 * `KVDtypeInfo.wgslUnpackHalf`).
 *
 * @example
 * ```ts
 * import { kvLoadHalfWGSL } from "./kv_load.ts";
 * console.log(kvLoadHalfWGSL("int8").includes("fn unpack_kh"), kvLoadHalfWGSL("f16")); // true
 * ```
 */
export function kvLoadHalfWGSL(kvDtype: KVDtype, headDim?: number): string {
  return KV_DTYPE_INFO[kvDtype].wgslUnpackHalf?.[kvLoadBytes(kvDtype, headDim)] ?? "";
}
