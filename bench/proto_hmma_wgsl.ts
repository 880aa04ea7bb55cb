/**
 * WGSL of the f16 matrix prototype (bench/proto_hmma.ts): decode over f16 K/V on the GPU's
 * matrix units through Dawn's `chromium_experimental_subgroup_matrix` (f16 x f16 -> f32,
 * 16 x 16 x 16), which Dawn offers on the H200 once `shader-f16` is on (its adapter toggle
 * `vulkan_enable_f16_on_nvidia`; session 45).
 *
 * One workgroup per piece: a block of 16 query rows of one (sequence, KV head) over `chunk`
 * tokens, `NS` subgroups of 32 lanes (one per 128 dims of V). Each tile of `T` tokens:
 * 1. S = Q K^T: each subgroup takes tiles' 16-token blocks in turn, K^T loaded straight from
 *    storage as a column-major right matrix (the buffers carry a tile of padding, and tokens past
 *    the piece get no weight), the query block as a left matrix from an f16 copy of the queries
 *    the host makes (zero rows pad a head's rows to blocks of 16). S goes to workgroup memory.
 * 2. The softmax: `2 NS` lanes per row, each over `T / (2 NS)` tokens of the tile; the row's
 *    running maximum and sum kept by its lanes; the weights written as f16, the rescale factor
 *    of each row beside them.
 * 3. O_tile = P V per 16 dims (V loaded straight from storage, row-major); each subgroup stores
 *    its 16 x 128 block and its lanes add it into f32 sums, rescaled first (an exact online
 *    softmax: no result matrix is carried across tiles).
 * `split`: the query rows and the weights enter as two f16 matrices each (`x = hi + lo`, both
 * f16), so products reach about 22 bits, f32 grade, for twice the products; without it they carry
 * f16 rounding (about 1e-3 relative), as FlashAttention's f16 kernels do.
 *
 * @module
 */

/** A configuration: head dims, tokens per tile, split precision, the load syntax. */
export interface HmmaConfig {
  /** Head dim of K (a multiple of 16). */
  DK: number;
  /** Head dim of V (a multiple of 128). */
  DV: number;
  /** Tokens per tile (a multiple of 16). */
  T: number;
  /** Queries and weights as hi + lo f16 pairs (f32-grade products). */
  split: boolean;
  /**
   * `template`: `subgroupMatrixLoad<T, col_major>(p, offset, stride)`; `bool`: the deprecated
   * `(p, offset, col_major, stride)`.
   */
  syntax: "template" | "bool";
  /**
   * One subgroup per workgroup, V's 128-dim blocks spread over the grid (each workgroup computes
   * its rows' scores again): subgroup matrix calls want uniform arguments, and a subgroup index
   * taken from the invocation index is not.
   */
  dimGrid?: boolean;
  /** `diagnostic(off, subgroup_uniformity)`: the subgroup index passed as it is. */
  uniformOff?: boolean;
}

/** Bytes of the uniform block: n, chunk, hkv, splits, rows, scale (log2), q_lo, pad. */
export const PARAM_BYTES = 32;

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

export function hmmaWGSL(c: HmmaConfig): string {
  const { DK, DV, T, split } = c;
  if (DK % 16 || DV % 128 || T % 16 || T < 16) throw new RangeError(JSON.stringify(c));
  const NDB = DV / 128,
    NS = c.dimGrid ? 1 : NDB,
    TPR = 2 * NS,
    TPT = T / TPR,
    pieces = split ? 2 : 1;
  if (TPT < 1 || T % TPR || (T / 16) % NS) {
    throw new RangeError(`tile ${T} over ${TPR} lanes per row`);
  }
  // o_wg's row stride: the whole V row, or the workgroup's 128 dims.
  const OW = c.dimGrid ? 128 : DV;
  const L = "subgroup_matrix_left<f16, 16, 16>";
  const R = "subgroup_matrix_right<f16, 16, 16>";
  const S = "subgroup_matrix_result<f32, 16, 16>";
  const load = (type: string, ptr: string, off: string, col: boolean, stride: string) =>
    c.syntax === "bool"
      ? `subgroupMatrixLoad<${type}>(${ptr}, ${off}, ${col}, ${stride})`
      : `subgroupMatrixLoad<${type}, ${
        col ? "col_major" : "row_major"
      }>(${ptr}, ${off}, ${stride})`;
  const store = (ptr: string, off: string, m: string, stride: string) =>
    c.syntax === "bool"
      ? `subgroupMatrixStore(${ptr}, ${off}, ${m}, false, ${stride})`
      : `subgroupMatrixStore<row_major>(${ptr}, ${off}, ${m}, ${stride})`;
  const blocks = T / 16;
  // S for a 16-token block `jb` of the tile starting at token t.
  const scores = `
    for (var jj = 0u; jj < ${blocks / NS}u; jj++) {
      let jb = jj * ${NS}u + ${NS === 1 ? "0u" : "sub"};
      var s = ${S}();
      let kb = ((seq * P.n + t + 16u * jb) * P.hkv + head) * ${DK}u;
      for (var kk = 0u; kk < ${DK / 16}u; kk++) {
        let kr = ${load(R, "&kc", "kb + 16u * kk", true, `P.hkv * ${DK}u`)};
        s = subgroupMatrixMultiplyAccumulate(${
    load(L, "&qh", "qb + 16u * kk", false, `${DK}u`)
  }, kr, s);${
    split
      ? `
        s = subgroupMatrixMultiplyAccumulate(${
        load(L, "&qh", "P.q_lo + qb + 16u * kk", false, `${DK}u`)
      }, kr, s);`
      : ""
  }
      }
      ${store("&s_wg", "16u * jb", "s", `${T}u`)};
    }`;
  // O_tile for this subgroup's 128 dims, 16 at a time.
  const values = `
    for (var db = 0u; db < 8u; db++) {
      var o = ${S}();
      for (var tb = 0u; tb < ${blocks}u; tb++) {
        let vb = ((seq * P.n + t + 16u * tb) * P.hkv + head) * ${DV}u + 128u * dsub + 16u * db;
        let vr = ${load(R, "&vc", "vb", false, `P.hkv * ${DV}u`)};
        o = subgroupMatrixMultiplyAccumulate(${
    load(L, "&p_wg", "16u * tb", false, `${T}u`)
  }, vr, o);${
    split
      ? `
        o = subgroupMatrixMultiplyAccumulate(${
        load(L, "&p_wg", `${16 * T}u + 16u * tb`, false, `${T}u`)
      }, vr, o);`
      : ""
  }
      }
      ${store("&o_wg", `${OW === DV ? "128u * dsub + " : ""}16u * db`, "o", `${OW}u`)};
    }`;
  return `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;${
    c.uniformOff ? "\ndiagnostic(off, subgroup_uniformity);" : ""
  }

struct Params { n: u32, chunk: u32, hkv: u32, splits: u32, rows: u32, scale: f32, q_lo: u32, pad: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> qh: array<f16>;
@group(0) @binding(2) var<storage, read> kc: array<f16>;
@group(0) @binding(3) var<storage, read> vc: array<f16>;
@group(0) @binding(4) var<storage, read_write> outp: array<f32>;

var<workgroup> s_wg: array<f32, ${16 * T}>;
var<workgroup> p_wg: array<f16, ${16 * T * pieces}>;
var<workgroup> o_wg: array<f32, ${16 * OW}>;
var<workgroup> alpha_wg: array<f32, 16>;

@compute @workgroup_size(${32 * NS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  // Piece = ((seq * hkv + head) * row blocks + row block) * splits + split.
  let piece = wid.x${c.dimGrid ? ` / ${NDB}u` : ""};
  let rblocks = (P.rows + 15u) / 16u;
  let split = piece % P.splits;
  let rb = (piece / P.splits) % rblocks;
  let head = (piece / (P.splits * rblocks)) % P.hkv;
  let seq = piece / (P.splits * rblocks * P.hkv);
  let t_begin = min(P.n, split * P.chunk);
  let t_end = min(P.n, t_begin + P.chunk);
  let sub = lid / 32u;
  let lane = lid % 32u;
  // This workgroup's subgroup's 128 dims of V.
  let dsub = ${c.dimGrid ? `wid.x % ${NDB}u` : NS === 1 ? "0u" : "sub"};
  // The block's query rows: f16 [seq][kv head][row (padded to blocks of 16)][dim], their f16
  // remainders P.q_lo halves further on.
  let qb = ((seq * P.hkv + head) * rblocks + rb) * ${16 * DK}u;

  // Softmax lanes: row lid / TPR, tokens (lid % TPR) * TPT ...; their row's running state.
  let row = lid / ${TPR}u;
  let part = lid % ${TPR}u;
  var m_run = -3.0e38;
  var l_run = 0.0;
  // This lane's O sums: element j is row j / 4, dim 128 dsub + lane + 32 (j % 4).
  var acc: array<f32, 64>;
  for (var t = t_begin; t < t_end; t += ${T}u) {${scores}
    workgroupBarrier();
    var x: array<f32, ${TPT}>;
    var mt = -3.0e38;
    for (var i = 0u; i < ${TPT}u; i++) {
      let ti = part * ${TPT}u + i;
      x[i] = select(-3.0e38, s_wg[row * ${T}u + ti] * P.scale, t + ti < t_end);
      mt = max(mt, x[i]);
    }
${
    range(Math.log2(TPR)).map((b) => `    mt = max(mt, subgroupShuffleXor(mt, ${1 << b}u));`).join(
      "\n",
    )
  }
    let m_new = max(m_run, mt);
    let alpha = exp2(m_run - m_new);
    m_run = m_new;
    var ls = 0.0;
    for (var i = 0u; i < ${TPT}u; i++) {
      let ti = part * ${TPT}u + i;
      let p = select(0.0, exp2(x[i] - m_new), t + ti < t_end);
      let hi = f16(p);
      p_wg[row * ${T}u + ti] = hi;${
    split ? `\n      p_wg[${16 * T}u + row * ${T}u + ti] = f16(p - f32(hi));` : ""
  }
      ls += p;
    }
${range(Math.log2(TPR)).map((b) => `    ls += subgroupShuffleXor(ls, ${1 << b}u);`).join("\n")}
    l_run = l_run * alpha + ls;
    if (part == 0u) { alpha_wg[row] = alpha; }
    workgroupBarrier();${values}
    workgroupBarrier();
    for (var j = 0u; j < 64u; j++) {
      let r = j / 4u;
      acc[j] = fma(acc[j], alpha_wg[r], o_wg[r * ${OW}u + ${
    OW === DV ? "128u * dsub + " : ""
  }lane + 32u * (j % 4u)]);
    }
  }

  // The piece's state: 16 rows of DV unnormalised outputs, 16 maxima (log2), 16 sums.
  let base = piece * ${16 * DV + 32}u;
  for (var j = 0u; j < 64u; j++) {
    outp[base + (j / 4u) * ${DV}u + 128u * dsub + lane + 32u * (j % 4u)] = acc[j];
  }
  if (part == 0u${c.dimGrid ? " && dsub == 0u" : ""}) {
    outp[base + ${16 * DV}u + row] = m_run;
    outp[base + ${16 * DV + 16}u + row] = l_run;
  }
}
`;
}
