/**
 * The append kernel: copies new tokens' K and V rows from a runner's `f32` buffers (layout
 * `[token][kvHead][dim]`) into their rows of a paged cache layer, packing `f16` and `bf16` two
 * per `u32` with round-to-nearest-even in integer arithmetic, so the bits are the same as the
 * host's `toF16Bits` / `toBf16Bits` on every device. 8-bit caches get four codes per `u32` of
 * the values divided by the layer's per-tensor scale (the same integer rounding as the host's
 * `encodeKV`; the division is exact for power-of-two scales), and the scale in their scale table.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { KVDtype } from "../core/problem.ts";
import { dynamicScaleWGSL, type Kv8Format } from "../core/kv8.ts";
import { APPEND_BINDING as B, APPEND_PARAMS_RECORD, bindingWGSL, recordStructWGSL } from "./abi.ts";

/** Threads per workgroup of the append kernel. */
export const APPEND_WORKGROUP = 64;

/** `u32`s of the append kernel's uniform block. */
export const APPEND_PARAMS_WORDS: number = APPEND_PARAMS_RECORD.stride;

/**
 * Generates the append kernel for a KV dtype. Bindings: 0 params (`tokens`, `row_words`: `u32`s
 * of a cache row, `src_row`: floats of a source row), 1 `rows` (destination row of each token),
 * 2 and 3 the source K and V, 4 and 5 the layer's K and V; 8-bit caches add 6 the layer's
 * scales (uniform) and 7 its scale table.
 *
 * @example
 * ```ts
 * import { appendKernelWGSL } from "./append_kernel.ts";
 * console.log(appendKernelWGSL("bf16").includes("half_bits")); // true
 * ```
 */
export function appendKernelWGSL(kvDtype: KVDtype): string {
  const dtype = KV_DTYPE_INFO[kvDtype];
  const word = dtype.wgslWord;
  // 8-bit: four codes per word, of the values divided by the layer's scale; the first
  // `kv_heads` threads of a row store its scales.
  const quad = (x: string, s: string) =>
    [0, 1, 2, 3].map((i) => `(byte_bits(${x}[src + ${i}u] / ${s}) << ${8 * i}u)`).join(" | ");
  // Dynamic scales (layer_scale.z / .w set): the largest finite magnitude of the thread's head
  // row, as an integer max over the f32 bits, then the power of two of pow2_scale.
  const amax = (x: string) =>
    `    var m = 0u;
    for (var i = 0u; i < hw * 4u; i++) {
      let b = bitcast<u32>(${x}[head_src + i]) & 0x7fffffffu;
      m = select(m, max(m, b), b < 0x7f800000u);
    }`;
  const load = dtype.scaled
    ? `  let hw = params.row_words / params.kv_heads;
  let head = w / hw;
  let head_src = t * params.src_row + head * hw * 4u;
  var ks = layer_scale.x;
  var vs = layer_scale.y;
  if (layer_scale.z != 0.0) {
${amax("src_k")}
    ks = pow2_scale(m);
  }
  if (layer_scale.w != 0.0) {
${amax("src_v")}
    vs = pow2_scale(m);
  }
  dst_k[dst] = ${quad("src_k", "ks")};
  dst_v[dst] = ${quad("src_v", "vs")};
  if (w % hw == 0u) {
    dst_scales[rows[t] * params.kv_heads + head] = vec2<f32>(ks, vs);
  }`
    : !dtype.packed
    ? `  dst_k[dst] = src_k[src];
  dst_v[dst] = src_v[src];`
    : `  dst_k[dst] = half_bits(src_k[src]) | (half_bits(src_k[src + 1u]) << 16u);
  dst_v[dst] = half_bits(src_v[src]) | (half_bits(src_v[src + 1u]) << 16u);`;
  const scaleBindings = dtype.scaled
    ? `
${bindingWGSL(B.layerScale, "layer_scale", "uniform", "vec4<f32>")}
${bindingWGSL(B.dstScales, "dst_scales", "storage, read_write", "array<vec2<f32>>")}`
    : "";
  return `// lean-attention append kernel: ${kvDtype}
${recordStructWGSL(APPEND_PARAMS_RECORD)}
${bindingWGSL(B.params, "params", "uniform", "AppendParams")}
${bindingWGSL(B.rows, "rows", "storage, read", "array<u32>")}
${bindingWGSL(B.srcK, "src_k", "storage, read", "array<f32>")}
${bindingWGSL(B.srcV, "src_v", "storage, read", "array<f32>")}
${bindingWGSL(B.dstK, "dst_k", "storage, read_write", `array<${word}>`)}
${bindingWGSL(B.dstV, "dst_v", "storage, read_write", `array<${word}>`)}${scaleBindings}
${dtype.wgslPack}
${dtype.scaled ? dynamicScaleWGSL(kvDtype as Kv8Format) : ""}

@compute @workgroup_size(${APPEND_WORKGROUP})
fn main(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let i = gid.x + gid.y * nwg.x * ${APPEND_WORKGROUP}u;
  if (i >= params.tokens * params.row_words) {
    return;
  }
  let t = i / params.row_words;
  let w = i % params.row_words;
  let dst = rows[t] * params.row_words + w;
  let src = t * params.src_row + w * ${4 / dtype.bytes}u;
${load}
}
`;
}
