/**
 * The public types of the attention encoder: its options, one layer's `encode` call and its
 * allocation counters.
 *
 * @module
 */

import type { PagedPlan } from "./paged_plan.ts";
import type { Strategy } from "../core/problem.ts";
import type { TileOptions } from "../plan/tiles.ts";
import type { KernelTuning } from "../gpu/kernel_tuning.ts";

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
  /**
   * Element type of the `q` buffers (default `"f32"`; `"f16"`: IEEE halves, two per 4 bytes,
   * read without the `shader-f16` feature).
   */
  qDtype?: "f32" | "f16";
  /** Element type of the `out` buffers (default `"f32"`; `"f16"`: rounded to nearest even). */
  outDtype?: "f32" | "f16";
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
  /**
   * K storage to read instead of a cache layer (plans from `planPages()` or a runner's page
   * table). Every buffer of an encode may be a `GPUBufferBinding` (a range of a buffer, e.g. of a
   * fused QKV buffer): its `offset` a multiple of the device's `minStorageBufferOffsetAlignment`.
   */
  k?: GPUBuffer | GPUBufferBinding;
  /**
   * V storage, with `k` (its rows of `headDimV` dims per KV head, `headDim` unless MLA); absent
   * for plans with `vFromK`, whose V is the first `headDimV` dims of `k`'s rows.
   */
  v?: GPUBuffer | GPUBufferBinding;
  /**
   * 8-bit K/V: the scale table read with `k` and `v` (plans from `planPages()`): `f32` pairs
   * (K's scale, V's scale) per row and KV head, `[row][kvHead][2]`, rows addressed like `k`'s.
   * Cache layers bring their own.
   */
  kvScales?: GPUBuffer | GPUBufferBinding;
  /** Queries, `[seq][qpos][head][dim]`, in the encoder's `qDtype` (default `f32`). */
  q: GPUBuffer | GPUBufferBinding;
  /** Output, shaped like `q` (rows of `headDimV` dims), in the encoder's `outDtype` (default `f32`). */
  out: GPUBuffer | GPUBufferBinding;
  /** Natural-log LSE, `f32`, `[seq][qpos][head]` (optional). */
  lse?: GPUBuffer | GPUBufferBinding;
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
