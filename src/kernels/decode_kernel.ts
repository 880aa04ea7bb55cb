/**
 * The decode kernel: each workgroup walks its run of pieces from the schedule table and writes,
 * per piece, either the final output or a partial state (unnormalised output, max, sum).
 *
 * Layout (see {@linkcode kernelLayout}): `lanes` threads share a token. Each lane loads its
 * 16-byte chunks of the token's K and V rows, so the lanes of a group read whole rows with
 * consecutive addresses (coalesced), and every group loads `unroll` tokens' K and V before it
 * computes, to keep many bytes in flight. A lane dots its K chunks with the query rows it holds
 * in registers; the lanes' partial sums are added with subgroup shuffles (a butterfly, so every
 * lane gets the same bits) or through workgroup memory. Each token group keeps its own online
 * softmax state (max, sum, output slice), so a step needs no workgroup-wide max; the groups'
 * states are merged at the end of a piece with the softmax rescale, in group order, so results
 * never depend on timing.
 *
 * This file resolves a spec's choices and writes the entry point; the module scope before it
 * (header line, bindings, constants, workgroup memory, helper functions) is
 * `decode_preamble.ts`'s.
 *
 * @module
 */

import {
  earlyLoads,
  halfMath,
  halfSteps,
  halfValues,
  intDots,
  type KernelSpec,
  queryStaged,
  rowScatter,
} from "./kernel_spec.ts";
import { elementsPerLoad, kernelLayout, kvLoadDim } from "./kernel_layout.ts";
import { blockLimitsWGSL, scatterRowWGSL, scatterStepWGSL } from "./decode_scatter.ts";
import { kernelEntryWGSL, PIECE_LOOP_WGSL } from "./kernel_params.ts";
import { chunkNames, kvNanStepsWGSL, nanTestWGSL } from "./kv_load.ts";
import { grid, halfValuesWGSL, laneReduceWGSL, lines, softmaxStepWGSL } from "./decode_step.ts";
import { stepLoadsWGSL } from "./decode_loads.ts";
import { baseWorkgroupBytes, pieceOutputWGSL } from "./decode_output.ts";
import { queryRowsWGSL } from "./decode_query.ts";
import { decodePreambleWGSL } from "./decode_preamble.ts";
import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import {
  VARIANT_WGSL,
  variantLogitsWGSL,
  variantRowsWGSL,
  variantVisibleWGSL,
} from "./variant_wgsl.ts";
import { ioWGSL } from "./io_wgsl.ts";

/** Options of the generated source that do not change the kernel (not part of the cache key). */
export interface WGSLOptions {
  /** Emit `enable subgroups;` (Tint/Dawn needs it; Naga/Deno rejects it). */
  enableDirective?: boolean;
}

/**
 * Generates the decode kernel's WGSL for a spec.
 *
 * @example
 * ```ts
 * import { decodeKernelWGSL } from "./decode_kernel.ts";
 * const wgsl = decodeKernelWGSL({
 *   headDim: 128, kvDtype: "f16", tileTokens: 64, rowsPerBlock: 4, workgroupSize: 128,
 * });
 * console.log(wgsl.includes("@compute")); // true
 * ```
 */
export function decodeKernelWGSL(spec: KernelSpec, options: WGSLOptions = {}): string {
  const { headDim: D, rowsPerBlock: RB, workgroupSize: W } = spec;
  const L = kernelLayout(spec);
  const variant = VARIANT_WGSL.causal;
  const flags = spec.variant ?? {};
  const { lanes, chunksPerLane: CPL, chunksPerLaneV: CPLV, groups: G, unroll: U } = L;
  // Rows this thread holds (all the block's rows unless row sets split them among lane groups).
  const RP = L.rowsPerThread;
  const RS = L.rowSets;
  // The block row of this thread's row r: row sets hold consecutive rows from `rs0`.
  const row = (r: number) => (RS > 1 ? `(rs0 + ${r}u)` : `${r}u`);
  const DV = spec.headDimV ?? D; // V and output rows (MLA: shorter than K's)
  // K and V rows load the same chunk size (8 bytes where an 8-bit row is not 16-byte aligned).
  const loadDim = kvLoadDim(D, spec.headDimV);
  const V4 = elementsPerLoad(spec.kvDtype, loadDim) / 4; // vec4<f32> per chunk
  const E4V = CPLV * V4; // vec4<f32> per lane per row of o
  // 8-bit KV: stored values times a scale, per tensor (params) or per token and KV head.
  const scaled = KV_DTYPE_INFO[spec.kvDtype].scaled;
  const tokenScales = scaled && spec.kvScales === "token";
  // Per-tensor scales: from the params, or (one pair per layer of a paged cache, `"layer"`) from
  // the first entry of the scale table.
  const tensorScale = (c: "x" | "y") =>
    spec.kvScales === "layer"
      ? `kv_scales[0].${c}`
      : c === "x"
      ? "params.k_scale"
      : "params.v_scale";
  // The power of two the unpacking leaves out (FP8 E4M3), put back with the scales.
  const unpackScale = KV_DTYPE_INFO[spec.kvDtype].unpackScale ?? 1;
  const fold = unpackScale === 1 ? "" : ` * ${unpackScale.toFixed(1)}`;
  const oi = (r: number, i: number, j: number) => r * E4V + i * V4 + j;
  // V rows of another length (MLA) are addressed on their own; otherwise K's row serves both.
  const splitV = DV !== D;
  // Lanes that do not divide a row's chunks (MLA's 72 K chunks over 32 lanes): the last round of
  // chunks is partial. A lane past the row loads the row's last chunk again (`kpad`/`vpad` keep
  // its address in the row) and holds a zero query there, so its products vanish, and it never
  // writes its output chunk.
  const padK = L.chunks % lanes !== 0;
  const padV = L.chunksV % lanes !== 0;
  const kOff = (i: number) => (padK && i === CPL - 1 ? " + kpad" : ` + ${i * lanes}u`);
  const vOff = (i: number) => (padV && i === CPLV - 1 ? " + vpad" : ` + ${i * lanes}u`);

  const half = halfMath(spec); // packed f16 arithmetic (the kernel enables f16)
  // int8 K by integer dot products (with `halfMath` too: they beat f16 halves there).
  const ints = intDots(spec);
  const halfK = half && !ints; // packed f16 dot products: f16 K chunks as `KHalves`
  const halfBytes = halfK && spec.kvDtype !== "f16"; // 8-bit K unpacked by `unpack_kh`
  // Packed f16 weighted sums of V (8-bit codes; f16 V where asked), added into the f32 state.
  const halfV = halfValues(spec);
  // f16 V's halves enter the sums as stored; 8-bit codes as `unpack_kh` orders them.
  const halfV16 = halfV && spec.kvDtype === "f16";
  const halfSwizzle = halfV16 ? "" : ".xzyw";
  // FP8 E4M3 chunks unpacked to f32 without a NaN test per word: one test per step for K's, one
  // for V's (`nanSteps`).
  const nanSteps = (spec.nanSteps ?? false) && kvNanStepsWGSL(spec.kvDtype, loadDim) !== "";
  const vPerToken = spec.vPerToken ?? false;
  const nanV = nanSteps && !halfV && !vPerToken;
  const sums = halfV ? halfValuesWGSL(RP * E4V, halfSteps(spec), halfSwizzle) : undefined;
  const usedBytes = baseWorkgroupBytes(spec); // workgroup memory besides the group merge's
  const { loads, prefetchInit, afterDots, takeV, afterV, useEarly } = stepLoadsWGSL({
    G,
    U,
    CPL,
    CPLV,
    tokenScales,
    splitV,
    paged: spec.paged ?? false,
    runs: spec.tokenRuns ?? false,
    pageRuns: spec.pageRuns ?? false,
    alignedRuns: spec.alignedRuns ?? false,
    pageSlices: spec.pageSlices ?? 0,
    kOff,
    vOff,
    prefetch: spec.prefetch ?? false,
    early: earlyLoads(spec),
    earlyPages: spec.earlyPages ?? true,
    baseAhead: spec.baseAhead ?? false,
    halfChunks: { k: halfK && !halfBytes, v: halfV16 },
  });
  const fastSteps = spec.fastSteps ?? true;
  const unpackV = (u: number, i: number) =>
    halfV16
      ? `      let vf${u}_${i} = array<vec4<f16>, 2>(v${u}_${i}.lo, v${u}_${i}.hi);`
      : halfV
      ? `      let vf${u}_${i} = unpack_kh(v${u}_${i});`
      : nanV
      ? `      var vf${u}_${i} = unpack_kv_raw(v${u}_${i});`
      : `      let vf${u}_${i} = unpack_kv(v${u}_${i});`;
  const shape = {
    RP,
    U,
    CPL,
    V4,
    lanes,
    W,
    subgroups: L.subgroups,
    qi: oi,
    visible: variantVisibleWGSL(flags),
    visibleEager: variantVisibleWGSL(flags, true),
    halfValues: halfV,
    halfSwizzle,
    // Per-token V scales join each token's weights (a multiply per row and token instead of
    // one per element of its unpacked V).
    ...(tokenScales ? { vScale: (u: number) => `sc${u}.y${fold}` } : {}),
  };
  // The softmax updates the output state: V's chunks, unpacked before it or (vPerToken) one
  // token at a time inside it.
  const unpackToken = (u: number) =>
    lines(CPLV, (i) => unpackV(u, i)).replaceAll(/^ {6}/gm, "        ");
  // Row scatter: each lane adds and weighs one row's scores (src/kernels/decode_scatter.ts).
  const scatter = rowScatter(spec)
    ? scatterStepWGSL({ ...shape, CPL: CPLV }, vPerToken ? unpackToken : undefined)
    : undefined;
  const reduce = scatter?.reduce ?? laneReduceWGSL(shape);
  // Per-token scales: K's scales each token's whole score, after the lanes' sums (a product
  // before them lets a compiler fuse each lane's own product into the add of its partner's, so
  // the lanes of a pair hold different sums), V's each token's weights (`vScale` above).
  const scaleScores = !tokenScales
    ? ""
    : `\n${
      scatter
        ? lines(U, (u) => `      own${u} *= sc${u}.x${fold};`)
        : grid(U, RP, (u, r) => `      d${u}_${r} *= sc${u}.x${fold};`)
    }`;
  // Row scatter shuffles inside the step's two paths: with row sets, every row of the block
  // decides between them (src/kernels/decode_scatter.ts).
  const blockRows = fastSteps && scatter !== undefined && RS > 1;
  const { fast, softmax } = scatter ?? softmaxStepWGSL(
    { ...shape, CPL: CPLV },
    vPerToken ? unpackToken : undefined,
  );

  const logits = variantLogitsWGSL(flags, U, RP);
  const rowsState = variantRowsWGSL(flags, RP, row);
  // A per-tensor K scale joins the query's prescale.
  const qScale = scaled && !tokenScales
    ? `(params.scale_log2 * ${tensorScale("x")}${fold})`
    : "params.scale_log2";
  const query = queryRowsWGSL({
    RB,
    RP,
    U,
    CPL,
    V4,
    lanes,
    W,
    padK,
    // Row scatter: slot r of the thread's query rows holds row r ^ rho.
    row: scatter ? scatterRowWGSL(lanes, RP, RS > 1 ? "rs0 + " : "").row : row,
    qScale,
    half: halfK,
    halfBytes,
    intDots: ints,
    shared: spec.queryShared ?? false,
    staged: queryStaged(spec),
    fmaDots: spec.fmaDots ?? false,
    nanSteps: nanSteps && !halfK,
  });
  const dots = query.dots;
  const io = ioWGSL(spec);

  return `${
    decodePreambleWGSL(spec, {
      layout: L,
      enableDirective: options.enableDirective ?? false,
      halfK,
      halfBytes,
      halfV16,
      nanSteps,
      tokenScales,
      queryWorkgroup: query.workgroup,
    })
  }

${kernelEntryWGSL(W)}
  let lane = lid % LANES;
  // Lane group (one per token and row set), token group, and this row set's first block row.
  let lg = lid / LANES;
  let g = lg / ${RS}u;${RS > 1 ? `\n  let rs0 = (lg % ${RS}u) * ${RP}u;` : ""}${
    scatter ? `\n  ${scatterRowWGSL(lanes, RP).rho}` : ""
  }${tokenScales ? "\n  let n_kv = params.num_heads / params.group_size;" : ""}${
    padK ? `\n  let kpad = min(lane + ${(CPL - 1) * lanes}u, CHUNKS - 1u) - lane;` : ""
  }${padV ? `\n  let vpad = min(lane + ${(CPLV - 1) * lanes}u, CHUNKS_V - 1u) - lane;` : ""}
${PIECE_LOOP_WGSL}

${query.load}
    // Tokens row r may see: causal within the last qLen tokens, and inside this piece.
    var lim = array<u32, ${RP}>();
${
    lines(RP, (r) =>
      `    lim[${r}] = select(0u, min(${
        variant.visible("seq_len", "q_len", `(r0 + ${row(r)}) % q_len`)
      }, tok_end), ${row(r)} < n_rows);`)
  }
${
    fastSteps
      ? `    // Tokens every row of the block may see.
    var lim_all = tok_end;
${
        blockRows ? "" : lines(
          RP,
          (r) => `    lim_all = select(lim_all, min(lim_all, lim[${r}]), ${row(r)} < n_rows);`,
        )
      }`
      : ""
  }${rowsState ? `\n${rowsState}` : ""}${
    blockRows ? `\n${blockLimitsWGSL(RB, variant, flags.window ?? false)}` : ""
  }
    var m = array<f32, ${RP}>();
    // Rows that saw a NaN or +inf score: their output is NaN, as in the reference. Tracked with
    // integer bits, since GPU compilers may assume floats are never NaN: per score on masked
    // steps, and on the sum l (which such a score makes NaN) once per piece.
    var bad = array<u32, ${RP}>();
    if (lid < RP) {
      atomicStore(&bad_sh[lid], 0u);
    }
    var l = array<f32, ${RP}>();
    var o = array<vec4<f32>, ${RP * E4V}>();${sums ? `\n${sums.state}` : ""}
${lines(RP, (r) => `    m[${r}] = NEG;`)}${
    scatter
      ? `
${scatter.init}`
      : ""
  }
${prefetchInit}

    for (var s0 = tok_begin; s0 < tok_end; s0 += STEP) {
${loads}
${dots}${afterDots ? `\n${afterDots}` : ""}
${reduce}${scaleScores}${
    variant.logit ? `\n${grid(U, RP, (u, r) => `      ${variant.logit!(`d${u}_${r}`)}`)}` : ""
  }${logits ? `\n${logits}` : ""}${takeV ? `\n${takeV}` : ""}
${vPerToken ? "" : lines(U, (u) => lines(CPLV, (i) => unpackV(u, i)))}${
    nanV ? `\n${nanTestWGSL(chunkNames("vf", "v", U, CPLV))}` : ""
  }${
    useEarly
      ? `
${useEarly}`
      : ""
  }
${
    fastSteps
      ? `      if (s0 + STEP <= lim_all${flags.window ? " && s0 >= lo_all" : ""}) {
${fast}
      } else {
${softmax}
      }`
      : softmax
  }${afterV ? `\n${afterV}` : ""}${sums ? `\n${sums.afterStep}` : ""}
    }${sums ? `\n${sums.afterLoop}` : ""}${scatter ? `\n${scatter.finish}` : ""}
${fastSteps ? lines(RP, (r) => `    bad[${r}] |= select(0u, 1u, poisoned(l[${r}]));`) : ""}

${
    pieceOutputWGSL({
      RB,
      RP,
      RS,
      DV,
      W,
      lanes,
      G,
      SG: L.shuffleGroups,
      usedBytes,
      CPLV,
      V4,
      padV,
      row,
      oi,
      sinks: flags.sinks ?? false,
      ...(scaled && !tokenScales ? { vScale: tensorScale("y") } : {}),
      scaleFold: fold,
      outHalf: io.outHalf,
    })
  }
    workgroupBarrier();
  }
}
`;
}
