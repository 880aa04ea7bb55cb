/**
 * The append kernel: copies new tokens' K and V rows from a runner's `f32` buffers (layout
 * `[token][kvHead][dim]`) into their rows of a paged cache layer, packing `f16` and `bf16` two
 * per `u32` with round-to-nearest-even in integer arithmetic, so the bits are the same as the
 * host's `toF16Bits` / `toBf16Bits` on every device. 8-bit caches get four codes per `u32` of
 * the values divided by the layer's per-tensor scale (the same integer rounding as the host's
 * `encodeKV`; the division is exact for power-of-two scales), and the scale in their scale table.
 * A cache whose V is the first `headDimV` dims of K's rows (`vFromK`, MLA's latent cache) has V
 * rows of 0 words: the V half copies nothing, and K's scale is stored as V's too.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { KVDtype } from "../core/problem.ts";
import { dynamicScaleWGSL, type Kv8Format } from "../core/kv8.ts";
import {
  APPEND_PARAMS_RECORD,
  appendBindingsWGSL,
  appendLayoutEntries,
  recordStructWGSL,
} from "./abi.ts";

/** Threads per workgroup of the append kernel. */
export const APPEND_WORKGROUP = 64;

/** `u32`s of the append kernel's uniform block. */
export const APPEND_PARAMS_WORDS: number = APPEND_PARAMS_RECORD.stride;

/**
 * Generates the append kernel for a KV dtype. Bindings: 0 params (`tokens`, `row_words`: `u32`s
 * of a cache row, `src_row`: floats of a source row, the same of V's rows in `row_words_v` and
 * `src_row_v`), 1 `rows` (destination row of each token),
 * 2 and 3 the source K and V, 4 and 5 the layer's K and V; 8-bit caches add 6 the layer's
 * scales (uniform) and 7 its scale table. `row_words_v` 0 (a cache with `vFromK`, which binds
 * K's source as V's and a placeholder as V's destination): no V is written, and the scale
 * table's V column gets K's scale.
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
  // K's and V's rows may differ in length (MLA's headDimV): each thread copies word `w` of K's
  // row and of V's row, where the row has one. `x` names the tensor: k or v.
  const copy = (x: "k" | "v") => {
    const rowWords = x === "k" ? "params.row_words" : "params.row_words_v";
    const srcRow = x === "k" ? "params.src_row" : "params.src_row_v";
    const at = `  let dst = rows[t] * ${rowWords} + w;
  let src = t * ${srcRow} + w * ${4 / dtype.bytes}u;`;
    if (!dtype.packed && !dtype.scaled) {
      return `${at}
  dst_${x}[dst] = src_${x}[src];`;
    }
    if (!dtype.scaled) {
      return `${at}
  dst_${x}[dst] = half_bits(src_${x}[src]) | (half_bits(src_${x}[src + 1u]) << 16u);`;
    }
    // 8-bit: four codes per word, of the values divided by the layer's scale (dynamic, z or w
    // set: the largest finite magnitude of the thread's head row, as an integer max over the
    // f32 bits, then the power of two of pow2_scale); the first thread of each head row stores
    // its scale (K's in .x, V's in .y of the scale table's entry).
    const [given, dynamic] = x === "k" ? ["x", "z"] : ["y", "w"];
    // K's scale goes in both columns where V has no row of its own (vFromK: V's codes are K's).
    const store = x === "k"
      ? `if (params.row_words_v == 0u) {
      dst_scales[e] = vec2<f32>(s, s);
    } else {
      dst_scales[e].x = s;
    }`
      : "dst_scales[e].y = s;";
    const quad = [0, 1, 2, 3].map((i) => `(byte_bits(src_${x}[src + ${i}u] / s) << ${8 * i}u)`)
      .join(" | ");
    return `${at}
  let hw = ${rowWords} / params.kv_heads;
  let head = w / hw;
  let head_src = t * ${srcRow} + head * hw * 4u;
  var s = layer_scale.${given};
  if (layer_scale.${dynamic} != 0.0) {
    var m = 0u;
    for (var i = 0u; i < hw * 4u; i++) {
      let b = bitcast<u32>(src_${x}[head_src + i]) & 0x7fffffffu;
      m = select(m, max(m, b), b < 0x7f800000u);
    }
    s = pow2_scale(m);
  }
  dst_${x}[dst] = ${quad};
  if (w % hw == 0u) {
    let e = rows[t] * params.kv_heads + head;
    ${store}
  }`;
  };
  const load = `  if (w < params.row_words) {
${copy("k").replace(/^/gm, "  ")}
  }
  if (w < params.row_words_v) {
${copy("v").replace(/^/gm, "  ")}
  }`;
  return `// lean-attention append kernel: ${kvDtype}
${recordStructWGSL(APPEND_PARAMS_RECORD)}
${appendBindingsWGSL(appendLayoutEntries(dtype.scaled), word)}
${dtype.wgslPack}
${dtype.scaled ? dynamicScaleWGSL(kvDtype as Kv8Format) : ""}

@compute @workgroup_size(${APPEND_WORKGROUP})
fn main(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let i = gid.x + gid.y * nwg.x * ${APPEND_WORKGROUP}u;
  // One thread per word of the longer of K's and V's rows.
  let row_max = max(params.row_words, params.row_words_v);
  if (i >= params.tokens * row_max) {
    return;
  }
  let t = i / row_max;
  let w = i % row_max;
${load}
}
`;
}
