/**
 * WGSL of the f16 matrix prototype (bench/proto_hmma.ts): decode over f16 K/V on the GPU's
 * matrix units through Dawn's `chromium_experimental_subgroup_matrix` (f16 x f16 -> f32,
 * 16 x 16 x 16), which Dawn offers on the H200 once `shader-f16` is on (its adapter toggle
 * `vulkan_enable_f16_on_nvidia`; session 45).
 *
 * One subgroup (32 lanes) per workgroup: Tint wants every subgroup-matrix call's arguments
 * uniform across the workgroup, and a subgroup index taken from the invocation index is not
 * (`diagnostic(off, subgroup_uniformity)` does not lift it), so subgroups of one workgroup could
 * only repeat each other's products. A workgroup takes a block of 16 query rows of one
 * (sequence, KV head), 128 dims of V and `chunk` tokens; the V dims' workgroups of a block each
 * compute its scores. Each tile of `T` tokens:
 * 1. S = Q K^T per 16-token block, K^T loaded straight from storage as a column-major right
 *    matrix (the buffers carry a tile of padding; tokens past the piece get no weight), the
 *    query block as left matrices from an f16 copy of the queries the host makes (zero rows pad
 *    a head's rows to blocks of 16). S goes to workgroup memory.
 * 2. The softmax: two lanes per row, each over `T / 2` tokens; the row's running maximum and
 *    sum kept by its lanes; the weights written as f16, each row's rescale factor beside them.
 * 3. O_tile = P V per 16 dims (V straight from storage, row-major), stored to workgroup memory;
 *    the lanes add it into f32 sums, rescaled first (an exact online softmax: no result matrix
 *    is carried across tiles).
 * `split`: queries and weights also enter as their f16 remainders scaled by 2^12 (`x = hi +
 * 2^-12 lo`; scaled, the remainders stay clear of f16's subnormals), into result matrices of
 * their own, joined in f32 in workgroup memory: about 22-bit products, f32 grade, for twice the
 * products (on the CPU: `bench/proto_hmma.ts --emulate`; on the H200 the weights' remainders
 * computed here added nothing, session 45). Without it they carry f16 rounding (about 1e-4 relative on random data), as
 * FlashAttention's f16 kernels do. `unroll`: every load of a 16-token block (and the query
 * matrices, at head dims up to 128, once per piece) issued before its products, so they are in
 * flight together.
 *
 * @module
 */

/** A configuration: head dims, tokens per tile, split precision, unrolling, the load syntax. */
export interface HmmaConfig {
  /** Head dim of K (a multiple of 16). */
  DK: number;
  /** Head dim of V (a multiple of 128). */
  DV: number;
  /** Tokens per tile (a multiple of 16). */
  T: number;
  /** Queries and weights as hi + 2^-12 lo f16 pairs (f32-grade products). */
  split: boolean;
  /** Loads of a block issued before its products, query matrices kept (see the module doc). */
  unroll?: boolean;
  /**
   * `template`: `subgroupMatrixLoad<T, col_major>(p, offset, stride)`; `bool`: the deprecated
   * `(p, offset, col_major, stride)`.
   */
  syntax: "template" | "bool";
}

/** Bytes of the uniform block: n, chunk, hkv, splits, rows, scale (log2), q_lo, pad. */
export const PARAM_BYTES = 32;

/** The remainders' scale: `x = hi + lo / LO_SCALE`. */
export const LO_SCALE = 4096;

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const join = (n: number, f: (i: number) => string, sep = "\n") => range(n).map(f).join(sep);

/**
 * The start of both kernels' `main`: which piece a workgroup takes, its tokens, and which 128
 * dims of V (`ndb` blocks of them per head).
 */
export function pieceWGSL(ndb: number): string {
  return `  // Workgroup = (((seq * hkv + head) * row blocks + row block) * splits + split) * NDB + dims.
  let piece = wid.x / ${ndb}u;
  let dsub = wid.x % ${ndb}u;
  let rblocks = (P.rows + 15u) / 16u;
  let split = piece % P.splits;
  let rb = (piece / P.splits) % rblocks;
  let head = (piece / (P.splits * rblocks)) % P.hkv;
  let seq = piece / (P.splits * rblocks * P.hkv);
  let t_begin = min(P.n, split * P.chunk);
  let t_end = min(P.n, t_begin + P.chunk);`;
}

// The matrix types and their loads and stores: the library's (the matrix kernel's).
export { MATRIX, matrixLoad, matrixStore } from "../src/kernels/matrix_ops.ts";

/**
 * The start of every matrix prototype's WGSL: its extensions (with `matrixUniformity` off, the
 * rule that held session 45 to one subgroup per workgroup), the uniform block and the bindings,
 * K and V as `kv` arrays (`f16`, or `vec4u` where they are staged by 16-byte loads).
 */
export function headerWGSL(kv: "f16" | "vec4u", matrixUniformity: boolean): string {
  return `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;${
    matrixUniformity ? "" : "\ndiagnostic(off, chromium.subgroup_matrix_uniformity);"
  }

struct Params { n: u32, chunk: u32, hkv: u32, splits: u32, rows: u32, scale: f32, q_lo: u32, pad: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> qh: array<f16>;
@group(0) @binding(2) var<storage, read> kc: array<${kv}>;
@group(0) @binding(3) var<storage, read> vc: array<${kv}>;
@group(0) @binding(4) var<storage, read_write> outp: array<f32>;`;
}

export function hmmaWGSL(c: HmmaConfig): string {
  const { DK, DV, T, split } = c;
  if (DK % 16 || DV % 128 || T % 16 || T < 16) throw new RangeError(JSON.stringify(c));
  const NDB = DV / 128, TPT = T / 2, KB = DK / 16, TB = T / 16;
  const unroll = c.unroll ?? false;
  const keepQ = unroll && KB <= 8;
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
  const mma = (acc: string, l: string, r: string) =>
    `${acc} = subgroupMatrixMultiplyAccumulate(${l}, ${r}, ${acc});`;
  const qLeft = (kk: string, lo: boolean) =>
    load(L, "&qh", `${lo ? "P.q_lo + " : ""}qb + 16u * ${kk}`, false, `${DK}u`);
  const kRight = (kb: string, kk: string) =>
    load(R, "&kc", `${kb} + 16u * ${kk}`, true, `P.hkv * ${DK}u`);
  const pLeft = (tb: string, lo: boolean) =>
    load(L, "&p_wg", `${lo ? `${16 * T}u + ` : ""}16u * ${tb}`, false, `${T}u`);
  const vRight = (tb: string, db: string) =>
    load(
      R,
      "&vc",
      `((seq * P.n + t + 16u * ${tb}) * P.hkv + head) * ${DV}u + 128u * dsub + 16u * ${db}`,
      false,
      `P.hkv * ${DV}u`,
    );
  const pieces = split ? ["", "_lo"] : [""];
  // S (and its remainder's products) of the 16-token block jb, stored at s_wg (+ 16 T); `kb` names
  // its first token's K row.
  const scoreBlock = (jb: string, kb: string) => {
    const inits = pieces.map((p) => `var s${p} = ${S}();`).join(" ");
    const stores = pieces.map((p, i) =>
      `${store("&s_wg", `${i ? `${16 * T}u + ` : ""}16u * ${jb}`, `s${p}`, `${T}u`)};`
    ).join("\n      ");
    const q = (kk: number, lo: boolean) =>
      keepQ ? `q${lo ? "lo" : "hi"}${kk}` : qLeft(`${kk}u`, lo);
    const body = unroll
      ? `${join(KB, (kk) => `      let kr${kk} = ${kRight(kb, `${kk}u`)};`)}
${
        join(
          KB,
          (kk) => pieces.map((p, i) => `      ${mma(`s${p}`, q(kk, i > 0), `kr${kk}`)}`).join("\n"),
        )
      }`
      : `      for (var kk = 0u; kk < ${KB}u; kk++) {
        let kr = ${kRight(kb, "kk")};
${pieces.map((p, i) => `        ${mma(`s${p}`, qLeft("kk", i > 0), "kr")}`).join("\n")}
      }`;
    return `    {
      let ${kb} = ((seq * P.n + t + 16u * ${jb}) * P.hkv + head) * ${DK}u;
      ${inits}
${body}
      ${stores}
    }`;
  };
  const scores = unroll
    ? join(TB, (jb) => scoreBlock(`${jb}u`, `kb${jb}`))
    : `    for (var jb = 0u; jb < ${TB}u; jb++) {
${scoreBlock("jb", "kb")}
    }`;
  // O_tile for this workgroup's 128 dims, 16 at a time, stored at o_wg (+ 16 x 128).
  const valueBlock = (db: string) => {
    const inits = pieces.map((p) => `var o${p} = ${S}();`).join(" ");
    const stores = pieces.map((p, i) =>
      `${store("&o_wg", `${i ? "2048u + " : ""}16u * ${db}`, `o${p}`, "128u")};`
    ).join("\n      ");
    const body = unroll
      ? `${join(TB, (tb) => `      let vr${tb} = ${vRight(`${tb}u`, db)};`)}
${
        join(TB, (tb) =>
          pieces.map((p, i) => `      ${mma(`o${p}`, pLeft(`${tb}u`, i > 0), `vr${tb}`)}`).join(
            "\n",
          ))
      }`
      : `      for (var tb = 0u; tb < ${TB}u; tb++) {
        let vr = ${vRight("tb", db)};
${pieces.map((p, i) => `        ${mma(`o${p}`, pLeft("tb", i > 0), "vr")}`).join("\n")}
      }`;
    return `    {
      ${inits}
${body}
      ${stores}
    }`;
  };
  const values = unroll
    ? join(8, (db) => valueBlock(`${db}u`))
    : `    for (var db = 0u; db < 8u; db++) {
${valueBlock("db")}
    }`;
  const lo = (x: string) => (split ? ` + ${x}` : "");
  return `${headerWGSL("f16", true)}

var<workgroup> s_wg: array<f32, ${16 * T * pieces.length}>;
var<workgroup> p_wg: array<f16, ${16 * T * pieces.length}>;
var<workgroup> o_wg: array<f32, ${2048 * pieces.length}>;
var<workgroup> alpha_wg: array<f32, 16>;

@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lane: u32) {
${pieceWGSL(NDB)}
  // The block's query rows: f16 [seq][kv head][row (padded to blocks of 16)][dim], their scaled
  // f16 remainders P.q_lo halves further on.
  let qb = ((seq * P.hkv + head) * rblocks + rb) * ${16 * DK}u;
${
    keepQ
      ? join(KB, (kk) =>
        pieces.map((_, i) =>
          `  let q${i ? "lo" : "hi"}${kk} = ${qLeft(`${kk}u`, i > 0)};`
        ).join("\n"))
      : ""
  }
  // Softmax lanes: row lane / 2, tokens (lane % 2) * TPT ...; their row's running state.
  let row = lane / 2u;
  let part = lane % 2u;
  var m_run = -3.0e38;
  var l_run = 0.0;
  // This lane's O sums: element j is row j / 4, dim 128 dsub + lane + 32 (j % 4).
  var acc: array<f32, 64>;
  for (var t = t_begin; t < t_end; t += ${T}u) {
${scores}
    workgroupBarrier();
    var x: array<f32, ${TPT}>;
    var mt = -3.0e38;
    for (var i = 0u; i < ${TPT}u; i++) {
      let ti = part * ${TPT}u + i;
      let at = row * ${T}u + ti;
      x[i] = select(-3.0e38, (s_wg[at]${
    lo(`s_wg[${16 * T}u + at] * ${1 / LO_SCALE}`)
  }) * P.scale, t + ti < t_end);
      mt = max(mt, x[i]);
    }
    mt = max(mt, subgroupShuffleXor(mt, 1u));
    let m_new = max(m_run, mt);
    let alpha = exp2(m_run - m_new);
    m_run = m_new;
    var ls = 0.0;
    for (var i = 0u; i < ${TPT}u; i++) {
      let ti = part * ${TPT}u + i;
      let p = select(0.0, exp2(x[i] - m_new), t + ti < t_end);
      let hi = f16(p);
      p_wg[row * ${T}u + ti] = hi;${
    split ? `\n      p_wg[${16 * T}u + row * ${T}u + ti] = f16((p - f32(hi)) * ${LO_SCALE}.0);` : ""
  }
      ls += p;
    }
    ls += subgroupShuffleXor(ls, 1u);
    l_run = l_run * alpha + ls;
    if (part == 0u) { alpha_wg[row] = alpha; }
    workgroupBarrier();
${values}
    workgroupBarrier();
    for (var j = 0u; j < 64u; j++) {
      let at = (j / 4u) * 128u + lane + 32u * (j % 4u);
      acc[j] = fma(acc[j], alpha_wg[j / 4u], o_wg[at]${lo(`o_wg[2048u + at] * ${1 / LO_SCALE}`)});
    }
  }

  // The piece's state: 16 rows of DV unnormalised outputs, 16 maxima (log2), 16 sums.
  let base = piece * ${16 * DV + 32}u;
  for (var j = 0u; j < 64u; j++) {
    outp[base + (j / 4u) * ${DV}u + 128u * dsub + lane + 32u * (j % 4u)] = acc[j];
  }
  if (part == 0u && dsub == 0u) {
    outp[base + ${16 * DV}u + row] = m_run;
    outp[base + ${16 * DV + 16}u + row] = l_run;
  }
}
`;
}
