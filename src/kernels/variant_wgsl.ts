/**
 * The WGSL twins of the attention variants (`src/core/variant.ts`): the visible-token limit of a
 * query row and, for each variant flag that is on, its code (window bounds, soft-cap, ALiBi bias,
 * sinks at the final write), spliced into the decode and merge kernels. Runtime values come from
 * the params block (`window`, `soft_cap`) and the per-head table (`heads`: slopes and sinks).
 *
 * @module
 */

import type { VariantName } from "../core/variant.ts";
import type { Variant, VariantFlags } from "../core/variant_options.ts";

/** A variant's WGSL hooks. */
export interface VariantWGSL {
  /**
   * WGSL expression of the tokens a query row sees, given WGSL expressions of the sequence
   * length, the query length and the row's query position.
   */
  visible(seqLen: string, qLen: string, pos: string): string;
  /**
   * WGSL statement transforming a score variable in place (log2 units, pre-scaled), or
   * `undefined` for plain scaling (no code).
   */
  logit?: (score: string) => string;
}

/**
 * The WGSL hooks of each variant.
 *
 * @example
 * ```ts
 * import { VARIANT_WGSL } from "./variant_wgsl.ts";
 * console.log(VARIANT_WGSL.causal.visible("n", "q", "p")); // n - q + p + 1u
 * ```
 */
export const VARIANT_WGSL: Readonly<Record<VariantName, VariantWGSL>> = {
  causal: {
    visible: (seqLen, qLen, pos) => `${seqLen} - ${qLen} + ${pos} + 1u`,
  },
};

/**
 * The variants a kernel is compiled for (see `VariantFlags`): each flag that is on adds its code;
 * one that is off adds nothing, and the plain kernel's source is unchanged.
 */
export type KernelVariantFlags = Partial<VariantFlags>;

/** Whether a kernel of these flags binds the per-head table (ALiBi slopes, sinks). */
export function needsHeadTable(kind: "decode" | "merge", flags: KernelVariantFlags = {}): boolean {
  return kind === "merge" ? flags.sinks === true : flags.alibi === true || flags.sinks === true;
}

/** The suffix of a kernel's pipeline key for its variant flags (empty for the plain kernel). */
export function variantKey(flags: KernelVariantFlags = {}): string {
  return `${flags.window ? ":win" : ""}${flags.softCap ? ":cap" : ""}${
    flags.alibi ? ":alibi" : ""
  }${flags.sinks ? ":sink" : ""}`;
}

/** `f32`s per head in the per-head table: the ALiBi slope, then the sink (both log2 units). */
export const HEAD_TABLE_STRIDE = 2;

/** Floats of the per-head table of `numHeads` query heads (see {@linkcode headTable}). */
export function headTableFloats(numHeads: number): number {
  return Math.max(4, HEAD_TABLE_STRIDE * numHeads);
}

/**
 * The per-head table the kernels read (binding `heads`): for each query head its ALiBi slope and
 * its sink logit, both times log2(e) (the kernels' scores are in log2 units); 0 where a variant
 * is off. At least 4 floats (a binding is never empty).
 *
 * @example
 * ```ts
 * import { headTable } from "./variant_wgsl.ts";
 * const t = headTable({ sinks: new Float32Array([1, 0]) }, 2);
 * console.log(t.length, t[1].toFixed(4), t[3]); // 4 1.4427 0
 * ```
 */
export function headTable(variant: Variant | undefined, numHeads: number): Float32Array {
  const table = new Float32Array(headTableFloats(numHeads));
  for (let h = 0; h < numHeads; h++) {
    table[HEAD_TABLE_STRIDE * h] = (variant?.alibiSlopes?.[h] ?? 0) * Math.LOG2E;
    table[HEAD_TABLE_STRIDE * h + 1] = (variant?.sinks?.[h] ?? 0) * Math.LOG2E;
  }
  return table;
}

/**
 * WGSL functions of the variants: `row_head` (a KV group's row to its query head) and
 * `soft_cap`. Its `tanh` is written out: drivers' `tanh` (as `(e^2x - 1) / (e^2x + 1)`) loses
 * the relative precision of small arguments, which the cap then multiplies (an error of
 * `c * 6e-8` per logit). Here: a Taylor series below 1/8, `(1 - e^-2a) / (1 + e^-2a)` above,
 * the argument clamped where `tanh` is 1 in f32; NaN passes through, tested by bits (compilers
 * may fold float NaN tests away).
 */
export function variantFunctionsWGSL(kind: "decode" | "merge", flags: KernelVariantFlags): string {
  const parts: string[] = [];
  if (needsHeadTable(kind, flags)) {
    parts.push(`
fn row_head(kv_head: u32, r: u32, q_len: u32) -> u32 {
  return kv_head * params.group_size + r / q_len;
}`);
  }
  if (kind === "decode" && flags.softCap) {
    parts.push(`
fn soft_cap(x: f32) -> f32 {
  if ((bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u) {
    return x;
  }
  let y = x / params.soft_cap;
  let a = min(abs(y), 15.0);
  let e = exp2(-2.8853900817779268 * a);
  var t = (1.0 - e) / (1.0 + e);
  if (a < 0.125) {
    let a2 = a * a;
    t = a * (1.0 + a2 * (-0.33333334 + a2 * (0.13333334 + a2 * -0.053968254)));
  }
  return params.soft_cap * select(-t, t, y >= 0.0);
}`);
  }
  return parts.join("\n");
}

/**
 * WGSL of a block row's absolute position P (from `kv_start`; the piece's own `q_len`).
 *
 * @example
 * ```ts
 * import { rowPositionWGSL } from "./variant_wgsl.ts";
 * console.log(rowPositionWGSL("2u")); // seq_len - q_len + (r0 + 2u) % q_len
 * ```
 */
export function rowPositionWGSL(row: string): string {
  return `seq_len - q_len + (r0 + ${row}) % q_len`;
}

/**
 * WGSL of the first token a row at position `pq` sees through the sliding window.
 *
 * @example
 * ```ts
 * import { windowStartWGSL } from "./variant_wgsl.ts";
 * console.log(windowStartWGSL("p").includes("p + 1u - params.window")); // true
 * ```
 */
export function windowStartWGSL(pq: string): string {
  return `select(0u, ${pq} + 1u - params.window, ${pq} + 1u > params.window)`;
}

/**
 * The decode kernel's per-row variant state, after `lim` (the thread's rows `0 .. RP - 1`, block
 * rows `row(r)` from `r0`, `n_rows` of the block's real): each row's position `pq`, its window start `lo` and the block's
 * latest `lo_all` (the fast steps need every row's window to have begun), its ALiBi slope.
 */
export function variantRowsWGSL(
  flags: KernelVariantFlags,
  RP: number,
  row: (r: number) => string = (r) => `${r}u`,
): string {
  const out: string[] = [];
  const rows = (body: (r: number) => string) =>
    Array.from({ length: RP }, (_, r) => body(r)).join("\n");
  if (flags.window || flags.alibi) {
    out.push(
      `    // Each row's absolute position P (counted from kv_start, as the piece's tokens are; the
    // piece's own q_len, for ragged batches).
    var pq = array<u32, ${RP}>();
${rows((r) => `    pq[${r}] = ${rowPositionWGSL(row(r))};`)}`,
    );
  }
  if (flags.window) {
    out.push(`    // The sliding window: row r sees tokens lo[r] .. P.
    var lo = array<u32, ${RP}>();
    var lo_all = 0u;
${
      rows((r) =>
        `    lo[${r}] = ${windowStartWGSL(`pq[${r}]`)};
    lo_all = select(lo_all, max(lo_all, lo[${r}]), ${row(r)} < n_rows);`
      )
    }`);
  }
  if (flags.alibi) {
    out.push(`    var slope = array<f32, ${RP}>();
${
      rows((r) =>
        `    slope[${r}] = heads[${HEAD_TABLE_STRIDE}u * row_head(kv_head, min(r0 + ${
          row(r)
        }, params.group_size * q_len - 1u), q_len)];`
      )
    }`);
  }
  return out.join("\n");
}

/** The statements turning the step's scores `d{u}_{r}` into logits: soft-cap, then ALiBi. */
export function variantLogitsWGSL(flags: KernelVariantFlags, U: number, RP: number): string {
  const out: string[] = [];
  for (let u = 0; u < U; u++) {
    for (let r = 0; r < RP; r++) {
      if (flags.softCap) out.push(`      d${u}_${r} = soft_cap(d${u}_${r});`);
      if (flags.alibi) {
        out.push(`      d${u}_${r} += slope[${r}] * f32(bitcast<i32>(t${u} - pq[${r}]));`);
      }
    }
  }
  return out.join("\n");
}

/**
 * The masked steps' test of whether row `r` sees token `t{u}` (the causal limit, the window).
 * `eager` joins the window's two comparisons with the non-short-circuit `&`: a short-circuit on
 * a lane's value makes the control flow after it non-uniform in WGSL's analysis, which Tint
 * enforces before subgroup shuffles (the row scatter's).
 */
export function variantVisibleWGSL(
  flags: KernelVariantFlags,
  eager = false,
): (u: number, r: number) => string {
  return flags.window
    ? eager
      ? (u, r) => `((t${u} < lim[${r}]) & (t${u} >= lo[${r}]))`
      : (u, r) => `(t${u} < lim[${r}] && t${u} >= lo[${r}])`
    : (u, r) => `t${u} < lim[${r}]`;
}

/**
 * The final state of a row with its sink added to the denominator (decode kernel's direct
 * writes): `fin_m`, `fin_l` and the output's rescale `fin_c`, from the row's `mm` and `l_sh`.
 */
export function sinkFinalWGSL(RP: number): string {
  const rows = Array.from({ length: RP }, (_, r) =>
    `    {
      let sk = heads[${HEAD_TABLE_STRIDE}u * row_head(kv_head, min(r0 + ${r}u, params.group_size * q_len - 1u), q_len) + 1u];
      fin_m[${r}] = max(mm[${r}], sk);
      fin_c[${r}] = exp2(mm[${r}] - fin_m[${r}]);
      fin_l[${r}] = l_sh[${r}] * fin_c[${r}] + exp2(sk - fin_m[${r}]);
    }`).join("\n");
  return `    // Sinks join the final denominator once: here (direct pieces) or in the merge.
    var fin_m = array<f32, ${RP}>();
    var fin_l = array<f32, ${RP}>();
    var fin_c = array<f32, ${RP}>();
${rows}`;
}
