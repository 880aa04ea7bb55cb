/**
 * The flat merge kernel (`KernelSpec.flatMerge`): one workgroup per (split segment, query row)
 * as in {@linkcode mergeKernelWGSL}, but each thread owns output dims of the row and merges every
 * slot into them by itself: it reads a chunk of slots' maxima, sums and values at once (all its
 * loads in flight together), takes the chunk's max over them, rescales its running state and adds
 * the chunk's weighted values in slot order. No thread waits for another: no workgroup memory
 * (so no zero-filling of it), no barriers, no shuffles. Every thread of a workgroup reads the same
 * maxima and sums (a warp's identical addresses are one request), so every thread finds the same
 * max and sum bit for bit, and thread 0 writes the LSE.
 *
 * Why: the slot-group merge's cost is latency, and on the H200 most of it was in the stage of the
 * slots' maxima (one read, then a tree of shuffles and a barrier) and in the weights' and sums'
 * barriers (bench/notes.md, session 28). Rows with more slots than a chunk take one more round of
 * reads per chunk; at GQA 32/8 on 264 workgroups a row has 33 slots, one chunk.
 *
 * The WGSL twin of `mergePartialRow`, the same result up to float rounding (the chunk's sums in
 * slot order, rescaled once per chunk), never bit for bit.
 *
 * @module
 */

import type { WGSLOptions } from "./decode_kernel.ts";
import { grid, lines } from "./decode_step.ts";
import { ioWGSL } from "./io_wgsl.ts";
import type { KernelSpec } from "./kernel_spec.ts";
import {
  mergedValueWGSL,
  mergeFinishWGSL,
  mergeHeaderWGSL,
  mergeRecordWGSL,
  nestedRuns,
} from "./merge_common.ts";

/** The most threads of a flat merge workgroup. */
export const FLAT_MERGE_WORKGROUP = 128;

/**
 * The flat merge's geometry for V rows of `D` dims (`outHalf`: the output in f16, two adjacent
 * dims per thread, written as one `u32`): threads `W` (D's elements over P, rounded up to a warp,
 * at most {@linkcode FLAT_MERGE_WORKGROUP}), dims per thread `DPT`, slots per chunk `CH` (their
 * maxima, sums and values are all in registers at once: about 150 floats).
 *
 * @example
 * ```ts
 * import { flatMergeLayout } from "./merge_flat.ts";
 * console.log(flatMergeLayout(128, false)); // { P: 1, W: 128, DPT: 1, CH: 48 }
 * console.log(flatMergeLayout(512, false).CH, flatMergeLayout(8, true).W); // 16 32
 * ```
 */
export function flatMergeLayout(
  D: number,
  outHalf: boolean,
): { P: number; W: number; DPT: number; CH: number } {
  const P = outHalf ? 2 : 1;
  const W = Math.min(FLAT_MERGE_WORKGROUP, Math.ceil(Math.ceil(D / P) / 32) * 32);
  const DPT = Math.ceil(D / (P * W)) * P;
  const CH = DPT <= 1 ? 48 : DPT <= 2 ? 40 : 16;
  return { P, W, DPT, CH };
}

/**
 * Generates the flat merge kernel's WGSL for a spec (called by `mergeKernelWGSL` when the spec
 * sets `flatMerge`).
 *
 * @example
 * ```ts
 * import { flatMergeWGSL } from "./merge_flat.ts";
 * const wgsl = flatMergeWGSL({
 *   headDim: 64, kvDtype: "f32", tileTokens: 64, rowsPerBlock: 2, workgroupSize: 64, flatMerge: true,
 * });
 * console.log(wgsl.includes("fn main"), wgsl.includes("workgroupBarrier")); // true false
 * ```
 */
export function flatMergeWGSL(spec: KernelSpec, options: WGSLOptions = {}): string {
  const D = spec.headDimV ?? spec.headDim;
  const io = ioWGSL(spec);
  const { P, W, DPT, CH } = flatMergeLayout(D, io.outHalf);
  // Thread lid's j-th dim: P adjacent dims per thread, the workgroup's P * W dims per round.
  const dim = (j: number) => {
    const off = (j % P) + P * W * Math.floor(j / P);
    return `${P === 1 ? "lid" : `${P}u * lid`}${off ? ` + ${off}u` : ""}`;
  };
  // Dims every thread has (no test), judged for the last thread.
  const always = (j: number) => P * (W - 1) + (j % P) + P * W * Math.floor(j / P) < D;
  const loads = nestedRuns(CH, (k) => `c0 + ${k}u < n`, (k) => {
    const values = lines(DPT, (j) => {
      const d = always(j) ? `d${j}` : `min(d${j}, D - 1u)`;
      return `vs[${k * DPT + j}] = partials[b${k} + r * D + ${d}];`;
    }).split("\n").join(" ");
    return `let b${k} = (first + c0 + ${k}u) * SLOT; ms[${k}] = partials[b${k} + mo]; ls[${k}] = partials[b${k} + mo + RP]; ${values}`;
  }).join("\n      ");
  const write = (norm: (v: string) => string) => {
    const value = (j: number) => mergedValueWGSL(`acc[${j}]`, norm);
    if (P === 1) {
      return lines(DPT, (j) => {
        const store = `out[row * D + d${j}] = ${value(j)};`;
        return always(j) ? `  ${store}` : `  if (d${j} < D) { ${store} }`;
      });
    }
    return lines(DPT / P, (i) => {
      const j = i * P;
      const u = `lid${i ? ` + ${i * W}u` : ""}`;
      const store = `out[row * D / 2u + ${u}] = half_bits(${value(j)}) | (half_bits(${
        value(j + 1)
      }) << 16u);`;
      return always(j + 1) ? `  ${store}` : `  if (d${j + 1} < D) { ${store} }`;
    });
  };
  const header = mergeHeaderWGSL(spec, options, {
    title: `D=${D} RP=${spec.rowsPerBlock} W=${W} flat CH=${CH}`,
    subgroups: false,
    consts: `const W: u32 = ${W}u;
const CH: u32 = ${CH}u;`,
    decls: "",
  });
  return `${header}

${mergeRecordWGSL(false, W)}

  // This thread's output dims.
${lines(DPT, (j) => `  let d${j} = ${dim(j)};`)}
  // The running state over the slots so far, in slot order: max, sum, weighted values.
  var m_all = NEG;
  var l_all = 0.0;
  var acc = array<f32, ${DPT}>();
  var nan_seen = false;
  for (var c0 = 0u; c0 < n; c0 += CH) {
    // The chunk's slots: every load requested before any is used. A slot past the row's keeps
    // its zero sum, which weighs nothing.
    var ms = array<f32, ${CH}>();
    var ls = array<f32, ${CH}>();
    var vs = array<f32, ${CH * DPT}>();
    ${loads}
    // A slot whose sum is not positive holds no token (or is marked NaN: a NaN or +inf score
    // among its rows, which makes the row NaN) and weighs nothing.
    var cm = m_all;
${lines(CH, (k) => `    cm = max(cm, select(NEG, ms[${k}], ls[${k}] > 0.0));`)}
${
    lines(
      CH,
      (k) => `    nan_seen = nan_seen | ((bitcast<u32>(ls[${k}]) & 0x7fffffffu) > 0x7f800000u);`,
    )
  }
    let sc = exp2(m_all - cm);
    l_all = l_all * sc;
${lines(DPT, (j) => `    acc[${j}] = acc[${j}] * sc;`)}
${
    lines(CH, (k) =>
      `    let w${k} = select(0.0, exp2(ms[${k}] - cm), ls[${k}] > 0.0);
    l_all = fma(ls[${k}], w${k}, l_all);
${grid(1, DPT, (_, j) => `    acc[${j}] = fma(vs[${k * DPT + j}], w${k}, acc[${j}]);`)}`)
  }
    m_all = cm;
  }
  let row_bad = nan_seen;
${mergeFinishWGSL(spec, write)}`;
}
