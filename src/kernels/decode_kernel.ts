/**
 * The decode kernel: each workgroup walks its run of pieces from the schedule table and writes,
 * per piece, either the final output or a partial state (unnormalised output, max, sum).
 *
 * Layout (see {@linkcode kernelLayout}): `lanes` threads share a token. Each lane loads its
 * 16-byte chunks of the token's K and V rows, so the lanes of a group read whole rows with
 * consecutive addresses (coalesced), and every group loads `unroll` tokens' K and V before it
 * computes, to keep many bytes in flight. A lane dots its K chunks with the query rows it holds
 * in registers; the lanes' partial sums are added with subgroup shuffles (a butterfly, so every
 * lane gets the same bits) or through workgroup memory. Each token group keeps its own online
 * softmax state (max, sum, output slice), so a step needs no workgroup-wide max; the groups'
 * states are merged at the end of a piece with the softmax rescale, in group order, so results
 * never depend on timing.
 *
 * @module
 */

import {
  elementsPerLoad,
  FLAT_WORKGROUP_WGSL,
  kernelLayout,
  type KernelSpec,
  PARAMS_WGSL,
  QUERY_ROW_WGSL,
} from "./kernel_spec.ts";
import { kvLoadWGSL } from "./kv_load.ts";
import { grid, laneReduceWGSL, lines, softmaxStepWGSL } from "./decode_step.ts";
import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import { VARIANT_WGSL } from "./variant_wgsl.ts";
import { BINDING, bindingWGSL, PIECE_RECORD, recordOffsetsWGSL } from "./abi.ts";

/** Sentinel for masked scores and empty states; finite so `exp2(NEG - NEG)` stays defined. */
export const NEG_SCORE = -1e30;

/** Options of the generated source that do not change the kernel (not part of the cache key). */
export interface WGSLOptions {
  /** Emit `enable subgroups;` (Tint/Dawn needs it; Naga/Deno rejects it). */
  enableDirective?: boolean;
}

/** Bytes of workgroup memory the decode kernel declares. */
export function decodeWorkgroupBytes(spec: KernelSpec): number {
  const l = kernelLayout(spec);
  const acc = spec.rowsPerBlock * spec.headDim * 4;
  const maxima = l.groups * spec.rowsPerBlock * 4 + 2 * spec.rowsPerBlock * 4;
  const entries = l.groups * l.rowSets * l.unroll * l.rowsPerThread;
  const exchange = l.subgroups || l.lanes === 1 ? 0 : 2 * entries * (l.lanes + 2) * 4;
  return acc + maxima + exchange;
}

/**
 * Generates the decode kernel's WGSL for a spec.
 *
 * @example
 * ```ts
 * import { decodeKernelWGSL } from "./decode_kernel.ts";
 * const wgsl = decodeKernelWGSL({
 *   headDim: 128, kvDtype: "f16", tileTokens: 64, rowsPerBlock: 4, workgroupSize: 128,
 * });
 * console.log(wgsl.includes("@compute")); // true
 * ```
 */
export function decodeKernelWGSL(spec: KernelSpec, options: WGSLOptions = {}): string {
  const { headDim: D, tileTokens: T, rowsPerBlock: RB, workgroupSize: W } = spec;
  const L = kernelLayout(spec);
  const variant = VARIANT_WGSL[spec.variant ?? "causal"];
  const { lanes, chunksPerLane: CPL, groups: G, unroll: U, step } = L;
  // Rows this thread holds (all the block's rows unless row sets split them among lane groups).
  const RP = L.rowsPerThread;
  const RS = L.rowSets;
  // The block row of this thread's row r: row sets hold consecutive rows from `rs0`.
  const row = (r: number) => (RS > 1 ? `(rs0 + ${r}u)` : `${r}u`);
  const V4 = elementsPerLoad(spec.kvDtype) / 4; // vec4<f32> per 16-byte chunk
  const E4 = CPL * V4; // vec4<f32> per lane per row
  const raw = `vec4<${KV_DTYPE_INFO[spec.kvDtype].wgslWord}>`;
  const qi = (r: number, i: number, j: number) => r * E4 + i * V4 + j;
  // A query vector: registers, or (queryShared) the block's rows in workgroup memory (`acc`,
  // which holds them until the piece's merge).
  const queryShared = spec.queryShared ?? false;
  const qref = (r: number, i: number, j: number) =>
    queryShared
      ? `acc[${row(r)} * D4 + (lane + ${i * lanes}u) * ${V4}u + ${j}u]`
      : `qv[${qi(r, i, j)}]`;

  // Loads: K and V chunks of U tokens (a token past the piece re-reads its last token; its
  // score is masked, so no load needs a branch). With prefetch, the next step's chunks are
  // requested before this step's arithmetic, so loads stay in flight through it.
  const issue = (at: string, decl: string, prefix: string) =>
    lines(
      U,
      (u) =>
        `      let ${prefix}row${u} = kv_row(kv_start, min(${at} + ${
          u * G
        }u + g, tok_end - 1u)) * params.kv_row + kv_head * CHUNKS + lane;
${
          lines(CPL, (i) =>
            `      ${decl}${prefix}k${u}_${i} = k_cache[${prefix}row${u} + ${
              i * lanes
            }u];\n      ${decl}${prefix}v${u}_${i} = v_cache[${prefix}row${u} + ${i * lanes}u];`)
        }`,
    );
  const tokens = lines(U, (u) => `      let t${u} = s0 + ${u * G}u + g;`);
  const prefetch = spec.prefetch ?? false;
  const fastSteps = spec.fastSteps ?? true;
  const loads = prefetch
    ? `${tokens}
${
      lines(U, (u) =>
        lines(
          CPL,
          (i) => `      let k${u}_${i} = nk${u}_${i};\n      let v${u}_${i} = nv${u}_${i};`,
        ))
    }
${issue("(s0 + STEP)", "", "n")}`
    : `${tokens}
${issue("s0", "let ", "")}`;
  const prefetchInit = prefetch ? issue("tok_begin", "var ", "n") : "";
  const dots = lines(
    U,
    (u) =>
      `${lines(CPL, (i) => `      let kf${u}_${i} = unpack_kv(k${u}_${i});`)}
${
        lines(RP, (r) =>
          `      var d${u}_${r} = ${
            grid(CPL, V4, (i, j) => `dot(kf${u}_${i}[${j}], ${qref(r, i, j)})`).split("\n").join(
              " + ",
            )
          };`)
      }`,
  );
  const shape = { RP, U, CPL, V4, lanes, W, subgroups: L.subgroups, qi };
  const reduce = laneReduceWGSL(shape);
  const { fast, softmax } = softmaxStepWGSL(shape);

  const pagedBinding = L.paged
    ? bindingWGSL(BINDING.pages, "pages", "storage, read", "array<u32>")
    : "";
  const kvRow = L.paged
    ? `fn kv_row(base: u32, t: u32) -> u32 {
  return (pages[base + (t >> params.page_shift)] << params.page_shift) +
    (t & ((1u << params.page_shift) - 1u));
}`
    : `fn kv_row(base: u32, t: u32) -> u32 {
  return base + t;
}`;
  const poisonedFn = `
// NaN or +inf, by bits (compilers may fold float NaN tests away).
fn poisoned(x: f32) -> bool {
  let b = bitcast<u32>(x);
  return (b & 0x7fffffffu) > 0x7f800000u || b == 0x7f800000u;
}`;
  const entries = G * RS * U * RP; // (token, row) scores per step
  const exchange = L.subgroups || lanes === 1 ? "" : `const XHALF: u32 = ${entries * (lanes + 1)}u;
const SHALF: u32 = ${entries}u;
var<workgroup> xs: array<f32, ${2 * entries * (lanes + 1)}>;
var<workgroup> ss: array<f32, ${2 * entries}>;`;

  return `${
    options.enableDirective && L.subgroups ? "enable subgroups;\n" : ""
  }// lean-attention decode kernel: D=${D} kv=${spec.kvDtype} T=${T} RP=${RB} W=${W} lanes=${lanes} unroll=${U}${
    L.subgroups ? " subgroups" : ""
  }${L.paged ? " paged" : ""}${RS > 1 ? ` rowSets=${RS}` : ""}${queryShared ? " queryShared" : ""}
${PARAMS_WGSL}
${bindingWGSL(BINDING.params, "params", "uniform", "Params")}
${bindingWGSL(BINDING.sched, "sched", "storage, read", "array<u32>")}
${bindingWGSL(BINDING.q, "q", "storage, read", "array<vec4<f32>>")}
${bindingWGSL(BINDING.k, "k_cache", "storage, read", `array<${raw}>`)}
${bindingWGSL(BINDING.v, "v_cache", "storage, read", `array<${raw}>`)}
${bindingWGSL(BINDING.out, "out", "storage, read_write", "array<f32>")}
${bindingWGSL(BINDING.partials, "partials", "storage, read_write", "array<f32>")}
${bindingWGSL(BINDING.lse, "lse_out", "storage, read_write", "array<f32>")}
${pagedBinding}
${recordOffsetsWGSL(PIECE_RECORD)}

const D: u32 = ${D}u;
const D4: u32 = ${D / 4}u;
const T: u32 = ${T}u;
const RP: u32 = ${RB}u;
const CHUNKS: u32 = ${L.chunks}u;
const LANES: u32 = ${lanes}u;
const GROUPS: u32 = ${G}u;
const STEP: u32 = ${step}u;
const SLOT: u32 = ${RB * (D + 2)}u;
const NEG: f32 = ${NEG_SCORE.toExponential()};
const Z4: vec4<f32> = vec4<f32>(0.0);
// A NaN built at run time: WGSL rejects NaN in constant expressions.
var<private> nan_bits: u32 = 0x7fc00000u;
const DIRECT: u32 = 0xffffffffu;

// The groups' merged output, and each group's row maxima then the merged sums.
var<workgroup> acc: array<vec4<f32>, ${RB * (D / 4)}>;
var<workgroup> m_sh: array<f32, ${G * RB}>;
var<workgroup> l_sh: array<f32, ${RB}>;
var<workgroup> bad_sh: array<atomic<u32>, ${RB}>;
${exchange}
${FLAT_WORKGROUP_WGSL}
${QUERY_ROW_WGSL}
${kvLoadWGSL(spec.kvDtype)}
${kvRow}
${poisonedFn}

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
  let lane = lid % LANES;
  // Lane group (one per token and row set), token group, and this row set's first block row.
  let lg = lid / LANES;
  let g = lg / ${RS}u;${RS > 1 ? `\n  let rs0 = (lg % ${RS}u) * ${RP}u;` : ""}
  let p_begin = sched[w];
  let p_end = sched[w + 1u];
  for (var pc = p_begin; pc < p_end; pc++) {
    let f = params.piece_base + pc * PIECE_STRIDE;
    let seq = sched[f + PIECE_SEQ];
    let kv_head = sched[f + PIECE_KV_HEAD];
    let r0 = sched[f + PIECE_ROW_BLOCK] * RP;
    let tok_begin = sched[f + PIECE_TOKEN_BEGIN];
    let tok_end = sched[f + PIECE_TOKEN_END];
    let slot = sched[f + PIECE_SLOT];
    let kv_start = sched[f + PIECE_KV_START];
    let seq_len = sched[f + PIECE_SEQ_LEN];
    let n_rows = min(RP, params.rows_per_group - r0);

${
    queryShared
      ? `    // The block's query rows, pre-scaled into log2 units, in workgroup memory; missing rows 0.
    for (var i = lid; i < RP * D4; i += ${W}u) {
      let r = i / D4;
      acc[i] = select(Z4, q[query_row(seq, kv_head, r0 + min(r, n_rows - 1u)) * D4 + i % D4] *
        params.scale_log2, r < n_rows);
    }
    workgroupBarrier();`
      : `    // This lane's chunks of the block's query rows, pre-scaled into log2 units; missing rows 0.
    var qv = array<vec4<f32>, ${RP * E4}>();
${
        lines(RP, (r) =>
          `    if (${row(r)} < n_rows) {
      let qb = query_row(seq, kv_head, r0 + ${row(r)}) * D4;
${
            grid(CPL, V4, (i, j) =>
              `      qv[${qi(r, i, j)}] = q[qb + (lane + ${
                i * lanes
              }u) * ${V4}u + ${j}u] * params.scale_log2;`)
          }
    }`)
      }`
  }
    // Tokens row r may see: causal within the last qLen tokens, and inside this piece.
    var lim = array<u32, ${RP}>();
${
    lines(RP, (r) =>
      `    lim[${r}] = select(0u, min(${
        variant.visible("seq_len", "params.q_len", `(r0 + ${row(r)}) % params.q_len`)
      }, tok_end), ${row(r)} < n_rows);`)
  }
${
    fastSteps
      ? `    // Tokens every row of the block may see.
    var lim_all = tok_end;
${lines(RP, (r) => `    lim_all = select(lim_all, min(lim_all, lim[${r}]), ${row(r)} < n_rows);`)}`
      : ""
  }
    var m = array<f32, ${RP}>();
    // Rows that saw a NaN or +inf score: their output is NaN, as in the reference. Tracked with
    // integer bits, since GPU compilers may assume floats are never NaN: per score on masked
    // steps, and on the sum l (which such a score makes NaN) once per piece.
    var bad = array<u32, ${RP}>();
    if (lid < ${RB}u) {
      atomicStore(&bad_sh[lid], 0u);
    }
    var l = array<f32, ${RP}>();
    var o = array<vec4<f32>, ${RP * E4}>();
${lines(RP, (r) => `    m[${r}] = NEG;`)}
${prefetchInit}

    for (var s0 = tok_begin; s0 < tok_end; s0 += STEP) {
${loads}
${dots}
${reduce}${
    variant.logit ? `\n${grid(U, RP, (u, r) => `      ${variant.logit!(`d${u}_${r}`)}`)}` : ""
  }
${lines(U, (u) => lines(CPL, (i) => `      let vf${u}_${i} = unpack_kv(v${u}_${i});`))}
${
    fastSteps
      ? `      if (s0 + STEP <= lim_all) {
${fast}
      } else {
${softmax}
      }`
      : softmax
  }
    }
${fastSteps ? lines(RP, (r) => `    bad[${r}] |= select(0u, 1u, poisoned(l[${r}]));`) : ""}

    // Merge the groups' states: a common max, then the rescaled sums in group order.
    workgroupBarrier();
    if (lane == 0u) {
${
    lines(RP, (r) =>
      `      m_sh[g * RP + ${row(r)}] = m[${r}];
      atomicOr(&bad_sh[${row(r)}], bad[${r}]);`)
  }
    }
    workgroupBarrier();
    var mm = array<f32, ${RB}>();
    var any_bad = array<u32, ${RB}>();
${lines(RB, (r) => `    any_bad[${r}] = atomicLoad(&bad_sh[${r}u]);`)}
${
    lines(RB, (r) =>
      `    mm[${r}] = NEG;
    for (var gg = 0u; gg < GROUPS; gg++) { mm[${r}] = max(mm[${r}], m_sh[gg * RP + ${r}u]); }`)
  }
${
    lines(RP, (r) =>
      `    {
      let sc = exp2(m[${r}] - mm[${RS > 1 ? `rs0 + ${r}u` : r}]);
      l[${r}] *= sc;
${grid(CPL, V4, (i, j) => `      o[${qi(r, i, j)}] *= sc;`)}
    }`)
  }
    for (var gg = 0u; gg < GROUPS; gg++) {
      if (g == gg) {
${
    lines(RP, (r) =>
      grid(CPL, V4, (i, j) => {
        const at = `${row(r)} * D4 + (lane + ${i * lanes}u) * ${V4}u + ${j}u`;
        return `        acc[${at}] = select(acc[${at}] + o[${qi(r, i, j)}], o[${
          qi(r, i, j)
        }], gg == 0u);`;
      }))
  }
        if (lane == 0u) {
${
    lines(RP, (r) =>
      `          l_sh[${row(r)}] = select(l_sh[${row(r)}] + l[${r}], l[${r}], gg == 0u);`)
  }
        }
      }
      workgroupBarrier();
    }

    // Write the final output, or the partial state (unnormalised o, max m, sum l).
    for (var i = lid; i < RP * D; i += ${W}u) {
      let r = i / D;
      if (r < n_rows) {
        let val = acc[i >> 2u][i & 3u];
        if (slot == DIRECT) {
          out[query_row(seq, kv_head, r0 + r) * D + i % D] =
            select(val / l_sh[r], bitcast<f32>(nan_bits), any_bad[r] != 0u);
        } else {
          partials[slot * SLOT + i] = val;
        }
      }
    }
    if (lid < n_rows) {
      if (slot == DIRECT) {
        lse_out[query_row(seq, kv_head, r0 + lid)] = select(
          (mm[lid] + log2(l_sh[lid])) * 0.6931471805599453,
          bitcast<f32>(nan_bits),
          any_bad[lid] != 0u,
        );
      } else {
        partials[slot * SLOT + RP * D + lid] = mm[lid];
        partials[slot * SLOT + RP * D + RP + lid] =
          select(l_sh[lid], bitcast<f32>(nan_bits), any_bad[lid] != 0u);
      }
    }
    workgroupBarrier();
  }
}
`;
}
