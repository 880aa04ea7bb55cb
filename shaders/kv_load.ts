/**
 * 16-byte KV loads for each dtype, unpacked to `vec4<f32>`s. f16 and bf16 arrive packed two per
 * `u32`, so no kernel needs the `shader-f16` feature.
 *
 * @module
 */

import type { KVDtype } from "../src/problem.ts";

/** WGSL of `load_k(i)` / `load_v(i)`: the `i`-th 16-byte chunk as an array of `vec4<f32>`. */
export function kvLoadWGSL(kvDtype: KVDtype): string {
  if (kvDtype === "f32") {
    return ["k", "v"].map((x) => `
fn load_${x}(i: u32) -> array<vec4<f32>, 1> {
  return array<vec4<f32>, 1>(${x}_cache[i]);
}`).join("\n");
  }
  const unpack = kvDtype === "f16"
    ? `fn unpack_pair(w: u32) -> vec2<f32> {
  return unpack2x16float(w);
}`
    : `fn unpack_pair(w: u32) -> vec2<f32> {
  return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}`;
  return unpack + ["k", "v"].map((x) => `
fn load_${x}(i: u32) -> array<vec4<f32>, 2> {
  let w = ${x}_cache[i];
  return array<vec4<f32>, 2>(
    vec4<f32>(unpack_pair(w.x), unpack_pair(w.y)),
    vec4<f32>(unpack_pair(w.z), unpack_pair(w.w)),
  );
}`).join("\n");
}
