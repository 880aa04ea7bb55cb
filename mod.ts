/**
 * # @lean/attention
 *
 * Decode-phase attention on GPUs through WebGPU, scheduled with LeanAttention: the work of all
 * sequences x KV heads x context is cut into equal LeanTiles and spread stream-K style over a
 * grid sized to the GPU; partial softmax states are merged by a deterministic rescale reduction.
 * A CPU backend executes the very same plan.
 *
 * ```ts
 * import { createDecoder } from "@lean/attention";
 *
 * const decoder = await createDecoder({ backend: "cpu" });
 * const headDim = 64, numHeads = 4, numKVHeads = 2, seqLens = [100, 37];
 * const tokens = seqLens.reduce((a, b) => a + b);
 * const { out, lse } = await decoder.decode({
 *   q: Float32Array.from({ length: seqLens.length * numHeads * headDim }, Math.random),
 *   k: Float32Array.from({ length: tokens * numKVHeads * headDim }, Math.random),
 *   v: Float32Array.from({ length: tokens * numKVHeads * headDim }, Math.random),
 *   seqLens, numHeads, numKVHeads, headDim,
 * });
 * console.log(out.length, lse.length); // 512 8
 * await decoder.dispose();
 * ```
 *
 * GPU backends: `"webgpu"` is the runtime's own WebGPU (Deno, browsers); `"dawn"` is Dawn (npm
 * `webgpu`, for Node), opt-in through the `@lean/attention/dawn` entry so that this one loads no
 * npm package. `onProgress` and `decoder.warmup()` report and front-load the first call's work
 * (adapter, calibration, kernel compiles).
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
export { createDecoder } from "./src/decoder.ts";
export { DeviceLostError, GPUAllocationError } from "./src/gpu/device_guard.ts";
export type {
  Decoder,
  DecoderOptions,
  DecoderPlanOptions,
  KernelTiming,
  KernelTimingRequest,
  WarmupOptions,
} from "./src/decoder.ts";
export type { DecoderProgress, ProgressListener, ProgressStage } from "./src/core/progress.ts";
export {
  decodeKV,
  encodeKV,
  fromF16BitsPortable,
  toBf16Bits,
  toF16Bits,
  toF16BitsPortable,
} from "./src/core/half.ts";
export { kvRowBytes, kvWindowBounds } from "./src/plan/windows.ts";
export type { KVWindow, KVWindowOptions } from "./src/plan/windows.ts";
export {
  createPlan,
  describePlan,
  validateFlag,
  validateMaxBindingBytes,
} from "./src/plan/plan.ts";
export type { Plan, PlanOptions } from "./src/plan/plan.ts";
export type { KernelTuning } from "./src/gpu/webgpu_backend.ts";
export {
  chooseSplits,
  partition,
  partitionCost,
  PIECE_COST_TILES,
  segmentTiles,
} from "./src/plan/partition.ts";
export type { Partition } from "./src/plan/partition.ts";
export {
  KV_DTYPES,
  MAX_HEAD_DIM,
  MAX_Q_LEN,
  resolveScale,
  STRATEGIES,
  validateInput,
  validateShape,
  validateStrategy,
} from "./src/core/problem.ts";
export type {
  DecodeInput,
  DecodeOutput,
  DecodeShape,
  KVDtype,
  Problem,
  Strategy,
} from "./src/core/problem.ts";
export { mergePartialRow, mergeStates, slotFloats } from "./src/core/reducer.ts";
export type { AttentionState } from "./src/core/reducer.ts";
export { referenceAttention } from "./src/core/reference.ts";
export type { ReferenceOutput } from "./src/core/reference.ts";
export {
  DIRECT,
  PIECE,
  PIECE_STRIDE,
  REDUCE,
  REDUCE_STRIDE,
  schedule,
} from "./src/plan/schedule.ts";
export type { Schedule } from "./src/plan/schedule.ts";
export { tileConfig } from "./src/plan/tiles.ts";
export { VERSION } from "./src/core/version.ts";
export { INVARIANT_CHUNK_TILES, scheduleWindows, unitRuns } from "./src/plan/schedule_windows.ts";
export type { WindowedSchedule, WindowedScheduleOptions } from "./src/plan/schedule_windows.ts";
export type { TileConfig, TileOptions } from "./src/plan/tiles.ts";
export { PagePool } from "./src/runner/page_pool.ts";
export { createKVCache, KVCache } from "./src/runner/kv_cache.ts";
export type {
  AppendData,
  AppendSlots,
  EncodeAppendOptions,
  ExtendOptions,
  KVCacheMemory,
  KVCacheOptions,
  KVCacheStats,
  LayerRows,
} from "./src/runner/kv_cache.ts";
export { createPagedPlan, executePagedPlanOnCpu, planForCache } from "./src/runner/paged_plan.ts";
export type {
  CachePlanOptions,
  PagedCpuInput,
  PagedKV,
  PagedPlan,
  PagedPlanOptions,
  PageTables,
} from "./src/runner/paged_plan.ts";
export { AttentionEncoder, createAttentionEncoder } from "./src/runner/attention_encoder.ts";
export type {
  AttentionEncoderOptions,
  AttentionEncoderStats,
  EncodeAttentionOptions,
} from "./src/runner/attention_encoder.ts";
