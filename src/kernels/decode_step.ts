/**
 * The decode kernel's per-step WGSL: adding the lanes' partial dot products into scores
 * (subgroup shuffles or workgroup memory) and the online-softmax update of each row's state,
 * unmasked (`fast`) and masked. Pieces of the source `decodeKernelWGSL` splices together.
 *
 * @module
 */

/** The step's geometry: what the generated statements index. */
export interface StepShape {
  /** Rows per block. */
  readonly RP: number;
  /** Tokens loaded per group and step. */
  readonly U: number;
  /** 16-byte chunks per lane. */
  readonly CPL: number;
  /** `vec4<f32>` per chunk. */
  readonly V4: number;
  /** Lanes sharing a token. */
  readonly lanes: number;
  /** Threads per workgroup. */
  readonly W: number;
  /** Whether the lanes add with subgroup shuffles. */
  readonly subgroups: boolean;
  /** Index of a row's query (and output) vector: row, chunk, vector in chunk. */
  readonly qi: (r: number, i: number, j: number) => number;
  /**
   * WGSL test of whether row `r` sees the step's token `t{u}` on masked steps (default
   * `t{u} < lim[r]`, the causal limit; a sliding window adds its start).
   */
  readonly visible?: (u: number, r: number) => string;
  /** The same test without short-circuits (`&`), for code before shuffles (row scatter). */
  readonly visibleEager?: (u: number, r: number) => string;
  /**
   * The weighted sum of V in packed f16 (`halfValues`): V chunks unpacked into `vec4<f16>`s
   * (bytes 0, 2, 1, 3 of each word), added into the f16 sums `oh`, which go into the f32 state
   * `o` before any rescale and every `halfSteps` steps (see {@linkcode valueSums}).
   */
  readonly halfValues?: boolean;
  /**
   * The swizzle that puts a packed f16 sum's elements back in the output's order: `.xzyw` for
   * 8-bit codes (unpacked as bytes 0, 2, 1, 3 of each word, the default), `""` for f16 V, whose
   * halves arrive in order.
   */
  readonly halfSwizzle?: string;
  /**
   * Per-token V scales: WGSL of token `u`'s scale, which joins the token's weights (one multiply
   * per row and token) instead of its unpacked V chunks (one per element); a masked token's
   * weight is then selected to 0 after the product, so a garbage scale past the sequence cannot
   * reach the sums.
   */
  readonly vScale?: (u: number) => string;
}

/**
 * A token's weight of V as the step adds it: `w`, times token `u`'s V scale where the shape has
 * per-token scales (see {@linkcode StepShape.vScale}), selected to 0 unless `keep` on masked steps.
 *
 * @example
 * ```ts
 * import { valueWeight } from "./decode_step.ts";
 * console.log(valueWeight({}, "p0", 0)); // p0
 * const scaled = { vScale: (u: number) => `sc${u}.y` };
 * console.log(valueWeight(scaled, "p1", 1)); // (p1 * sc1.y)
 * console.log(valueWeight(scaled, "p1", 1, "c1")); // select(0.0, p1 * sc1.y, c1)
 * ```
 */
export function valueWeight(
  shape: Pick<StepShape, "vScale">,
  w: string,
  u: number,
  keep?: string,
): string {
  if (!shape.vScale) return w;
  const scaled = `${w} * ${shape.vScale(u)}`;
  return keep ? `select(0.0, ${scaled}, ${keep})` : `(${scaled})`;
}

/** Where a step adds its weighted V: the f32 state `o`, or the packed f16 sums `oh`. */
export interface ValueSums {
  /** The accumulator of output slot `x`. */
  readonly acc: (x: number) => string;
  /** A weight `w` (f32) as the accumulator's vector type. */
  readonly weight: (w: string) => string;
  /** The accumulator's zero vector (masked tokens' V). */
  readonly zero: string;
  /** The statement that multiplies slot `x`'s state by `a` (its f16 sum added in first). */
  readonly scale: (x: number, a: string) => string;
}

/**
 * The accumulators of {@linkcode StepShape.halfValues} (or the f32 state's): with packed f16 a
 * slot's sum `oh[x]` holds the weighted codes in the unpacked order, so it enters `o[x]` swizzled
 * back (`.xzyw`), and is emptied; a masked step then rescales only when the max rose, as an
 * unmasked one does, so the two paths keep the same bits.
 *
 * @example
 * ```ts
 * import { valueSums } from "./decode_step.ts";
 * console.log(valueSums(false).scale(3, "alpha")); // o[3] *= alpha;
 * console.log(valueSums(true).acc(3), valueSums(true).weight("p0")); // oh[3] vec4<f16>(f16(p0))
 * ```
 */
export function valueSums(half: boolean, swizzle = ".xzyw"): ValueSums {
  return half
    ? {
      acc: (x) => `oh[${x}]`,
      weight: (w) => `vec4<f16>(f16(${w}))`,
      zero: "Z4H",
      scale: (x, a) =>
        `o[${x}] = (o[${x}] + vec4<f32>(oh[${x}])${swizzle}) * ${a}; oh[${x}] = Z4H;`,
    }
    : {
      acc: (x) => `o[${x}]`,
      weight: (w) => `vec4<f32>(${w})`,
      zero: "Z4",
      scale: (x, a) => `o[${x}] *= ${a};`,
    };
}

/** The packed f16 weighted sums' pieces of the decode kernel (see {@linkcode valueSums}). */
export interface HalfValuesWGSL {
  /** Piece start: the f16 sums, empty. */
  readonly state: string;
  /** End of a step: every `steps`-th step, the sums added into the f32 state and emptied. */
  readonly afterStep: string;
  /** After the piece's last step: the sums added into the f32 state. */
  readonly afterLoop: string;
}

/**
 * The packed f16 weighted sums `oh` of a thread's `slots` output vectors: declared at a piece's
 * start, added into the f32 state `o` (and emptied) every `steps` steps and after the last.
 *
 * @example
 * ```ts
 * import { halfValuesWGSL } from "./decode_step.ts";
 * const h = halfValuesWGSL(16, 4);
 * console.log(h.afterStep.includes("% 4u == 3u"), h.afterLoop.includes("o[15] +=")); // true true
 * ```
 */
export function halfValuesWGSL(slots: number, steps: number, swizzle = ".xzyw"): HalfValuesWGSL {
  const flush = (indent: string) =>
    lines(slots, (x) => `${indent}o[${x}] += vec4<f32>(oh[${x}])${swizzle}; oh[${x}] = Z4H;`);
  return {
    state: `    // The weighted V of the last steps in f16${
      swizzle === ".xzyw" ? " (bytes 0, 2, 1, 3 of each word)" : ""
    }.
    var oh = array<vec4<f16>, ${slots}>();`,
    afterStep: steps === 1
      ? flush("      ")
      : `      if (((s0 - tok_begin) / STEP) % ${steps}u == ${steps - 1}u) {
${flush("        ")}
      }`,
    afterLoop: flush("    "),
  };
}

/** WGSL of `poisoned(x)`: whether a score is NaN or +inf. */
export const POISONED_WGSL = `
// NaN or +inf, by bits (compilers may fold float NaN tests away).
fn poisoned(x: f32) -> bool {
  let b = bitcast<u32>(x);
  return (b & 0x7fffffffu) > 0x7f800000u || b == 0x7f800000u;
}`;

/** `n` lines of generated source. */
export function lines(n: number, body: (i: number) => string): string {
  return Array.from({ length: n }, (_, i) => body(i)).join("\n");
}

/** `a * b` lines of generated source, row-major. */
export function grid(a: number, b: number, body: (i: number, j: number) => string): string {
  return lines(a * b, (x) => body(Math.floor(x / b), x % b));
}

/** Adds the lanes' partial dot products `d{u}_{r}` into each token's score. */
export function laneReduceWGSL(shape: StepShape): string {
  const { RP, U, lanes, W } = shape;
  let reduce: string;
  if (shape.subgroups) {
    const offs: number[] = [];
    for (let o = lanes / 2; o >= 1; o /= 2) offs.push(o);
    reduce = offs.length === 0
      ? ""
      : grid(U, RP, (u, r) =>
        offs.map((o) =>
          `      d${u}_${r} += subgroupShuffleXor(d${u}_${r}, ${o}u);`
        ).join("\n"));
  } else if (lanes === 1) {
    reduce = "";
  } else {
    // Workgroup memory: lanes post their partial sums (rows padded to lanes + 1 floats, so the
    // adding threads hit distinct banks), one thread per (token, row) adds them in lane order,
    // and the group reads the scores back. Buffers alternate between steps, so two barriers per
    // step suffice.
    reduce = `      let odd = ((s0 - tok_begin) / STEP) % 2u == 1u;
      let xb = select(0u, XHALF, odd);
      let sb = select(0u, SHALF, odd);
${
      grid(U, RP, (u, r) =>
        `      xs[xb + (lg * ${U * RP}u + ${u * RP + r}u) * ${lanes + 1}u + lane] = d${u}_${r};`)
    }
      workgroupBarrier();
      for (var e = lid; e < SHALF; e += ${W}u) {
        var sum = 0.0;
        for (var x = 0u; x < LANES; x++) { sum += xs[xb + e * ${lanes + 1}u + x]; }
        ss[sb + e] = sum;
      }
      workgroupBarrier();
${grid(U, RP, (u, r) => `      d${u}_${r} = ss[sb + lg * ${U * RP}u + ${u * RP + r}u];`)}`;
  }
  return reduce;
}

/** The online-softmax updates of a step: unmasked (`fast`) and masked (`softmax`). */
export function softmaxStepWGSL(
  shape: StepShape,
  unpackToken?: (u: number) => string,
): { fast: string; softmax: string } {
  if (unpackToken) return softmaxByTokenWGSL(shape, unpackToken);
  const { RP, U, CPL, V4, qi } = shape;
  const half = shape.halfValues ?? false;
  const vs = valueSums(half, shape.halfSwizzle);
  const visible = shape.visible ?? ((u: number, r: number) => `t${u} < lim[${r}]`);
  // Steps whose tokens every row of the block may see (all but the last step or two of a piece)
  // take the unmasked path: no selects, and the state is rescaled only when a score exceeds the
  // running max, which after the first tokens is rare. A NaN or +inf score needs no test here:
  // it makes p (and so the sum l) NaN, which is checked once per piece. The masked path does
  // the same operations on a visible token (the sum as an explicit multiply-add, which no
  // compiler may split or fuse differently; V selected, not its product), so which path a step
  // takes never changes a bit of the result (row scatter's block-wide limits rely on it).
  const maxOf = (f: (u: number) => string) =>
    lines(U, f).split("\n").reduce((a, b) => `max(${a}, ${b})`);
  const sum = (f: (u: number) => string) => lines(U, f).split("\n").join(" + ");
  const fast = lines(RP, (r) =>
    `      {
        let mx = max(m[${r}], ${maxOf((u) => `d${u}_${r}`)});
        let alpha = select(1.0, exp2(m[${r}] - mx), mx > m[${r}]);
        if (mx > m[${r}]) {
${grid(CPL, V4, (i, j) => `          ${vs.scale(qi(r, i, j), "alpha")}`)}
        }
        m[${r}] = mx;
${lines(U, (u) => `        let p${u} = exp2(d${u}_${r} - mx);`)}
        l[${r}] = fma(l[${r}], alpha, ${sum((u) => `p${u}`)});
${
      grid(CPL, V4, (i, j) =>
        `        ${vs.acc(qi(r, i, j))} = ${
          Array.from({ length: U }, (_, u) => u).reduce(
            (acc, u) =>
              `fma(vf${u}_${i}[${j}], ${vs.weight(valueWeight(shape, `p${u}`, u))}, ${acc})`,
            vs.acc(qi(r, i, j)),
          )
        };`)
    }
      }`);
  const softmax = lines(RP, (r) =>
    `      {
${lines(U, (u) => `        let c${u} = ${visible(u, r)};`)}
${lines(U, (u) => `        let s${u} = select(NEG, d${u}_${r}, c${u});`)}
${lines(U, (u) => `        bad[${r}] |= select(0u, 1u, c${u} && poisoned(d${u}_${r}));`)}
        let mx = max(m[${r}], ${maxOf((u) => `s${u}`)});
        let alpha = select(1.0, exp2(m[${r}] - mx), mx > m[${r}]);${
      half
        ? `
        if (mx > m[${r}]) {
${grid(CPL, V4, (i, j) => `          ${vs.scale(qi(r, i, j), "alpha")}`)}
        }`
        : ""
    }
        m[${r}] = mx;
${lines(U, (u) => `        let p${u} = select(0.0, exp2(s${u} - mx), !(s${u} <= NEG));`)}
        l[${r}] = fma(l[${r}], alpha, ${sum((u) => `p${u}`)});
${
      grid(CPL, V4, (i, j) =>
        `        ${vs.acc(qi(r, i, j))} = ${
          Array.from({ length: U }, (_, u) => u).reduce(
            (acc, u) =>
              `fma(select(${vs.zero}, vf${u}_${i}[${j}], c${u}), ${
                vs.weight(valueWeight(shape, `p${u}`, u, `c${u}`))
              }, ${acc})`,
            half ? vs.acc(qi(r, i, j)) : `o[${qi(r, i, j)}] * alpha`,
          )
        };`)
    }
      }`);
  return { fast, softmax };
}

/**
 * The online-softmax updates of a step with V unpacked one token at a time (`vPerToken`):
 * every row's max, rescale and weights first, then per token its V chunks (`unpackToken(u)`
 * declares `vf{u}_{i}`) multiply-added into every row's output. Each output element adds the
 * tokens in the order of {@linkcode softmaxStepWGSL}'s chains, so the results are the same;
 * only one token's V floats are live at a time instead of the step's.
 */
function softmaxByTokenWGSL(
  shape: StepShape,
  unpackToken: (u: number) => string,
): { fast: string; softmax: string } {
  const { RP, U, CPL, V4, qi } = shape;
  const half = shape.halfValues ?? false;
  const vs = valueSums(half, shape.halfSwizzle);
  const visible = shape.visible ?? ((u: number, r: number) => `t${u} < lim[${r}]`);
  const sum = (f: (u: number) => string) => lines(U, f).split("\n").join(" + ");
  const maxOf = (f: (u: number) => string) =>
    lines(U, f).split("\n").reduce((a, b) => `max(${a}, ${b})`);
  // Per token: its V chunks, then each row's outputs gain the token's weighted V.
  const byToken = (add: (u: number, r: number, i: number, j: number) => string) =>
    lines(U, (u) =>
      `${unpackToken(u)}
${grid(RP, CPL * V4, (r, x) => add(u, r, Math.floor(x / V4), x % V4))}`);
  // The operations of softmaxStepWGSL's paths, so a visible token's bits are the same on both.
  const fast = `${
    lines(RP, (r) =>
      `        let mx${r} = max(m[${r}], ${maxOf((u) => `d${u}_${r}`)});
        let alpha${r} = select(1.0, exp2(m[${r}] - mx${r}), mx${r} > m[${r}]);
        if (mx${r} > m[${r}]) {
${grid(CPL, V4, (i, j) => `          ${vs.scale(qi(r, i, j), `alpha${r}`)}`)}
        }
        m[${r}] = mx${r};
${lines(U, (u) => `        let p${u}_${r} = exp2(d${u}_${r} - mx${r});`)}
        l[${r}] = fma(l[${r}], alpha${r}, ${sum((u) => `p${u}_${r}`)});`)
  }
${
    byToken((u, r, i, j) =>
      `        ${vs.acc(qi(r, i, j))} = fma(vf${u}_${i}[${j}], ${
        vs.weight(valueWeight(shape, `p${u}_${r}`, u))
      }, ${vs.acc(qi(r, i, j))});`
    )
  }`;
  const softmax = `${
    lines(RP, (r) =>
      `${lines(U, (u) => `        let c${u}_${r} = ${visible(u, r)};`)}
${lines(U, (u) => `        let s${u}_${r} = select(NEG, d${u}_${r}, c${u}_${r});`)}
${lines(U, (u) => `        bad[${r}] |= select(0u, 1u, c${u}_${r} && poisoned(d${u}_${r}));`)}
        let mx${r} = max(m[${r}], ${maxOf((u) => `s${u}_${r}`)});
        let alpha${r} = select(1.0, exp2(m[${r}] - mx${r}), mx${r} > m[${r}]);${
        half
          ? `
        if (mx${r} > m[${r}]) {
${grid(CPL, V4, (i, j) => `          ${vs.scale(qi(r, i, j), `alpha${r}`)}`)}
        }`
          : ""
      }
        m[${r}] = mx${r};
${
        lines(
          U,
          (u) =>
            `        let p${u}_${r} = select(0.0, exp2(s${u}_${r} - mx${r}), !(s${u}_${r} <= NEG));`,
        )
      }
        l[${r}] = fma(l[${r}], alpha${r}, ${sum((u) => `p${u}_${r}`)});${
        half ? "" : `
${grid(CPL, V4, (i, j) => `        o[${qi(r, i, j)}] = o[${qi(r, i, j)}] * alpha${r};`)}`
      }`)
  }
${
    byToken((u, r, i, j) =>
      `        ${vs.acc(qi(r, i, j))} = fma(select(${vs.zero}, vf${u}_${i}[${j}], c${u}_${r}), ${
        vs.weight(valueWeight(shape, `p${u}_${r}`, u, `c${u}_${r}`))
      }, ${vs.acc(qi(r, i, j))});`
    )
  }`;
  return { fast, softmax };
}
