/**
 * The public types of the attention encoder: its options, one layer's `encode` call and its
 * allocation counters.
 *
 * @module
 */

import type { PagedPlan } from "./paged_plan.ts";
import type { Strategy } from "../core/problem.ts";
import type { TileOptions } from "../plan/tiles.ts";
import type { KernelTuning } from "../gpu/kernel_choice.ts";

/**
 * Options of {@linkcode createAttentionEncoder}.
 *
 * @example
 * ```ts
 * import type { AttentionEncoderOptions } from "@lean/attention/runner";
 * // For createAttentionEncoder(device, options) on a runner's GPU device.
 * const options: AttentionEncoderOptions = {
 *   grid: 1056, strategy: "lean", batchInvariant: true, tileTokens: 64, kernel: { lanes: 16 },
 * };
 * console.log(options.grid, options.kernel?.lanes); // 1056 16
 * ```
 */
export interface AttentionEncoderOptions extends TileOptions {
  /**
   * The lean grid (workgroups the device runs at once). Default: the table of known adapters
   * (e.g. 1056 on an H100); a decoder's calibrated `profile.grid` is a good value.
   */
  grid?: number;
  /** Partition strategy of every plan (default `"lean"`). */
  strategy?: Strategy;
  /** Batch-invariant plans (see `PlanOptions.batchInvariant`). Default false. */
  batchInvariant?: boolean;
  /** Kernel tuning (subgroups, lanes, unroll), as for decoders. */
  kernel?: KernelTuning;
}

/**
 * What {@linkcode AttentionEncoder.encode} records.
 *
 * @example
 * ```ts
 * import {
 *   createKVCache, type EncodeAttentionOptions, planForCache,
 * } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 2, numKVHeads: 1, headDim: 8, numPages: 4 });
 * const seq = cache.addSequence();
 * cache.extend([seq], 3);
 * // Host-planned here; on a GPU, plan with the encoder: attention.plan(cache, step).
 * const plan = planForCache(cache, { seqs: [seq], numHeads: 2 }, { grid: 4 });
 * // Per layer: attention.encode(encoder, layerOptions(layer, q, out)).
 * function layerOptions(layer: number, q: GPUBuffer, out: GPUBuffer): EncodeAttentionOptions {
 *   return { plan, layer, q, out };
 * }
 * console.log(typeof layerOptions, plan.problem.totalTokens); // function 3
 * ```
 */
export interface EncodeAttentionOptions {
  /** A plan of this encoder (`plan()` or `planPages()`). */
  plan: PagedPlan;
  /** Layer of the plan's cache to read (plans from `plan()`). */
  layer?: number;
  /** K storage to read instead of a cache layer (plans from `planPages()`). */
  k?: GPUBuffer;
  /** V storage, with `k`. */
  v?: GPUBuffer;
  /** Queries, `f32`, `[seq][qpos][head][dim]`. */
  q: GPUBuffer;
  /** Output, `f32`, shaped like `q` (rows of `headDimV` dims). */
  out: GPUBuffer;
  /** Natural-log LSE, `f32`, `[seq][qpos][head]` (optional). */
  lse?: GPUBuffer;
}

/**
 * Allocation counters of an encoder.
 *
 * @example
 * ```ts
 * import type { AttentionEncoderStats } from "@lean/attention/runner";
 * // Steady state: a step's attention.stats() equals the previous step's.
 * function steady(before: AttentionEncoderStats, after: AttentionEncoderStats): boolean {
 *   return after.buffersCreated === before.buffersCreated &&
 *     after.pipelinesCreated === before.pipelinesCreated &&
 *     after.bindGroupsCreated === before.bindGroupsCreated;
 * }
 * const s = {
 *   buffersCreated: 6, buffersLive: 6, pipelinesCreated: 3, bindGroupsCreated: 4,
 *   bindGroupsLive: 4, tableRegions: 4, tableRegionsBusy: 1,
 * };
 * console.log(steady(s, { ...s })); // true
 * ```
 */
export interface AttentionEncoderStats {
  /** GPU buffers created since the encoder was made. */
  readonly buffersCreated: number;
  /** GPU buffers alive now. */
  readonly buffersLive: number;
  /** Compute pipelines compiled (decode, merge, and the upload ring's marker). */
  readonly pipelinesCreated: number;
  /** Bind groups created (cached by the buffers they bind and the tables' layout). */
  readonly bindGroupsCreated: number;
  /**
   * Those not garbage-collected yet. They are cached weakly by the runner's buffers, so this
   * stays flat (after collections) however many new `q`/`out` buffers a runner passes.
   */
  readonly bindGroupsLive: number;
  /** Upload regions for plan tables (the ring grows to cover the plans in flight). */
  readonly tableRegions: number;
  /** Regions whose command buffers the GPU is not known to have run yet. */
  readonly tableRegionsBusy: number;
}
