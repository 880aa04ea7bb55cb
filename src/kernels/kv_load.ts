/**
 * Unpacking of 16-byte KV chunks to `vec4<f32>`s. f16 and bf16 arrive packed two per `u32`, so
 * no kernel needs the `shader-f16` feature; the kernel loads raw chunks first and unpacks them
 * after, so the loads of a step are all in flight together.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { KVDtype } from "../core/problem.ts";

/**
 * WGSL of `unpack_kv(w)`: one raw 16-byte chunk (a `vec4<f32>`, or a `vec4<u32>` of packed
 * halves) as an array of `vec4<f32>`.
 *
 * @example
 * ```ts
 * import { kvLoadWGSL } from "./kv_load.ts";
 * console.log(kvLoadWGSL("f16").includes("unpack2x16float")); // true
 * ```
 */
export function kvLoadWGSL(kvDtype: KVDtype): string {
  return KV_DTYPE_INFO[kvDtype].wgslUnpack;
}
