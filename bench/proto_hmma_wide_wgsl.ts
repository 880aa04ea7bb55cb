/**
 * WGSL of the f16 matrix prototype's wide variant (session 46; bench/proto_hmma.ts `--wide`):
 * `W` subgroups per workgroup instead of one.
 *
 * Session 45's kernel (bench/proto_hmma_wgsl.ts) ran one subgroup per workgroup because Tint
 * wants every subgroup-matrix call's arguments uniform across the workgroup and
 * `diagnostic(off, subgroup_uniformity)` did not lift that. The rule that does is Chromium's own,
 * `chromium.subgroup_matrix_uniformity` (Tint's uniformity.cc checks subgroup-matrix arguments
 * under it). With it off, the subgroups of a workgroup share a tile: its 16-token score blocks,
 * its softmax and its 16-dim value blocks are dealt among them, so a tile of `T = 16 W` tokens
 * costs each subgroup one score block (its K loads all in flight together) and `8 / W` value
 * blocks, with three workgroup barriers per tile, where session 45's one subgroup waited on
 * storage a dozen times per tile, one 16x16 load after another.
 *
 * Layout, inputs and output as session 45's kernel: a workgroup takes a block of 16 query rows of
 * one (sequence, KV head), `chunk` tokens and 128 dims of V; f16 queries (rows padded to blocks of
 * 16) and f16 K/V with a tile of padding; the piece's unnormalised outputs, maxima (log2) and sums
 * are written for the host to merge. Queries and weights in f16, or with `split` (session 47)
 * also as their scaled f16 remainders.
 *
 * @module
 */

import {
  headerWGSL,
  LO_SCALE,
  MATRIX,
  matrixLoad,
  matrixStore,
  pieceWGSL,
} from "./proto_hmma_wgsl.ts";
import { stagingWGSL } from "./proto_hmma_staging.ts";

/** A wide configuration: head dims, tokens per tile, subgroups per workgroup. */
export interface WideConfig {
  /** Head dim of K (a multiple of 16). */
  DK: number;
  /** Head dim of V (a multiple of 128). */
  DV: number;
  /** Tokens per tile: a multiple of 16 W. */
  T: number;
  /** Subgroups (of 32 lanes) per workgroup: 1, 2, 4 or 8. */
  W: number;
  /** The next tile's K loads issued before this tile's softmax and value products. */
  prefetch?: boolean;
  /**
   * K and V tiles staged through workgroup memory by plain 16-byte loads of every thread (rows
   * padded to 136 halves against bank conflicts), the matrices loaded from there: head dims of at
   * most 128 (the tile must fit NVIDIA's 48 KB of workgroup memory). Not with `prefetch`.
   */
  staged?: boolean;
  /**
   * With `staged` (session 47): the staging loads issued a stage ahead into registers, so they
   * fly during the products: the current tile's V during its scores and softmax, the next
   * tile's K during everything. Session 46's staged kernel loaded, then stored, then computed.
   */
  pipelined?: boolean;
  /**
   * With `pipelined`: K and V bound as `array<f16>` and staged eight halves at a time (two
   * `vec4<f16>` registers per 16 bytes) instead of as `vec4<u32>` words taken apart into halves.
   */
  halves?: boolean;
  /**
   * The block's query rows staged in workgroup memory once per piece and their matrices loaded
   * from there where used (`ldmatrix`; rows padded by 8 halves), instead of kept in registers:
   * 32 registers fewer at d128, so more workgroups fit a multiprocessor (session 47: the
   * pipelined kernel took about 190 registers per thread, two workgroups per multiprocessor; with
   * this, 131, and no faster). Not with `split` or `kLeft`.
   */
  qStaged?: boolean;
  /**
   * Parts of the tile's work left out, to time the rest (results wrong): the score products,
   * the softmax, the value products, the sums' update.
   */
  skip?: ("scores" | "softmax" | "values" | "acc")[];
  /**
   * Scores as S^T = K Q^T: K rows as the left matrices (row-major, each row's dims contiguous),
   * the queries as right ones, S^T stored column-major. Head dims up to 128, not staged.
   */
  kLeft?: boolean;
  /**
   * Split precision (session 47): queries and weights also enter as their f16 remainders scaled
   * by 2^12 (`x = hi + 2^-12 lo`), into result matrices of their own, joined in f32. The
   * weights' high parts are taken from their bits (the low 13 mantissa bits masked off, so
   * exact in f16) rather than by rounding to f16 and back: session 45's kernel computed the
   * remainder as `p - f32(f16(p))`, and on the H200 that added nothing (folded away,
   * presumably). Not with `prefetch` or `kLeft`.
   */
  split?: boolean;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const join = (n: number, f: (i: number) => string, sep = "\n") => range(n).map(f).join(sep);

export function hmmaWideWGSL(c: WideConfig): string {
  const { DK, DV, T, W } = c;
  if (
    DK % 16 || DV % 128 || ![1, 2, 4, 8].includes(W) || T % (16 * W) || T < 16 * W
  ) throw new RangeError(JSON.stringify(c));
  const NDB = DV / 128, KB = DK / 16, TB = T / 16, SB = TB / W, DB = 8 / W;
  const LPR = 2 * W, TPL = T / LPR, THREADS = 32 * W, E = 2048 / THREADS;
  const qStaged = c.qStaged ?? false;
  if (qStaged && (c.split || c.kLeft)) throw new RangeError(JSON.stringify(c));
  const keepQ = KB <= 8 && !qStaged;
  const staged = c.staged ?? false;
  const kLeft = c.kLeft ?? false;
  if (kLeft && (staged || c.prefetch || !keepQ)) throw new RangeError(JSON.stringify(c));
  if (staged && (DK > 128 || c.prefetch)) throw new RangeError(JSON.stringify(c));
  const split = c.split ?? false;
  if (split && (kLeft || c.prefetch)) throw new RangeError(JSON.stringify(c));
  const pipelined = c.pipelined ?? false;
  if (pipelined && !staged) throw new RangeError(JSON.stringify(c));
  // Result matrices per product: the high parts', and with `split` the remainders'.
  const NP = split ? 2 : 1;
  const LO = (1 / LO_SCALE).toString();
  const prefetch = (c.prefetch ?? false) && KB <= 8;
  const KS = 136; // staged rows' stride in halves
  const keep = (part: "scores" | "softmax" | "values" | "acc", text: string) =>
    c.skip?.includes(part) ? `    // (${part} left out)` : text;
  const { left: L, right: R, result: S } = MATRIX;
  const load = matrixLoad, store = matrixStore;
  const qLeft = (kk: number, lo = false) =>
    kLeft
      ? load(R, "&qh", `qb + ${16 * kk}u`, true, `${DK}u`)
      : load(L, "&qh", `${lo ? "P.q_lo + " : ""}qb + ${16 * kk}u`, false, `${DK}u`);
  const q = (kk: number, lo = false) =>
    qStaged
      ? load(L, "&q_wg", `${16 * kk}u`, false, `${DK + 8}u`)
      : keepQ
      ? `q${lo ? "l" : ""}${kk}`
      : qLeft(kk, lo);
  // The K row of token block `jb` of the tile at `t`.
  const kRow = (t: string, jb: string) =>
    `((seq * P.n + ${t} + 16u * ${jb}) * P.hkv + head) * ${DK}u`;
  const kRight = (kb: string, kk: number) =>
    kLeft
      ? load(L, "&kc", `${kb} + ${16 * kk}u`, false, `P.hkv * ${DK}u`)
      : staged
      ? load(R, "&kv_wg", `${kb} + ${16 * kk}u`, true, `${KS}u`)
      : load(R, "&kc", `${kb} + ${16 * kk}u`, true, `P.hkv * ${DK}u`);
  const halves = c.halves ?? false;
  if (halves && !pipelined) throw new RangeError(JSON.stringify(c));
  const { stage, regsDecl, pipeLoad, pipeStore } = stagingWGSL({ T, threads: THREADS, KS, halves });
  // Score blocks: this subgroup's blocks sg + W i of the tile, stored to s_wg.
  const scoreBlock = (i: number) => {
    const jb = `(sg + ${W * i}u)`;
    const loads = prefetch && i === 0
      ? "" // block 0's K came in the previous iteration (kn*)
      : `      let kb = ${staged ? `16u * ${jb} * ${KS}u` : kRow("t", jb)};
${join(KB, (kk) => `      let kr${kk} = ${kRight("kb", kk)};`)}`;
    const kr = (kk: number) => (prefetch && i === 0 ? `kn${kk}` : `kr${kk}`);
    return `    {
${loads}
      var s = ${S}();${split ? `\n      var sl = ${S}();` : ""}
${
      join(KB, (kk) =>
        `      s = subgroupMatrixMultiplyAccumulate(${
          kLeft ? `${kr(kk)}, ${q(kk)}` : `${q(kk)}, ${kr(kk)}`
        }, s);${
          split
            ? `\n      sl = subgroupMatrixMultiplyAccumulate(${q(kk, true)}, ${kr(kk)}, sl);`
            : ""
        }`)
    }
      ${
      kLeft
        ? `subgroupMatrixStore<col_major>(&s_wg, 16u * ${jb}, s, ${T}u)`
        : store("&s_wg", `16u * ${jb}`, "s", `${T}u`)
    };${split ? `\n      ${store("&s_wg", `${16 * T}u + 16u * ${jb}`, "sl", `${T}u`)};` : ""}
    }`;
  };
  // Value blocks: this subgroup's 16-dim blocks sg + W i of the workgroup's 128, to o_wg.
  const valueBlock = (i: number) => {
    const db = `(sg + ${W * i}u)`;
    return `    {
${
      join(TB, (tb) =>
        `      let vr${tb} = ${
          staged ? load(R, "&kv_wg", `${16 * tb * KS}u + 16u * ${db}`, false, `${KS}u`) : load(
            R,
            "&vc",
            `((seq * P.n + t + ${16 * tb}u) * P.hkv + head) * ${DV}u + 128u * dsub + 16u * ${db}`,
            false,
            `P.hkv * ${DV}u`,
          )
        };`)
    }
      var o = ${S}();${split ? `\n      var ol = ${S}();` : ""}
${
      join(TB, (tb) =>
        `      o = subgroupMatrixMultiplyAccumulate(${
          load(L, "&p_wg", `${16 * tb}u`, false, `${T}u`)
        }, vr${tb}, o);${
          split
            ? `\n      ol = subgroupMatrixMultiplyAccumulate(${
              load(L, "&p_wg", `${16 * T + 16 * tb}u`, false, `${T}u`)
            }, vr${tb}, ol);`
            : ""
        }`)
    }
      ${store("&o_wg", `16u * ${db}`, "o", "128u")};${
      split ? `\n      ${store("&o_wg", `2048u + 16u * ${db}`, "ol", "128u")};` : ""
    }
    }`;
  };
  const prefetchNext = prefetch
    ? `    // The next tile's first score block's K, in flight during this tile's softmax and values.
    if (t + ${T}u < t_end) {
      let kb = ${kRow(`t + ${T}u`, "sg")};
${join(KB, (kk) => `      kn${kk} = ${kRight("kb", kk)};`)}
    }`
    : "";
  return `${headerWGSL(staged && !halves ? "vec4u" : "f16", false)}

var<workgroup> s_wg: array<f32, ${16 * T * NP}>;
var<workgroup> p_wg: array<f16, ${16 * T * NP}>;
var<workgroup> o_wg: array<f32, ${2048 * NP}>;
var<workgroup> alpha_wg: array<f32, 16>;${
    qStaged
      ? `
var<workgroup> q_wg: array<f16, ${16 * (DK + 8)}>; // rows padded by 8 halves`
      : ""
  }${
    staged
      ? `
var<workgroup> kv_wg: array<f16, ${T * KS}>;`
      : ""
  }

@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
${pieceWGSL(NDB)}
  let sg = lid / 32u;${
    c.skip?.includes("scores") ? "\n  _ = kc[0]; // bound, though its part is left out" : ""
  }${c.skip?.includes("values") ? "\n  _ = vc[0];" : ""}
  let qb = ((seq * P.hkv + head) * rblocks + rb) * ${16 * DK}u;
${keepQ ? join(KB, (kk) => `  let q${kk} = ${qLeft(kk)};`) : ""}${
    qStaged
      ? `  for (var i = lid; i < ${16 * DK}u; i += ${THREADS}u) {
    q_wg[(i / ${DK}u) * ${DK + 8}u + i % ${DK}u] = qh[qb + i];
  }
  workgroupBarrier();`
      : ""
  }${keepQ && split ? `\n${join(KB, (kk) => `  let ql${kk} = ${qLeft(kk, true)};`)}` : ""}
${
    prefetch
      ? `${join(KB, (kk) => `  var kn${kk} = ${R}();`)}
  if (t_begin < t_end) {
    let kb = ${kRow("t_begin", "sg")};
${join(KB, (kk) => `    kn${kk} = ${kRight("kb", kk)};`)}
  }`
      : ""
  }
${
    pipelined
      ? `${regsDecl("kw", DK)}
${regsDecl("vw", 128)}
  if (t_begin < t_end) {
${pipeLoad("kc", DK, DK, "0u", "kw", "t_begin")}
  }
`
      : ""
  }  // Softmax lanes: ${LPR} per row (row lid / ${LPR}, tokens (lid % ${LPR}) * ${TPL} ...), each
  // keeping its row's running maximum and sum.
  let row = lid / ${LPR}u;
  let part = lid % ${LPR}u;
  var m_run = -3.0e38;
  var l_run = 0.0;
  // This thread's output sums: element j is o_wg's element lid + ${THREADS} j (row-major 16 x 128).
  var acc: array<f32, ${E}>;
  for (var t = t_begin; t < t_end; t += ${T}u) {
${
    pipelined
      ? `${pipeStore(DK, "kw")}
    workgroupBarrier();
    // This tile's V and the next tile's K fly during the products.
${pipeLoad("vc", DV, 128, "dsub * 16u", "vw", "t")}
    if (t + ${T}u < t_end) {
${pipeLoad("kc", DK, DK, "0u", "kw", `(t + ${T}u)`)}
    }`
      : staged
      ? `${stage("kc", DK, DK, "0u")}
    workgroupBarrier();`
      : ""
  }
${keep("scores", join(SB, scoreBlock))}
    workgroupBarrier();
${
    keep(
      "softmax",
      `    var x: array<f32, ${TPL}>;
    var mt = -3.0e38;
    for (var i = 0u; i < ${TPL}u; i++) {
      let ti = part * ${TPL}u + i;
${
        split
          ? `      let at = row * ${T}u + ti;
      x[i] = select(-3.0e38, (s_wg[at] + s_wg[${16 * T}u + at] * ${LO}) * P.scale, t + ti < t_end);`
          : `      x[i] = select(-3.0e38, s_wg[row * ${T}u + ti] * P.scale, t + ti < t_end);`
      }
      mt = max(mt, x[i]);
    }
${join(Math.log2(LPR), (b) => `    mt = max(mt, subgroupShuffleXor(mt, ${1 << b}u));`)}
    let m_new = max(m_run, mt);
    let alpha = exp2(m_run - m_new);
    m_run = m_new;
    var ls = 0.0;
    for (var i = 0u; i < ${TPL}u; i++) {
      let ti = part * ${TPL}u + i;
      let p = select(0.0, exp2(x[i] - m_new), t + ti < t_end);
${
        split
          ? `      let ph = bitcast<f32>(bitcast<u32>(p) & 0xffffe000u);
      p_wg[row * ${T}u + ti] = f16(ph);
      p_wg[${16 * T}u + row * ${T}u + ti] = f16((p - ph) * ${LO_SCALE}.0);`
          : `      p_wg[row * ${T}u + ti] = f16(p);`
      }
      ls += p;
    }
${join(Math.log2(LPR), (b) => `    ls += subgroupShuffleXor(ls, ${1 << b}u);`)}
    l_run = l_run * alpha + ls;
    if (part == 0u) { alpha_wg[row] = alpha; }`,
    )
  }
${prefetchNext}
${pipelined ? pipeStore(128, "vw") : staged ? stage("vc", DV, 128, "dsub * 16u") : ""}
    workgroupBarrier();
${keep("values", join(DB, valueBlock))}
    workgroupBarrier();
${
    keep(
      "acc",
      `    for (var j = 0u; j < ${E}u; j++) {
      let e = lid + ${THREADS}u * j;
      acc[j] = fma(acc[j], alpha_wg[e / 128u], o_wg[e]${split ? ` + o_wg[2048u + e] * ${LO}` : ""});
    }`,
    )
  }
  }

  // The piece's state: 16 rows of DV unnormalised outputs, 16 maxima (log2), 16 sums.
  let base = piece * ${16 * DV + 32}u;
  for (var j = 0u; j < ${E}u; j++) {
    let e = lid + ${THREADS}u * j;
    outp[base + (e / 128u) * ${DV}u + 128u * dsub + e % 128u] = acc[j];
  }
  if (part == 0u && dsub == 0u) {
    outp[base + ${16 * DV}u + row] = m_run;
    outp[base + ${16 * DV + 16}u + row] = l_run;
  }
}
`;
}
