/**
 * # @lean/attention/plan
 *
 * The planning and scheduling stages, for tools and backends built on the plan tables: the
 * validated {@linkcode Problem}, tile sizes, the LeanTile partition, the schedule tables the
 * kernels read (piece and reduce records, see {@linkcode PIECE} and {@linkcode REDUCE}), KV
 * windows for caches larger than one binding, and the CPU executor of a plan.
 *
 * ```ts
 * import { createPlan, PIECE, PIECE_STRIDE } from "@lean/attention/plan";
 *
 * const plan = createPlan({ seqLens: [300], numHeads: 2, numKVHeads: 2, headDim: 64 }, { grid: 4 });
 * const { pieces } = plan.schedule;
 * console.log(pieces.length / PIECE_STRIDE, pieces[PIECE.seq]); // 4 0
 * ```
 *
 * @module
 */

export type {
  Backend,
  BackendName,
  BackendStats,
  BackendTiming,
  DeviceProfile,
  KernelTimingOptions,
} from "./src/plan/backend.ts";
export { gridFor } from "./src/plan/backend.ts";
export { CPU_GRID, executePlanOnCpu } from "./src/cpu/cpu_backend.ts";
export { kvRowBytes, kvWindowBounds } from "./src/plan/windows.ts";
export type { KVWindow, KVWindowOptions } from "./src/plan/windows.ts";
export type { DenseKV, KVAddressing, PagedKV, PageLayout } from "./src/plan/kv_addressing.ts";
export { pagedElement } from "./src/plan/kv_addressing.ts";
export {
  createPlan,
  describePlan,
  planProblem,
  validateFlag,
  validateMaxBindingBytes,
} from "./src/plan/plan.ts";
export type { Plan, PlanOptions } from "./src/plan/plan.ts";
export {
  ALIGNED_MARGIN,
  alignedCut,
  chooseSplits,
  partition,
  partitionCost,
  PIECE_COST_TILES,
  preferAligned,
  SATURATING_MIN_GRID,
  SATURATING_SHARE,
  segmentRows,
  segmentTiles,
} from "./src/plan/partition.ts";
export type { Partition } from "./src/plan/partition.ts";
export {
  resolveScale,
  validateInput,
  validateShape,
  validateStrategy,
} from "./src/core/problem.ts";
export type {
  DecodeInput,
  DecodeOutput,
  DecodeShape,
  KVArray,
  KVDtype,
  Problem,
  Strategy,
} from "./src/core/problem.ts";
export type { KVScale } from "./src/core/kv8.ts";
export { mergePartialRow, slotFloats } from "./src/core/reducer.ts";
export type { AttentionState } from "./src/core/reducer.ts";
export {
  DIRECT,
  PIECE,
  PIECE_STRIDE,
  REDUCE,
  REDUCE_STRIDE,
  schedule,
} from "./src/plan/schedule.ts";
export type { Schedule } from "./src/plan/schedule.ts";
export { matrixBlocksFit, matrixUnitsFit, tileConfig } from "./src/plan/tiles.ts";
export type { TileConfig, TileOptions } from "./src/plan/tiles.ts";
export { INVARIANT_CHUNK_TILES, scheduleWindows, unitRuns } from "./src/plan/schedule_windows.ts";
export { skippedTiles } from "./src/plan/sliding_window.ts";
export {
  PLAIN_VARIANT,
  sameVariant,
  validateVariant,
  variantFlags,
} from "./src/core/variant_options.ts";
export type { Variant, VariantFlags, VariantOptions } from "./src/core/variant_options.ts";
export type { WindowedSchedule, WindowedScheduleOptions } from "./src/plan/schedule_windows.ts";
