/**
 * WGSL of the integer-matrix prototype (bench/proto_imma.ts): decode over int8 K/V with Dawn's
 * `chromium_experimental_subgroup_matrix` (i8 x i8 -> i32, 16 x 16 x 32), exact.
 *
 * Why exact: each query row is held as a 24-bit integer (`Qi = round(q * 127 * 2^16 / max|q|)`)
 * split into three signed bytes, `Qi = 65536 hi + 256 mid + lo` (each in [-128, 127]). With `G`
 * query rows per KV head, one 16-row left matrix holds all three pieces of every row (rows
 * `0..G-1` hi, `G..2G-1` mid, `2G..3G-1` lo), so one product per 32 dims gives the three partial
 * dot products in i32 without rounding, joined in f32 afterwards. The softmax weights go the
 * same way into the product with V. The only rounding beyond f32's is the query's and the
 * weights' 24-bit quantisation (2^-23 of a row's largest element, 2^(tau-23) of a weight), so
 * the result is an f32-grade decode, not the 8-bit-activation trade of integer attention kernels.
 *
 * One subgroup per workgroup (32 threads), one piece of `chunk` tokens of one (sequence, KV head)
 * per workgroup, tiles of 32 tokens. K and V go through workgroup memory: each lane loads words
 * of the next tile (a token row per 128 bytes of lanes, tokens clamped to the piece) while this
 * tile computes; straight loads from storage ran slower and read wrong values in a tile past the
 * buffer's end (session 25's first H200 call). S = Q K^T for two blocks of 16 tokens goes to
 * workgroup memory, each lane takes one token of the softmax (maxima across the subgroup) and
 * writes its weights as bytes, and O += P V accumulates in i32 matrices across tiles: the weights
 * are taken against a reference maximum that moves only when a row's maximum passes it by more
 * than `tau` (log2), so the i32 sums are flushed into f32 (through workgroup memory) only then,
 * every 2048 tiles (against i32 overflow) and at the end (FlashAttention-4's lazy rescaling).
 *
 * @module
 */

/** A configuration: head dim, query rows per KV head, the call syntax, the rescaling margin. */
export interface ImmaConfig {
  /** Head dim of K and V (a power of two from 64 to 256). */
  D: number;
  /** Query rows per KV head (1..5: three pieces of each fit 16 rows). */
  G: number;
  /**
   * `template4`: `subgroupMatrixLoad<T, col_major>(p, o, s)` with an i8 matrix's offset and
   * stride in the `i32` array's units (how the H200's Dawn takes it); `bool`: the deprecated
   * `(p, o, true, s)` with offset and stride in i8 elements.
   */
  syntax: "template4" | "bool";
  /** How far (log2) a row's maximum may pass its reference before the sums are rescaled. */
  tau: number;
  /** Diagnostics: `false` flushes the i32 sums every tile (no lazy rescaling). */
  lazy?: boolean;
  /** Diagnostics: `false` leaves the S and O strides unpadded (32 and D words). */
  pad?: boolean;
}

/** 127 * 2^16: the integer a row's largest query element (or a weight of 2^tau) becomes. */
export const QUANT = 127 * 65536;

/** Bytes of the uniform block: n, chunk, hkv, splits, scale (log2), kScale, vScale, pad. */
export const PARAM_BYTES = 32;

/** 0..n-1. */
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

export function immaWGSL(c: ImmaConfig): string {
  const { D, G, tau } = c;
  if (![64, 128, 256].includes(D) || G < 1 || G > 5) {
    throw new RangeError(`config ${JSON.stringify(c)}`);
  }
  const L = `subgroup_matrix_left<i8, 32, 16>`;
  const R = `subgroup_matrix_right<i8, 16, 32>`;
  const S = `subgroup_matrix_result<i32, 16, 16>`;
  // i8 offsets and strides are written in bytes; template4 wants them in i32 units.
  const load = (type: string, ptr: string, off: string, col: boolean, stride: string) =>
    c.syntax === "bool"
      ? `subgroupMatrixLoad<${type}>(${ptr}, ${off}, ${col}, ${stride})`
      : `subgroupMatrixLoad<${type}, ${
        col ? "col_major" : "row_major"
      }>(${ptr}, (${off}) / 4u, (${stride}) / 4u)`;
  const store = (ptr: string, off: string, m: string, stride: string) =>
    c.syntax === "bool"
      ? `subgroupMatrixStore(${ptr}, ${off}, ${m}, false, ${stride})`
      : `subgroupMatrixStore<row_major>(${ptr}, ${off}, ${m}, ${stride})`;
  const chunks = D / 32, blocks = D / 16, perLane = D / 32, W = D / 4;
  // Padded strides (i32 words): staged token rows, S rows, O rows, against bank conflicts.
  const KS = W + 4, SS = c.pad === false ? 32 : 40, OS = c.pad === false ? D : D + 8;
  const rows = range(G);
  // Byte row b of the 16-row left matrices: piece floor(b / G) of row b % G, zero past 3G.
  const byteOf = (b: number, piece: (p: number, r: number) => string) =>
    b < 3 * G ? `(${piece(Math.floor(b / G), b % G)} & 255)` : "";
  const packed = (bytes: string[]) =>
    bytes.map((v, i) => v === "" ? "" : i === 0 ? v : `(${v} << ${8 * i}u)`)
      .filter((x) => x !== "").join(" | ") || "0";
  const split = (v: string, name: string) => `
    let ${name}_lo = ((${v} + 128) & 255) - 128;
    let ${name}_r1 = (${v} - ${name}_lo) >> 8u;
    let ${name}_mid = ((${name}_r1 + 128) & 255) - 128;
    let ${name}_hi = (${name}_r1 - ${name}_mid) >> 8u;`;
  const pieceOf = (base: (r: number) => string) => (p: number, r: number) =>
    `${base(r)}_${["hi", "mid", "lo"][p]}`;
  // Lane l's word i of a staged tile: flat word i * 32 + l, token (i * 32 + l) / W.
  const fetch = (t: string, indent: string) =>
    range(W).map((i) =>
      `${indent}{
${indent}  let g = ((seq * P.n + min(${t} + ${Math.floor(i * 32 / W)}u${
        W > 32 ? "" : ` + lane / ${W}u`
      }, t_end - 1u)) * P.hkv + head) * ${W}u + ${
        W > 32 ? `${(i * 32) % W}u + lane` : `lane % ${W}u`
      };
${indent}  kr${i} = kc[g];
${indent}  vr${i} = vc[g];
${indent}}`
    ).join("\n");
  const stage = range(W).map((i) => {
    const tok = `${Math.floor(i * 32 / W)}u${W > 32 ? "" : ` + lane / ${W}u`}`;
    const word = W > 32 ? `${(i * 32) % W}u + lane` : `lane % ${W}u`;
    return `    k_tile[(${tok}) * ${KS}u + ${word}] = bitcast<i32>(kr${i});
    v_tile[(${tok}) * ${KS}u + ${word}] = bitcast<i32>(vr${i});`;
  }).join("\n");
  const flush = (alpha: (r: number) => string) => `
      ${
    range(blocks).map((nb) => `${store("&o32", `${nb * 16}u`, `o${nb}`, `${OS}u`)};`).join(
      "\n      ",
    )
  }
      workgroupBarrier();
${
    rows.map((r) =>
      range(perLane).map((j) => {
        const at = (row: number) => `o32[${row * OS}u + lane + ${32 * j}u]`;
        return `      acc[${r}][${j}] = ${alpha(r)} * fma(vscale, fma(f32(${
          at(r)
        }), 65536.0, fma(f32(${at(G + r)}), 256.0, f32(${at(2 * G + r)}))), acc[${r}][${j}]);`;
      }).join("\n")
    ).join("\n")
  }
      workgroupBarrier();
      ${range(blocks).map((nb) => `o${nb} = ${S}();`).join(" ")}`;
  return `enable chromium_experimental_subgroup_matrix;
enable subgroups;

struct Params { n: u32, chunk: u32, hkv: u32, splits: u32, scale: f32, k_scale: f32, v_scale: f32, pad: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<u32>;
@group(0) @binding(3) var<storage, read> vc: array<u32>;
@group(0) @binding(4) var<storage, read_write> outp: array<f32>;

const D = ${D}u;
const G = ${G}u;
const QUANT = ${QUANT}.0;
const TAU = ${tau.toFixed(1)};
// A weight of 2^TAU becomes QUANT.
const PQ = ${QUANT / 2 ** tau};
var<workgroup> q8: array<i32, ${4 * D}>;
var<workgroup> s32: array<i32, ${16 * SS}>;
var<workgroup> o32: array<i32, ${16 * OS}>;
var<workgroup> p8: array<i32, 128>;
var<workgroup> flag: u32;
var<workgroup> k_tile: array<i32, ${32 * KS}>;
var<workgroup> v_tile: array<i32, ${32 * KS}>;

@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let piece = wid.x;
  let split = piece % P.splits;
  let head = (piece / P.splits) % P.hkv;
  let seq = piece / (P.splits * P.hkv);
  let t_begin = min(P.n, split * P.chunk);
  let t_end = min(P.n, t_begin + P.chunk);

  // The query rows as 24-bit integers in three byte pieces (byte row b: piece b / G of row b % G).
  let q_at = ((seq * P.hkv + head) * G) * D;
  var q_scale: array<f32, ${G}>;
${
    rows.map((r) =>
      `  {
    var amax = 0.0;
    for (var d = lane; d < D; d += 32u) { amax = max(amax, abs(q[q_at + ${r}u * D + d])); }
    q_scale[${r}] = subgroupMax(amax) / QUANT;
  }`
    ).join("\n")
  }
  for (var w = lane; w < D / 4u; w += 32u) {
${
    rows.map((r) =>
      `    let q${r}x = vec4f(q[q_at + ${r}u * D + 4u * w], q[q_at + ${r}u * D + 4u * w + 1u], q[q_at + ${r}u * D + 4u * w + 2u], q[q_at + ${r}u * D + 4u * w + 3u]);
    let q${r}i = vec4i(round(select(vec4f(0.0), q${r}x / q_scale[${r}], q_scale[${r}] > 0.0)));`
    ).join("\n")
  }
${range(4).map((i) => rows.map((r) => split(`q${r}i[${i}]`, `qq${r}_${i}`)).join("")).join("")}
${
    range(16).map((b) =>
      `    q8[${b}u * (D / 4u) + w] = ${
        packed(range(4).map((i) => byteOf(b, pieceOf((r) => `qq${r}_${i}`))))
      };`
    ).join("\n")
  }
  }
  workgroupBarrier();
${
    range(chunks).map((ch) => `  let ql${ch} = ${load(L, "&q8", `${ch * 32}u`, false, "D")};`).join(
      "\n",
    )
  }

  var m_ref: array<f32, ${G}>;
  var l_lane: array<f32, ${G}>;
  var acc: array<array<f32, ${perLane}>, ${G}>;
  for (var r = 0u; r < G; r++) { m_ref[r] = -3.0e38; }
  let kscale = P.k_scale * P.scale;
  let vscale = P.v_scale / PQ;
${range(blocks).map((nb) => `  var o${nb} = ${S}();`).join("\n")}
  var tiles = 0u;
${range(W).map((i) => `  var kr${i}: u32;\n  var vr${i}: u32;`).join("\n")}
  if (t_begin < t_end) {
${fetch("t_begin", "    ")}
  }
  for (var t = t_begin; t < t_end; t += 32u) {
${stage}
    workgroupBarrier();
    // The next tile's words fly while this one computes.
    if (t + 32u < t_end) {
${fetch("t + 32u", "      ")}
    }
    var s0 = ${S}();
    var s1 = ${S}();
${
    range(chunks).map((ch) =>
      `    s0 = subgroupMatrixMultiplyAccumulate(ql${ch}, ${
        load(R, "&k_tile", `${ch * 32}u`, true, `${4 * KS}u`)
      }, s0);
    s1 = subgroupMatrixMultiplyAccumulate(ql${ch}, ${
        load(R, "&k_tile", `${16 * 4 * KS + ch * 32}u`, true, `${4 * KS}u`)
      }, s1);`
    ).join("\n")
  }
    ${store("&s32", "0u", "s0", `${SS}u`)};
    ${store("&s32", "16u", "s1", `${SS}u`)};
    workgroupBarrier();
    let live = t + lane < t_end;
${
    rows.map((r) =>
      `    let x${r} = select(-3.0e38, fma(f32(s32[${r * SS}u + lane]), 65536.0, fma(f32(s32[${
        (G + r) * SS
      }u + lane]), 256.0, f32(s32[${(2 * G + r) * SS}u + lane]))) * q_scale[${r}] * kscale, live);
    let mt${r} = subgroupMax(x${r});`
    ).join("\n")
  }
    // A row whose maximum passed its reference by more than TAU moves it: the i32 sums so far
    // go into f32 at the old references first (also every 2048 tiles, against overflow).
    // (Through workgroup memory: the analysis does not take subgroup maxima as uniform.)
    if (lane == 0u) {
      flag = select(0u, 1u, ${
    rows.map((r) => `mt${r} > m_ref[${r}] + TAU`).join(" || ")
  } || tiles >= ${c.lazy === false ? 1 : 2048}u);
    }
    if (workgroupUniformLoad(&flag) == 1u) {
${
    rows.map((r) =>
      `      let m_new${r} = select(m_ref[${r}], mt${r}, mt${r} > m_ref[${r}] + TAU);
      let alpha${r} = exp2(m_ref[${r}] - m_new${r});
      m_ref[${r}] = m_new${r};
      l_lane[${r}] *= alpha${r};`
    ).join("\n")
  }
      if (tiles > 0u) {${flush((r) => `alpha${r}`)}
      }
      tiles = 0u;
    }
${
    rows.map((r) =>
      `    let pi${r} = select(0, i32(round(exp2(x${r} - m_ref[${r}]) * PQ)), live);
    l_lane[${r}] += f32(pi${r}) / PQ;`
    ).join("\n")
  }
    {
${rows.map((r) => split(`pi${r}`, `pp${r}`)).join("")}
${
    range(4).map((w) =>
      `      p8[lane * 4u + ${w}u] = ${
        packed(range(4).map((i) => byteOf(4 * w + i, pieceOf((r) => `pp${r}`))))
      };`
    ).join("\n")
  }
    }
    workgroupBarrier();
    let pl = ${load(L, "&p8", "0u", true, "16u")};
${
    range(blocks).map((nb) =>
      `    o${nb} = subgroupMatrixMultiplyAccumulate(pl, ${
        load(R, "&v_tile", `${nb * 16}u`, false, `${4 * KS}u`)
      }, o${nb});`
    ).join("\n")
  }
    tiles += 1u;
    // The next tile's staging overwrites K, V and P.
    workgroupBarrier();
  }
  if (tiles > 0u) {${flush(() => "1.0")}
  }

  // The piece's state: G rows of D unnormalised outputs, then G maxima (log2), then G sums.
  let base = piece * (G * D + 2u * G);
${
    rows.map((r) =>
      `  {
    let l = subgroupAdd(l_lane[${r}]);
${
        range(perLane).map((j) =>
          `    outp[base + ${r}u * D + lane + ${32 * j}u] = acc[${r}][${j}];`
        )
          .join("\n")
      }
    if (lane == 0u) {
      outp[base + G * D + ${r}u] = m_ref[${r}];
      outp[base + G * D + G + ${r}u] = l;
    }
  }`
    ).join("\n")
  }
}
`;
}
