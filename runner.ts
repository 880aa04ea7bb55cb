/**
 * # @lean/attention/runner
 *
 * The runner API for serving loops: a paged KV cache ({@linkcode KVCache}, page pool, fork with
 * copy-on-write, appends on the GPU), paged plans made from the cache's page tables, and the
 * {@linkcode AttentionEncoder}, which records a layer's attention into the caller's command
 * encoder without reading anything back. The CPU executes the same paged plans.
 *
 * ```ts
 * import { createKVCache, executePagedPlanOnCpu, planForCache } from "@lean/attention/runner";
 *
 * const cache = createKVCache({ numLayers: 1, numKVHeads: 1, headDim: 8, pageSize: 2, numPages: 4 });
 * const a = cache.addSequence();
 * cache.append(a, { k: [new Float32Array(24).fill(1)], v: [new Float32Array(24).fill(2)] });
 * const plan = planForCache(cache, { seqs: [a], numHeads: 1 }, { grid: 2 });
 * const { out } = executePagedPlanOnCpu(plan, { q: new Float32Array(8), ...cache.layerData(0) });
 * console.log(out[0]); // 2
 * ```
 *
 * @module
 */

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
  StoredRows,
} from "./src/runner/kv_cache_types.ts";
export { createPagedPlan, planForCache } from "./src/runner/paged_plan.ts";
export { executePagedPlanOnCpu } from "./src/runner/paged_cpu.ts";
export type { PageTableSource } from "./src/runner/page_table_source.ts";
export {
  createIndptrPageTable,
  IndptrPageTable,
  MAX_INDPTR_PAGE_SIZE,
} from "./src/runner/indptr_page_table.ts";
export type { IndptrPageTableOptions } from "./src/runner/indptr_page_table.ts";
export type { PagedCpuInput } from "./src/runner/paged_cpu.ts";
export type {
  CachePlanOptions,
  PagedKV,
  PagedPlan,
  PagedPlanOptions,
  PageTables,
} from "./src/runner/paged_plan.ts";
export { AttentionEncoder } from "./src/runner/attention_encoder.ts";
export { createAttentionEncoder } from "./src/runner/open_encoder.ts";
export type {
  AttentionEncoderOptions,
  AttentionEncoderStats,
  EncodeAttentionOptions,
} from "./src/runner/encoder_types.ts";
// Types the runner's signatures use, also exported by the main and plan entries.
export type {
  DecodeOutput,
  DecodeShape,
  KVArray,
  KVDtype,
  Problem,
  Strategy,
} from "./src/core/problem.ts";
export type { KVScale } from "./src/core/kv8.ts";
export type { Variant, VariantOptions } from "./src/core/variant_options.ts";
export type { Plan, PlanOptions } from "./src/plan/plan.ts";
export type { DenseKV, KVAddressing, PageLayout } from "./src/plan/kv_addressing.ts";
export type { TileConfig, TileOptions } from "./src/plan/tiles.ts";
export type { Partition } from "./src/plan/partition.ts";
export type { Schedule } from "./src/plan/schedule.ts";
export type { KVWindow } from "./src/plan/windows.ts";
export type { KernelTuning } from "./src/gpu/kernel_tuning.ts";
