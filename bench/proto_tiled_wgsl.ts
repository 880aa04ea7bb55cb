/**
 * The WGSL of bench/proto_tiled.ts's prototype (issues 13 and 16, session 24): decode for blocks
 * of many query rows per KV head (MLA, MQA, GQA with several query tokens), computed as two
 * small matrix products per tile of tokens through workgroup memory. See that file for what it
 * tests.
 *
 * One workgroup of `W` threads takes `RB` query rows of one KV head over a piece of the context,
 * `TS` tokens at a time:
 * - scores: `S = Q K^T` over the head dim in chunks of `DC` dims. Each chunk's query rows (f32,
 *   prescaled) and keys (f16 unpacked to f32) are staged in workgroup memory, row-major with one
 *   padding `vec4` per row; each thread computes a 4-row x `MA_T`-token block of scores, reading
 *   one `vec4` (4 dims) of each of its rows and tokens per step, so every 8 (4 + `MA_T` = 8)
 *   reads of workgroup memory feed 64 multiply-adds. The next chunk's global loads are issued
 *   before this chunk's arithmetic (registers), and the next tile's first chunk before the
 *   softmax and the weighted sum.
 * - softmax: the tile's scores go to workgroup memory as `[token][row]`; `W / RB` threads per row
 *   take its running max, rescale factor and sum (log2 units).
 * - weighted sum: `O = O * alpha + P V`; each thread holds `MB_R` rows x 8 dims (one 16-byte f16
 *   chunk of V) of the output, reading the probabilities of its rows as `vec4`s (the same address
 *   for the whole warp: a broadcast) and its V chunk from memory (the warp's lanes read
 *   consecutive chunks of one token: coalesced), `U` tokens ahead. Token groups (`TG`) split the
 *   tile's tokens when the block has too few (row, chunk) pairs for the threads; their outputs are
 *   added through workgroup memory at the end of the piece.
 *
 * Each workgroup writes its piece's unnormalised output, row maxima and sums (log2 units).
 *
 * @module
 */

/** Shape and blocking of one prototype kernel. */
export interface TiledConfig {
  /** K head dim (a multiple of `DC`). */
  D: number;
  /** V head dim (a multiple of 8). */
  DV: number;
  /** Query rows per workgroup (a multiple of 4). */
  RB: number;
  /** Tokens per tile. */
  TS: number;
  /** Head dims per staged chunk (a multiple of 8 dividing `D`). */
  DC: number;
  /** Output rows per thread in the weighted sum (a multiple of 4 dividing `RB`). */
  MB_R: number;
  /** V tokens loaded ahead in the weighted sum. */
  U: number;
  /** Threads per workgroup (default 256). */
  W?: number;
}

/** The layout a config resolves to. */
export interface TiledLayout {
  W: number;
  /** Score tokens per thread. */
  MA_T: number;
  /** Threads across tokens in the score phase. */
  NTX: number;
  /** 16-byte V chunks per row. */
  NCV: number;
  /** Row groups of the weighted sum. */
  NRG: number;
  /** Token groups of the weighted sum. */
  TG: number;
  /** `vec4<f32>`s of workgroup memory. */
  smem4: number;
}

/** Resolves a config's layout; throws where it does not fit. */
export function tiledLayout(c: TiledConfig): TiledLayout {
  const W = c.W ?? 256;
  const NTY = c.RB / 4;
  const NTX = W / NTY;
  const MA_T = c.TS / NTX;
  const NCV = c.DV / 8;
  const NRG = c.RB / c.MB_R;
  const TG = W / (NCV * NRG);
  if (!Number.isInteger(NTX) || !Number.isInteger(MA_T) || MA_T < 1) {
    throw new RangeError(`RB ${c.RB} and TS ${c.TS} do not fit ${W} threads`);
  }
  if (!Number.isInteger(TG) || TG < 1 || (c.TS / TG) % c.U !== 0) {
    throw new RangeError(`MB_R ${c.MB_R} and U ${c.U} do not fit (TG ${TG})`);
  }
  if (c.D % c.DC !== 0 || c.DC % 8 !== 0) throw new RangeError(`DC ${c.DC} for D ${c.D}`);
  const QS4 = c.DC / 4 + 1;
  const main = (c.RB + c.TS) * QS4 + (c.TS * c.RB) / 4 + (2 * W) / 4 + c.RB / 4;
  const reduce = TG > 1 ? (c.RB * c.DV) / 4 : 0;
  return { W, MA_T, NTX, NCV, NRG, TG, smem4: Math.max(main, reduce) };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const lines = (n: number, f: (i: number) => string) => range(n).map(f).join("\n");

/** The prototype's WGSL. */
export function tiledWGSL(c: TiledConfig): string {
  const { D, DV, RB, TS, DC, MB_R, U } = c;
  const L = tiledLayout(c);
  const { W, MA_T, NTX, NCV, NRG, TG } = L;
  const QS4 = DC / 4 + 1; // row stride of the staged chunks, in vec4s
  const NC = D / DC; // chunks per K row
  const KL = Math.ceil((TS * DC) / 8 / W); // K chunk loads per thread per stage
  const QL = Math.ceil((RB * DC) / 4 / W); // query vec4 loads per thread per stage
  const QS_OFF = 0;
  const KS_OFF = RB * QS4;
  const PS_OFF = KS_OFF + TS * QS4;
  const RED_OFF = PS_OFF + (TS * RB) / 4; // W floats of maxima, then W of sums
  const AL_OFF = RED_OFF + (2 * W) / 4; // RB rescale factors
  const RB4 = RB / 4;
  const NP = W / RB; // softmax threads per row
  const TPP = TS / NP; // tokens per softmax thread
  const MB4 = MB_R / 4;
  const TPT = TS / TG; // weighted-sum tokens per thread and tile
  const sc = (i: number, j: number) => `s${i}_${j}`;
  const kGuard = (TS * DC) / 8 % W !== 0;
  const qGuard = (RB * DC) / 4 % W !== 0;

  // Global loads of one stage (chunk `ci` of the tile at `t0`) into registers kn*, qn*.
  const stageLoad = (ci: string, t0: string) =>
    `${
      lines(KL, (i) =>
        `      {
        let idx = lid + ${i * W}u;
        let t = idx / ${DC / 8}u;
        let cc = idx % ${DC / 8}u;
        let tok = min(${t0} + t, p_end - 1u);
        ${
          kGuard ? `if (idx < ${(TS * DC) / 8}u) { ` : ""
        }kn${i} = k[((seq * params.n + tok) * params.hkv + h) * ${D / 8}u + ${ci} * ${
          DC / 8
        }u + cc];${kGuard ? " }" : ""}
      }`)
    }
${
      lines(QL, (i) =>
        `      {
        let idx = lid + ${i * W}u;
        let r = idx / ${DC / 4}u;
        let d4 = idx % ${DC / 4}u;
        ${qGuard ? `if (idx < ${(RB * DC) / 4}u) { ` : ""}qn${i} = q[(q_row0 + r) * ${
          D / 4
        }u + ${ci} * ${DC / 4}u + d4];${qGuard ? " }" : ""}
      }`)
    }`;
  // Registers kn*, qn* into workgroup memory.
  const stageStore = `${
    lines(KL, (i) =>
      `      {
        let idx = lid + ${i * W}u;
        let t = idx / ${DC / 8}u;
        let cc = idx % ${DC / 8}u;
        ${
        kGuard ? `if (idx < ${(TS * DC) / 8}u) { ` : ""
      }smem[${KS_OFF}u + t * ${QS4}u + 2u * cc] = vec4<f32>(unpack2x16float(kn${i}.x), unpack2x16float(kn${i}.y));
        smem[${KS_OFF}u + t * ${QS4}u + 2u * cc + 1u] = vec4<f32>(unpack2x16float(kn${i}.z), unpack2x16float(kn${i}.w));${
        kGuard ? " }" : ""
      }
      }`)
  }
${
    lines(QL, (i) =>
      `      {
        let idx = lid + ${i * W}u;
        let r = idx / ${DC / 4}u;
        let d4 = idx % ${DC / 4}u;
        ${
        qGuard ? `if (idx < ${(RB * DC) / 4}u) { ` : ""
      }smem[${QS_OFF}u + r * ${QS4}u + d4] = qn${i} * params.scale_log2;${qGuard ? " }" : ""}
      }`)
  }`;
  const comps = ["x", "y", "z", "w"];
  const chunkMath = `        for (var d4 = 0u; d4 < ${DC / 4}u; d4++) {
${lines(4, (i) => `          let a${i} = smem[${QS_OFF}u + (ty * 4u + ${i}u) * ${QS4}u + d4];`)}
${lines(MA_T, (j) => `          let b${j} = smem[${KS_OFF}u + (tx + ${j * NTX}u) * ${QS4}u + d4];`)}
${
    range(4).flatMap((i) =>
      range(MA_T).map((j) =>
        `          ${
          sc(i, j)
        } = fma(a${i}.w, b${j}.w, fma(a${i}.z, b${j}.z, fma(a${i}.y, b${j}.y, fma(a${i}.x, b${j}.x, ${
          sc(i, j)
        }))));`
      )
    ).join("\n")
  }
        }`;
  // V chunk of token slot u of a group into vr{u} (v_next).
  const vLoad = (dst: string, i0: string) =>
    lines(
      U,
      (u) =>
        `        ${dst}${u} = v[((seq * params.n + min(tile0 + tg + ${TG}u * (${i0} + ${u}u), p_end - 1u)) * params.hkv + h) * ${NCV}u + c];`,
    );
  const oName = (r: number, half: number) => `o${r}_${half}`;

  return `// lean-attention prototype: tiled many-row decode. D=${D} DV=${DV} RB=${RB} TS=${TS} DC=${DC} MB_R=${MB_R} U=${U} W=${W} (MA_T=${MA_T} TG=${TG})
struct Params {
  n: u32,
  chunk: u32,
  hkv: u32,
  rows: u32,
  splits: u32,
  scale_log2: f32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const NEG: f32 = -1e30;
var<workgroup> smem: array<vec4<f32>, ${L.smem4}>;

fn ps_get(t: u32, r: u32) -> f32 {
  return smem[${PS_OFF}u + t * ${RB4}u + r / 4u][r % 4u];
}

fn ps_set(t: u32, r: u32, x: f32) {
  smem[${PS_OFF}u + t * ${RB4}u + r / 4u][r % 4u] = x;
}

fn red_get(i: u32) -> f32 {
  return smem[${RED_OFF}u + i / 4u][i % 4u];
}

fn red_set(i: u32, x: f32) {
  smem[${RED_OFF}u + i / 4u][i % 4u] = x;
}

@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  // Workgroup order: row blocks of one piece side by side (they read the same K/V tiles).
  let nrb = params.rows / ${RB}u;
  let rb = wid.x % nrb;
  let rest = wid.x / nrb;
  let split = rest % params.splits;
  let sh = rest / params.splits;
  let h = sh % params.hkv;
  let seq = sh / params.hkv;
  let p_begin = min(split * params.chunk, params.n);
  let p_end = min(p_begin + params.chunk, params.n);
  let q_row0 = (seq * params.hkv + h) * params.rows + rb * ${RB}u;
  // Score phase: 4 rows (ty) x ${MA_T} tokens (tx + ${NTX} j) per thread.
  let tx = lid % ${NTX}u;
  let ty = lid / ${NTX}u;
  // Softmax: row sr, part sp of the tile's tokens.
  let sr = lid % ${RB}u;
  let sp = lid / ${RB}u;
  // Weighted sum: V chunk c, row group rg, token group tg.
  let c = lid % ${NCV}u;
  let rg = (lid / ${NCV}u) % ${NRG}u;
  let tg = lid / ${NCV * NRG}u;
  var m_run = NEG;
  var l_run = 0.0;
${
    lines(MB_R, (r) =>
      `  var ${oName(r, 0)} = vec4<f32>(0.0);\n  var ${oName(r, 1)} = vec4<f32>(0.0);`)
  }
${lines(KL, (i) => `  var kn${i} = vec4<u32>(0u);`)}
${lines(QL, (i) => `  var qn${i} = vec4<f32>(0.0);`)}
${lines(U, (u) => `  var vn${u} = vec4<u32>(0u);\n  var vc${u} = vec4<u32>(0u);`)}
  if (p_begin < p_end) {
${stageLoad("0u", "p_begin")}
  }
  for (var tile0 = p_begin; tile0 < p_end; tile0 += ${TS}u) {
${lines(4, (i) => lines(MA_T, (j) => `    var ${sc(i, j)} = 0.0;`))}
    for (var ci = 0u; ci < ${NC}u; ci++) {
${stageStore}
      workgroupBarrier();
      // The next stage's loads fly during this chunk's arithmetic.
      if (ci + 1u < ${NC}u) {
${stageLoad("(ci + 1u)", "tile0")}
      } else if (tile0 + ${TS}u < p_end) {
${stageLoad("0u", `(tile0 + ${TS}u)`)}
      }
${chunkMath}
      workgroupBarrier();
    }
    // Scores to workgroup memory ([token][row]); tokens past the piece are masked.
${
    lines(MA_T, (j) =>
      `    {
      let t = tx + ${j * NTX}u;
      let ok = tile0 + t < p_end;
      smem[${PS_OFF}u + t * ${RB4}u + ty] = select(vec4<f32>(NEG), vec4<f32>(${
        range(4).map((i) => sc(i, j)).join(", ")
      }), ok);
    }`)
  }
    // The first V tokens are requested before the softmax.
${vLoad("vn", "0u")}
    workgroupBarrier();
    // Softmax of the tile: each row's ${NP} threads take ${TPP} tokens each.
    var mx = NEG;
    for (var t = sp * ${TPP}u; t < (sp + 1u) * ${TPP}u; t++) {
      mx = max(mx, ps_get(t, sr));
    }
    red_set(lid, mx);
    workgroupBarrier();
    var m_tile = NEG;
    for (var p = 0u; p < ${NP}u; p++) {
      m_tile = max(m_tile, red_get(p * ${RB}u + sr));
    }
    let m_new = max(m_run, m_tile);
    let alpha = exp2(m_run - m_new);
    var sum = 0.0;
    for (var t = sp * ${TPP}u; t < (sp + 1u) * ${TPP}u; t++) {
      let p = exp2(ps_get(t, sr) - m_new);
      ps_set(t, sr, p);
      sum += p;
    }
    red_set(${W}u + lid, sum);
    if (sp == 0u) {
      smem[${AL_OFF}u + sr / 4u][sr % 4u] = alpha;
    }
    workgroupBarrier();
    var l_tile = 0.0;
    for (var p = 0u; p < ${NP}u; p++) {
      l_tile += red_get(${W}u + p * ${RB}u + sr);
    }
    l_run = l_run * alpha + l_tile;
    m_run = m_new;
    // Weighted sum: rescale, then ${TPT} tokens in groups of ${U}.
${
    lines(MB4, (j) =>
      `    {
      let al = smem[${AL_OFF}u + rg * ${MB4}u + ${j}u];
${
        lines(4, (e) => {
          const r = 4 * j + e;
          return `      ${oName(r, 0)} *= al.${comps[e]};\n      ${oName(r, 1)} *= al.${comps[e]};`;
        })
      }
    }`)
  }
    for (var i0 = 0u; i0 < ${TPT}u; i0 += ${U}u) {
${lines(U, (u) => `      vc${u} = vn${u};`)}
      if (i0 + ${U}u < ${TPT}u) {
${vLoad("vn", `(i0 + ${U}u)`)}
      }
${
    lines(U, (u) =>
      `      {
        let t = tg + ${TG}u * (i0 + ${u}u);
        let va = vec4<f32>(unpack2x16float(vc${u}.x), unpack2x16float(vc${u}.y));
        let vb = vec4<f32>(unpack2x16float(vc${u}.z), unpack2x16float(vc${u}.w));
${
        lines(MB4, (j) =>
          `        let p${j} = smem[${PS_OFF}u + t * ${RB4}u + rg * ${MB4}u + ${j}u];
${
            lines(4, (e) => {
              const r = 4 * j + e;
              return `        ${oName(r, 0)} = fma(vec4<f32>(p${j}.${comps[e]}), va, ${
                oName(r, 0)
              });\n        ${oName(r, 1)} = fma(vec4<f32>(p${j}.${comps[e]}), vb, ${oName(r, 1)});`;
            })
          }`)
      }
      }`)
  }
    }
    workgroupBarrier();
  }
  // Token groups' outputs added through workgroup memory (group 0 keeps the sum).
${
    TG > 1
      ? `  for (var g = 1u; g < ${TG}u; g++) {
    if (tg == g) {
${
        lines(MB_R, (r) =>
          `      smem[(rg * ${MB_R}u + ${r}u) * ${DV / 4}u + 2u * c] = ${oName(r, 0)};
      smem[(rg * ${MB_R}u + ${r}u) * ${DV / 4}u + 2u * c + 1u] = ${oName(r, 1)};`)
      }
    }
    workgroupBarrier();
    if (tg == 0u) {
${
        lines(MB_R, (r) =>
          `      ${oName(r, 0)} += smem[(rg * ${MB_R}u + ${r}u) * ${DV / 4}u + 2u * c];
      ${oName(r, 1)} += smem[(rg * ${MB_R}u + ${r}u) * ${DV / 4}u + 2u * c + 1u];`)
      }
    }
    workgroupBarrier();
  }`
      : ""
  }
  let base = wid.x * ${RB * DV + 2 * RB}u;
  if (tg == 0u) {
${
    lines(MB_R, (r) =>
      `    {
      let o = base + (rg * ${MB_R}u + ${r}u) * ${DV}u + 8u * c;
${lines(4, (e) => `      out[o + ${e}u] = ${oName(r, 0)}.${comps[e]};`)}
${lines(4, (e) => `      out[o + ${4 + e}u] = ${oName(r, 1)}.${comps[e]};`)}
    }`)
  }
  }
  if (sp == 0u) {
    out[base + ${RB * DV}u + sr] = m_run;
    out[base + ${RB * DV + RB}u + sr] = l_run;
  }
}
`;
}
