/**
 * WGSL shared by the kernels of many-row blocks (the tiled kernel, `tiled_kernel.ts`, and the
 * matrix kernel, `matrix_kernel.ts`): a block row's visible tokens at the start of a piece, and
 * its final sum, output factor and log-sum-exp (or partial state) at the end.
 *
 * @module
 */

import { HEAD_TABLE_STRIDE, type KernelVariantFlags } from "./variant_wgsl.ts";

/** The per-head table index of block row `row` (its query head's). */
const rowHead = (row: string) =>
  `row_head(kv_head, min(r0 + ${row}, params.group_size * q_len - 1u), q_len)`;

/**
 * The statements at the start of a piece that say which tokens block row `row` sees (`pq`, its
 * position; `lim`, its causal limit in the piece; `lo`, a window's first token) and which every
 * row of the block sees (`lim_all`, `lo_all`), and its ALiBi slope.
 *
 * @example
 * ```ts
 * import { blockRowLimitsWGSL } from "./block_rows.ts";
 * console.log(blockRowLimitsWGSL({ window: true }, "sr").includes("let lo_all")); // true
 * ```
 */
export function blockRowLimitsWGSL(flags: KernelVariantFlags, row: string): string {
  return `    // Row ${row}'s tokens: causal within the last q_len tokens, inside the piece${
    flags.window ? ", inside its window" : ""
  }.
    let pq = seq_len - q_len + (r0 + ${row}) % q_len;
    let lim = min(pq + 1u, tok_end);
    // Tokens every row of the block sees (and, windowed, from where): the block's rows hold the
    // positions r0 % q_len onward, all of them once they wrap.
    let pos0 = r0 % q_len;
    let wraps = pos0 + n_rows > q_len;
    let lim_all = seq_len - q_len + select(pos0, 0u, wraps) + 1u;${
    flags.window
      ? `\n    let lo = select(0u, pq + 1u - params.window, pq + 1u > params.window);
    let pq_last = seq_len - q_len + select(pos0 + n_rows - 1u, q_len - 1u, wraps);
    let lo_all = select(0u, pq_last + 1u - params.window, pq_last + 1u > params.window);`
      : ""
  }${flags.alibi ? `\n    let slope = heads[${HEAD_TABLE_STRIDE}u * ${rowHead(row)}];` : ""}`;
}

/**
 * The statements that end a piece for block row `row` (inside the caller's branch of one thread
 * per row): its final sum and output factor (a direct piece's sink joins them here, once) and
 * NaN flag, handed to `keep(sum, factor, flag)` for the row's outputs, then its log-sum-exp
 * (direct pieces) or its maximum and sum (its slot of `partials`).
 *
 * @example
 * ```ts
 * import { blockRowFinalWGSL } from "./block_rows.ts";
 * const wgsl = blockRowFinalWGSL({ sinks: true }, "br", (l, c, nan) => `keep(${l}, ${c}, ${nan});`);
 * console.log(wgsl.includes("exp2(sk - fin_m)"), wgsl.includes("keep(fin_l")); // true true
 * ```
 */
export function blockRowFinalWGSL(
  flags: KernelVariantFlags,
  row: string,
  keep: (sum: string, factor: string, flag: string) => string,
): string {
  return `${
    flags.sinks
      ? `
      let sk = heads[${HEAD_TABLE_STRIDE}u * ${rowHead(row)} + 1u];
      let fin_m = select(m_run, max(m_run, sk), slot == DIRECT);
      let fin_c = exp2(m_run - fin_m);
      let fin_l = select(l_run, l_run * fin_c + exp2(sk - fin_m), slot == DIRECT);`
      : `
      let fin_m = m_run;
      let fin_c = 1.0;
      let fin_l = l_run;`
  }
      let row_bad = bad != 0u || poisoned(l_run);
${keep("fin_l", "fin_c", "select(0.0, 1.0, row_bad)")}
      if (${row} < n_rows) {
        if (slot == DIRECT) {
          lse_out[query_row(q_start, q_len, kv_head, r0 + ${row})] = select(
            (fin_m + log2(fin_l)) * 0.6931471805599453,
            bitcast<f32>(nan_bits),
            row_bad,
          );
        } else {
          partials[slot * SLOT + RP * DV + ${row}] = m_run;
          partials[slot * SLOT + RP * DV + RP + ${row}] = select(l_run, bitcast<f32>(nan_bits), row_bad);
        }
      }`;
}
