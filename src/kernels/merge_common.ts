/**
 * The merge kernel's frame, apart from how it merges (src/kernels/merge_kernel.ts): the module's
 * header (params, the one layout's bindings, the reduce record's offsets, the NaN constants, the
 * query-row map, the sinks' functions), the statements that read a workgroup's reduce record, and
 * those that write the merged row's output and LSE. The merge in between reaches `m_all`,
 * `l_all`, `row_bad` and the weighted totals. (Session 32 built a second merge on this frame, one
 * thread per output dim merging every slot by itself, with no workgroup memory, barriers or
 * shuffles: no faster on the H200, so not kept; bench/notes.md.)
 *
 * @module
 */

import {
  kernelBindingsWGSL,
  kernelLayoutEntries,
  recordOffsetsWGSL,
  REDUCE_RECORD,
} from "./abi.ts";
import type { WGSLOptions } from "./decode_kernel.ts";
import { NEG_SCORE } from "./decode_preamble.ts";
import { ioWGSL } from "./io_wgsl.ts";
import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { KernelSpec } from "./kernel_spec.ts";
import { FLAT_WORKGROUP_WGSL, PARAMS_WGSL, QUERY_ROW_WGSL } from "./kernel_params.ts";
import { HEAD_TABLE_STRIDE, needsHeadTable, variantFunctionsWGSL } from "./variant_wgsl.ts";

/** The parts of the merge kernel's module that its merge declares. */
export interface MergeHeaderParts {
  /** What follows "lean-attention merge kernel: " on the module's first line. */
  readonly title: string;
  /** Whether the module uses subgroup operations (the `enable` directive where asked for). */
  readonly subgroups: boolean;
  /** The kernel's own constants after `D`, `RP` and `SLOT`. */
  readonly consts: string;
  /** The kernel's workgroup variables and helper functions. */
  readonly decls: string;
}

/**
 * The merge kernel's module up to its entry point: the first line starts with
 * "// lean-attention merge kernel" (the benchmark's diagnostics find the module by it).
 *
 * @example
 * ```ts
 * import { mergeHeaderWGSL } from "./merge_common.ts";
 * const spec = { headDim: 64, kvDtype: "f32" as const, tileTokens: 64, rowsPerBlock: 2, workgroupSize: 64 };
 * const header = mergeHeaderWGSL(spec, {}, { title: "x", subgroups: false, consts: "", decls: "" });
 * console.log(header.startsWith("// lean-attention merge kernel: x"), header.includes("const SLOT: u32 = 132u;")); // true true
 * ```
 */
export function mergeHeaderWGSL(
  spec: KernelSpec,
  options: WGSLOptions,
  parts: MergeHeaderParts,
): string {
  const D = spec.headDimV ?? spec.headDim; // the output rows: V's head dim
  const RP = spec.rowsPerBlock;
  // The decode kernel's layout (one bind group for both kernels): the partials as the decode
  // kernel writes them (storage). The merge declares the per-head table only when it reads the
  // sinks.
  const io = ioWGSL(spec);
  const heads = needsHeadTable("merge", spec.variant);
  return `${
    options.enableDirective && parts.subgroups ? "enable subgroups;\n" : ""
  }// lean-attention merge kernel: ${parts.title}
${PARAMS_WGSL}
${kernelBindingsWGSL(kernelLayoutEntries({ paged: false, heads }), { out: io.outType })}
${recordOffsetsWGSL(REDUCE_RECORD)}

const D: u32 = ${D}u;
const RP: u32 = ${RP}u;
const SLOT: u32 = ${RP * (D + 2)}u;
${parts.consts}
const NEG: f32 = ${NEG_SCORE.toExponential()};

// A NaN built at run time: WGSL rejects NaN in constant expressions.
var<private> nan_bits: u32 = 0x7fc00000u;
var<private> neg_inf_bits: u32 = 0xff800000u;
${parts.decls}${
    io.outHalf
      ? `
${KV_DTYPE_INFO.f16.wgslPack}`
      : ""
  }
${FLAT_WORKGROUP_WGSL}
${QUERY_ROW_WGSL}${
    spec.variant?.sinks === true ? `\n${variantFunctionsWGSL("merge", spec.variant)}` : ""
  }`;
}

/**
 * The entry point's start: the workgroup's (segment, row), its reduce record's fields, the
 * early return of rows past the record's, `empty` (no slots: an empty request's row) and `mo`
 * (the offset of this row's max in a slot; its sum follows RP floats later).
 */
export function mergeRecordWGSL(subgroups: boolean, W: number): string {
  return `@compute @workgroup_size(${W})
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,${
    subgroups
      ? `
  @builtin(subgroup_size) sg_size: u32,
  @builtin(subgroup_invocation_id) sg_id: u32,`
      : ""
  }
) {
  let flat = flat_workgroup(wid, nwg);
  let e = flat / RP;
  let r = flat % RP;
  if (e >= params.merge_count) {
    return;
  }
  let f = params.reduce_base + e * REDUCE_STRIDE;
  let seq = sched[f + REDUCE_SEQ];
  let kv_head = sched[f + REDUCE_KV_HEAD];
  let r0 = sched[f + REDUCE_ROW_BLOCK] * RP;
  let first = sched[f + REDUCE_FIRST_SLOT];
  let n = sched[f + REDUCE_NUM_SLOTS];
  let q_start = sched[f + REDUCE_Q_START];
  let q_len = sched[f + REDUCE_Q_LEN];
  if (r0 + r >= params.group_size * q_len) {
    return;
  }
  // No slots: an empty request's row, which gets the merge identity (out 0, lse -inf).
  let empty = n == 0u;
  let mo = RP * D + r; // offset of this row's max in a slot; its sum follows RP floats later`;
}

/**
 * A merged output element (a WGSL f32 expression) from its weighted total `v`: normalised by
 * `norm`, NaN where a slot was marked, 0 for an empty request's row.
 *
 * @example
 * ```ts
 * import { mergedValueWGSL } from "./merge_common.ts";
 * console.log(mergedValueWGSL("t", (v) => `${v} / l_all`));
 * // select(select(t / l_all, bitcast<f32>(nan_bits), row_bad), 0.0, empty)
 * ```
 */
export function mergedValueWGSL(v: string, norm: (v: string) => string): string {
  return `select(select(${norm(v)}, bitcast<f32>(nan_bits), row_bad), 0.0, empty)`;
}

/**
 * The entry point's end: the row's flat index, the sink (once, in the final denominator), the
 * output written by `write(norm)` (its totals normalised by `norm`), and the LSE by thread 0.
 * Uses `m_all`, `l_all`, `row_bad` and `empty`.
 */
export function mergeFinishWGSL(
  spec: KernelSpec,
  write: (norm: (v: string) => string) => string,
): string {
  const sinks = spec.variant?.sinks === true;
  return `  let row = query_row(q_start, q_len, kv_head, r0 + r);${
    sinks
      ? `
  // The sink joins the final denominator here, once (no partial state holds it).
  let sk = heads[${HEAD_TABLE_STRIDE}u * row_head(kv_head, r0 + r, q_len) + 1u];
  let m_fin = max(m_all, sk);
  let c_fin = exp2(m_all - m_fin);
  let l_fin = l_all * c_fin + exp2(sk - m_fin);`
      : ""
  }
${write(sinks ? (v) => `${v} * c_fin / l_fin` : (v) => `${v} / l_all`)}
  if (lid == 0u) {
    lse_out[row] = select(
      select(
        (${sinks ? "m_fin + log2(l_fin)" : "m_all + log2(l_all)"}) * 0.6931471805599453,
        bitcast<f32>(nan_bits),
        row_bad,
      ),
      bitcast<f32>(neg_inf_bits),
      empty,
    );
  }
}
`;
}

/**
 * Statements `body(k)` for k < count, each under `test(k)`, the tests of each run of
 * {@linkcode NEST} nested so that a row of few slots skips the rest of a run after one failed
 * test (a flat list cost every thread a branch per statement, most of them not taken), the runs
 * one after another: Tint's parser refuses nesting much deeper (64 levels).
 *
 * @example
 * ```ts
 * import { nestedRuns } from "./merge_common.ts";
 * console.log(nestedRuns(2, (k) => `${k}u < n`, (k) => `a[${k}] = 1.0;`));
 * // [ "if (0u < n) { a[0] = 1.0; if (1u < n) { a[1] = 1.0; } }" ]
 * ```
 */
export function nestedRuns(
  count: number,
  test: (k: number) => string,
  body: (k: number) => string,
): string[] {
  const runs: string[] = [];
  for (let k0 = 0; k0 < count; k0 += NEST) {
    let run = "";
    for (let k = Math.min(count, k0 + NEST) - 1; k >= k0; k--) {
      run = `if (${test(k)}) { ${body(k)}${run ? ` ${run}` : ""} }`;
    }
    runs.push(run);
  }
  return runs;
}

/** Tests nested per run in {@linkcode nestedRuns}. */
const NEST = 8;
