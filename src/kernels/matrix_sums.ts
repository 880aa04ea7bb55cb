/**
 * The matrix-unit kernel's sums of `P V` (`src/kernels/matrix_kernel.ts`): the subgroups' result
 * matrices on the matrix units from tile to tile, their flushes into each thread's f32 sums (a
 * rescale after a row's reference rose, a masked tile, a piece's end) through the score region a
 * few dims at a time, a masked tile's tokens added one by one, and a piece's output or partial
 * state written from the f32 sums. Each thread owns `PAIRS` pairs of output dims of its 16-row
 * block, named once here for all of them.
 *
 * @module
 */

import { lines } from "./decode_step.ts";
import type { KernelSpec } from "./kernel_spec.ts";
import { matrixLayout } from "./matrix_layout.ts";
import { MATRIX, matrixLoad, matrixStore } from "./matrix_ops.ts";
import { ioWGSL } from "./io_wgsl.ts";

/**
 * `body` for subgroup `g`'s blocks of `count` (16-token or 16-dim blocks dealt to the `G`
 * subgroups of a row block: every `G`th, the `n`th of them at `g + G n`; guarded where `G` does
 * not divide `count`).
 *
 * @example
 * ```ts
 * import { dealtWGSL } from "./matrix_sums.ts";
 * const wgsl = dealtWGSL(4, 6, (b) => `      use(${b});`);
 * console.log(wgsl.includes("use((g + 0u));"), wgsl.includes("if ((g + 4u) < 6u) {")); // true true
 * ```
 */
export function dealtWGSL(
  G: number,
  count: number,
  body: (b: string, n: number) => string,
): string {
  return lines(Math.ceil(count / G), (n) => {
    const b = G === 1 ? `${n}u` : `(g + ${G * n}u)`;
    const guard = count % G !== 0 && (n + 1) * G > count;
    return guard ? `      if (${b} < ${count}u) {\n${body(b, n)}\n      }` : body(b, n);
  });
}

/** The sums' statements of a matrix spec. */
export interface MatrixSums {
  /**
   * The result matrices `o*` of the subgroup's dim blocks, declared (zero); the kernel declares
   * the f32 sums `acc` (`2 PAIRS` of them).
   */
  declare: string;
  /** The result matrices cleared, after a flush. */
  clear: string;
  /**
   * A flush: the result matrices through the score region into the f32 sums `acc`, each pair
   * times `factor(k)` (a WGSL expression that may use the pair's row `pr<k>`).
   */
  flush(factor: (k: number) => string): string;
  /**
   * A masked tile's tokens added one by one into the f32 sums, each (row, token) of weight -1
   * (unseen) left out with a select, so a non-finite V never reaches a row that does not see it.
   */
  maskedAdds: string;
  /** A tile's `P V` on the matrix units, each subgroup its dim blocks. */
  products: string;
  /** The piece's output (direct pieces) or partial state (split ones), from the f32 sums. */
  writes: string;
}

/**
 * The matrix kernel's sums of `P V` for a spec.
 *
 * @example
 * ```ts
 * import { matrixSumsWGSL } from "./matrix_sums.ts";
 * const sums = matrixSumsWGSL({
 *   headDim: 128, kvDtype: "f16", tileTokens: 64, rowsPerBlock: 64, workgroupSize: 128,
 *   tiled: true, matrix: true,
 * });
 * console.log(sums.products.includes("o7 = subgroupMatrixMultiplyAccumulate(")); // true
 * ```
 */
export function matrixSumsWGSL(spec: KernelSpec): MatrixSums {
  const { RB, G, DV, T, KS, FW } = matrixLayout(spec);
  const TB = T / 16, DB = DV / 16;
  const io = ioWGSL(spec);
  const { left: L, right: R, result: S } = MATRIX;
  const PAIRS = DV / (4 * G); // output pairs per thread
  const PASSES = DV / FW; // a flush's passes through so_wg, FW dims each
  const PP = PAIRS / PASSES; // a thread's pairs per pass
  // Thread's output pair k, in pass c = k / PP of a flush: row pr, dims d and d + 1 of its row
  // block's 16 x DV (element f of that pass's 16 x FW).
  const pair = (k: number) =>
    `let f${k} = 2u * lr + ${64 * G * (k % PP)}u;\n        let pr${k} = f${k} / ${FW}u;\n        ` +
    `let d${k} = ${Math.floor(k / PP) * FW}u + f${k} % ${FW}u;`;
  const dealt = (count: number, body: (b: string, n: number) => string) =>
    dealtWGSL(G, count, body);
  // Pass c of a flush: the subgroup's sums of `P V` since the last flush (its dim blocks, on the
  // matrix units) in dims c FW .. to its block's region of so_wg, then (after a barrier) each
  // thread's pairs of them into its f32 sums, times `factor`.
  const flushPass = (c: number, factor: (k: number) => string) => {
    const lo = (c * FW) / 16, hi = ((c + 1) * FW) / 16;
    const stores = lines(Math.ceil(DB / G), (n) => {
      const store = (db: string) =>
        `        ${matrixStore("&so_wg", `so + 16u * (${db} - ${lo}u)`, `o${n}`, `${FW}u`)};`;
      // Block n of subgroup g is dim block g + G n, one of G n .. G n + G - 1.
      const first = G * n, last = G * n + G - 1;
      if (last < lo || first >= hi) return "";
      const db = G === 1 ? `${n}u` : `(g + ${G * n}u)`;
      if (first >= lo && last < hi) return store(db);
      return `        if (${db} >= ${lo}u && ${db} < ${hi}u) {\n  ${store(db)}\n        }`;
    }).split("\n").filter((l) => l.trim() !== "").join("\n");
    return `${stores}
        workgroupBarrier();
${
      lines(PP, (j) => {
        const k = c * PP + j;
        return `        {
        ${pair(k)}
        let a = ${factor(k)};
        acc[${2 * k}] = (acc[${2 * k}] + so_wg[so + f${k}]) * a;
        acc[${2 * k + 1}] = (acc[${2 * k + 1}] + so_wg[so + f${k} + 1u]) * a;
        }`;
      })
    }${c + 1 < PASSES ? "\n        workgroupBarrier();" : ""}`;
  };
  const flush = (factor: (k: number) => string) => lines(PASSES, (c) => flushPass(c, factor));
  const maskedAdds = `          for (var i = 0u; i < ${T}u; i++) {
${
    lines(PAIRS, (k) =>
      `            {
            ${pair(k)}
            let p = f32(p_wg[pb + pr${k} * ${T}u + i]);
            let v = vec2<f32>(f32(kv_wg[i * ${KS}u + d${k}]), f32(kv_wg[i * ${KS}u + d${k} + 1u]));
            let pv = select(vec2<f32>(0.0), p * v, p >= 0.0);
            acc[${2 * k}] += pv.x;
            acc[${2 * k + 1}] += pv.y;
            }`)
  }
          }`;
  const products = dealt(
    DB,
    (db, n) =>
      lines(
        TB,
        (tb) =>
          `        o${n} = subgroupMatrixMultiplyAccumulate(${
            matrixLoad(L, "&p_wg", `pb + ${16 * tb}u`, false, `${T}u`)
          }, ${
            matrixLoad(R, "&kv_wg", `${16 * tb * KS}u + 16u * ${db}`, false, `${KS}u`)
          }, o${n});`,
      ),
  );
  const writes = lines(PAIRS, (k) =>
    `    {
      ${pair(k)}
      let b = rb * 16u + pr${k};
      let d = d${k};
      if (b < n_rows) {
        if (slot == DIRECT) {
          let nan = row_wg[${2 * RB}u + b] != 0.0;
          let f = row_wg[${RB}u + b] / row_wg[b];
          let x = select(vec2<f32>(acc[${2 * k}], acc[${
      2 * k + 1
    }]) * f, vec2<f32>(bitcast<f32>(nan_bits)), nan);
          let at = query_row(q_start, q_len, kv_head, r0 + b) * DV + d;
${
      io.outHalf
        ? "          out[at / 2u] = half_bits(x.x) | (half_bits(x.y) << 16u);"
        : "          out[at] = x.x;\n          out[at + 1u] = x.y;"
    }
        } else {
          partials[slot * SLOT + b * DV + d] = acc[${2 * k}];
          partials[slot * SLOT + b * DV + d + 1u] = acc[${2 * k + 1}];
        }
      }
    }`);
  return {
    declare: lines(Math.ceil(DB / G), (n) => `    var o${n} = ${S}();`),
    clear: dealt(DB, (_, n) => `        o${n} = ${S}();`),
    flush,
    maskedAdds,
    products,
    writes,
  };
}
