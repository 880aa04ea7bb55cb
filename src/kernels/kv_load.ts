/**
 * Unpacking of 16-byte KV chunks to `vec4<f32>`s. f16 and bf16 arrive packed two per `u32`, so
 * no kernel needs the `shader-f16` feature; the kernel loads raw chunks first and unpacks them
 * after, so the loads of a step are all in flight together.
 *
 * @module
 */

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
  if (kvDtype === "f32") {
    return `
fn unpack_kv(w: vec4<f32>) -> array<vec4<f32>, 1> {
  return array<vec4<f32>, 1>(w);
}`;
  }
  const unpack = kvDtype === "f16"
    ? `fn unpack_pair(w: u32) -> vec2<f32> {
  return unpack2x16float(w);
}`
    : `fn unpack_pair(w: u32) -> vec2<f32> {
  return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}`;
  return `${unpack}
fn unpack_kv(w: vec4<u32>) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(
    vec4<f32>(unpack_pair(w.x), unpack_pair(w.y)),
    vec4<f32>(unpack_pair(w.z), unpack_pair(w.w)),
  );
}`;
}
