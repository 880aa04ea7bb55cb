/**
 * The end of a decode kernel's piece: merging the token groups' softmax states in group order,
 * then writing the block's rows, as the final output and LSE (direct pieces) or as a partial
 * state (unnormalised output, max, sum) for the merge kernel. A piece of the source
 * `decodeKernelWGSL` splices together.
 *
 * @module
 */

import { grid, lines } from "./decode_step.ts";
import { sinkFinalWGSL } from "./variant_wgsl.ts";
import { directHalfWGSL } from "./io_wgsl.ts";

/** The block's geometry and the output's options: what the generated statements index. */
export interface PieceOutputShape {
  /** Query rows per block. */
  readonly RB: number;
  /** Query rows each thread holds (`RB / RS`). */
  readonly RP: number;
  /** Row sets (lane groups sharing a token). */
  readonly RS: number;
  /** Head dim of V and the output. */
  readonly DV: number;
  /** Threads per workgroup. */
  readonly W: number;
  /** Lanes sharing a token. */
  readonly lanes: number;
  /** V chunks per lane. */
  readonly CPLV: number;
  /** `vec4<f32>` per chunk. */
  readonly V4: number;
  /** The lanes do not divide V's chunks: the last round is padded. */
  readonly padV: boolean;
  /** The WGSL block row of this thread's row `r`. */
  readonly row: (r: number) => string;
  /** Index of a row's output vector: row, chunk, vector in chunk. */
  readonly oi: (r: number, i: number, j: number) => number;
  /** Sinks join the final denominators. */
  readonly sinks: boolean;
  /** A per-tensor V scale multiplies the output (8-bit KV with `kvScales: "tensor"`). */
  readonly vScale: boolean;
  /** The output buffer holds f16 (written packed in `u32`s). */
  readonly outHalf: boolean;
}

/**
 * Merges the token groups' states (`m`, `l`, `o`) and writes the block's rows: the output and
 * LSE of a direct piece, or the partial state of a piece with a slot.
 *
 * @example
 * ```ts
 * import { pieceOutputWGSL } from "./decode_output.ts";
 * const wgsl = pieceOutputWGSL({
 *   RB: 1, RP: 1, RS: 1, DV: 64, W: 64, lanes: 8, CPLV: 1, V4: 2, padV: false,
 *   row: (r) => `${r}u`, oi: (r, i, j) => r * 2 + i * 2 + j,
 *   sinks: false, vScale: false, outHalf: false,
 * });
 * console.log(wgsl.includes("lse_out")); // true
 * ```
 */
export function pieceOutputWGSL(shape: PieceOutputShape): string {
  const { RB, RP, RS, DV, W, lanes, CPLV, V4, padV, row, oi } = shape;
  // Sinks join the denominator of the rows this kernel finishes itself (direct pieces).
  const fin = shape.sinks
    ? { l: "fin_l", m: "fin_m", scaled: (v: string, r: string) => `${v} * fin_c[${r}]` }
    : { l: "l_sh", m: "mm", scaled: (v: string) => v };
  // A per-tensor V scale multiplies the finished output (or partial state: it is linear).
  const vScaleMul = shape.vScale ? " * params.v_scale" : "";
  return `    // Merge the groups' states: a common max, then the rescaled sums in group order.
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
${grid(CPLV, V4, (i, j) => `      o[${oi(r, i, j)}] *= sc;`)}
    }`)
  }
    for (var gg = 0u; gg < GROUPS; gg++) {
      if (g == gg) {
${
    lines(RP, (r) =>
      grid(CPLV, V4, (i, j) => {
        const at = `${row(r)} * ${DV / 4}u + (lane + ${i * lanes}u) * ${V4}u + ${j}u`;
        const write = `acc[${at}] = select(acc[${at}] + o[${oi(r, i, j)}], o[${
          oi(r, i, j)
        }], gg == 0u);`;
        return padV && i === CPLV - 1
          ? `        if (lane + ${i * lanes}u < CHUNKS_V) { ${write} }`
          : `        ${write}`;
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

${
    shape.sinks
      ? `${sinkFinalWGSL(RB)}\n`
      : ""
  }    // Write the final output, or the partial state (unnormalised o, max m, sum l).
    for (var i = lid; i < RP * DV; i += ${W}u) {
      let r = i / DV;
      if (r < n_rows) {
        let val = acc[i >> 2u][i & 3u]${vScaleMul};
        if (slot == DIRECT) {${
    shape.outHalf ? "" : `
          out[query_row(q_start, q_len, kv_head, r0 + r) * DV + i % DV] =
            select(${
      fin.scaled("val", "r")
    } / ${fin.l}[r], bitcast<f32>(nan_bits), any_bad[r] != 0u);`
  }
        } else {
          partials[slot * SLOT + i] = val;
        }
      }
    }${
    shape.outHalf
      ? directHalfWGSL(W, (v, r) => `${fin.scaled(v, r)}${vScaleMul} / ${fin.l}[${r}]`)
      : ""
  }
    if (lid < n_rows) {
      if (slot == DIRECT) {
        lse_out[query_row(q_start, q_len, kv_head, r0 + lid)] = select(
          (${fin.m}[lid] + log2(${fin.l}[lid])) * 0.6931471805599453,
          bitcast<f32>(nan_bits),
          any_bad[lid] != 0u,
        );
      } else {
        partials[slot * SLOT + RP * DV + lid] = mm[lid];
        partials[slot * SLOT + RP * DV + RP + lid] =
          select(l_sh[lid], bitcast<f32>(nan_bits), any_bad[lid] != 0u);
      }
    }`;
}
