/**
 * The kernel a plan gets on a device: the kernel table's choice for its block shape, capped by
 * the device's subgroups and the caller's tuning, and how a dispatch's workgroups are laid out.
 *
 * @module
 */

import {
  earlyLoads,
  halfMath,
  halfValues,
  intDots,
  type KernelSpec,
  type KVScaleSource,
} from "../kernels/kernel_spec.ts";
import {
  DEFAULT_MAX_LANES,
  elementsPerLoad,
  kernelLayout,
  kvLoadDim,
} from "../kernels/kernel_layout.ts";
import { KERNEL_TABLE, kernelChoiceKey } from "../kernels/kernel_table.ts";
import type { KernelCaps } from "./gpu_runtime.ts";
import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { Plan } from "../plan/plan.ts";
import { variantFlags } from "../core/variant_options.ts";
import { TILED_THREADS, tiledWorkgroupBytes } from "../kernels/tiled_layout.ts";
import { matrixBlocksFit, matrixUnitsFit } from "../plan/tiles.ts";
import { MATRIX_MAX_HEAD_DIM, MATRIX_THREADS, matrixLayout } from "../kernels/matrix_layout.ts";

import type { KernelTuning } from "./kernel_tuning.ts";

/** Splits a workgroup count over x and y when it exceeds the per-dimension limit. */
export function dispatchSize(count: number, maxPerDim: number): [number, number] {
  if (count <= maxPerDim) return [count, 1];
  const y = Math.ceil(count / maxPerDim);
  return [Math.ceil(count / y), y];
}

/**
 * The kernel specialisation a plan needs on a device: lanes per token up to 16 and, with
 * subgroup shuffles, at most the adapter's smallest subgroup. `kvScales`: where 8-bit K/V
 * scales come from (one per tensor, or one per token and KV head), for the choices that depend
 * on it.
 */
export function kernelSpec(
  plan: {
    problem: Pick<Plan["problem"], "headDim" | "kvDtype" | "variant"> & {
      headDimV?: number;
      vFromK?: boolean;
    };
    tiles: Plan["tiles"];
    kv?: Plan["kv"];
  },
  caps: KernelCaps = { subgroups: false, subgroupMinSize: 0 },
  tuning: KernelTuning = {},
  paged = false,
  kvScales?: KVScaleSource,
): KernelSpec {
  const { headDim, kvDtype } = plan.problem;
  const headDimV = plan.problem.headDimV ?? headDim;
  const { tileTokens, rowsPerBlock, workgroupSize } = plan.tiles;
  const scales = kvScales === undefined ? {} : { kvScales };
  // Blocks cut for the matrix kernel (`TileOptions.matrixUnits`, which the backends set where the
  // device has it) say so: at MLA's head dims the tiled kernel's blocks have as many rows.
  const matrix = rowsPerBlock >= 16 && matrixUnitsFit(headDim, headDimV, kvDtype) &&
    (plan.tiles.matrixUnits === true || headDim <= MATRIX_MAX_HEAD_DIM);
  if (!matrix && rowsPerBlock >= 16 && matrixBlocksFit(headDim, headDimV, kvDtype)) {
    return { ...tiledSpec(plan, caps, paged), ...scales };
  }
  // Blocks of 16+ rows at head dims up to 256 come only from plans cut for the matrix kernel.
  if (matrix) {
    if (!matrixUnitsOn(caps)) {
      throw new RangeError(
        `kernel choice: blocks of ${rowsPerBlock} rows at head dim ${headDim} need the matrix ` +
          `kernel, which this device lacks (KernelCaps.subgroupMatrix)`,
      );
    }
    return { ...matrixSpec(plan, paged), ...scales };
  }
  const load = elementsPerLoad(kvDtype, kvLoadDim(headDim, headDimV));
  const chunks = headDim / load;
  const chunksV = headDimV / load;
  const subgroups = caps.subgroups && tuning.subgroups !== false;
  const choiceKey = kernelChoiceKey(KERNEL_TABLE, headDim, rowsPerBlock, kvDtype);
  const choice = KERNEL_TABLE[choiceKey];
  // An "8-bit" entry was picked for 8-bit rows: its unroll is taken as it stands.
  const eightBitEntry = choiceKey.endsWith(" 8-bit");
  // 4-row FP8 E4M3 kernels on the f32 path take token runs, dense and paged alike (the same
  // token order, so paged keeps dense's bits): paged, where pages hold whole runs, a group then
  // reads one page-table entry per step, with early loads. At per-tensor scales the paged kernel
  // came within 1.7-2.4% of the dense default at GQA 32/8 32k-512k on the H200 (from 5.1-5.4%
  // with a page-table entry per slice), with a scale per token (the paged cache's default) 1.9-3.6%
  // faster than with slices; the dense ones were 0.2-1.2% and 0.3-0.7% slower (session 39). (Not
  // MLA's wide rows, which were not measured with runs.)
  const e4m3Runs = kvDtype === "fp8e4m3" && rowsPerBlock === 4 && headDimV === headDim &&
    !choice.padded && !(tuning.halfMath && caps.shaderF16) && tuning.nanSteps !== false;
  let cap = Math.min(Math.max(DEFAULT_MAX_LANES, choice.lanes), workgroupSize, choice.lanes);
  if (subgroups) cap = Math.min(cap, caps.subgroupMinSize);
  let lanes = tuning.lanes ?? 1;
  if (tuning.lanes === undefined) {
    const fits = (n: number) =>
      choice.padded ? n <= Math.max(chunks, chunksV) : chunks % n === 0 && chunksV % n === 0;
    while (lanes * 2 <= cap && fits(lanes * 2)) lanes *= 2;
  } else if (
    !choice.padded && Number.isInteger(tuning.lanes) && tuning.lanes > 1 &&
    (chunks % tuning.lanes !== 0 || chunksV % tuning.lanes !== 0)
  ) {
    // A device-wide tuning meets every head dim: shorter rows take the most lanes dividing them.
    lanes = 1;
    while (lanes * 2 <= tuning.lanes && chunks % (lanes * 2) === 0 && chunksV % (lanes * 2) === 0) {
      lanes *= 2;
    }
  }
  const prefetch = tuning.prefetch ?? choice.prefetch ?? true;
  const spec: KernelSpec = {
    headDim,
    ...dimsV(plan.problem),
    kvDtype,
    tileTokens,
    rowsPerBlock,
    workgroupSize,
    lanes,
    // The table's unroll goes with its prefetch choice; without prefetch (asked for by the
    // tuning only) twice as many tokens per step keep as many bytes in flight.
    // 8-bit rows have half the chunks of the f16 rows the table was tuned on: twice the tokens
    // per step keep as many bytes in flight per lane (unless the class has its own 8-bit entry),
    // where the tile holds such a step (kernelLayout caps it) and the thread's registers hold
    // it (`eightBitUnroll`). 4-row d128 blocks in 64-token tiles keep f16's unroll: given
    // 128-token tiles, the H200's driver spills their unroll 8 (43-51% slower, session 29), so
    // the default tiles stay.
    unroll: tuning.unroll ?? Math.max(
      1,
      (prefetch || choice.prefetch === false ? choice.unroll : 2 * choice.unroll) *
        (KV_DTYPE_INFO[kvDtype].bytes === 1 && !eightBitEntry
          ? choice.padded
            ? 2
            : eightBitUnroll(rowsPerBlock, rowChoices(tuning, choice).rowSets ?? 1, lanes, load, {
              chunks,
              chunksV,
            })
          : 1),
    ),
    subgroups: subgroups && lanes > 1 && lanes <= caps.subgroupMinSize,
    paged,
    ...(paged && plan.kv?.kind === "paged" && plan.kv.layout === "HND"
      ? { kvLayout: "HND" as const }
      : {}),
    prefetch,
    ...(tuning.fastSteps === false ? { fastSteps: false } : {}),
    ...(tuning.fmaDots !== false ? { fmaDots: true } : {}),
    ...(plan.problem.variant === undefined ? {} : variantSpec(plan.problem.variant)),
    ...rowChoices(tuning, choice),
    ...((tuning.queryShared ?? choice.queryShared) ? { queryShared: true } : {}),
    ...((tuning.tokenRuns ?? (choice.tokenRuns || e4m3Runs)) ? { tokenRuns: true } : {}),
    ...((tuning.vPerToken ?? choice.vPerToken) ? { vPerToken: true } : {}),
    ...((tuning.queryStaged ?? choice.queryStaged) ? { queryStaged: true } : {}),
    ...((tuning.rowScatter ?? choice.rowScatter) ? { rowScatter: true } : {}),
    ...(tuning.intDots !== false && kvDtype === "int8" ? { intDots: true } : {}),
    ...(tuning.halfMath && caps.shaderF16 &&
        (kvDtype === "f16" || KV_DTYPE_INFO[kvDtype].wgslUnpackHalf !== undefined)
      ? {
        halfMath: true,
        ...(tuning.halfSteps === undefined ? {} : { halfSteps: tuning.halfSteps }),
        ...(tuning.halfValues === undefined ? {} : { halfValues: tuning.halfValues }),
      }
      : {}),
  };
  // As many token groups as the smallest subgroup holds are added with shuffles first.
  const layout = kernelLayout(spec);
  // Runs of tokens in pages that hold them: two page-table reads per group and step (one where
  // no run crosses a page, below).
  const pageRuns = spec.tokenRuns === true && paged && prefetch !== false &&
    plan.kv?.kind === "paged" && plan.kv.pageSize >= layout.unroll;
  // Runs begin at a multiple of the unroll (pieces begin at a tile): where pages are multiples
  // of it too, a run never crosses a page, and one page-table entry per group and step serves.
  const alignedRuns = pageRuns && tuning.alignedRuns !== false && plan.kv?.kind === "paged" &&
    plan.kv.pageSize % layout.unroll === 0 && tileTokens % layout.unroll === 0;
  // Page slices: where pages and tiles hold whole slices of the step's token groups (pieces
  // begin at a tile), each slice's page entry and first row are the workgroup's, not a token's.
  // On by default for 8-bit K/V, whose loops are bound by their arithmetic: paged int8 came
  // within 0.8-4.5% of dense (1.7-7.9% with a page read per token), E4M3 with per-token scales
  // within 1.1%, E5M2 MHA 0.5% under, on the H200 (session 36); f16's paged kernels, bound by
  // their reads, were 0-1.5% slower with slices.
  const slicesWanted = tuning.pageSlices ?? KV_DTYPE_INFO[kvDtype].scaled;
  const pageSlices = slicesWanted && paged && prefetch !== false && !pageRuns &&
      spec.tokenRuns !== true && headDimV === headDim && plan.kv?.kind === "paged" &&
      plan.kv.pageSize % layout.groups === 0 && tileTokens % layout.groups === 0
    ? plan.kv.pageSize / layout.groups
    : 0;
  const perSubgroup = layout.subgroups
    ? Math.min(
      layout.groups,
      Math.floor(caps.subgroupMinSize / (layout.lanes * layout.rowSets)),
      tuning.shuffleGroups ?? Infinity,
    )
    : 1;
  // int8 keys by integer dot products leave the registers for the next step's words to be
  // issued early (session 34), and so do the 4-row 8-bit kernels with per-token scales, whose
  // scale pairs and page-table entries go early with them (session 35); f16 kernels spill with
  // them (session 28), and E4M3 with per-tensor scales, whose loads are at the top already, was
  // slower.
  // Packed f16 keys (`halfMath` over f16 KV) hold their query rows in half the registers, and
  // take early loads too (session 35, 4- and 8-row blocks).
  const halfKeys = halfMath(spec) && kvDtype === "f16" && spec.rowsPerBlock >= 4;
  // FP8 E4M3 unpacked to f32 (keys without `halfMath`, or V without packed f16 sums): one NaN
  // test per step instead of one per word, by default on blocks of 4 rows or more (4 rows: 2-4.5%
  // faster at per-tensor scales, 5-10% with a scale per token, session 37; 8 rows at unroll 4: 7-8%
  // and 20%, session 58), 1-row paged ones (2%) and 1-row dense ones
  // at per-tensor scales with their rows' base read ahead (below); alone, 1-row dense ones were
  // 6% slower (their loads sank to the loop's end).
  const rows = spec.rowsPerBlock;
  const e4m3 = kvDtype === "fp8e4m3";
  const nanSteps = (tuning.nanSteps ??
    (e4m3 && (rows >= 4 || (rows === 1 && (paged || kvScales !== "token"))))) &&
    e4m3 && (!halfMath(spec) || (!halfValues(spec) && spec.vPerToken !== true));
  // E4M3 keys tested per step (4- and 1-row blocks) take early loads at per-tensor scales: paged
  // with slices or token runs, the 4-row kernel's page-table entries left out of the test (with
  // them, 4-row paged runs were 1.9-4.0% slower, session 39), 1-row ones with them, and dense
  // ones with their rows' base read a step ahead (`baseAhead`; 4-row ones were
  // 4% slower with early loads without it, with it 11-13% faster, session 37; 1-row ones, MHA
  // b1 h32 128k, 0.3788 -> 0.3233 ms at their class's grid, session 38). With a scale per token
  // they were 8-10% slower with early loads, dense or paged (session 37).
  const nanKeys = nanSteps && !halfMath(spec) && (rows === 4 || rows === 1);
  const baseAhead = !paged && (tuning.baseAhead ??
    (nanKeys && kvScales !== "token" && tuning.earlyLoads !== false));
  // (Before that, page slices sank the per-tensor E4M3 kernel's loads to the end of its loop, 12%
  // slower, session 36, and early loads brought them back.)
  const early = tuning.earlyLoads ??
    (nanKeys
      ? pageRuns || (kvScales !== "token" && (pageSlices > 0 || baseAhead))
      : halfKeys || (rows === 4 &&
        (kvScales === "token" || pageSlices > 0 ? kvDtype === "int8" || e4m3 : intDots(spec))));
  // Paged int8 at per-tensor scales with slices: its page-table entries out of the early test
  // took it from 1.004-1.051x of dense to 0.990-1.001x (session 36; E4M3 then was 0.1-2.1%
  // slower), and so does 4-row E4M3 with its keys tested per step, with slices or token runs.
  const earlyPages = tuning.earlyPages ?? !((pageSlices > 0 || pageRuns) && kvScales !== "token" &&
    (kvDtype === "int8" || (nanKeys && rows === 4)));
  return {
    ...spec,
    ...scales,
    ...(pageRuns ? { pageRuns: true } : {}),
    ...(alignedRuns ? { alignedRuns: true } : {}),
    ...(pageSlices > 0 ? { pageSlices } : {}),
    ...(perSubgroup > 1 ? { shuffleGroups: perSubgroup } : {}),
    ...(early && earlyLoads({ ...spec, earlyLoads: true }) ? { earlyLoads: true } : {}),
    ...(!earlyPages && paged ? { earlyPages: false } : {}),
    ...(nanSteps ? { nanSteps: true } : {}),
    ...(baseAhead && early && earlyLoads({ ...spec, earlyLoads: true }) ? { baseAhead: true } : {}),
  };
}

/**
 * A spec's V fields: `headDimV` where V's rows have their own length, and `vFromK` where they
 * are the first dims of K's (with rows as long as K's, V is K and needs no flag).
 */
function dimsV(
  problem: { headDim: number; headDimV?: number; vFromK?: boolean },
): Pick<KernelSpec, "headDimV" | "vFromK"> {
  const headDimV = problem.headDimV ?? problem.headDim;
  if (headDimV === problem.headDim) return {};
  return problem.vFromK ? { headDimV, vFromK: true } : { headDimV };
}

/**
 * The fields the tiled and matrix kernels' specs share for a plan of 16-64-row blocks: its dims,
 * blocks, pages (and their layout) and variant flags, at the tiled kernel's 256 threads.
 */
function blockSpec(plan: Parameters<typeof kernelSpec>[0], paged: boolean): KernelSpec {
  const { headDim, kvDtype } = plan.problem;
  return {
    headDim,
    ...dimsV(plan.problem),
    kvDtype,
    tileTokens: plan.tiles.tileTokens,
    rowsPerBlock: plan.tiles.rowsPerBlock,
    workgroupSize: TILED_THREADS,
    tiled: true,
    paged,
    ...(paged && plan.kv?.kind === "paged" && plan.kv.layout === "HND"
      ? { kvLayout: "HND" as const }
      : {}),
    ...(plan.problem.variant === undefined ? {} : variantSpec(plan.problem.variant)),
  };
}

/**
 * The tiled kernel's spec for a plan of matrix blocks (`TileOptions.matrixBlocks`): 32 dims
 * staged per step where the device's workgroup memory holds them, else 16.
 */
function tiledSpec(
  plan: Parameters<typeof kernelSpec>[0],
  caps: KernelCaps,
  paged: boolean,
): KernelSpec {
  const spec = blockSpec(plan, paged);
  const fits = tiledWorkgroupBytes(spec) <= (caps.workgroupBytes ?? 16384);
  return fits ? spec : { ...spec, matrixChunk: 16 };
}

/**
 * Whether a device runs the matrix kernel at every block size: Dawn's f16 subgroup matrices
 * (`KernelCaps.subgroupMatrix`) and the workgroup memory of its largest layout (16 rows, head
 * dim 128: about 23 KiB).
 *
 * @example
 * ```ts
 * import { matrixUnitsOn } from "./kernel_choice.ts";
 * const caps = { subgroups: true, subgroupMinSize: 32, subgroupMatrix: true, workgroupBytes: 49152 };
 * console.log(matrixUnitsOn(caps), matrixUnitsOn({ ...caps, workgroupBytes: 16384 })); // true false
 * ```
 */
export function matrixUnitsOn(caps: KernelCaps): boolean {
  return caps.subgroupMatrix === true && caps.subgroups &&
    MATRIX_LARGEST_BYTES <= (caps.workgroupBytes ?? 16384);
}

/**
 * Workgroup memory of the matrix kernel's largest layout (head dim 128 at 16 rows since session
 * 50; head dim 256 takes blocks of 16 rows alone), paged with per-token scales (its tiles' token
 * addresses and rows).
 */
const MATRIX_LARGEST_BYTES = Math.max(
  ...[[128, 16], [128, 32], [128, 64], [MATRIX_MAX_HEAD_DIM, 16]].map(([headDim, rowsPerBlock]) =>
    matrixLayout({
      headDim,
      kvDtype: "int8",
      kvScales: "token",
      paged: true,
      tileTokens: 64,
      rowsPerBlock,
      workgroupSize: MATRIX_THREADS,
      tiled: true,
      matrix: true,
    }).bytes
  ),
);

/** The matrix kernel's spec for a plan of matrix-unit blocks (`TileOptions.matrixUnits`). */
function matrixSpec(plan: Parameters<typeof kernelSpec>[0], paged: boolean): KernelSpec {
  return { ...blockSpec(plan, paged), workgroupSize: MATRIX_THREADS, matrix: true };
}

/** The kernel spec's variant field: the flags that are on, none for the plain variant. */
function variantSpec(variant: Plan["problem"]["variant"]): Pick<KernelSpec, "variant"> {
  const flags = variantFlags(variant);
  return flags.window || flags.softCap || flags.alibi || flags.sinks ? { variant: flags } : {};
}

/**
 * The factor on f16's unroll of an 8-bit kernel without an 8-bit table entry, by the floats of
 * query and output state each thread holds (its rows of the block, over its lanes' share of K's
 * and V's rows): 1 at 97-128 floats (8-row d128 blocks in two row sets: at unroll 8 the H200's
 * driver spilled them, E4M3 1.55-1.65x and int8 1.10-1.16x the time of unroll 4, session 58; the
 * 4-row d128 blocks' tiles cap them at 4 anyway), else 2: as many bytes in flight per lane as f16's
 * rows. Session 58 also tried half f16's unroll beyond 128 floats: 7-row d128 blocks (224 floats,
 * one row set since 7 rows do not split) took 0.87x the time over int8, but 5-row ones 1.14x and
 * the 7- and 8-row d64 ones 1.10x and 1.15x, so they keep 2; 6-row blocks (96 floats) were 10%
 * faster at unroll 8 than at 4. (MLA's padded lane rounds keep 2: not measured.)
 */
function eightBitUnroll(
  rows: number,
  rowSets: number,
  lanes: number,
  load: number,
  { chunks, chunksV }: { chunks: number; chunksV: number },
): number {
  // As kernelLayout: row sets that do not divide the block's rows are halved.
  while (rowSets > 1 && rows % rowSets !== 0) rowSets /= 2;
  const state = (rows / rowSets) * (Math.ceil(chunks / lanes) + Math.ceil(chunksV / lanes)) * load;
  return state > 96 && state <= 128 ? 1 : 2;
}

/** The row-set choice of a spec: the tuning's, else the table's (omitted at 1). */
function rowChoices(tuning: KernelTuning, choice: { rowSets?: number }): { rowSets?: number } {
  const rowSets = tuning.rowSets ?? choice.rowSets ?? 1;
  return rowSets > 1 ? { rowSets } : {};
}
