/**
 * The end of a decode kernel's piece: merging the token groups' softmax states in group order
 * (in parallel over the output's elements, a few rows per round, where the groups' rows fit the
 * workgroup memory budget; one group after another otherwise), then writing the block's rows, as
 * the final output and LSE (direct pieces) or as a partial state (unnormalised output, max, sum)
 * for the merge kernel. A piece of the source `decodeKernelWGSL` splices together.
 *
 * @module
 */

import { grid, lines } from "./decode_step.ts";
import { sinkFinalWGSL } from "./variant_wgsl.ts";
import { directHalfWGSL } from "./io_wgsl.ts";
import { kernelLayout } from "./kernel_layout.ts";
import { halfMath, type KernelSpec, queryStaged } from "./kernel_spec.ts";

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
  /** Token groups in the workgroup. */
  readonly G: number;
  /**
   * Token groups added with subgroup shuffles before the merge through workgroup memory (1:
   * none); only every `SG`-th group then posts its state.
   */
  readonly SG: number;
  /** Workgroup memory the kernel declares besides the group merge's (bytes). */
  readonly usedBytes: number;
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
  /**
   * WGSL of a per-tensor V scale that multiplies the output (8-bit KV with `kvScales` `"tensor"`
   * or `"layer"`; absent: none).
   */
  readonly vScale?: string;
  /**
   * WGSL factor of the power of two the unpacking leaves out, appended to the V scale (e.g.
   * `" * 256.0"` for FP8 E4M3; default none).
   */
  readonly scaleFold?: string;
  /** The output buffer holds f16 (written packed in `u32`s). */
  readonly outHalf: boolean;
}

/** Workgroup memory the groups' posted rows may take at most (bytes). */
export const GROUP_MERGE_BYTES = 8192;

/** Workgroup memory a decode kernel may declare in all: WebGPU's default limit (bytes). */
export const WORKGROUP_BYTES_LIMIT = 16384;

/**
 * Rows of every group posted per round of the parallel group merge: the largest power of two
 * dividing the block's rows whose posts (`groups x rows x DV` floats) fit
 * {@linkcode GROUP_MERGE_BYTES} and, beside the kernel's other workgroup memory (`usedBytes`)
 * and the groups' sums, {@linkcode WORKGROUP_BYTES_LIMIT}; 0 where not even one row fits (the
 * merge then goes one group after another through `acc`).
 *
 * @example
 * ```ts
 * import { groupMergeRows } from "./decode_output.ts";
 * console.log(groupMergeRows(16, 4, 128, 2048), groupMergeRows(8, 4, 64, 1024)); // 1 4
 * console.log(groupMergeRows(16, 1, 128, 12000)); // 0
 * ```
 */
export function groupMergeRows(
  groups: number,
  rowsPerBlock: number,
  headDimV: number,
  usedBytes: number,
): number {
  const budget = Math.min(
    GROUP_MERGE_BYTES,
    WORKGROUP_BYTES_LIMIT - usedBytes - groups * rowsPerBlock * 4,
  );
  for (let rows = rowsPerBlock; rows >= 1; rows >>= 1) {
    if (rowsPerBlock % rows === 0 && groups * rows * headDimV * 4 <= budget) {
      return rows;
    }
  }
  return 0;
}

/**
 * Workgroup memory of the parallel group merge in bytes (the posted rows and the groups' sums),
 * 0 where {@linkcode groupMergeRows} is 0.
 *
 * @example
 * ```ts
 * import { groupMergeBytes } from "./decode_output.ts";
 * console.log(groupMergeBytes(16, 4, 128, 2048)); // 8448
 * ```
 */
export function groupMergeBytes(
  groups: number,
  rowsPerBlock: number,
  headDimV: number,
  usedBytes: number,
): number {
  const rows = groupMergeRows(groups, rowsPerBlock, headDimV, usedBytes);
  return rows === 0 ? 0 : groups * rows * headDimV * 4 + groups * rowsPerBlock * 4;
}

/**
 * The module-scope declarations of the parallel group merge (`red`: each group's posted rows;
 * `l_g`: each group's sums), empty where the merge goes one group after another.
 *
 * @example
 * ```ts
 * import { groupMergeWorkgroupWGSL } from "./decode_output.ts";
 * console.log(groupMergeWorkgroupWGSL(16, 4, 128, 2048).includes("var<workgroup> red")); // true
 * ```
 */
export function groupMergeWorkgroupWGSL(
  groups: number,
  rowsPerBlock: number,
  headDimV: number,
  usedBytes: number,
): string {
  const rows = groupMergeRows(groups, rowsPerBlock, headDimV, usedBytes);
  return rows === 0 ? "" : `
// Each group's rescaled output rows of one round of the group merge, and each group's sums.
var<workgroup> red: array<vec4<f32>, ${groups * rows * (headDimV / 4)}>;
var<workgroup> l_g: array<f32, ${groups * rowsPerBlock}>;`;
}

/**
 * The groups that post their state to workgroup memory: every group, or (after the shuffle
 * pre-merge) every `SG`-th, at slot `g / SG`. `count` and `slot` are WGSL expressions; `only`
 * wraps statements so that only posting groups run them.
 */
function postingGroups(shape: Pick<PieceOutputShape, "G" | "SG">): {
  count: string;
  slot: string;
  only: (body: string, indent: string) => string;
} {
  const { G, SG } = shape;
  if (SG === 1) return { count: "GROUPS", slot: "g", only: (body) => body };
  return {
    count: `${G / SG}u`,
    slot: `(g / ${SG}u)`,
    only: (body, indent) => `${indent}if (g % ${SG}u == 0u) {\n${body}\n${indent}}`,
  };
}

/** The statements that add the groups' rescaled states into `acc` and `l_sh`, in group order. */
function groupSumsWGSL(shape: PieceOutputShape): string {
  const { RB, RP, RS, DV, W, lanes, CPLV, V4, padV, row, oi } = shape;
  const G = shape.G / shape.SG; // the posting groups
  const { count: groups, slot: pg, only } = postingGroups(shape);
  const posting = (body: string) => only(body, "    ");
  const RR = groupMergeRows(G, RB, DV, shape.usedBytes);
  const DV4 = DV / 4;
  const guard = (i: number, stmt: string) =>
    padV && i === CPLV - 1 ? `if (lane + ${i * lanes}u < CHUNKS_V) { ${stmt} }` : stmt;
  if (RR === 0) {
    // One group after another: each adds its rows into `acc` and its sums into `l_sh`.
    return `    for (var gg = 0u; gg < ${groups}; gg++) {
      if (${pg} == gg${shape.SG > 1 ? ` && g % ${shape.SG}u == 0u` : ""}) {
${
      lines(RP, (r) =>
        grid(CPLV, V4, (i, j) => {
          const at = `${row(r)} * ${DV4}u + (lane + ${i * lanes}u) * ${V4}u + ${j}u`;
          const o = `o[${oi(r, i, j)}]`;
          return `        ${guard(i, `acc[${at}] = select(acc[${at}] + ${o}, ${o}, gg == 0u);`)}`;
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
    }`;
  }
  // In parallel: each round, every group posts `RR` of its rows into `red`, then each thread
  // adds one output vector over the groups in group order (the one-by-one merge's order, so the
  // sums are equal to the bit) into `acc`. Two barriers per round instead of one per group, and
  // the additions spread over the threads instead of one group's lanes at a time (at 4 x d128 the
  // one-by-one merge took about 10 us of a pass: bench/notes.md, session 20).
  const writes = (r: number, rr: string) =>
    grid(CPLV, V4, (i, j) => {
      const at = `(${pg} * ${RR}u + ${rr}) * ${DV4}u + (lane + ${i * lanes}u) * ${V4}u + ${j}u`;
      return `        ${guard(i, `red[${at}] = o[${oi(r, i, j)}];`)}`;
    });
  const post = (k: number) =>
    Array.from({ length: RP }, (_, r) => {
      if (RS === 1) {
        return r >= k * RR && r < (k + 1) * RR
          ? `      {\n${writes(r, `${r - k * RR}u`)}\n      }`
          : "";
      }
      return `      if (${row(r)} >= ${k * RR}u && ${row(r)} < ${(k + 1) * RR}u) {
${writes(r, `${row(r)} - ${k * RR}u`)}
      }`;
    }).filter((x) => x !== "").join("\n");
  const rounds = RB / RR;
  const lastSums = `
      if (lid < ${RB}u) {
        var s = l_g[lid];
        for (var gg = 1u; gg < ${groups}; gg++) { s += l_g[gg * ${RB}u + lid]; }
        l_sh[lid] = s;
      }`;
  return `${
    posting(`    if (lane == 0u) {
${lines(RP, (r) => `      l_g[${pg} * ${RB}u + ${row(r)}] = l[${r}];`)}
    }`)
  }
${
    lines(rounds, (k) =>
      `    {
${posting(post(k))}
      workgroupBarrier();
      for (var e = lid; e < ${RR * DV4}u; e += ${W}u) {
        var s = red[e];
        for (var gg = 1u; gg < ${groups}; gg++) { s += red[gg * ${RR * DV4}u + e]; }
        acc[${k * RR * DV4}u + e] = s;
      }${k === rounds - 1 ? lastSums : ""}
      workgroupBarrier();
    }`)
  }`;
}

/**
 * Merges the token groups' states (`m`, `l`, `o`) and writes the block's rows: the output and
 * LSE of a direct piece, or the partial state of a piece with a slot.
 *
 * @example
 * ```ts
 * import { pieceOutputWGSL } from "./decode_output.ts";
 * const wgsl = pieceOutputWGSL({
 *   RB: 1, RP: 1, RS: 1, DV: 64, W: 64, lanes: 8, G: 8, SG: 1, usedBytes: 512, CPLV: 1, V4: 2,
 *   padV: false,
 *   row: (r) => `${r}u`, oi: (r, i, j) => r * 2 + i * 2 + j,
 *   sinks: false, outHalf: false,
 * });
 * console.log(wgsl.includes("lse_out")); // true
 * ```
 */
export function pieceOutputWGSL(shape: PieceOutputShape): string {
  const { RB, RP, RS, W, CPLV, V4, row, oi } = shape;
  // Sinks join the denominator of the rows this kernel finishes itself (direct pieces).
  const fin = shape.sinks
    ? { l: "fin_l", m: "fin_m", scaled: (v: string, r: string) => `${v} * fin_c[${r}]` }
    : { l: "l_sh", m: "mm", scaled: (v: string) => v };
  // A per-tensor V scale multiplies the finished output (or partial state: it is linear).
  const vScaleMul = shape.vScale ? ` * (${shape.vScale}${shape.scaleFold ?? ""})` : "";
  const { SG } = shape;
  // Shuffle distances between the lanes of the groups a subgroup adds first (1, 2, .. SG / 2
  // groups apart), and the max each group posts: its own, or its subgroup's.
  const dists = Array.from({ length: Math.log2(SG) }, (_, k) => shape.lanes * RS * (1 << k));
  const posted = SG > 1 ? (r: number) => `mg[${r}]` : (r: number) => `m[${r}]`;
  const subgroupMax = SG > 1
    ? `    var mg = array<f32, ${RP}>();
${
      lines(RP, (r) =>
        `    mg[${r}] = m[${r}];
${
          dists.map((d) => `    mg[${r}] = max(mg[${r}], subgroupShuffleXor(mg[${r}], ${d}u));`)
            .join("\n")
        }`)
    }
`
    : "";
  const groups = postingGroups(shape);
  const postMax = (r: number) =>
    SG > 1
      ? `      if (g % ${SG}u == 0u) { m_sh[${groups.slot} * RP + ${row(r)}] = ${posted(r)}; }`
      : `      m_sh[g * RP + ${row(r)}] = ${posted(r)};`;
  // The groups of a subgroup add their rescaled states with shuffles, in a fixed tree.
  const subgroupSums = SG > 1
    ? `
    // The ${SG} groups of a subgroup add their states first (a fixed tree of shuffles).
${
      dists.map((d) =>
        lines(RP, (r) =>
          `    l[${r}] += subgroupShuffleXor(l[${r}], ${d}u);
${
            grid(CPLV, V4, (i, j) =>
              `    o[${oi(r, i, j)}] += subgroupShuffleXor(o[${oi(r, i, j)}], ${d}u);`)
          }`)
      ).join("\n")
    }
`
    : "";
  return `    // Merge the groups' states: a common max, then the rescaled sums in group order.
    workgroupBarrier();
${subgroupMax}    if (lane == 0u) {
${
    lines(RP, (r) =>
      `${postMax(r)}
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
    for (var gg = 0u; gg < ${groups.count}; gg++) { mm[${r}] = max(mm[${r}], m_sh[gg * RP + ${r}u]); }`)
  }
${
    lines(RP, (r) =>
      `    {
      let sc = exp2(m[${r}] - mm[${RS > 1 ? `rs0 + ${r}u` : r}]);
      l[${r}] *= sc;
${grid(CPLV, V4, (i, j) => `      o[${oi(r, i, j)}] *= sc;`)}
    }`)
  }
${subgroupSums}${groupSumsWGSL(shape)}

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

/** Bytes of workgroup memory the decode kernel declares besides its group merge's. */
export function baseWorkgroupBytes(spec: KernelSpec): number {
  const l = kernelLayout(spec);
  const acc = spec.rowsPerBlock * (spec.headDimV ?? spec.headDim) * 4;
  const maxima = l.groups * spec.rowsPerBlock * 4 + 2 * spec.rowsPerBlock * 4;
  const entries = l.groups * l.rowSets * l.unroll * l.rowsPerThread;
  const exchange = l.subgroups || l.lanes === 1 ? 0 : 2 * entries * (l.lanes + 2) * 4;
  const query = (spec.queryShared && !halfMath(spec)) || queryStaged(spec)
    ? spec.rowsPerBlock * l.chunksPerLane * l.lanes * (spec.headDim / l.chunks) * 4
    : 0;
  return acc + maxima + exchange + query;
}

/** Bytes of workgroup memory the decode kernel declares. */
export function decodeWorkgroupBytes(spec: KernelSpec): number {
  const base = baseWorkgroupBytes(spec);
  const { groups, shuffleGroups } = kernelLayout(spec);
  // Only every `shuffleGroups`-th group posts its rows (the others were added into it).
  const posting = groups / shuffleGroups;
  return base + groupMergeBytes(posting, spec.rowsPerBlock, spec.headDimV ?? spec.headDim, base);
}
