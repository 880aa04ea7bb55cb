/**
 * WGSL of the f16 matrix prototype's row-parallel variant (session 47; bench/proto_hmma.ts
 * `--wide` with a `rows` variant): the subgroups of a workgroup take different blocks of 16
 * query rows of one (sequence, KV head) and share each staged K/V tile, as FlashAttention-2's
 * warps share a K/V block among their query rows.
 *
 * The wide kernel (bench/proto_hmma_wide_wgsl.ts) deals a tile's tokens among its subgroups, so
 * every tile needs the workgroup's softmax between its score and value products, and each
 * subgroup does 16 products per staged 64-token tile between four barriers. Here each subgroup
 * computes its own rows' scores over the whole tile, their softmax (two lanes per row, no
 * exchange with other subgroups) and their weighted sums over all 128 dims of V: 4 T / 16
 * products per tile per subgroup between three barriers, and a staged byte feeds `W` subgroups.
 * For cases of many rows per KV head (MQA h128/1, MLA); a block of 16 rows leaves `W - 1`
 * subgroups repeating its work.
 *
 * K and V tiles are staged through workgroup memory by 16-byte loads issued a stage ahead into
 * registers (every register index a constant), K and V in turn through one buffer; each
 * subgroup's scores and then its tile's products share one f32 region (16 x 128). f16 queries
 * and weights (f16 grade), outputs as the wide kernel's, for the host to merge. Head dims of K of
 * at most 128. The staging statements are the wide kernel's (bench/proto_hmma_staging.ts) since
 * after its H200 runs: the same chunks and addresses, written `(lid + 128u) / 16u` where the
 * measured kernel had `8u + lid / 16u`.
 *
 * @module
 */

/** A row-parallel configuration. */
export interface RowsConfig {
  /** Head dim of K (a multiple of 16, at most 128). */
  DK: number;
  /** Head dim of V (a multiple of 128; each workgroup takes 128 dims of it). */
  DV: number;
  /** Tokens per tile (a multiple of 16). */
  T: number;
  /** Subgroups (of 32 lanes) per workgroup, each a block of 16 rows: 1, 2 or 4. */
  W: number;
  /** Marks the row-parallel kernel. */
  rows: true;
}

import { stagingWGSL } from "./proto_hmma_staging.ts";
import { headerWGSL, MATRIX, matrixLoad, matrixStore } from "./proto_hmma_wgsl.ts";

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const join = (n: number, f: (i: number) => string, sep = "\n") => range(n).map(f).join(sep);

export function hmmaRowsWGSL(c: RowsConfig): string {
  const { DK, DV, T, W } = c;
  const THREADS = 32 * W, KB = DK / 16, TB = T / 16, NDB = DV / 128;
  const CK = (T * DK) / 8 / THREADS, CV = (T * 128) / 8 / THREADS;
  if (
    DK % 16 || DK > 128 || DV % 128 || T % 16 || ![1, 2, 4].includes(W) ||
    !Number.isInteger(CK) || !Number.isInteger(CV)
  ) throw new RangeError(JSON.stringify(c));
  if (THREADS % (DK / 8) || THREADS % 16) throw new RangeError(JSON.stringify(c));
  const KS = 136; // staged rows' stride in halves (128 dims + 8 against bank conflicts)
  const { left: L, right: R, result: S } = MATRIX;
  const load = matrixLoad, store = matrixStore;
  const { regsDecl, pipeLoad, pipeStore } = stagingWGSL({ T, threads: THREADS, KS, halves: false });
  const loadKV = (t: string) =>
    `${pipeLoad("kc", DK, DK, "0u", "kw", t)}\n${pipeLoad("vc", DV, 128, "dsub * 16u", "vw", t)}`;
  const so = "sg * 2048u"; // this subgroup's f32 region: its scores, then its tile's products
  const pw = `sg * ${16 * T}u`; // its weights
  return `${headerWGSL("vec4u", false)}

var<workgroup> so_wg: array<f32, ${2048 * W}>;
var<workgroup> p_wg: array<f16, ${16 * T * W}>;
var<workgroup> alpha_wg: array<f32, ${16 * W}>;
var<workgroup> kv_wg: array<f16, ${T * KS}>;

@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  // Workgroup = (((seq * hkv + head) * row groups + row group) * splits + split) * NDB + dims.
  let piece = wid.x / ${NDB}u;
  let dsub = wid.x % ${NDB}u;
  let rblocks = (P.rows + 15u) / 16u;
  let rgroups = (rblocks + ${W - 1}u) / ${W}u;
  let split = piece % P.splits;
  let rg = (piece / P.splits) % rgroups;
  let head = (piece / (P.splits * rgroups)) % P.hkv;
  let seq = piece / (P.splits * rgroups * P.hkv);
  let t_begin = min(P.n, split * P.chunk);
  let t_end = min(P.n, t_begin + P.chunk);
  let sg = lid / 32u;
  let lane = lid % 32u;
  // This subgroup's row block (past the last, it repeats the last one's work and writes nothing).
  let rb = rg * ${W}u + sg;
  let rbc = min(rb, rblocks - 1u);
  let qb = ((seq * P.hkv + head) * rblocks + rbc) * ${16 * DK}u;
${join(KB, (kk) => `  let q${kk} = ${load(L, "&qh", `qb + ${16 * kk}u`, false, `${DK}u`)};`)}
${regsDecl("kw", DK)}
${regsDecl("vw", 128)}
  if (t_begin < t_end) {
${loadKV("t_begin")}
  }
  // Softmax lanes: row lane / 2, tokens (lane % 2) * ${T / 2} ...
  let row = lane / 2u;
  let part = lane % 2u;
  var m_run = -3.0e38;
  var l_run = 0.0;
  // This lane's sums: element lane + 32 j of its subgroup's 16 x 128 block.
  var acc: array<f32, 64>;
  for (var t = t_begin; t < t_end; t += ${T}u) {
${pipeStore(DK, "kw")}
    workgroupBarrier();
${
    join(TB, (jb) =>
      `    {
${
        join(KB, (kk) =>
          `      let kr${kk} = ${load(R, "&kv_wg", `${16 * jb * KS + 16 * kk}u`, true, `${KS}u`)};`)
      }
      var s = ${S}();
${
        join(KB, (kk) => `      s = subgroupMatrixMultiplyAccumulate(q${kk}, kr${kk}, s);`)
      }
      ${store("&so_wg", `${so} + ${16 * jb}u`, "s", `${T}u`)};
    }`)
  }
    workgroupBarrier();
${pipeStore(128, "vw")}
    // The next tile's K and V fly during the softmax and the products.
    if (t + ${T}u < t_end) {
${loadKV(`(t + ${T}u)`)}
    }
    var x: array<f32, ${T / 2}>;
    var mt = -3.0e38;
    for (var i = 0u; i < ${T / 2}u; i++) {
      let ti = part * ${T / 2}u + i;
      x[i] = select(-3.0e38, so_wg[${so} + row * ${T}u + ti] * P.scale, t + ti < t_end);
      mt = max(mt, x[i]);
    }
    mt = max(mt, subgroupShuffleXor(mt, 1u));
    let m_new = max(m_run, mt);
    let alpha = exp2(m_run - m_new);
    m_run = m_new;
    var ls = 0.0;
    for (var i = 0u; i < ${T / 2}u; i++) {
      let ti = part * ${T / 2}u + i;
      let p = select(0.0, exp2(x[i] - m_new), t + ti < t_end);
      p_wg[${pw} + row * ${T}u + ti] = f16(p);
      ls += p;
    }
    ls += subgroupShuffleXor(ls, 1u);
    l_run = l_run * alpha + ls;
    if (part == 0u) { alpha_wg[sg * 16u + row] = alpha; }
    workgroupBarrier();
${
    join(8, (db) =>
      `    {
      var o = ${S}();
${
        join(TB, (tb) =>
          `      o = subgroupMatrixMultiplyAccumulate(${
            load(L, "&p_wg", `${pw} + ${16 * tb}u`, false, `${T}u`)
          }, ${load(R, "&kv_wg", `${16 * tb * KS + 16 * db}u`, false, `${KS}u`)}, o);`)
      }
      ${store("&so_wg", `${so} + ${16 * db}u`, "o", "128u")};
    }`)
  }
    workgroupBarrier();
    for (var j = 0u; j < 64u; j++) {
      let e = lane + 32u * j;
      acc[j] = fma(acc[j], alpha_wg[sg * 16u + e / 128u], so_wg[${so} + e]);
    }
  }

  // The row block's state: 16 rows of DV unnormalised outputs, 16 maxima (log2), 16 sums.
  if (rb < rblocks) {
    let base = (((seq * P.hkv + head) * rblocks + rb) * P.splits + split) * ${16 * DV + 32}u;
    for (var j = 0u; j < 64u; j++) {
      let e = lane + 32u * j;
      outp[base + (e / 128u) * ${DV}u + 128u * dsub + e % 128u] = acc[j];
    }
    if (part == 0u && dsub == 0u) {
      outp[base + ${16 * DV}u + row] = m_run;
      outp[base + ${16 * DV + 16}u + row] = l_run;
    }
  }
}
`;
}
