/**
 * The end of a tiled decode kernel's piece (`src/kernels/tiled_kernel.ts`): the token groups'
 * outputs added into group 0's through workgroup memory, each row's final sum and output rescale
 * (a direct piece's sink joins them there, once) and its NaN flag, then the row's log-sum-exp and
 * output written to `lse_out` and `out` (a direct piece) or to its slot of `partials`.
 *
 * @module
 */

import { lines } from "./decode_step.ts";
import type { KernelSpec } from "./kernel_spec.ts";
import { ioWGSL } from "./io_wgsl.ts";
import { blockRowFinalWGSL } from "./block_rows.ts";
import type { TiledLayout } from "./tiled_layout.ts";

/**
 * The statements that end a piece of the tiled kernel, after its last tile, for a spec, its
 * layout and the per-tensor V scale factor the outputs take (`" * (...)"`; empty without scales
 * or with per-token scales, which the weighted sum has applied).
 *
 * @example
 * ```ts
 * import { tiledOutputWGSL } from "./tiled_output.ts";
 * import { tiledLayout } from "./tiled_layout.ts";
 * const spec = {
 *   headDim: 576, headDimV: 512, kvDtype: "f16" as const, tileTokens: 64, rowsPerBlock: 64,
 *   workgroupSize: 256, tiled: true,
 * };
 * const wgsl = tiledOutputWGSL(spec, tiledLayout(spec), "");
 * console.log(wgsl.includes("lse_out["), wgsl.includes("token groups")); // true false
 * ```
 */
export function tiledOutputWGSL(spec: KernelSpec, layout: TiledLayout, vScale: string): string {
  const DV = spec.headDimV ?? spec.headDim;
  const { RB, MB_R, TG } = layout;
  const FIN_OFF = layout.offsets.final;
  const flags = spec.variant ?? {};
  const io = ioWGSL(spec);
  const comps = ["x", "y", "z", "w"];
  const o = (r: number, h: number) => `o${r}_${h}`;
  return `${
    TG > 1
      ? `    // The token groups' outputs, added in group order into group 0's.
    for (var g = 1u; g < ${TG}u; g++) {
      if (tg == g) {
${
        lines(MB_R, (r) =>
          `        smem[(rg * ${MB_R}u + ${r}u) * ${DV / 4}u + 2u * c] = ${o(r, 0)};
        smem[(rg * ${MB_R}u + ${r}u) * ${DV / 4}u + 2u * c + 1u] = ${o(r, 1)};`)
      }
      }
      workgroupBarrier();
      if (tg == 0u) {
${
        lines(MB_R, (r) =>
          `        ${o(r, 0)} += smem[(rg * ${MB_R}u + ${r}u) * ${DV / 4}u + 2u * c];
        ${o(r, 1)} += smem[(rg * ${MB_R}u + ${r}u) * ${DV / 4}u + 2u * c + 1u];`)
      }
      }
      workgroupBarrier();
    }`
      : ""
  }
    // Each row's final sum and output rescale (a direct piece's sink joins them here, once),
    // and whether it saw a NaN or +inf score.
    if (sp == 0u) {${
    blockRowFinalWGSL(flags, "sr", (l, c, nan) =>
      `      sm_set(${4 * FIN_OFF}u + sr, ${l});
      sm_set(${4 * FIN_OFF + RB}u + sr, ${c});
      sm_set(${4 * FIN_OFF + 2 * RB}u + sr, ${nan});`)
  }
    }
    workgroupBarrier();
    if (tg == 0u) {
${
    lines(MB_R, (r) =>
      `      {
        let r = rg * ${MB_R}u + ${r}u;
        if (r < n_rows) {
          let lo_half = ${o(r, 0)}${vScale};
          let hi_half = ${o(r, 1)}${vScale};
          if (slot == DIRECT) {
            let nan = sm_get(${4 * FIN_OFF + 2 * RB}u + r) != 0.0;
            let k = sm_get(${4 * FIN_OFF + RB}u + r) / sm_get(${4 * FIN_OFF}u + r);
            let x0 = select(lo_half * k, vec4<f32>(bitcast<f32>(nan_bits)), nan);
            let x1 = select(hi_half * k, vec4<f32>(bitcast<f32>(nan_bits)), nan);
            let at = query_row(q_start, q_len, kv_head, r0 + r) * DV + 8u * c;
${
        io.outHalf
          ? `            out[at / 2u] = half_bits(x0.x) | (half_bits(x0.y) << 16u);
            out[at / 2u + 1u] = half_bits(x0.z) | (half_bits(x0.w) << 16u);
            out[at / 2u + 2u] = half_bits(x1.x) | (half_bits(x1.y) << 16u);
            out[at / 2u + 3u] = half_bits(x1.z) | (half_bits(x1.w) << 16u);`
          : lines(
            8,
            (e) => `            out[at + ${e}u] = x${e >> 2}.${comps[e & 3]};`,
          )
      }
          } else {
            let at = slot * SLOT + r * DV + 8u * c;
${
        lines(8, (e) =>
          `            partials[at + ${e}u] = ${e < 4 ? "lo_half" : "hi_half"}.${comps[e & 3]};`)
      }
          }
        }
      }`)
  }
    }`;
}
