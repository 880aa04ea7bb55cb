/**
 * The decode kernel's query rows: where a thread finds them (its registers in f32, its registers
 * in f16 for packed f16 dot products, or the workgroup's memory) and the step's dot products of
 * its K chunks with them. Pieces of the source `decodeKernelWGSL` splices together.
 *
 * @module
 */

import { grid, lines } from "./decode_step.ts";
import { chunkNames, nanTestWGSL } from "./kv_load.ts";

/** The block's geometry and the query rows' home: what the generated statements index. */
export interface QueryShape {
  /** Rows per block. */
  readonly RB: number;
  /** Rows this thread holds (`RB / rowSets`). */
  readonly RP: number;
  /** Tokens loaded per group and step. */
  readonly U: number;
  /** K chunks per lane. */
  readonly CPL: number;
  /** `vec4<f32>` per chunk. */
  readonly V4: number;
  /** Lanes sharing a token. */
  readonly lanes: number;
  /** Threads per workgroup. */
  readonly W: number;
  /** The lanes do not divide K's chunks: the last round is padded (`kpad`). */
  readonly padK: boolean;
  /** The WGSL block row of this thread's row `r`. */
  readonly row: (r: number) => string;
  /** WGSL factor of the queries (the softmax scale in log2 units, times a per-tensor K scale). */
  readonly qScale: string;
  /**
   * Packed f16 dot products (`halfMath`): f16 K chunks arrive as `KHalves`; 8-bit chunks
   * (`halfBytes`) are unpacked by `unpack_kh` into f16 halves.
   */
  readonly half: boolean;
  /**
   * 8-bit K under `half`: each word unpacks to its bytes 0, 2, 1, 3 (two per operation), so
   * the query halves are held in that order too.
   */
  readonly halfBytes?: boolean;
  /**
   * int8 K by packed integer dot products (`intDots`; ignored with `half`, `shared` or
   * `staged`): each lane's query chunks of a row as 15-bit fixed point at a power-of-two scale of its own,
   * split into two signed bytes per element (high and low), four per `u32`; a score is two
   * `dot4I8Packed` per K word, added as integers, then scaled once.
   */
  readonly intDots?: boolean;
  /** The block's rows in workgroup memory (`queryShared`; ignored with `half`). */
  readonly shared: boolean;
  /**
   * The block's rows read once into workgroup memory, then each thread's chunks copied into its
   * registers (`queryStaged`; ignored with `half` or `shared`). Default false.
   */
  readonly staged?: boolean;
  /**
   * Each score as a chain of scalar multiply-adds (`fmaDots`; ignored with `half`): one chain per
   * (token, row) from registers, or each shared query vector's four products added to the score
   * by multiply-adds. Default false.
   */
  readonly fmaDots?: boolean;
  /**
   * K chunks unpacked by `unpack_kv_raw`, then one NaN-code test over the step's chunks
   * (`nanSteps`; ignored with `half` or `intDots`). Default false.
   */
  readonly nanSteps?: boolean;
}

/** Multiply-adds nested in one expression at most: Tint's parser refuses deep nesting. */
const FMA_RUN = 16;

/** The component products of `vec4` pairs as scalar terms, in order. */
function fmaTerms(pairs: readonly (readonly [string, string])[]): [string, string][] {
  return pairs.flatMap(([a, b]) =>
    ["x", "y", "z", "w"].map((c): [string, string] => [`${a}.${c}`, `${b}.${c}`])
  );
}

/** `terms` multiply-added onto `start` in order: `fma(a2, b2, fma(a1, b1, start))`. */
function fmaNest(terms: readonly (readonly [string, string])[], start: string): string {
  return terms.reduce((acc, [a, b]) => `fma(${a}, ${b}, ${acc})`, start);
}

/**
 * `terms` multiply-added in order into `target` (declared with `var`, starting from `start`, or
 * from the first term's product), in runs of {@linkcode FMA_RUN} nested calls per statement:
 * the same operations in the same order as one nested chain, which Dawn's parser refused for a
 * 136-dim row on one lane (136 calls deep, session 29).
 */
function fmaRuns(
  target: string,
  terms: readonly (readonly [string, string])[],
  start?: string,
): string {
  // Runs of FMA_RUN terms, the first product (without a start) counted in the first run.
  const out = [`      var ${target} = ${
    fmaNest(
      terms.slice(start === undefined ? 1 : 0, FMA_RUN),
      start ?? `${terms[0][0]} * ${terms[0][1]}`,
    )
  };`];
  for (let s = FMA_RUN; s < terms.length; s += FMA_RUN) {
    out.push(`      ${target} = ${fmaNest(terms.slice(s, s + FMA_RUN), target)};`);
  }
  return out.join("\n");
}

/**
 * The sum of the component products of `vec4` pairs as one chain of scalar multiply-adds into
 * `target`, first pair first: `fma(a.w, b.w, ... fma(a.y, b.y, a.x * b.x))`. A sum of `dot`s
 * compiles to a multiply and three multiply-adds per `vec4`, then an add per `dot`.
 */
function fmaChain(target: string, pairs: readonly (readonly [string, string])[]): string {
  return fmaRuns(target, fmaTerms(pairs));
}

/**
 * Packed f16 dot products (`halfMath`): the lane's `CPL` chunks, `V4` `vec4<f16>` each,
 * multiply-added into `target` from zero.
 */
function halfChain(
  target: string,
  CPL: number,
  V4: number,
  pair: (i: number, j: number) => [string, string],
): string {
  const terms = Array.from({ length: CPL * V4 }, (_, x) => pair(Math.floor(x / V4), x % V4));
  return fmaRuns(target, terms, "vec4<f16>(0.0h)");
}

/** The query rows' WGSL: workgroup declarations, the piece's loads, and the step's dots. */
export interface QueryWGSL {
  /** Module-scope declarations (the `q_sh` array, the `KHalves` chunk type). */
  readonly workgroup: string;
  /** Start of a piece: the rows pre-scaled into log2 units, missing rows 0. */
  readonly load: string;
  /** A step's partial dot products `d{u}_{r}` of the lane's chunks of `U` tokens. */
  readonly dots: string;
}

/**
 * The query rows' WGSL for a kernel shape.
 *
 * @example
 * ```ts
 * import { queryRowsWGSL } from "./decode_query.ts";
 * const q = queryRowsWGSL({
 *   RB: 4, RP: 4, U: 2, CPL: 2, V4: 2, lanes: 8, W: 128, padK: false,
 *   row: (r) => `${r}u`, qScale: "params.scale_log2", half: false, shared: true,
 * });
 * console.log(q.workgroup.includes("q_sh"), q.dots.includes("let qq = q_sh[")); // true true
 * ```
 */
export function queryRowsWGSL(shape: QueryShape): QueryWGSL {
  const { RB, RP, U, CPL, V4, lanes, W, padK, row, qScale, half } = shape;
  // Packed f16 dot products (`halfMath` on devices with `shader-f16`): f16 K's halves are used
  // as they are stored (int8 and E4M3 bytes unpacked into halves, two per operation), against
  // the query rows rounded to f16, two products per instruction; each lane's partial sum of a
  // row is carried in f16 (8 products per half at d128), then added in f32. Query rows stay in
  // registers (half the registers of f32 rows).
  const bytes = half && (shape.halfBytes ?? false);
  // Query rows in workgroup memory: each vec4 is read once per step and used for the step's U
  // tokens, so no thread holds the rows in registers. Rows are padded with zeros to the lanes'
  // rounds of chunks (a padded lane's products then vanish, as with registers).
  const shared = shape.shared && !half;
  const staged = (shape.staged ?? false) && !shared && !half;
  const ints = (shape.intDots ?? false) && !shared && !staged && !half;
  const E4 = CPL * V4; // vec4<f32> per lane per row of q
  const qi = (r: number, i: number, j: number) => r * E4 + i * V4 + j;
  const QS = CPL * lanes * V4; // vec4<f32> per row of q_sh
  const qShared = (r: number, i: number, j: number) =>
    `q_sh[${row(r)} * ${QS}u + (lane + ${i * lanes}u) * ${V4}u + ${j}u]`;
  // Index of a row's query halves: row, chunk, vec4<f16> of the chunk (V4 per chunk: 2 per 16
  // bytes of f16, one per word of 8-bit codes).
  const hi = (r: number, i: number, j: number) => (r * CPL + i) * V4 + j;
  // A lane's query chunk `i` of a row starting at `qb`: the padded round reads the row's last
  // chunk again (`kpad`) and keeps it only for lanes inside the row.
  const chunkAt = (i: number) =>
    padK && i === CPL - 1
      ? { at: "(lane + kpad)", keep: `lane + ${i * lanes}u < CHUNKS` }
      : { at: `(lane + ${i * lanes}u)`, keep: "" };
  const loadQ = (i: number, j: number) => {
    const c = chunkAt(i);
    const v = `load_q(qb + ${c.at} * ${V4}u + ${j}u)`;
    return c.keep ? `select(Z4, ${v}, ${c.keep}) * ${qScale}` : `${v} * ${qScale}`;
  };
  // Every row's loads in one block, without branches: a missing row reads the block's last row
  // again and keeps zeros. (Rows behind \`if\`s were loaded one row after another, each waiting
  // for its loads before the next row's were issued: about 1 us per row at the start of every
  // piece of the 4-row kernel, bench/notes.md, session 21.)
  const perRow = (body: (r: number, live: (v: string) => string) => string) =>
    lines(RP, (r) =>
      `    {
      let qb = query_row(q_start, q_len, kv_head, r0 + min(${row(r)}, n_rows - 1u)) * D4;
      let live = ${row(r)} < n_rows;
${body(r, (v) => `select(Z4, ${v}, live)`)}
    }`);

  const workgroup = `${
    half && !bytes
      ? "\n// One 16-byte chunk of f16 K, used as stored.\nstruct KHalves { lo: vec4<f16>, hi: vec4<f16> }"
      : ""
  }${shared || staged ? `\nvar<workgroup> q_sh: array<vec4<f32>, ${RB * QS}>;` : ""}`;
  // The block's rows into q_sh, pre-scaled into log2 units, zeros for missing rows and for the
  // lanes' padding past a row's chunks: each vector read from memory once per workgroup.
  const sharedLoad = `    for (var e = lid; e < ${RB * QS}u; e += ${W}u) {
      let rr = e / ${QS}u;
      let c = e % ${QS}u;
      var qq = Z4;
      if (rr < n_rows && c < D4) {
        qq = load_q(query_row(q_start, q_len, kv_head, r0 + rr) * D4 + c) * ${qScale};
      }
      q_sh[e] = qq;
    }
    workgroupBarrier();`;

  // Fixed point at a power of two per lane and row: 2^(e - 14) for a largest element in
  // [2^e, 2^(e+1)) up to 32639 x 2^(e - 14) (2^(e - 13) above), so |q| <= 32639 = 127.5 x 256 - 1
  // (15 bits) and the high byte (q + 128) >> 8 stays within a signed byte, the low byte
  // q - 256 x high in -128..127. A power of two makes the score's product by it
  // exact, so a compiler that fuses it into the lanes' next add (as it may) changes no bit. Rows
  // below 2^-112 count as 0. A NaN or infinite element (found by its bits: compilers may take
  // max() past a NaN) makes the lane's scale, and so every score of the row, NaN, as its dot
  // products would.
  const W4 = CPL * V4; // words (and vec4 of query elements) per lane and row
  const intLoad =
    `    // This lane's chunks of the block's query rows, pre-scaled into log2 units (missing rows 0),
    // as fixed point at the lane's own power-of-two scale per row: high and low signed bytes.
    var qhi = array<u32, ${RP * W4}>();
    var qlo = array<u32, ${RP * W4}>();
    var qsc = array<f32, ${RP}>();
${
      perRow((r, live) =>
        `${grid(CPL, V4, (i, j) => `      let q${i}_${j} = ${live(loadQ(i, j))};`)}
      var mx = 0.0;
      var odd = false;
${
          grid(CPL, V4, (i, j) =>
            `      mx = max(mx, max(max(abs(q${i}_${j}.x), abs(q${i}_${j}.y)), max(abs(q${i}_${j}.z), abs(q${i}_${j}.w))));
      odd = odd || any((bitcast<vec4<u32>>(q${i}_${j}) & vec4<u32>(0x7fffffffu)) >= vec4<u32>(0x7f800000u));`)
        }
      let mb = bitcast<u32>(mx);
      let ef = mb & 0x7f800000u;
      let sh = select(0x07000000u, 0x06800000u, (mb & 0x007fffffu) > ${
          Math.floor((32639 / 16384 - 1) * 2 ** 23)
        }u);
      let sc = select(select(0.0, bitcast<f32>(ef - sh), ef > sh), bitcast<f32>(nan_bits), odd);
      let inv = select(0.0, 1.0 / sc, sc > 0.0);
      qsc[${r}] = sc;
${
          grid(CPL, V4, (i, j) =>
            `      {
        let f = vec4<i32>(round(q${i}_${j} * inv));
        let h = (f + vec4<i32>(128)) >> vec4<u32>(8u);
        qhi[${r * W4 + i * V4 + j}] = pack4xI8(h);
        qlo[${r * W4 + i * V4 + j}] = pack4xI8(f - (h << vec4<u32>(8u)));
      }`)
        }`
      )
    }`;
  const load = ints
    ? intLoad
    : half
    ? `    // This lane's chunks of the block's query rows, pre-scaled into log2 units and rounded to
    // f16; missing rows 0.${
      bytes ? " Each vector in the order of the unpacked bytes (0, 2, 1, 3)." : ""
    }
    var qh = array<vec4<f16>, ${RP * CPL * V4}>();
${
      perRow((r, live) =>
        grid(CPL, V4, (i, j) =>
          `      qh[${hi(r, i, j)}] = vec4<f16>(${
            bytes ? `(${live(loadQ(i, j))}).xzyw` : live(loadQ(i, j))
          });`)
      )
    }`
    : shared
    ? `    // The block's query rows, pre-scaled into log2 units; missing rows 0.
${sharedLoad}`
    : staged
    ? `    // The block's query rows, pre-scaled into log2 units (missing rows 0), read once per
    // workgroup, then this lane's chunks into its registers. (The piece's last barrier, in the
    // group merge, keeps the next piece's rows from overwriting q_sh before every thread has
    // copied these.)
${sharedLoad}
    var qv = array<vec4<f32>, ${RP * E4}>();
${
      grid(
        RP,
        E4,
        (r, x) =>
          `    qv[${qi(r, Math.floor(x / V4), x % V4)}] = ${
            qShared(r, Math.floor(x / V4), x % V4)
          };`,
      )
    }`
    : `    // This lane's chunks of the block's query rows, pre-scaled into log2 units; missing rows 0.
    var qv = array<vec4<f32>, ${RP * E4}>();
${
      perRow((r, live) =>
        grid(CPL, V4, (i, j) => `      qv[${qi(r, i, j)}] = ${live(loadQ(i, j))};`)
      )
    }`;

  // A lane's (K vec4, query vec4) pairs of token u and row r, chunk by chunk.
  const keyQueryPairs = (u: number, r: number) =>
    Array.from({ length: CPL * V4 }, (_, x) => {
      const i = Math.floor(x / V4), j = x % V4;
      return [`kf${u}_${i}[${j}]`, `qv[${qi(r, i, j)}]`] as const;
    });
  const nans = (shape.nanSteps ?? false) && !half && !ints;
  const unpackK = (u: number) =>
    lines(
      CPL,
      (i) =>
        nans
          ? `      var kf${u}_${i} = unpack_kv_raw(k${u}_${i});`
          : `      let kf${u}_${i} = unpack_kv(k${u}_${i});`,
    );
  // Every token's K chunks, then (nanSteps) the step's one NaN-code test.
  const unpackAllK = `${lines(U, unpackK)}${
    nans ? `\n${nanTestWGSL(chunkNames("kf", "k", U, CPL))}` : ""
  }`;
  // int8 K by integer dot products: the high bytes' sum times 256 plus the low bytes' (at most
  // 2^14 per element before the shift by 8, so up to 512 dims per lane stay within an i32;
  // `intDots` allows no more).
  const intDotsWGSL = grid(U, RP, (u, r) => {
    const terms = (part: string) =>
      Array.from({ length: W4 }, (_, x) => {
        const i = Math.floor(x / V4), j = x % V4;
        return [`k${u}_${i}[${j}]`, `${part}[${r * W4 + x}]`];
      }).reduce(
        (acc, [k, q]) => `${acc ? `${acc} + ` : ""}dot4I8Packed(${k}, ${q})`,
        "",
      );
    return `      var d${u}_${r} = f32(((${terms("qhi")}) << 8u) + (${terms("qlo")})) * qsc[${r}];`;
  });
  const dots = ints
    ? intDotsWGSL
    : half
    ? `${
      bytes
        ? `${
          lines(U, (u) => lines(CPL, (i) => `      let kh${u}_${i} = unpack_kh(k${u}_${i});`))
        }\n`
        : ""
    }${
      grid(
        U,
        RP,
        (u, r) =>
          `${
            halfChain(
              `h${u}_${r}`,
              CPL,
              V4,
              (i, j) => [
                bytes ? `kh${u}_${i}[${j}]` : `k${u}_${i}.${j ? "hi" : "lo"}`,
                `qh[${hi(r, i, j)}]`,
              ],
            )
          }
      let hh${u}_${r} = h${u}_${r}.xy + h${u}_${r}.zw;
      var d${u}_${r} = f32(hh${u}_${r}.x) + f32(hh${u}_${r}.y);`,
      )
    }`
    : shared
    ? `${unpackAllK}
${grid(U, RP, (u, r) => `      var d${u}_${r} = 0.0;`)}
${
      grid(RP, CPL * V4, (r, x) => {
        const i = Math.floor(x / V4), j = x % V4;
        return `      {
        let qq = ${qShared(r, i, j)};
${
          lines(U, (u) =>
            shape.fmaDots
              ? `        d${u}_${r} = ${
                fmaNest(fmaTerms([[`kf${u}_${i}[${j}]`, "qq"]]), `d${u}_${r}`)
              };`
              : `        d${u}_${r} += dot(kf${u}_${i}[${j}], qq);`)
        }
      }`;
      })
    }`
    : `${nans ? `${unpackAllK}\n` : ""}${
      lines(U, (u) =>
        `${nans ? "" : `${unpackK(u)}\n`}${
          lines(RP, (r) =>
            shape.fmaDots
              ? fmaChain(`d${u}_${r}`, keyQueryPairs(u, r))
              : `      var d${u}_${r} = ${
                keyQueryPairs(u, r).map(([k, q]) => `dot(${k}, ${q})`).join(" + ")
              };`)
        }`)
    }`;
  return { workgroup, load, dots };
}
