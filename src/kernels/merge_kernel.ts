/**
 * The merge kernel, dispatched after the decode kernel in the same compute pass: one workgroup
 * per (split segment, query row) merges the segment's partial states with the softmax rescale
 * and writes the output and the LSE (their own bindings, so a caller's buffers can be bound).
 * The WGSL twin of `mergePartialRow`: the same result up to float rounding (the sum is formed in
 * a tree, not in slot order), never bit for bit.
 *
 * Its work is tiny (a segment has tens of partial slots), so its cost is latency: memory round
 * trips and workgroup barriers. Each thread therefore reads its slot's max and sum once (rows with
 * more slots than threads merge the extra slots into the thread's state as they read them), one
 * tree reduction of (max, sum, NaN flag) with the softmax-rescale combine gives the row's max and
 * sum in as many levels as the slots need (the next power of two of the threads holding slots,
 * not always the full workgroup), the weights come from the registers read before, and the
 * weighted outputs are summed by several slot groups of threads at once, then added in group
 * order. Every order is fixed: results never depend on timing.
 *
 * @module
 */

import type { WGSLOptions } from "./decode_kernel.ts";
import { lines } from "./decode_step.ts";
import { ioWGSL } from "./io_wgsl.ts";
import type { KernelSpec } from "./kernel_spec.ts";
import {
  mergedValueWGSL,
  mergeFinishWGSL,
  mergeHeaderWGSL,
  mergeRecordWGSL,
  nestedRuns,
} from "./merge_common.ts";

/**
 * The merged total of output dim `d` (a WGSL expression): the slot groups' sums in group order
 * (rows that fit the workgroup), or the one thread's sum (longer rows).
 */
const total = (grouped: boolean, d: string) => grouped ? `total_of(${d})` : `part[${d}]`;

/**
 * A merged row's `f32` output, `norm` the normalisation of a total; an empty request's row (no
 * slots) is 0, the merge identity.
 */
const f32Out = (grouped: boolean, norm: (v: string) => string) =>
  `  for (var dd = lid; dd < D; dd += W) {
    out[row * D + dd] = ${mergedValueWGSL(total(grouped, "dd"), norm)};
  }`;

/** A merged row's `f16` output: two elements per thread and `u32`. */
const halfOut = (grouped: boolean, norm: (v: string) => string) =>
  `  for (var d2 = lid; d2 < D / 2u; d2 += W) {
    let lo = ${mergedValueWGSL(total(grouped, "2u * d2"), norm)};
    let hi = ${mergedValueWGSL(total(grouped, "2u * d2 + 1u"), norm)};
    out[row * D / 2u + d2] = half_bits(lo) | (half_bits(hi) << 16u);
  }`;

/**
 * The weighted sum of the slots' outputs into `part`, W slots at a time with each slot's weight
 * computed once: rows that fit the workgroup are summed by slot groups of threads (their sums
 * added in group order by `total_of`); longer rows (MLA's 512) `DPT` dims per thread, in slot
 * order.
 */
function weightedWGSL(D: number, W: number, DPT: number): string {
  // The first W slots' weights come from the registers the reduction read them into; only rows
  // with more slots than threads read the later slots' maxima and sums again.
  const weights = `    var ms = own.x;
    var ls = own.y;
    if (c0 > 0u) {
      ms = NEG;
      ls = 0.0;
      if (c0 + lid < n) {
        let base = (first + c0 + lid) * SLOT + mo;
        ms = partials[base];
        ls = partials[base + RP];
      }
    }
    weight[lid] = select(0.0, exp2(ms - m_all), ls > 0.0);
    workgroupBarrier();`;
  if (D <= W) {
    // The first slots' values were read into `pv` before the maxima (prefetchedWGSL); the
    // additions keep slot order, as the loop over the later slots does.
    const PF = prefetchedSlots(D, W);
    const groups = Math.max(1, Math.floor(W / D));
    return `  // Weighted outputs, W slots at a time: weights once per slot, then slot groups of threads.
  var acc = 0.0;
  for (var c0 = 0u; c0 < n; c0 += W) {
${weights}
    if (grp < GROUPS) {
      let cn = min(W, n - c0);
      var s0 = grp;
      if (c0 == 0u) {
        ${nestedAdds(PF, groups)}
        s0 = grp + ${PF * groups}u;
      }
      for (var s = s0; s < cn; s += GROUPS) {
        acc += weight[s] * partials[(first + c0 + s) * SLOT + r * D + d];
      }
    }
    workgroupBarrier();
  }
  if (grp < GROUPS) {
    part[grp * D + d] = acc;
  }
  workgroupBarrier();`;
  }
  return `  // Weighted outputs, W slots at a time: weights once per slot; rows longer than the workgroup
  // are summed ${DPT} dims per thread, in slot order.
  var acc = array<f32, ${DPT}>();
  for (var c0 = 0u; c0 < n; c0 += W) {
${weights}
    let cn = min(W, n - c0);
    for (var s = 0u; s < cn; s++) {
      let ws = weight[s];
      let pb = (first + c0 + s) * SLOT + r * D + lid;
${
    lines(DPT, (k) =>
      `      if (lid + ${k * W}u < D) { acc[${k}] += ws * partials[pb + ${k * W}u]; }`)
  }
    }
    workgroupBarrier();
  }
${lines(DPT, (k) => `  if (lid + ${k * W}u < D) { part[lid + ${k * W}u] = acc[${k}]; }`)}
  workgroupBarrier();`;
}

/**
 * Statements `body(k)` for k < PF, each under the test that slot `grp + k * groups` is below
 * `bound`, nested in runs ({@linkcode nestedRuns}).
 */
function nestedTests(
  PF: number,
  groups: number,
  bound: string,
  body: (k: number) => string,
): string[] {
  return nestedRuns(PF, (k) => `grp + ${k * groups}u < ${bound}`, body);
}

/** The prefetched slots' weighted values added in slot order, tested as their reads are. */
function nestedAdds(PF: number, groups: number): string {
  return nestedTests(PF, groups, "cn", (k) => `acc += weight[grp + ${k * groups}u] * pv[${k}];`)
    .join("\n        ");
}

/**
 * Slots whose output values each thread of a merge reads before the slots' maxima and sums
 * (rows of at most `W` dims): as many as cover 64 slots over the slot groups. The weighted sum
 * used to read them one after another once the weights were known, a memory round trip per slot
 * (about 33 per row at GQA 32/8 on 264 workgroups); now their loads are in flight during the
 * reduction of the maxima.
 */
function prefetchedSlots(D: number, W: number): number {
  return Math.ceil(64 / Math.max(1, Math.floor(W / D)));
}

/** The prefetch of {@linkcode prefetchedSlots} into `pv` (rows of at most `W` dims). */
function prefetchedWGSL(D: number, W: number): string {
  if (D > W) return "";
  const PF = prefetchedSlots(D, W);
  const groups = Math.max(1, Math.floor(W / D));
  const reads = nestedTests(
    PF,
    groups,
    "n",
    (k) => `pv[${k}] = partials[(first + grp + ${k * groups}u) * SLOT + r * D + d];`,
  ).join("\n    ");
  return `
  // This thread's output dim and slot group; its first ${PF} slots' values, read now.
  let d = lid % D;
  let grp = lid / D;
  var pv = array<f32, ${PF}>();
  if (grp < GROUPS) {
    ${reads}
  }`;
}

/**
 * The reduction of the threads' slot states (max, sum, NaN flag) into the row's `m_all`,
 * `l_all`, `row_bad`, in a fixed order over the next power of two of the threads holding slots:
 * through workgroup memory, a barrier per level; or (`subgroups`) first within each subgroup by
 * shuffles in a fixed exclusive-or tree, then the subgroups holding slots in subgroup order
 * through workgroup memory, one barrier (session 28). `combine` of two states that hold tokens
 * is symmetric bit for bit (IEEE sums and products commute), so both threads of a shuffle pair
 * hold the same state; of two empty or NaN-marked states each keeps its own, and either means
 * the same. Each subgroup's first thread posts its result, so the order stays fixed.
 */
export function maximaTreeWGSL(subgroups: boolean): string {
  if (!subgroups) {
    return `  red[lid] = st;
  red_bad[lid] = u32(bad);
  let held = max(min(n, W), 1u);
  for (var half = (1u << (32u - countLeadingZeros(held - 1u))) / 2u; half > 0u; half >>= 1u) {
    workgroupBarrier();
    if (lid < half) {
      red[lid] = combine(red[lid], red[lid + half]);
      red_bad[lid] = red_bad[lid] | red_bad[lid + half];
    }
  }
  workgroupBarrier();
  let m_all = red[0].x;
  let l_all = red[0].y;
  let row_bad = red_bad[0] != 0u;`;
  }
  return `  var sub = st;
  var sub_bad = u32(bad);
  for (var o = 1u; o < sg_size; o <<= 1u) {
    let other = vec2<f32>(subgroupShuffleXor(sub.x, o), subgroupShuffleXor(sub.y, o));
    sub = combine(sub, other);
    sub_bad = sub_bad | subgroupShuffleXor(sub_bad, o);
  }
  if (sg_id == 0u) {
    red[lid / sg_size] = sub;
    red_bad[lid / sg_size] = sub_bad;
  }
  workgroupBarrier();
  var all = red[0];
  var all_bad = red_bad[0];
  for (var j = 1u; j * sg_size < min(n, W); j++) {
    all = combine(all, red[j]);
    all_bad = all_bad | red_bad[j];
  }
  let m_all = all.x;
  let l_all = all.y;
  let row_bad = all_bad != 0u;`;
}

/** Threads of a merge workgroup. */
export const MERGE_WORKGROUP = 256;

/** Workgroups of the merge dispatch for `records` reduce records of `rowsPerBlock` rows. */
export function mergeWorkgroups(records: number, rowsPerBlock: number): number {
  return records * rowsPerBlock;
}

/**
 * Generates the merge kernel's WGSL for a spec.
 *
 * @example
 * ```ts
 * import { mergeKernelWGSL } from "./merge_kernel.ts";
 * const wgsl = mergeKernelWGSL({
 *   headDim: 64, kvDtype: "f32", tileTokens: 64, rowsPerBlock: 2, workgroupSize: 64,
 * });
 * console.log(wgsl.includes("fn main")); // true
 * ```
 */
export function mergeKernelWGSL(spec: KernelSpec, options: WGSLOptions = {}): string {
  const { rowsPerBlock: RP } = spec;
  // Subgroup shuffles where the decode kernel has them (the device offers subgroups).
  const subgroups = spec.subgroups === true && spec.tiled !== true;
  const D = spec.headDimV ?? spec.headDim; // the output rows: V's head dim
  const W = MERGE_WORKGROUP;
  const groups = Math.max(1, Math.floor(W / D)); // slot groups summing outputs at once
  const DPT = Math.ceil(D / W); // output dims per thread (rows longer than the workgroup)
  const io = ioWGSL(spec);
  const header = mergeHeaderWGSL(spec, options, {
    title: `D=${D} RP=${RP} W=${W}${subgroups ? " subgroups" : ""}`,
    subgroups,
    consts: `const W: u32 = ${W}u;
const GROUPS: u32 = ${groups}u;`,
    decls: `var<workgroup> red: array<vec2<f32>, ${W}>;
var<workgroup> red_bad: array<u32, ${W}>;
var<workgroup> weight: array<f32, ${W}>;
var<workgroup> part: array<f32, ${D <= W ? groups * D : D}>;${
      D <= W
        ? `

// The merged total of output dim d: the slot groups' sums, in group order.
fn total_of(d: u32) -> f32 {
  var t = 0.0;
  for (var g = 0u; g < GROUPS; g++) {
    t += part[g * D + d];
  }
  return t;
}`
        : ""
    }

// The softmax-rescale merge of two (max, sum) states; a state whose sum is not positive (no
// token seen, or marked NaN) contributes nothing, so (NEG, 0) is the identity.
fn combine(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  if (!(b.y > 0.0)) {
    return a;
  }
  if (!(a.y > 0.0)) {
    return b;
  }
  let m = max(a.x, b.x);
  return vec2<f32>(m, a.y * exp2(a.x - m) + b.y * exp2(b.x - m));
}`,
  });
  return `${header}

${mergeRecordWGSL(subgroups, W)}
${prefetchedWGSL(D, W)}

  // One read of each slot's max and sum: thread lid holds slot lid's (the weights' registers)
  // and merges any further slots lid + W, lid + 2W, ... into its own state, in slot order. A sum
  // that is NaN marks a slot whose rows saw a NaN or +inf score: it makes the row NaN.
  var own = vec2<f32>(NEG, 0.0);
  var st = own;
  var bad = false;
  for (var s = lid; s < n; s += W) {
    let base = (first + s) * SLOT + mo;
    let slot = vec2<f32>(partials[base], partials[base + RP]);
    if (s == lid) {
      own = slot;
    }
    st = combine(st, slot);
    bad = bad || (bitcast<u32>(slot.y) & 0x7fffffffu) > 0x7f800000u;
  }
  // One reduction of (max, sum, NaN flag) in a fixed order (n is workgroup-uniform: barriers
  // and shuffles stay in uniform control flow).
${maximaTreeWGSL(subgroups)}

${weightedWGSL(D, W, DPT)}
${mergeFinishWGSL(spec, (norm) => (io.outHalf ? halfOut : f32Out)(D <= W, norm))}`;
}
