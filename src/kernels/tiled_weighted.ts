/**
 * The tiled decode kernel's weighted sum (`src/kernels/tiled_kernel.ts`), `O = O * alpha + P V`
 * over one tile: each thread adds its `MB_R` rows x 8 dims of V times the rows' probabilities,
 * read from workgroup memory as `vec4`s. The plain sum takes `U` tokens at a time with the next
 * group's V requested ahead; the masked one, for a tile where some row does not see every token
 * (weight -1 there), leaves those (row, token) pairs out with a select, so a non-finite V never
 * reaches a row that does not see it.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import { lines } from "./decode_step.ts";
import type { KernelSpec } from "./kernel_spec.ts";
import type { TiledLayout } from "./tiled_layout.ts";
import type { TiledStages } from "./tiled_stages.ts";

/**
 * The plain and masked weighted sums of a tile, for a spec, its layout and its V loads.
 *
 * @example
 * ```ts
 * import { tiledWeightedWGSL } from "./tiled_weighted.ts";
 * import { tiledStagesWGSL } from "./tiled_stages.ts";
 * import { tiledLayout } from "./tiled_layout.ts";
 * const spec = {
 *   headDim: 576, headDimV: 512, kvDtype: "f16" as const, tileTokens: 64, rowsPerBlock: 64,
 *   workgroupSize: 256, tiled: true,
 * };
 * const layout = tiledLayout(spec);
 * const sums = tiledWeightedWGSL(spec, layout, tiledStagesWGSL(spec, layout, "1.0"));
 * console.log(sums.masked.includes("select(vec4<f32>(0.0)"), sums.plain.includes("select")); // true false
 * ```
 */
export function tiledWeightedWGSL(
  spec: KernelSpec,
  layout: TiledLayout,
  stages: Pick<TiledStages, "vLoad" | "vLoadOne">,
): { plain: string; masked: string } {
  const { RB, TS, MB_R, TG, U } = layout;
  const PS_OFF = layout.offsets.scores;
  const { vLoad, vLoadOne } = stages;
  const RB4 = RB / 4;
  const MB4 = MB_R / 4;
  const TPT = TS / TG;
  const info = KV_DTYPE_INFO[spec.kvDtype];
  const tokenScales = info.scaled && spec.kvScales === "token";
  const comps = ["x", "y", "z", "w"];
  const o = (r: number, h: number) => `o${r}_${h}`;
  // The weighted sum over a tile, U tokens at a time with the next group's V requested ahead.
  const plain = `      for (var i0 = 0u; i0 < ${TPT}u; i0 += ${U}u) {
${lines(U, (u) => `        let vc${u} = vn${u};${tokenScales ? ` let vsc${u} = vs${u};` : ""}`)}
        if (i0 + ${U}u < ${TPT}u) {
${vLoad(`(i0 + ${U}u)`)}
        }
${
    lines(U, (u) =>
      `        {
          let t = tg + ${TG}u * (i0 + ${u}u);
          let vv = v_unpack(vc${u}, c);
          let va = vv[0]${tokenScales ? ` * vsc${u}` : ""};
          let vb = vv[1]${tokenScales ? ` * vsc${u}` : ""};
${
        lines(MB4, (j) =>
          `          let p${j} = smem[${PS_OFF}u + t * ${RB4}u + rg * ${MB4}u + ${j}u];
${
            lines(4, (e) => {
              const r = 4 * j + e;
              const pe = `p${j}.${comps[e]}`;
              return `          ${o(r, 0)} = fma(vec4<f32>(${pe}), va, ${o(r, 0)});
          ${o(r, 1)} = fma(vec4<f32>(${pe}), vb, ${o(r, 1)});`;
            })
          }`)
      }
        }`)
  }
      }`;
  // A tile where some row does not see every token: one token at a time, V loaded where it is
  // used, each (row, token) of weight -1 left out with a select. Rare (a piece's edges), so it
  // is kept small: written like the plain sum it cost whole tiles 11% on the H200 (session 25).
  const masked = `      for (var i = 0u; i < ${TPT}u; i++) {
        let t = tg + ${TG}u * i;
${vLoadOne("min(tile0 + t, tok_end - 1u)")}
        let vv = v_unpack(v1, c);
        let va = vv[0]${tokenScales ? " * vs1" : ""};
        let vb = vv[1]${tokenScales ? " * vs1" : ""};
${
    lines(MB4, (j) =>
      `        {
          let p = smem[${PS_OFF}u + t * ${RB4}u + rg * ${MB4}u + ${j}u];
${
        lines(4, (e) => {
          const r = 4 * j + e;
          return `          ${o(r, 0)} += select(vec4<f32>(0.0), p.${comps[e]} * va, p.${
            comps[e]
          } >= 0.0);
          ${o(r, 1)} += select(vec4<f32>(0.0), p.${comps[e]} * vb, p.${comps[e]} >= 0.0);`;
        })
      }
        }`)
  }
      }`;
  return { plain, masked };
}
