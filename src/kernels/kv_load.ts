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

/**
 * WGSL of `unpack_kv_raw`, `nan_bytes` and `nan_kv` (a step's chunks unpacked without their
 * NaN-code tests, then tested at once: `KernelSpec.nanSteps`), or "" where the dtype's unpacking
 * has no such test (see `KVDtypeInfo.wgslNanSteps`).
 *
 * @example
 * ```ts
 * import { kvNanStepsWGSL } from "./kv_load.ts";
 * console.log(kvNanStepsWGSL("fp8e4m3").includes("fn nan_bytes"), kvNanStepsWGSL("int8")); // true
 * ```
 */
export function kvNanStepsWGSL(kvDtype: KVDtype, headDim?: number): string {
  return KV_DTYPE_INFO[kvDtype].wgslNanSteps?.[kvLoadBytes(kvDtype, headDim)] ?? "";
}

/**
 * The one NaN-code test of a step's chunks (`nanSteps`): `chunks` are the (unpacked, raw) names
 * of each chunk, unpacked by `unpack_kv_raw` into `var`s; where a byte of any raw chunk is a NaN
 * code, every chunk's NaN codes are made NaN, as `unpack_kv` makes them.
 *
 * @example
 * ```ts
 * import { nanTestWGSL } from "./kv_load.ts";
 * const test = nanTestWGSL([["kf0_0", "k0_0"], ["kf1_0", "k1_0"]]);
 * console.log(test.includes("nan_bytes(k0_0) | nan_bytes(k1_0)")); // true
 * ```
 */
export function nanTestWGSL(chunks: readonly (readonly [string, string])[]): string {
  const any = chunks.map(([, w]) => `nan_bytes(${w})`).join(" | ");
  return `      if (((${any}) & 0x80808080u) != 0u) {
${chunks.map(([v, w]) => `        ${v} = nan_kv(${v}, ${w});`).join("\n")}
      }`;
}

/**
 * The (unpacked, raw) names of a step's chunks, token by token: `${unpacked}${u}_${i}` and
 * `${raw}${u}_${i}` for `tokens` tokens of `chunks` chunks each (see {@linkcode nanTestWGSL}).
 *
 * @example
 * ```ts
 * import { chunkNames } from "./kv_load.ts";
 * console.log(chunkNames("vf", "v", 2, 1)); // [ [ "vf0_0", "v0_0" ], [ "vf1_0", "v1_0" ] ]
 * ```
 */
export function chunkNames(
  unpacked: string,
  raw: string,
  tokens: number,
  chunks: number,
): [string, string][] {
  return Array.from({ length: tokens * chunks }, (_, x) => {
    const at = `${Math.floor(x / chunks)}_${x % chunks}`;
    return [`${unpacked}${at}`, `${raw}${at}`];
  });
}
