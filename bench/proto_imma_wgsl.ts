/**
 * WGSL of the integer-matrix prototype (bench/proto_imma.ts): decode over int8 K/V with Dawn's
 * `chromium_experimental_subgroup_matrix` (i8 x i8 -> i32, 16 x 16 x 32), exact.
 *
 * Why exact: each query row is held as a 24-bit integer (`Qi = round(q * 127 * 2^16 / max|q|)`)
 * split into three signed bytes, `Qi = 65536 hi + 256 mid + lo` (each in [-128, 127]). With `G`
 * query rows per KV head, one 16-row left matrix holds all three pieces of every row (rows
 * `0..G-1` hi, `G..2G-1` mid, `2G..3G-1` lo), so one product per 32 dims gives the three partial
 * dot products in i32 without rounding, joined in f32 afterwards. The probabilities go the same
 * way (`Pi = round(p * 127 * 2^16)`, p in [0, 1]) into the product with V. The only rounding
 * beyond f32's is the query's and the weights' 24-bit quantisation (2^-23 of a row's largest
 * element), so the result is an f32-grade decode, not the 8-bit-activation trade of integer
 * attention kernels.
 *
 * One subgroup per workgroup (32 threads), one piece of `chunk` tokens of one (sequence, KV head)
 * per workgroup, tiles of 32 tokens: S = Q K^T for two blocks of 16 tokens (K loaded straight
 * from storage, column-major: a token's dims are contiguous), S to workgroup memory, each lane one
 * token of the softmax (maxima across the subgroup), P written column-major as bytes, O = P V for
 * D/16 blocks of 16 dims (V row-major straight from storage), O to workgroup memory, each lane
 * adds its dims (`lane + 32 j`) of every row into its f32 state.
 *
 * @module
 */

/** A configuration: head dim, query rows per KV head, the subgroup-matrix call syntax. */
export interface ImmaConfig {
  /** Head dim of K and V (a multiple of 32). */
  D: number;
  /** Query rows per KV head (1..5: three pieces of each fit 16 rows). */
  G: number;
  /**
   * `template`: `subgroupMatrixLoad<T, col_major>(p, o, s)` (newer Dawn); `template4`: the same
   * with an i8 matrix's offset and stride in the array's `i32` units; `bool`: `(p, o, true, s)`.
   */
  syntax: "template" | "template4" | "bool";
  /** K/V row stride (KV heads x D) compiled in, for when the uniform's stride costs. */
  rowStride?: number;
  /**
   * K/V through workgroup memory: each lane loads 16-byte words of the next tile (coalesced, its
   * tokens clamped to the piece) while this tile computes, and the matrices load from there;
   * otherwise the matrices load straight from storage (whole tiles only: a tile past the buffer's
   * end reads wrong values on the H200).
   */
  staged?: boolean;
  /** Diagnostics: `noPV` skips the weighted sum, `noS` the scores (K unread). */
  cut?: "noPV" | "noS";
}

/** 127 * 2^16: the integer a row's largest query element (or a weight of 1) becomes. */
export const QUANT = 127 * 65536;

/** Bytes of the uniform block: n, chunk, hkv, splits, scale (log2), kScale, vScale, pad. */
export const PARAM_BYTES = 32;

export function immaWGSL(c: ImmaConfig): string {
  const { D, G } = c;
  if (D % 32 !== 0 || G < 1 || G > 5) throw new RangeError(`config ${JSON.stringify(c)}`);
  const L = `subgroup_matrix_left<i8, 32, 16>`;
  const R = `subgroup_matrix_right<i8, 16, 32>`;
  const S = `subgroup_matrix_result<i32, 16, 16>`;
  const load = (type: string, ptr: string, off: string, col: boolean, stride: string) =>
    c.syntax === "bool"
      ? `subgroupMatrixLoad<${type}>(${ptr}, ${off}, ${col}, ${stride})`
      : c.syntax === "template4"
      ? `subgroupMatrixLoad<${type}, ${
        col ? "col_major" : "row_major"
      }>(${ptr}, (${off}) / 4u, (${stride}) / 4u)`
      : `subgroupMatrixLoad<${type}, ${
        col ? "col_major" : "row_major"
      }>(${ptr}, ${off}, ${stride})`;
  const store = (ptr: string, off: string, m: string, stride: string) =>
    c.syntax !== "bool"
      ? `subgroupMatrixStore<row_major>(${ptr}, ${off}, ${m}, ${stride})`
      : `subgroupMatrixStore(${ptr}, ${off}, ${m}, false, ${stride})`;
  const chunks = D / 32, blocks = D / 16, perLane = D / 32;
  // Staging: words per padded token row, 16-byte vectors per token row, vectors per lane.
  const KS = (D + 16) / 4, VEC = D / 16;
  const vecs = Array.from({ length: VEC }, (_, i) => i);
  // Matrix sources: staged tiles in workgroup memory (offsets relative to the tile) or storage.
  const kSrc = c.staged ? "&k_tile" : "&kc", vSrc = c.staged ? "&v_tile" : "&vc";
  const kAt = c.staged ? "0u" : "at", kStride = c.staged ? `${4 * KS}u` : "row_stride";
  const rows = Array.from({ length: G }, (_, r) => r);
  const lanesDims = Array.from({ length: perLane }, (_, j) => j);
  // Byte row b of the 16-row left matrices: piece floor(b / G) of row b % G, zero past 3G.
  const byteOf = (b: number, piece: (p: number, r: number) => string) =>
    b < 3 * G ? `(${piece(Math.floor(b / G), b % G)} & 255)` : "0";
  const word = (w: number, piece: (p: number, r: number) => string) =>
    [0, 1, 2, 3].map((i) => {
      const b = byteOf(4 * w + i, piece);
      return b === "0" ? "0" : i === 0 ? b : `(${b} << ${8 * i}u)`;
    }).filter((x) => x !== "0").join(" | ") || "0";
  const split = (v: string, name: string) => `
      let ${name}_lo = ((${v} + 128) & 255) - 128;
      let ${name}_r1 = (${v} - ${name}_lo) >> 8u;
      let ${name}_mid = ((${name}_r1 + 128) & 255) - 128;
      let ${name}_hi = (${name}_r1 - ${name}_mid) >> 8u;`;
  const pieceName = (base: string) => (p: number, r: number) =>
    `${base}${r}_${["hi", "mid", "lo"][p]}`;
  return `enable chromium_experimental_subgroup_matrix;
enable subgroups;

struct Params { n: u32, chunk: u32, hkv: u32, splits: u32, scale: f32, k_scale: f32, v_scale: f32, pad: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<${c.staged ? "vec4u" : "i32"}>;
@group(0) @binding(3) var<storage, read> vc: array<${c.staged ? "vec4u" : "i32"}>;
@group(0) @binding(4) var<storage, read_write> outp: array<f32>;

const D = ${D}u;
const G = ${G}u;
const QUANT = ${QUANT}.0;
// 16 query byte rows x D; S: 16 rows x 32 tokens (i32); O: 16 rows x D (i32); P: 32 tokens x 16 bytes.
var<workgroup> q8: array<i32, ${4 * D}>;
var<workgroup> s32: array<i32, 512>;
var<workgroup> o32: array<i32, ${16 * D}>;
var<workgroup> p8: array<i32, 128>;${
    c.staged
      ? `
// Staged K and V tiles: 32 tokens x D bytes, rows padded by 16 bytes against bank conflicts.
const KS = ${KS}u;
var<workgroup> k_tile: array<i32, ${32 * KS}>;
var<workgroup> v_tile: array<i32, ${32 * KS}>;`
      : ""
  }

@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let piece = wid.x;
  let split = piece % P.splits;
  let head = (piece / P.splits) % P.hkv;
  let seq = piece / (P.splits * P.hkv);
  let t_begin = min(P.n, split * P.chunk);
  let t_end = min(P.n, t_begin + P.chunk);
  let row_stride = ${c.rowStride ? `${c.rowStride}u` : "P.hkv * D"};

  // The query rows as 24-bit integers in three byte pieces; lane l holds dims 4l..4l+3 of each
  // 128 (and the next 128s).
  let q_at = ((seq * P.hkv + head) * G) * D;
  var q_scale: array<f32, ${G}>;
${
    rows.map((r) =>
      `  {
    var amax = 0.0;
    for (var d = lane; d < D; d += 32u) { amax = max(amax, abs(q[q_at + ${r}u * D + d])); }
    amax = subgroupMax(amax);
    q_scale[${r}] = amax / QUANT;
  }`
    ).join("\n")
  }
  for (var w = lane; w < D / 4u; w += 32u) {
${
    rows.map((r) =>
      `    let q${r}i = vec4i(round(select(vec4f(0.0), vec4f(q[q_at + ${r}u * D + 4u * w], q[q_at + ${r}u * D + 4u * w + 1u], q[q_at + ${r}u * D + 4u * w + 2u], q[q_at + ${r}u * D + 4u * w + 3u]) / q_scale[${r}], q_scale[${r}] > 0.0)));`
    ).join("\n")
  }
${[0, 1, 2, 3].map((i) => rows.map((r) => split(`q${r}i[${i}]`, `qq${r}_${i}`)).join("")).join("")}
    // Byte i of word w of each of the 16 byte rows.
${
    Array.from({ length: 16 }, (_, b) => b).map((b) => {
      const bytes = [0, 1, 2, 3].map((i) => {
        const v = byteOf(b, (p, r) => `qq${r}_${i}_${["hi", "mid", "lo"][p]}`);
        return v === "0" ? "" : i === 0 ? v : `(${v} << ${8 * i}u)`;
      }).filter((x) => x !== "");
      return `    q8[${b}u * (D / 4u) + w] = ${bytes.length ? bytes.join(" | ") : "0"};`;
    }).join("\n")
  }
  }
  workgroupBarrier();
${
    Array.from({ length: chunks }, (_, ch) =>
      `  let ql${ch} = ${load(L, "&q8", `${ch * 32}u`, false, "D")};`).join("\n")
  }

  var m_run: array<f32, ${G}>;
  var l_lane: array<f32, ${G}>;
  var acc: array<array<f32, ${perLane}>, ${G}>;
  for (var r = 0u; r < G; r++) { m_run[r] = -3.0e38; l_lane[r] = 0.0; }
  let kscale = P.k_scale * P.scale;
  let vscale = P.v_scale / QUANT;

${
    c.staged
      ? `  // Lane l fetches vector i * 32 + l of a tile: token (i * 32 + l) / VEC, clamped to the piece.
${
        vecs.map((i) =>
          `  var kr${i}: vec4u;
  var vr${i}: vec4u;`
        ).join("\n")
      }
  if (t_begin < t_end) {
${
        vecs.map((i) =>
          `    {
      let g = ((seq * P.n + min(t_begin + ${
            i * 32 / VEC
          }u + lane / ${VEC}u, t_end - 1u)) * P.hkv + head) * ${VEC}u + lane % ${VEC}u;
      kr${i} = kc[g];
      vr${i} = vc[g];
    }`
        ).join("\n")
      }
  }`
      : ""
  }
  for (var t = t_begin; t < t_end; t += 32u) {
    let at = ((seq * P.n + t) * P.hkv + head) * D;${
    c.staged
      ? `
${
        vecs.map((i) =>
          `    {
      let w = (${i * 32 / VEC}u + lane / ${VEC}u) * KS + (lane % ${VEC}u) * 4u;
      k_tile[w] = bitcast<i32>(kr${i}.x); k_tile[w + 1u] = bitcast<i32>(kr${i}.y); k_tile[w + 2u] = bitcast<i32>(kr${i}.z); k_tile[w + 3u] = bitcast<i32>(kr${i}.w);
      v_tile[w] = bitcast<i32>(vr${i}.x); v_tile[w + 1u] = bitcast<i32>(vr${i}.y); v_tile[w + 2u] = bitcast<i32>(vr${i}.z); v_tile[w + 3u] = bitcast<i32>(vr${i}.w);
    }`
        ).join("\n")
      }
    workgroupBarrier();
    // The next tile's words fly while this one computes.
    if (t + 32u < t_end) {
${
        vecs.map((i) =>
          `      {
        let g = ((seq * P.n + min(t + ${
            32 + i * 32 / VEC
          }u + lane / ${VEC}u, t_end - 1u)) * P.hkv + head) * ${VEC}u + lane % ${VEC}u;
        kr${i} = kc[g];
        vr${i} = vc[g];
      }`
        ).join("\n")
      }
    }`
      : ""
  }
    // V first: its loads fly while S and the softmax run.
${
    c.cut === "noPV" ? "" : Array.from(
      { length: blocks },
      (_, nb) => `    let v${nb} = ${load(R, vSrc, `${kAt} + ${nb * 16}u`, false, kStride)};`,
    ).join("\n")
  }
    var s0 = ${S}();
    var s1 = ${S}();
${
    c.cut === "noS" ? "" : Array.from({ length: chunks }, (_, ch) =>
      `    {
      let k0 = ${load(R, kSrc, `${kAt} + ${ch * 32}u`, true, kStride)};
      let k1 = ${load(R, kSrc, `${kAt} + 16u * ${kStride} + ${ch * 32}u`, true, kStride)};
      s0 = subgroupMatrixMultiplyAccumulate(ql${ch}, k0, s0);
      s1 = subgroupMatrixMultiplyAccumulate(ql${ch}, k1, s1);
    }`).join("\n")
  }
    ${store("&s32", "0u", "s0", "32u")};
    ${store("&s32", "16u", "s1", "32u")};
    workgroupBarrier();
    let live = t + lane < t_end;
${
    rows.map((r) =>
      `    var alpha${r}: f32;
    var pi${r}: i32;
    {
      let raw = fma(f32(s32[${r * 32}u + lane]), 65536.0, fma(f32(s32[${
        (G + r) * 32
      }u + lane]), 256.0, f32(s32[${(2 * G + r) * 32}u + lane])));
      let x = select(-3.0e38, raw * q_scale[${r}] * kscale, live);
      let m_new = max(m_run[${r}], subgroupMax(x));
      alpha${r} = exp2(m_run[${r}] - m_new);
      m_run[${r}] = m_new;
      pi${r} = select(0, i32(round(exp2(x - m_new) * QUANT)), live);
      l_lane[${r}] = l_lane[${r}] * alpha${r} + f32(pi${r}) / QUANT;
    }`
    ).join("\n")
  }
    {
${rows.map((r) => split(`pi${r}`, `pp${r}`)).join("")}
${[0, 1, 2, 3].map((w) => `      p8[lane * 4u + ${w}u] = ${word(w, pieceName("pp"))};`).join("\n")}
    }
    workgroupBarrier();
    ${c.cut === "noPV" ? "" : `let pl = ${load(L, "&p8", "0u", true, "16u")};`}
${
    c.cut === "noPV"
      ? ""
      : Array.from({ length: blocks }, (_, nb) =>
        `    ${
          store("&o32", `${nb * 16}u`, `subgroupMatrixMultiplyAccumulate(pl, v${nb}, ${S}())`, "D")
        };`).join("\n")
  }
    workgroupBarrier();
${
    c.cut === "noPV" ? "" : rows.map((r) =>
      lanesDims.map((j) => {
        const d = `lane + ${32 * j}u`;
        return `    acc[${r}][${j}] = fma(acc[${r}][${j}], alpha${r}, vscale * fma(f32(o32[${r}u * D + ${d}]), 65536.0, fma(f32(o32[${
          G + r
        }u * D + ${d}]), 256.0, f32(o32[${2 * G + r}u * D + ${d}]))));`;
      }).join("\n")
    ).join("\n")
  }
  }

  // The piece's state: G rows of D unnormalised outputs, then G maxima (log2), then G sums.
  let base = piece * (G * D + 2u * G);
${
    rows.map((r) =>
      `  {
    let l = subgroupAdd(l_lane[${r}]);
${
        lanesDims.map((j) => `    outp[base + ${r}u * D + lane + ${32 * j}u] = acc[${r}][${j}];`)
          .join("\n")
      }
    if (lane == 0u) {
      outp[base + G * D + ${r}u] = select(-3.0e38, m_run[${r}], t_end > t_begin);
      outp[base + G * D + G + ${r}u] = l;
    }
  }`
    ).join("\n")
  }
}
`;
}
