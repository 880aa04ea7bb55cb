/**
 * The decode kernel: each workgroup walks its run of pieces from the schedule table, keeps the
 * online-softmax state of all query rows of its block, and writes either the final output or a
 * partial state.
 *
 * Per tile of `T` tokens:
 *  1. scores: one thread per token reads its K row once (16-byte loads) and dots it with every
 *     query row of the block (the rows of a GQA group share that read);
 *  2. values: threads own a 16-byte slice of the head dimension and a token group; each reads the
 *     tile's row maxima from workgroup memory, rescales its accumulators and adds `p * v`.
 * Token groups keep separate sums that are combined in a fixed order at the end of a piece, so
 * results never depend on scheduling.
 *
 * @module
 */

import {
  elementsPerLoad,
  FLAT_WORKGROUP_WGSL,
  type KernelSpec,
  PARAMS_WGSL,
  QUERY_ROW_WGSL,
} from "./kernel_spec.ts";
import { kvLoadWGSL } from "./kv_load.ts";

/** Sentinel for masked scores and empty states; finite so `exp2(NEG - NEG)` stays defined. */
export const NEG_SCORE = -1e30;

/** Thread layout of the value phase for a spec. */
export function valueLayout(spec: KernelSpec): {
  chunks: number;
  groups: number;
  chunksPerThread: number;
} {
  const chunks = spec.headDim / elementsPerLoad(spec.kvDtype);
  if (chunks <= spec.workgroupSize) {
    return { chunks, groups: Math.floor(spec.workgroupSize / chunks), chunksPerThread: 1 };
  }
  return { chunks, groups: 1, chunksPerThread: Math.ceil(chunks / spec.workgroupSize) };
}

/** Bytes of workgroup memory the decode kernel declares. */
export function decodeWorkgroupBytes(spec: KernelSpec): number {
  const block = spec.rowsPerBlock * spec.headDim * 4; // q_sh
  const scratch = Math.max(2 * spec.rowsPerBlock * spec.tileTokens * 4, block); // sc
  return block + scratch + 2 * spec.rowsPerBlock * 4; // red_l and m_sh
}

function rows(n: number, body: (r: number) => string): string {
  return Array.from({ length: n }, (_, r) => body(r)).join("\n");
}

/**
 * Generates the decode kernel's WGSL for a spec.
 *
 * @example
 * ```ts
 * import { decodeKernelWGSL } from "./decode_kernel.ts";
 * const wgsl = decodeKernelWGSL({
 *   headDim: 128, kvDtype: "f16", tileTokens: 64, rowsPerBlock: 4, workgroupSize: 64,
 * });
 * console.log(wgsl.includes("@compute")); // true
 * ```
 */
export function decodeKernelWGSL(spec: KernelSpec): string {
  const { headDim: D, tileTokens: T, rowsPerBlock: RP, workgroupSize: W } = spec;
  if (T % W !== 0) {
    throw new RangeError(`tileTokens (${T}) must be a multiple of workgroupSize: got ${W}`);
  }
  const vec = elementsPerLoad(spec.kvDtype);
  const v4 = vec / 4; // vec4<f32> per 16-byte load
  const { chunks, groups, chunksPerThread } = valueLayout(spec);
  const tokensPerThread = T / W;
  const dot = (r: number) =>
    rows(v4, (j) => `      s[${r}] += dot(kv[${j}], q_sh[${r * (D / 4)} + ch * ${v4}u + ${j}u]);`);
  const accumulate = (ci: number) =>
    rows(
      RP,
      (r) => rows(v4, (j) => `          o[${(ci * RP + r) * v4 + j}] += p[${r}] * kv[${j}];`),
    );
  const rescale = rows(
    chunksPerThread * RP * v4,
    (i) => `    o[${i}] *= alpha[${Math.floor(i / v4) % RP}];`,
  );
  const combine = (ci: number) =>
    rows(RP, (r) =>
      rows(v4, (j) => {
        const at = `${r * (D / 4)}u + c${ci} * ${v4}u + ${j}u`;
        const mine = `o[${(ci * RP + r) * v4 + j}]`;
        return `        sc[${at}] = select(sc[${at}] + ${mine}, ${mine}, gg == 0u);`;
      }));
  const chunkVars = rows(
    chunksPerThread,
    (ci) =>
      chunks <= W
        ? `  let c${ci} = lid % ${chunks}u;\n  let active${ci} = lid < ${groups * chunks}u;`
        : `  let c${ci} = lid + ${ci * W}u;\n  let active${ci} = c${ci} < ${chunks}u;`,
  );
  return `// lean-attention decode kernel: D=${D} kv=${spec.kvDtype} T=${T} RP=${RP} W=${W}
${PARAMS_WGSL}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> sched: array<u32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k_cache: array<${
    spec.kvDtype === "f32" ? "vec4<f32>" : "vec4<u32>"
  }>;
@group(0) @binding(4) var<storage, read> v_cache: array<${
    spec.kvDtype === "f32" ? "vec4<f32>" : "vec4<u32>"
  }>;
@group(0) @binding(5) var<storage, read_write> result: array<f32>;
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;

const D: u32 = ${D}u;
const D4: u32 = ${D / 4}u;
const T: u32 = ${T}u;
const RP: u32 = ${RP}u;
const CHUNKS: u32 = ${chunks}u;
const GROUPS: u32 = ${groups}u;
const SLOT: u32 = ${RP * (D + 2)}u;
const NEG: f32 = ${NEG_SCORE.toExponential()};
const DIRECT: u32 = 0xffffffffu;

var<workgroup> q_sh: array<vec4<f32>, ${RP * (D / 4)}>;
// Scores of two tiles (tile i+1 writes one half while late threads still read tile i's); after
// the tile loop the same memory holds the token groups' combined output.
var<workgroup> sc: array<vec4<f32>, ${Math.max(2 * RP * T, RP * D) / 4}>;
var<workgroup> red_l: array<f32, ${RP}>;
var<workgroup> m_sh: array<f32, ${RP}>;
${FLAT_WORKGROUP_WGSL}
${QUERY_ROW_WGSL}
${kvLoadWGSL(spec.kvDtype)}

fn score_at(base: u32, r: u32, t: u32) -> f32 {
  let i = base + r * T + t;
  return sc[i >> 2u][i & 3u];
}

@compute @workgroup_size(${W})
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let w = flat_workgroup(wid, nwg);
  if (w >= params.count) {
    return;
  }
${chunkVars}
  let g = lid / ${chunks <= W ? chunks : W}u;
  let p_begin = sched[w];
  let p_end = sched[w + 1u];
  for (var pc = p_begin; pc < p_end; pc++) {
    let f = params.piece_base + pc * 8u;
    let seq = sched[f];
    let kv_head = sched[f + 1u];
    let r0 = sched[f + 2u] * RP;
    let tok_begin = sched[f + 3u];
    let tok_end = sched[f + 4u];
    let slot = sched[f + 5u];
    let kv_start = sched[f + 6u];
    let seq_len = sched[f + 7u];
    let n_rows = min(RP, params.rows_per_group - r0);

    // Query rows of the block, pre-scaled into log2 units; missing rows are zero.
    for (var i = lid; i < RP * D4; i += ${W}u) {
      let r = i / D4;
      var qv = vec4<f32>(0.0);
      if (r < n_rows) {
        let base = query_row(seq, kv_head, r0 + r) * D + (i % D4) * 4u;
        qv = vec4<f32>(q[base], q[base + 1u], q[base + 2u], q[base + 3u]) * params.scale_log2;
      }
      q_sh[i] = qv;
    }
    // Tokens row r may see: causal within the last qLen tokens, and inside this piece.
    var lim: array<u32, ${RP}>;
${
    rows(RP, (r) =>
      `    lim[${r}] = select(0u, min(seq_len - params.q_len + (r0 + ${r}u) % params.q_len + 1u, tok_end), ${r}u < n_rows);`)
  }
    var m: array<f32, ${RP}>;
    var l: array<f32, ${RP}>;
    var o = array<vec4<f32>, ${chunksPerThread * RP * v4}>();
${rows(RP, (r) => `    m[${r}] = NEG;\n    l[${r}] = 0.0;`)}
    workgroupBarrier();

    for (var tile = tok_begin; tile < tok_end; tile += T) {
      // Double-buffered scores: one barrier per tile instead of two.
      let sb = select(0u, RP * T, ((tile - tok_begin) / T) % 2u == 1u);
      // 1. Scores: one thread per token, every row of the block.
      for (var j = 0u; j < ${tokensPerThread}u; j++) {
        let t = lid + j * ${W}u;
        let tok = tile + t;
        // Explicit initialisers: a loop-local var was seen keeping its last value (lavapipe).
        var s = array<f32, ${RP}>();
        if (tok < tok_end) {
          let kb = (kv_start + tok) * params.kv_row + kv_head * CHUNKS;
          for (var ch = 0u; ch < CHUNKS; ch++) {
            let kv = load_k(kb + ch);
${rows(RP, dot)}
          }
        }
${
    rows(RP, (r) =>
      `        sc[(sb + ${r * T}u + t) >> 2u][t & 3u] = select(NEG, s[${r}], tok < lim[${r}]);`)
  }
      }
      workgroupBarrier();

      // 2. Row maxima of the tile (every thread reads them), rescale, accumulate p * v.
      var alpha: array<f32, ${RP}>;
      var p: array<f32, ${RP}>;
${
    rows(RP, (r) =>
      `      {
        var mx = NEG;
        for (var i = 0u; i < T / 4u; i++) {
          let s4 = sc[sb / 4u + ${r * (T / 4)}u + i];
          mx = max(mx, max(max(s4.x, s4.y), max(s4.z, s4.w)));
        }
        let m_new = max(m[${r}], mx);
        alpha[${r}] = exp2(m[${r}] - m_new);
        m[${r}] = m_new;
        l[${r}] *= alpha[${r}];
      }`)
  }
${rescale}
      for (var t = g; t < T; t += GROUPS) {
        let tok = tile + t;
        if (tok < tok_end) {
${
    rows(RP, (r) =>
      `          let s${r} = score_at(sb, ${r}u, t);\n          p[${r}] = select(0.0, exp2(s${r} - m[${r}]), s${r} > NEG);\n          l[${r}] += p[${r}];`)
  }
          let vb = (kv_start + tok) * params.kv_row + kv_head * CHUNKS;
${
    rows(chunksPerThread, (ci) =>
      `          if (active${ci}) {\n            let kv = load_v(vb + c${ci});\n${
        accumulate(ci)
      }\n          }`)
  }
        }
      }
    }

    // The combined output reuses the score memory: wait until every thread is past the last tile.
    workgroupBarrier();

    // Combine the token groups in a fixed order.
    for (var gg = 0u; gg < GROUPS; gg++) {
      if (g == gg) {
${rows(chunksPerThread, (ci) => `        if (active${ci}) {\n${combine(ci)}\n        }`)}
        if (lid % ${chunks <= W ? chunks : W}u == 0u) {
${rows(RP, (r) => `          red_l[${r}] = select(red_l[${r}] + l[${r}], l[${r}], gg == 0u);`)}
          if (gg == 0u) {
${rows(RP, (r) => `            m_sh[${r}] = m[${r}];`)}
          }
        }
      }
      workgroupBarrier();
    }

    // Write the final output, or the partial state (unnormalised o, max m, sum l).
    for (var i = lid; i < RP * D; i += ${W}u) {
      let r = i / D;
      if (r < n_rows) {
        let val = sc[i >> 2u][i & 3u];
        if (slot == DIRECT) {
          result[query_row(seq, kv_head, r0 + r) * D + i % D] = val / red_l[r];
        } else {
          partials[slot * SLOT + i] = val;
        }
      }
    }
    if (lid < n_rows) {
      if (slot == DIRECT) {
        result[params.lse_base + query_row(seq, kv_head, r0 + lid)] =
          (m_sh[lid] + log2(red_l[lid])) * 0.6931471805599453;
      } else {
        partials[slot * SLOT + RP * D + lid] = m_sh[lid];
        partials[slot * SLOT + RP * D + RP + lid] = red_l[lid];
      }
    }
    workgroupBarrier();
  }
}
`;
}
