/**
 * The query and output buffer formats of the attention kernels: `f32`, or `f16` halves packed two
 * per `u32` (no `shader-f16` feature needed). Queries are read through `load_q`; an `f16` output
 * is written two elements per thread with the host's round-to-nearest-even conversion
 * (`half_bits` of the dtype table), so its bits are `toF16Bits` of the `f32` result.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { KernelSpec } from "./kernel_spec.ts";

/**
 * The query and output buffers' WGSL for a spec: their array types, whether the output is
 * packed halves, and the functions the kernels call (`load_q`, and `half_bits` for `f16` out).
 *
 * @example
 * ```ts
 * import { ioWGSL } from "./io_wgsl.ts";
 * const spec = { headDim: 64, kvDtype: "f32" as const, tileTokens: 64, rowsPerBlock: 4, workgroupSize: 64 };
 * const io = ioWGSL({ ...spec, qDtype: "f16", outDtype: "f16" });
 * console.log(io.qType, io.outType, io.outHalf); // array<vec2<u32>> array<u32> true
 * ```
 */
export function ioWGSL(spec: KernelSpec): {
  qType: string;
  outType: string;
  outHalf: boolean;
  functions: string;
} {
  const qHalf = spec.qDtype === "f16";
  const outHalf = spec.outDtype === "f16";
  const load = qHalf
    ? `fn load_q(i: u32) -> vec4<f32> {
  let w = q[i];
  return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}`
    : `fn load_q(i: u32) -> vec4<f32> {
  return q[i];
}`;
  return {
    qType: qHalf ? "array<vec2<u32>>" : "array<vec4<f32>>",
    outType: outHalf ? "array<u32>" : "array<f32>",
    outHalf,
    functions: `${load}${
      outHalf
        ? `
${KV_DTYPE_INFO.f16.wgslPack}`
        : ""
    }`,
  };
}

/**
 * The decode kernel's write of a direct piece's `f16` output (rows of `DV`, V's head dim): two
 * elements per thread and `u32`, for a workgroup of `W` threads.
 */
export function directHalfWGSL(
  W: number,
  normalise: (value: string, row: string) => string = (v, r) => `${v} / l_sh[${r}]`,
): string {
  return `
    if (slot == DIRECT) {
      for (var i = 2u * lid; i < RP * DV; i += ${2 * W}u) {
        let r = i / DV;
        if (r < n_rows) {
          let bad = any_bad[r] != 0u;
          let lo = select(${normalise("acc[i >> 2u][i & 3u]", "r")}, bitcast<f32>(nan_bits), bad);
          let hi = select(${
    normalise("acc[(i + 1u) >> 2u][(i + 1u) & 3u]", "r")
  }, bitcast<f32>(nan_bits), bad);
          out[(query_row(q_start, q_len, kv_head, r0 + r) * DV + i % DV) / 2u] =
            half_bits(lo) | (half_bits(hi) << 16u);
        }
      }
    }`;
}
