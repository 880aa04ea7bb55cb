/**
 * The decode kernel's step with row scatter (`KernelSpec.rowScatter`): the lanes of a group add
 * their partial dot products so that each lane ends with the full score of one row (a
 * reduce-scatter: at each of the first levels a lane keeps half its rows and sends the other
 * half to its partner, then the row's copies add as a butterfly), runs that row's online softmax
 * alone (`m_own`, `l_own`, `bad_own`), and takes the other rows' weights and rescales from the
 * lanes that own them by exclusive-or shuffles. Lane `x` owns row `rho = x >> LB` (`LB` the low
 * bits that number a row's copies), and its query and output slot `k` holds row `rho ^ k`
 * (`scatterRowWGSL`): a shuffle by `k << LB` brings slot `k`'s row from its owner, and at each
 * level of the reduce-scatter the lower half of a lane's slots are the rows it keeps and the
 * upper half the ones its partner keeps, so no lane selects among rows. At the end of a piece the
 * output slots go back to row order and the rows' states to every lane, for the group merge.
 *
 * Per step of 4 tokens and 4 rows over 8 lanes this takes 31 shuffles, 16 adds and 5
 * exponentials instead of 48 shuffles, 48 adds and 16 exponentials.
 *
 * @module
 */

import { grid, lines, type StepShape, valueSums, valueWeight } from "./decode_step.ts";
import { rowPositionWGSL, type VariantWGSL, windowStartWGSL } from "./variant_wgsl.ts";

/** The row-scatter pieces `decodeKernelWGSL` splices together. */
export interface ScatterWGSL {
  /** Piece start: the lane's own row's state. */
  readonly init: string;
  /** After the dot products: each token's own-row score `own{u}`. */
  readonly reduce: string;
  /** The unmasked and masked softmax updates of the step. */
  readonly fast: string;
  readonly softmax: string;
  /** After the token loop: output slots in row order, every row's `m`, `l` and `bad`. */
  readonly finish: string;
}

/** A select over the rows by a lane-dependent index `x`: `pick(r)` for `x == r`. */
function pickRow(RP: number, x: string, pick: (r: number) => string): string {
  let out = pick(0);
  for (let r = 1; r < RP; r++) out = `select(${out}, ${pick(r)}, ${x} == ${r}u)`;
  return out;
}

/**
 * The row-scatter step of a kernel shape; `unpackToken(u)`, if given, declares token `u`'s V
 * chunks inside the update (`vPerToken`), otherwise they were unpacked before it.
 *
 * @example
 * ```ts
 * import { scatterStepWGSL } from "./decode_scatter.ts";
 * const s = scatterStepWGSL({
 *   RP: 4, U: 2, CPL: 2, V4: 2, lanes: 8, W: 128, subgroups: true,
 *   qi: (r, i, j) => r * 4 + i * 2 + j,
 * });
 * console.log(s.reduce.includes("let x0_0_0 = d0_0 + subgroupShuffleXor(d0_2, 4u);")); // true
 * ```
 */
export function scatterStepWGSL(
  shape: StepShape,
  unpackToken?: (u: number) => string,
): ScatterWGSL {
  const { RP, U, CPL, V4, lanes, qi } = shape;
  const half = shape.halfValues ?? false;
  const vs = valueSums(half, shape.halfSwizzle);
  // No short-circuits before the shuffles: WGSL's analysis (which Tint enforces) makes the
  // control flow after a `&&` on a lane's value non-uniform.
  const visible = shape.visibleEager ?? ((u: number, r: number) => `t${u} < lim[${r}]`);
  const LB = Math.log2(lanes / RP); // low bits of the lane: the copies of a row
  const xor = (k: number) => k << LB;
  const shuffle = (v: string, k: number) => k === 0 ? v : `subgroupShuffleXor(${v}, ${xor(k)}u)`;
  // The reduce-scatter's levels (highest lane bits first), then the copies' butterfly.
  const scatterOffsets: number[] = [];
  for (let o = lanes / 2, k = RP; k > 1; o /= 2, k /= 2) scatterOffsets.push(o);
  const butterfly: number[] = [];
  for (let o = lanes / RP / 2; o >= 1; o /= 2) butterfly.push(o);

  const init = `    var m_own = NEG;
    var l_own = 0.0;
    var bad_own = 0u;`;

  const reduce = lines(U, (u) => {
    const out: string[] = [];
    let vals = Array.from({ length: RP }, (_, r) => `d${u}_${r}`);
    scatterOffsets.forEach((o, level) => {
      const half = vals.length / 2;
      const next: string[] = [];
      for (let i = 0; i < half; i++) {
        // Slot i of this lane holds row i ^ rho; slot i + half of the partner (rho with the
        // level's bit flipped) holds the same row. The lower half is the lane's to keep.
        const name = `x${u}_${level}_${i}`;
        out.push(
          `      let ${name} = ${vals[i]} + subgroupShuffleXor(${vals[i + half]}, ${o}u);`,
        );
        next.push(name);
      }
      vals = next;
    });
    out.push(`      var own${u} = ${vals[0]};`);
    for (const o of butterfly) out.push(`      own${u} += subgroupShuffleXor(own${u}, ${o}u);`);
    return out.join("\n");
  });

  const maxOf = (f: (u: number) => string) =>
    lines(U, f).split("\n").reduce((a, b) => `max(${a}, ${b})`, "m_own");
  const sum = (f: (u: number) => string) => lines(U, f).split("\n").join(" + ");
  // Each output slot's chain over the step's tokens in order, from token `u`'s V vector
  // `vOf(u, k, vf)` and weight `wOf(u, k)` (V unpacked per token inside it with vPerToken).
  // Output slot k of this lane is row rho ^ k: the slot's weights come by a shuffle by k << LB.
  const weighted = (
    vOf: (u: number, k: number, vf: string) => string,
    wOf: (u: number, k: number) => string,
  ): string => {
    const term = (u: number, k: number, i: number, j: number, acc: string) =>
      `fma(${vOf(u, k, `vf${u}_${i}[${j}]`)}, ${vs.weight(wOf(u, k))}, ${acc})`;
    const slot = (k: number, x: number) => qi(k, Math.floor(x / V4), x % V4);
    if (unpackToken) {
      return lines(U, (u) =>
        `${unpackToken(u)}
${
          grid(RP, CPL * V4, (k, x) =>
            `        ${vs.acc(slot(k, x))} = ${
              term(u, k, Math.floor(x / V4), x % V4, vs.acc(slot(k, x)))
            };`)
        }`);
    }
    return grid(
      RP,
      CPL * V4,
      (k, x) =>
        `        ${vs.acc(slot(k, x))} = ${
          Array.from({ length: U }, (_, u) => u).reduce(
            (acc, u) => term(u, k, Math.floor(x / V4), x % V4, acc),
            vs.acc(slot(k, x)),
          )
        };`,
    );
  };
  const weights = (p: string) =>
    lines(U, (u) => lines(RP, (k) => `        let w${u}_${k} = ${shuffle(`${p}${u}`, k)};`));
  const alphas = lines(RP, (k) => `        let a${k} = ${shuffle("alo", k)};`);
  // Every slot rescaled when some row's max rose (the same test in every lane of the group).
  const rescale = `        if (${
    Array.from({ length: RP }, (_, k) => `a${k}`).reduce((a, b) => `min(${a}, ${b})`)
  } < 1.0) {
${grid(RP, CPL * V4, (k, x) => `          ${vs.scale(qi(k, Math.floor(x / V4), x % V4), `a${k}`)}`)}
        }`;

  // Unmasked: the own row's weights, every slot rescaled only when some row's max rose (the
  // same test in every lane of the group; after the shuffles, which must not follow a branch on
  // a lane's value), each slot's chain over the tokens in order.
  const fast = `        let mxo = ${maxOf((u) => `own${u}`)};
        let alo = select(1.0, exp2(m_own - mxo), mxo > m_own);
        m_own = mxo;
${lines(U, (u) => `        let po${u} = exp2(own${u} - mxo);`)}
        l_own = fma(l_own, alo, ${sum((u) => `po${u}`)});
${alphas}
${weights("po")}
${rescale}
${weighted((_u, _k, vf) => vf, (u, k) => valueWeight(shape, `w${u}_${k}`, u))}`;

  // Masked: the own row's visibility picked by rho; a masked token's weight travels as -1 (a
  // NaN weight still passes the test, as the unscattered kernel's NaN products do). A visible
  // token takes the unmasked path's operations (decode_step.ts says why).
  const zeroed = lines(U, (u) =>
    lines(RP, (k) =>
      `        let ok${u}_${k} = !(w${u}_${k} < 0.0);
        let wz${u}_${k} = select(0.0, w${u}_${k}, ok${u}_${k});`));
  const softmax = `${
    lines(U, (u) =>
      `        let vo${u} = ${pickRow(RP, "rho", (r) => visible(u, r))};
        let so${u} = select(NEG, own${u}, vo${u});`)
  }
${lines(U, (u) => `        bad_own |= select(0u, 1u, vo${u} & poisoned(own${u}));`)}
        let mxo = ${maxOf((u) => `so${u}`)};
        let alo = select(1.0, exp2(m_own - mxo), mxo > m_own);
        m_own = mxo;
${
    lines(U, (u) =>
      `        let po${u} = select(0.0, exp2(so${u} - mxo), !(so${u} <= NEG));
        let pm${u} = select(-1.0, po${u}, vo${u});`)
  }
        l_own = fma(l_own, alo, ${sum((u) => `po${u}`)});
${alphas}
${weights("pm")}
${zeroed}
${
    // With f16 sums, as the unmasked step does (a flush changes the sums' rounding).
    half
      ? rescale
      : grid(RP, CPL * V4, (k, x) => `        o[${qi(k, Math.floor(x / V4), x % V4)}] *= a${k};`)}
${
    weighted(
      (u, k, vf) => `select(${vs.zero}, ${vf}, ok${u}_${k})`,
      (u, k) => valueWeight(shape, `wz${u}_${k}`, u, `ok${u}_${k}`),
    )
  }`;

  // End of a piece: slot k holds row rho ^ k, and row r's state sits on the lanes owning it.
  const E = CPL * V4;
  const finish = `    {
${
    lines(RP, (k) =>
      `      let mk${k} = ${shuffle("m_own", k)};
      let lk${k} = ${shuffle("l_own", k)};
      let bk${k} = ${shuffle("bad_own", k)};`)
  }
      var on = array<vec4<f32>, ${RP * E}>();
${
    lines(RP, (r) =>
      `      m[${r}] = ${pickRow(RP, `(rho ^ ${r}u)`, (k) => `mk${k}`)};
      l[${r}] = ${pickRow(RP, `(rho ^ ${r}u)`, (k) => `lk${k}`)};
      bad[${r}] |= ${pickRow(RP, `(rho ^ ${r}u)`, (k) => `bk${k}`)};
${
        grid(
          CPL,
          V4,
          (i, j) =>
            `      on[${qi(r, i, j)}] = ${
              pickRow(RP, `(rho ^ ${r}u)`, (k) => `o[${qi(k, i, j)}]`)
            };`,
        )
      }`)
  }
      o = on;
    }`;
  return { init, reduce, fast, softmax, finish };
}

/**
 * The unmasked steps' limits (`lim_all`, and `lo_all` with a sliding window) from all `RB` rows
 * of the block, for kernels with row sets: the row scatter's shuffles sit inside the step's
 * unmasked and masked paths, so the choice between them must not depend on the thread (WGSL's
 * uniformity rules, which Tint enforces), as the limits of a row set's own rows would. A block
 * row set whose own rows see a step may then take the masked path at a piece's end: the same
 * results.
 *
 * @example
 * ```ts
 * import { blockLimitsWGSL } from "./decode_scatter.ts";
 * import { VARIANT_WGSL } from "./variant_wgsl.ts";
 * const wgsl = blockLimitsWGSL(8, VARIANT_WGSL.causal, false);
 * console.log(wgsl.includes("7u < n_rows"), wgsl.includes("lim[")); // true false
 * ```
 */
export function blockLimitsWGSL(RB: number, variant: VariantWGSL, window: boolean): string {
  const pq = (b: number) => rowPositionWGSL(`${b}u`);
  return `    // The whole block's rows decide the unmasked steps (row scatter shuffles in them).
${
    lines(RB, (b) =>
      `    lim_all = select(lim_all, min(lim_all, min(${
        variant.visible("seq_len", "q_len", `(r0 + ${b}u) % q_len`)
      }, tok_end)), ${b}u < n_rows);`)
  }${
    window
      ? `
    lo_all = 0u;
${
        lines(RB, (b) =>
          `    lo_all = select(lo_all, max(lo_all, ${
            windowStartWGSL(`(${pq(b)})`)
          }), ${b}u < n_rows);`)
      }`
      : ""
  }`;
}

/**
 * Row scatter's lane row and slot order: `rho`, the row lane `lane` owns (declared at the
 * kernel's start), and the block row of the thread's slot `r` (row `r ^ rho` of the thread's
 * rows from `first`), for the query rows' loads.
 *
 * @example
 * ```ts
 * import { scatterRowWGSL } from "./decode_scatter.ts";
 * const s = scatterRowWGSL(8, 4, "rs0 + ");
 * console.log(s.rho, s.row(1)); // let rho = lane >> 1u; (rs0 + (1u ^ rho))
 * ```
 */
export function scatterRowWGSL(
  lanes: number,
  RP: number,
  first = "",
): { rho: string; row: (r: number) => string } {
  return {
    rho: `let rho = lane >> ${Math.log2(lanes / RP)}u;`,
    row: (r) => `(${first}(${r}u ^ rho))`,
  };
}
