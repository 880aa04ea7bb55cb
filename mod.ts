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
 * Two more entries hold the rest: `@lean/attention/plan` (validation, tiles, partition, the
 * schedule tables the kernels read, KV windows, the CPU plan executor) and
 * `@lean/attention/runner` (the paged KV cache, paged plans and the attention encoder that
 * records into a caller's command encoder).
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
export { createDecoder } from "./src/decoder.ts";
export { DeviceLostError, GPUAllocationError } from "./src/gpu/device_guard.ts";
export type {
  Decoder,
  DecoderOptions,
  DecoderPlanOptions,
  KernelTiming,
  KernelTimingRequest,
  StreamTiming,
  WarmupOptions,
} from "./src/decoder_types.ts";
export type { DecoderProgress, ProgressListener, ProgressStage } from "./src/core/progress.ts";
export { decodeKV, dynamicKVScales, encodeKV } from "./src/core/dtypes.ts";
export type { KVCodecOptions } from "./src/core/dtypes.ts";
export type { KVScale } from "./src/core/kv8.ts";
export { fromF16BitsPortable, toBf16Bits, toF16Bits, toF16BitsPortable } from "./src/core/half.ts";
export type { KVWindow } from "./src/plan/windows.ts";
export { createPlan, describePlan } from "./src/plan/plan.ts";
export type { Plan, PlanOptions } from "./src/plan/plan.ts";
export type { DenseKV, KVAddressing, PagedKV, PageLayout } from "./src/plan/kv_addressing.ts";
export type { KernelTuning } from "./src/gpu/kernel_tuning.ts";
export type { Partition } from "./src/plan/partition.ts";
export { KV_DTYPES, MAX_HEAD_DIM, MAX_Q_LEN, STRATEGIES } from "./src/core/problem.ts";
export type {
  DecodeInput,
  DecodeOutput,
  DecodeShape,
  KVArray,
  KVDtype,
  Problem,
  Strategy,
} from "./src/core/problem.ts";
export { mergeStates } from "./src/core/reducer.ts";
export type { AttentionState } from "./src/core/reducer.ts";
export { referenceAttention } from "./src/core/reference.ts";
export type { Variant, VariantOptions } from "./src/core/variant_options.ts";
export type { ReferenceOutput } from "./src/core/reference.ts";
export type { Schedule } from "./src/plan/schedule.ts";
export { VERSION } from "./src/core/version.ts";
export type { TileConfig, TileOptions } from "./src/plan/tiles.ts";
