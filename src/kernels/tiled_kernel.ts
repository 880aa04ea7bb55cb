/**
 * The tiled decode kernel, for blocks of 16-64 query rows over rows longer than 256 dims (MLA:
 * 16-128 query heads on one latent KV head, K of 576 dims and V of 512). Its rows share every K
 * and V element, so it computes each tile of tokens as two small matrix products through
 * workgroup memory instead of giving each token a lane group that holds a few rows in registers
 * (the decode kernel's layout, whose per-score shuffles and per-lane softmax then cost more than
 * the multiply-adds; bench/notes.md, session 24: 2.0-2.25x faster on MLA).
 *
 * Per piece, one workgroup of {@linkcode TILED_THREADS} threads walks its tokens `TS` at a time:
 * - scores `S = Q K^T`, `DC` dims at a time: the chunk's query rows (prescaled, f32) and keys
 *   (unpacked to f32) are staged in workgroup memory, row-major with a padding `vec4` per row;
 *   each thread computes 4 rows x `MA_T` tokens, reading a `vec4` of each per 4 dims. The next
 *   chunk's loads (or the next tile's first) are issued before this chunk's arithmetic.
 * - softmax: the scores go to workgroup memory as `[token][row]`; `W / RB` threads per row apply
 *   the variant's logits, the causal limit and the window, and keep the row's running max and sum.
 * - weighted sum `O = O * alpha + P V`: each thread holds `MB_R` rows x 8 dims of the output,
 *   reads its rows' probabilities as `vec4`s (one address for the whole subgroup) and its 8 dims
 *   of V from memory (a subgroup's lanes read consecutive dims of one token), `U` tokens ahead.
 *   A tile where some row does not see every token (weight -1 there) leaves those out with a
 *   select, so a non-finite V never reaches a row that does not see it; other tiles multiply
 *   plainly. Token groups (`TG`) share a tile's tokens when the block has fewer (row, dims) pairs than
 *   threads; their outputs are added through workgroup memory at the end of the piece.
 *
 * It reads the same uniform block, schedule, bindings and slots as the decode kernel, so the plan,
 * the merge and the runner's encoder are the same. Every barrier is in uniform control flow; no
 * workgroup waits on another.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import { lines } from "./decode_step.ts";
import { type KernelSpec, scaleTable } from "./kernel_spec.ts";
import { kvLoadDim } from "./kernel_layout.ts";
import {
  FLAT_WORKGROUP_WGSL,
  kernelEntryWGSL,
  PARAMS_WGSL,
  PIECE_LOOP_WGSL,
  QUERY_ROW_WGSL,
} from "./kernel_params.ts";
import { kvChunkWGSL, kvLoadWGSL } from "./kv_load.ts";
import { kvAddressWGSL } from "./kv_address.ts";
import { ioWGSL } from "./io_wgsl.ts";
import { kernelBindingsWGSL, kernelLayoutEntries, PIECE_RECORD, recordOffsetsWGSL } from "./abi.ts";
import { needsHeadTable, variantFunctionsWGSL } from "./variant_wgsl.ts";
import type { WGSLOptions } from "./decode_kernel.ts";
import { TILED_THREADS, tiledLayout } from "./tiled_layout.ts";
import { tiledStagesWGSL, vPieceWGSL } from "./tiled_stages.ts";
import { tiledWeightedWGSL } from "./tiled_weighted.ts";
import { tiledOutputWGSL } from "./tiled_output.ts";
import { blockRowLimitsWGSL } from "./block_rows.ts";

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/**
 * Generates the tiled decode kernel's WGSL for a spec (`tiled: true`).
 *
 * @example
 * ```ts
 * import { tiledKernelWGSL } from "./tiled_kernel.ts";
 * const wgsl = tiledKernelWGSL({
 *   headDim: 576, headDimV: 512, kvDtype: "f16", tileTokens: 64, rowsPerBlock: 64,
 *   workgroupSize: 256, tiled: true,
 * });
 * console.log(wgsl.includes("@workgroup_size(256)")); // true
 * ```
 */
export function tiledKernelWGSL(spec: KernelSpec, _options: WGSLOptions = {}): string {
  const D = spec.headDim;
  const DV = spec.headDimV ?? D;
  const W = TILED_THREADS;
  const layout = tiledLayout(spec);
  const { RB, TS, DC, MA_T, MB_R, NCV, TG, U, NTX, KL, QL, smem4 } = layout;
  const { scores: PS_OFF, exchange: RED_OFF, alpha: AL_OFF } = layout.offsets;
  const info = KV_DTYPE_INFO[spec.kvDtype];
  const RB4 = RB / 4;
  const NP = W / RB; // softmax threads per row
  const TPP = TS / NP;
  const MB4 = MB_R / 4;
  const TPT = TS / TG;
  const flags = spec.variant ?? {};
  const scaled = info.scaled;
  const tokenScales = scaled && spec.kvScales === "token";
  const unpackScale = info.unpackScale ?? 1;
  const fold = unpackScale === 1 ? "" : ` * ${unpackScale.toFixed(1)}`;
  // Per-tensor scales: from the params, or (`"layer"`) the scale table's first entry.
  const layer = spec.kvScales === "layer";
  const qScale = scaled && !tokenScales
    ? `(params.scale_log2 * ${layer ? "kv_scales[0].x" : "params.k_scale"}${fold})`
    : "params.scale_log2";
  const vScale = scaled && !tokenScales
    ? ` * (${layer ? "kv_scales[0].y" : "params.v_scale"}${fold})`
    : "";
  const splitV = DV !== D;
  const io = ioWGSL(spec);
  const qHalf = spec.qDtype === "f16";
  const v = vPieceWGSL(spec);
  const loadDim = kvLoadDim(D, spec.headDimV);
  const chunk = kvChunkWGSL(spec.kvDtype, loadDim);
  const headTable = needsHeadTable("decode", flags);
  const comps = ["x", "y", "z", "w"];
  const sc = (i: number, j: number) => `s${i}_${j}`;
  const o = (r: number, h: number) => `o${r}_${h}`;

  const { kRows, stageLoad, queryRows, stageStore, chunkMath, vLoad, vLoadOne } = tiledStagesWGSL(
    spec,
    layout,
    qScale,
  );
  const { plain: weighted, masked: weightedMasked } = tiledWeightedWGSL(spec, layout, {
    vLoad,
    vLoadOne,
  });
  // The softmax's logits: soft-cap, then ALiBi (log2 units, as the decode kernel's).
  const logits = `${flags.softCap ? "\n        s = soft_cap(s);" : ""}${
    flags.alibi ? "\n        s += slope * f32(bitcast<i32>(t - pq));" : ""
  }`;
  const visible = `t < lim${flags.window ? " && t >= lo" : ""}`;
  // Whether the row sees the token a slot reads: past the piece, a slot re-reads its last token.
  const seesRead = `min(t, tok_end - 1u) <= pq${
    flags.window ? " && min(t, tok_end - 1u) >= lo" : ""
  }`;

  return `// lean-attention tiled decode kernel: D=${D}${
    splitV ? ` DV=${DV}` : ""
  } kv=${spec.kvDtype} RB=${RB} TS=${TS} DC=${DC} MB_R=${MB_R} TG=${TG}${
    spec.paged ? " paged" : ""
  }${spec.paged && spec.kvLayout === "HND" ? " hnd" : ""}${
    scaled ? ` scales=${tokenScales ? "token" : "tensor"}` : ""
  }
${PARAMS_WGSL}
${
    kernelBindingsWGSL(
      kernelLayoutEntries({
        paged: spec.paged ?? false,
        heads: headTable,
        kvScales: scaleTable(spec),
      }),
      { q: io.qType, k: `array<${chunk}>`, v: `array<${chunk}>`, out: io.outType },
    )
  }
${recordOffsetsWGSL(PIECE_RECORD)}

const CHUNKS: u32 = ${(D * info.bytes) / 16}u;
const CHUNKS_V: u32 = ${(DV * info.bytes) / 16}u;
const DV: u32 = ${DV}u;
const RP: u32 = ${RB}u;
const SLOT: u32 = ${RB * (DV + 2)}u;
const NEG: f32 = -1e30;
const DIRECT: u32 = 0xffffffffu;
var<private> nan_bits: u32 = 0x7fc00000u;
// Staged query rows and keys, the tile's scores ([token][row]), the softmax's exchange.
var<workgroup> smem: array<vec4<f32>, ${smem4}>;
${FLAT_WORKGROUP_WGSL}
${QUERY_ROW_WGSL}
${kvLoadWGSL(spec.kvDtype, loadDim)}
${kvAddressWGSL(spec)}
${io.functions}
${v.load}
${v.unpack}${headTable || flags.softCap ? `\n${variantFunctionsWGSL("decode", flags)}` : ""}

// NaN or +inf, by bits (compilers may fold float NaN tests away).
fn poisoned(x: f32) -> bool {
  let b = bitcast<u32>(x);
  return (b & 0x7fffffffu) > 0x7f800000u || b == 0x7f800000u;
}

fn sm_get(i: u32) -> f32 {
  return smem[i / 4u][i % 4u];
}

fn sm_set(i: u32, x: f32) {
  smem[i / 4u][i % 4u] = x;
}

${kernelEntryWGSL(W)}
  // Score phase: rows ty * 4 .. + 3, tokens tx + ${NTX} j. Softmax: row sr, part sp.
  let tx = lid % ${NTX}u;
  let ty = lid / ${NTX}u;
  let sr = lid % ${RB}u;
  let sp = lid / ${RB}u;
  // Weighted sum: 8 dims at c, row group rg, token group tg.
  let c = lid % ${NCV}u;
  let rg = (lid / ${NCV}u) % ${RB / MB_R}u;
  let tg = lid / ${NCV * (RB / MB_R)}u;${
    tokenScales ? "\n  let n_kv = params.num_heads / params.group_size;" : ""
  }
${PIECE_LOOP_WGSL}
${blockRowLimitsWGSL(flags, "sr")}
    var m_run = NEG;
    var l_run = 0.0;
    var bad = 0u;
${lines(MB_R, (r) => `    var ${o(r, 0)} = vec4<f32>(0.0);\n    var ${o(r, 1)} = vec4<f32>(0.0);`)}
${lines(KL, (i) => `    var kn${i} = ${chunk}();`)}
${lines(KL, (i) => `    var kb${i} = 0u;\n    var kb_next${i} = 0u;`)}${
    tokenScales ? `\n${lines(KL, (i) => `    var ks${i} = 1.0;\n    var ks_next${i} = 1.0;`)}` : ""
  }
${queryRows}
${lines(QL, (i) => `    var qn${i} = ${qHalf ? "vec2<u32>" : "vec4<f32>"}();`)}
${lines(U, (u) => `    var vn${u} = ${v.type}();`)}${
    tokenScales ? `\n${lines(U, (u) => `    var vs${u} = 1.0;`)}` : ""
  }
${kRows("tok_begin")}
${stageLoad("0u", "kb_next")}
    for (var tile0 = tok_begin; tile0 < tok_end; tile0 += ${TS}u) {
${lines(KL, (i) => `      kb${i} = kb_next${i};${tokenScales ? ` ks${i} = ks_next${i};` : ""}`)}
${lines(4, (i) => lines(MA_T, (j) => `      var ${sc(i, j)} = 0.0;`))}
      for (var ci = 0u; ci < ${D / DC}u; ci++) {
${stageStore}
        workgroupBarrier();
        // The next stage's loads fly during this chunk's arithmetic.
        if (ci + 1u < ${D / DC}u) {
${stageLoad("(ci + 1u)", "kb")}
        } else if (tile0 + ${TS}u < tok_end) {
${kRows(`(tile0 + ${TS}u)`)}
${stageLoad("0u", "kb_next")}
        }
${chunkMath}
        workgroupBarrier();
      }
${
    lines(MA_T, (j) =>
      `      smem[${PS_OFF}u + (tx + ${j * NTX}u) * ${RB4}u + ty] = vec4<f32>(${
        range(4).map((i) =>
          sc(i, j)
        ).join(", ")
      });`)
  }
      // The first V pieces are requested before the softmax.
${vLoad("0u")}
      workgroupBarrier();
      // Softmax of the tile: row sr's ${NP} threads take ${TPP} tokens each.
      var mx = NEG;
      for (var i = sp * ${TPP}u; i < (sp + 1u) * ${TPP}u; i++) {
        let t = tile0 + i;
        var s = sm_get(${4 * PS_OFF}u + i * ${RB}u + sr);${logits}
        if (${visible}) {
          bad |= select(0u, 1u, poisoned(s));
          mx = max(mx, s);
        }
${logits ? `        sm_set(${4 * PS_OFF}u + i * ${RB}u + sr, s);\n` : ""}      }
      sm_set(${4 * RED_OFF}u + lid, mx);
      workgroupBarrier();
      var m_tile = NEG;
      for (var p = 0u; p < ${NP}u; p++) {
        m_tile = max(m_tile, sm_get(${4 * RED_OFF}u + p * ${RB}u + sr));
      }
      let m_new = max(m_run, m_tile);
      let alpha = exp2(m_run - m_new);
      var sum = 0.0;
      for (var i = sp * ${TPP}u; i < (sp + 1u) * ${TPP}u; i++) {
        let t = tile0 + i;
        // A token the row does not see: weight -1 in workgroup memory (the masked weighted sum
        // leaves it out, so a non-finite V there never reaches the row), 0 in its sum. A slot
        // past the piece re-reads the piece's last token: weight 0 where the row sees that token
        // (a non-finite V there reaches the row through the token itself anyway).
        let e = select(-1.0, select(0.0, exp2(sm_get(${
    4 * PS_OFF
  }u + i * ${RB}u + sr) - m_new), t < tok_end), ${seesRead});
        sm_set(${4 * PS_OFF}u + i * ${RB}u + sr, e);
        sum += max(e, 0.0);
      }
      sm_set(${4 * RED_OFF + W}u + lid, sum);
      if (sp == 0u) {
        sm_set(${4 * AL_OFF}u + sr, alpha);
      }
      workgroupBarrier();
      var l_tile = 0.0;
      for (var p = 0u; p < ${NP}u; p++) {
        l_tile += sm_get(${4 * RED_OFF + W}u + p * ${RB}u + sr);
      }
      l_run = l_run * alpha + l_tile;
      m_run = m_new;
      // The weighted sum: rescale, then ${TPT} tokens in groups of ${U}.
${
    lines(MB4, (j) =>
      `      {
        let al = smem[${AL_OFF}u + rg * ${MB4}u + ${j}u];
${
        lines(4, (e) =>
          `        ${o(4 * j + e, 0)} *= al.${comps[e]};\n        ${o(4 * j + e, 1)} *= al.${
            comps[e]
          };`)
      }
      }`)
  }
      // Tiles every row of the block sees whole take plain multiply-adds; the others leave out
      // each row's unseen tokens (weight -1) with a select (at most a few tiles per piece).
      // (A piece's ragged end is no reason: its slots re-read a token every row sees.)
      if (min(tile0 + ${TS}u, tok_end) <= lim_all${flags.window ? " && tile0 >= lo_all" : ""}) {
${weighted}
      } else {
${weightedMasked}
      }
      workgroupBarrier();
    }
${tiledOutputWGSL(spec, layout, vScale)}
    workgroupBarrier();
  }
}
`;
}
