/**
 * The WGSL of bench/proto_token_lanes.ts's prototype (issue 13, session 22): a GQA decode step
 * where a thread takes whole tokens for the scores and one `u32` word's output dims for the
 * weighted sum. See that file for what it tests.
 *
 * @module
 */

/** Head dim of the prototype. */
export const D = 128;
/** Threads per workgroup. */
export const W = 128;
/** Tokens per tile: two per thread for the scores. */
export const TILE = 256;

/** K/V formats of the prototype: f16 pairs or int8 quads in each `u32` (int8 per-tensor scales). */
export type ProtoDtype = "f16" | "int8";

/** Elements per `u32` of a format. */
const perWord = (dtype: ProtoDtype): number => (dtype === "f16" ? 2 : 4);

/**
 * Parts of the prototype to leave out, to see where its time goes (session 23: the whole kernel
 * ran 4.2x slower than the library's): `"no-pv"` skips the weighted sum, `"no-scores"` the K
 * loads and dot products (every score 0), `"no-k-dots"` keeps the K loads but not their
 * arithmetic. `"k-lanes4"` scores with four threads per token (coalesced K reads; partial dots
 * added by lane shuffles, the scores passed through workgroup memory) instead of one.
 * `"skeleton"` leaves out both the scores and the weighted sum (the tile loop, its reductions
 * and barriers remain).
 */
export type ProtoVariant =
  | "full"
  | "no-pv"
  | "no-scores"
  | "no-k-dots"
  | "k-lanes4"
  | "skeleton";

/** The prototype's WGSL for `rows` query rows per KV head and a K/V format. */
export function tokenLanesWGSL(
  rows: number,
  dtype: ProtoDtype,
  enableSubgroups: boolean,
  variant: ProtoVariant = "full",
): string {
  const R = rows;
  const EW = perWord(dtype); // elements per u32
  const EC = 4 * EW; // elements per 16-byte K chunk
  const CH = D / EC; // K chunks per row
  const COLS = D / EW; // V words per row: one per thread of a phase
  const PH = W / COLS; // token phases of the weighted sum
  const rowsOf = (f: (r: number) => string) => Array.from({ length: R }, (_, r) => f(r)).join("\n");
  const elems = (f: (e: number) => string) => Array.from({ length: EW }, (_, e) => f(e)).join("\n");
  // A word's elements as f32 (int8: sign-extended bytes; the scales are applied outside).
  const unpackWord = dtype === "f16"
    ? "fn unpack_word(w: u32) -> vec2<f32> { return unpack2x16float(w); }"
    : `fn unpack_word(w: u32) -> vec4<f32> {
  let i = bitcast<i32>(w);
  return vec4<f32>(
    f32(extractBits(i, 0u, 8u)), f32(extractBits(i, 8u, 8u)),
    f32(extractBits(i, 16u, 8u)), f32(extractBits(i, 24u, 8u)),
  );
}`;
  // A K chunk's j-th vec4 of elements, in dim order (constant j: no array is indexed at run
  // time, so nothing is left in local memory).
  const chunkVec = (w: string, j: number) =>
    dtype === "f16"
      ? `vec4<f32>(unpack_word(${w}.${"xyzw"[2 * j]}), unpack_word(${w}.${"xyzw"[2 * j + 1]}))`
      : `unpack_word(${w}.${"xyzw"[j]})`;
  const VPC = EC / 4; // vec4s per chunk
  const UQ = Math.min(4, CH); // K chunks loaded ahead of the scores' arithmetic
  const UV = 8; // V words loaded ahead of the weighted sum's arithmetic
  // Scores of two tokens per thread against every row (left out by "no-scores").
  const scoresLoop =
    `    // Chunks in groups of ${UQ}: a group's loads are all issued before its arithmetic.
    for (var i0 = 0u; i0 < ${CH}u; i0 += ${UQ}u) {
${
      Array.from({ length: UQ }, (_, u) =>
        `      let wa${u} = kc[ka + i0 + ${u}u];
      let wb${u} = kc[kb + i0 + ${u}u];`).join("\n")
    }
${
      Array.from({ length: UQ }, (_, u) =>
        Array.from({ length: VPC }, (_, j) =>
          `      {
        let a = ${chunkVec(`wa${u}`, j)};
        let b = ${chunkVec(`wb${u}`, j)};
${
            rowsOf((r) =>
              variant === "no-k-dots"
                ? `        sa[${r}] += a.x; sb[${r}] += b.x;`
                : `        let q${r} = qs[${r * D / 4}u + ${VPC}u * (i0 + ${u}u) + ${j}u];
        sa[${r}] += dot(a, q${r});
        sb[${r}] += dot(b, q${r});`
            )
          }
      }`).join("\n")).join("\n")
    }
    }`;
  // Scores with four threads per token: a warp's K loads cover eight whole 64-byte pieces of
  // rows, where one thread per token touches 32 rows' lines per load.
  const CL = CH / 4; // K chunks per thread
  const scoresLanes4 = `    for (var it = 0u; it < ${TILE / (W / 4)}u; it++) {
      let slot = it * ${W / 4}u + lid / 4u;
      let ln = lid % 4u;
      let kk = (min(base + slot, t1 - 1u) * params.hkv + h) * ${CH}u + ln * ${CL}u;
${Array.from({ length: CL }, (_, i) => `      let w${i} = kc[kk + ${i}u];`).join("\n")}
${rowsOf((r) => `      var s${r} = 0.0;`)}
${
    Array.from({ length: CL }, (_, i) =>
      Array.from({ length: VPC }, (_, j) =>
        `      {
        let a = ${chunkVec(`w${i}`, j)};
${
          rowsOf((r) =>
            `        s${r} += dot(a, qs[${r * D / 4}u + ${VPC}u * (ln * ${CL}u + ${i}u) + ${j}u]);`
          )
        }
      }`).join("\n")).join("\n")
  }
${
    rowsOf((r) =>
      `      s${r} += subgroupShuffleXor(s${r}, 1u);
      s${r} += subgroupShuffleXor(s${r}, 2u);
      if (ln == 0u) { ps[slot][${r}] = s${r}; }`
    )
  }
    }
    workgroupBarrier();
${rowsOf((r) => `    sa[${r}] = ps[lid][${r}];\n    sb[${r}] = ps[lid + ${W}u][${r}];`)}`;
  // The weighted sum of the tile (left out by "no-pv").
  const pvLoop =
    `    // Weighted sum: one word's dims of every row over every ${PH}th token of the tile, ${UV}
    // tokens' words requested before their arithmetic (tokens past the piece have p = 0 and
    // re-read its last token).
    for (var k0 = th; k0 < ${TILE}u; k0 += ${PH * UV}u) {
${
      Array.from({ length: UV }, (_, u) =>
        `      let w${u} = vc[(min(base + k0 + ${
          u * PH
        }u, t1 - 1u) * params.hkv + h) * ${COLS}u + c];`)
        .join("\n")
    }
${
      Array.from({ length: UV }, (_, u) =>
        `      {
        let v = unpack_word(w${u});
        let pk = ps[k0 + ${u * PH}u];
${
          rowsOf((r) =>
            elems((e) => `        acc[${EW * r + e}] = fma(pk[${r}], v[${e}], acc[${EW * r + e}]);`)
          )
        }
      }`).join("\n")
    }
    }`;
  return `${enableSubgroups ? "enable subgroups;\n" : ""}
struct Params { n: u32, chunk: u32, hkv: u32, scale: f32, vscale: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kc: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> vc: array<u32>;
@group(0) @binding(4) var<storage, read_write> outp: array<f32>;
const NEG = -3.0e38;
var<workgroup> qs: array<vec4<f32>, ${R * D / 4}>;
var<workgroup> ps: array<array<f32, ${R}>, ${TILE}>;
var<workgroup> redm: array<array<f32, ${R}>, 32>;
var<workgroup> redl: array<array<f32, ${R}>, 32>;
var<workgroup> phase_acc: array<array<f32, ${EW * R}>, ${W}>;

${unpackWord}

@compute @workgroup_size(${W})
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(subgroup_invocation_id) sl: u32,
  @builtin(subgroup_size) ss: u32,
) {
  let h = wid.x % params.hkv;
  let split = wid.x / params.hkv;
  let t0 = split * params.chunk;
  let t1 = min(t0 + params.chunk, params.n);
  for (var i = lid; i < ${R * D / 4}u; i += ${W}u) {
    qs[i] = q[h * ${R * D / 4}u + i] * params.scale;
  }
  workgroupBarrier();
  var m = array<f32, ${R}>();
  var l = array<f32, ${R}>();
  var acc = array<f32, ${EW * R}>();
${rowsOf((r) => `  m[${r}] = NEG;`)}
  let c = lid % ${COLS}u;
  let th = lid / ${COLS}u;
  let nsg = ${W}u / ss;
  for (var base = t0; base < t1; base += ${TILE}u) {
    // Scores of two tokens per thread against every row.
    let va = base + lid < t1;
    let vb = base + lid + ${W}u < t1;
    let ka = (min(base + lid, t1 - 1u) * params.hkv + h) * ${CH}u;
    let kb = (min(base + lid + ${W}u, t1 - 1u) * params.hkv + h) * ${CH}u;
    var sa = array<f32, ${R}>();
    var sb = array<f32, ${R}>();
${
    variant === "no-scores" || variant === "skeleton"
      ? "    _ = kc[0]; // keeps the binding in the pipeline's layout"
      : variant === "k-lanes4"
      ? scoresLanes4
      : scoresLoop
  }
    // The tile's maxima: subgroups, then their partials in workgroup memory.
${
    rowsOf((r) =>
      `    sa[${r}] = select(NEG, sa[${r}], va);
    sb[${r}] = select(NEG, sb[${r}], vb);
    let mx${r} = subgroupMax(max(sa[${r}], sb[${r}]));
    if (sl == 0u) { redm[lid / ss][${r}] = mx${r}; }`
    )
  }
    workgroupBarrier();
    var alpha = array<f32, ${R}>();
${
    rowsOf((r) =>
      `    {
      var tm = redm[0][${r}];
      for (var j = 1u; j < nsg; j++) { tm = max(tm, redm[j][${r}]); }
      let mn = max(m[${r}], tm);
      alpha[${r}] = exp2(m[${r}] - mn);
      m[${r}] = mn;
      let pa = select(0.0, exp2(sa[${r}] - mn), va);
      let pb = select(0.0, exp2(sb[${r}] - mn), vb);
      ps[lid][${r}] = pa;
      ps[lid + ${W}u][${r}] = pb;
      let ls = subgroupAdd(pa + pb);
      if (sl == 0u) { redl[lid / ss][${r}] = ls; }
    }`
    )
  }
    workgroupBarrier();
${
    rowsOf((r) =>
      `    {
      var tl = redl[0][${r}];
      for (var j = 1u; j < nsg; j++) { tl += redl[j][${r}]; }
      l[${r}] = l[${r}] * alpha[${r}] + tl;
${elems((e) => `      acc[${EW * r + e}] *= alpha[${r}];`)}
    }`
    )
  }
${
    variant === "no-pv" || variant === "skeleton"
      ? "    _ = vc[0]; // keeps the binding in the pipeline's layout"
      : pvLoop
  }
    workgroupBarrier();
  }
  // The phases' sums, added in phase order by the first phase's threads.
  phase_acc[lid] = acc;
  workgroupBarrier();
  let ob = wid.x * ${R * D + 2 * R}u;
  if (th == 0u) {
    for (var x = 0u; x < ${EW * R}u; x++) {
      var sum = phase_acc[c][x];
      for (var ph = 1u; ph < ${PH}u; ph++) { sum += phase_acc[ph * ${COLS}u + c][x]; }
      // x = row * ${EW} + element: the output dim is the word's element.
      outp[ob + (x / ${EW}u) * ${D}u + ${EW}u * c + x % ${EW}u] = sum * params.vscale;
    }
  }
  if (lid == 0u) {
${
    rowsOf((r) =>
      `    outp[ob + ${R * D + r}u] = m[${r}];
    outp[ob + ${R * D + R + r}u] = l[${r}];`
    )
  }
  }
}
`;
}
