/**
 * The public types of the paged KV cache: its options, the slots `extend` hands out, the data
 * `append` and `write` take, memory and allocation counters.
 *
 * @module
 */

import type { KVArray, KVDtype } from "../core/problem.ts";
import type { KVScale } from "../core/kv8.ts";

/**
 * Options of {@linkcode createKVCache}.
 *
 * @example
 * ```ts
 * import { createKVCache, type KVCacheOptions } from "@lean/attention/runner";
 * const options: KVCacheOptions = {
 *   numLayers: 2, numKVHeads: 2, headDim: 64, kvDtype: "f16", pageSize: 16, numPages: 32,
 * };
 * const cache = createKVCache(options); // no device: host memory
 * console.log(cache.rowBytes, cache.memory().bytesAllocated); // 256 524288
 * ```
 *
 * @example MLA (DeepSeek-V3): one latent KV head, K rows of 576, V rows of 512
 * ```ts
 * import { createKVCache } from "@lean/attention/runner";
 * const cache = createKVCache({
 *   numLayers: 1, numKVHeads: 1, headDim: 576, headDimV: 512, kvDtype: "f16", numPages: 4,
 * });
 * console.log(cache.rowBytes, cache.rowBytesV, cache.memory().bytesPerPage); // 1152 1024 34816
 * ```
 *
 * @example MLA's latent cache: V is the first 512 dims of each 576-dim K row, stored once
 * ```ts
 * import { createKVCache } from "@lean/attention/runner";
 * const cache = createKVCache({
 *   numLayers: 1, numKVHeads: 1, headDim: 576, headDimV: 512, vFromK: true, kvDtype: "f16",
 *   numPages: 4,
 * });
 * const seq = cache.addSequence();
 * cache.append(seq, { k: [new Float32Array(576).fill(1)] }); // no v
 * console.log(cache.memory().bytesPerPage, cache.layerData(0).v); // 18432 undefined
 * ```
 */
export interface KVCacheOptions {
  /** Model layers (each has its own K and V storage). */
  numLayers: number;
  /** KV heads per layer. */
  numKVHeads: number;
  /** Head dimension of K: a multiple of 8 from 8 to 576. */
  headDim: number;
  /**
   * Head dimension of V: a multiple of 8 from 8 to 576 (default `headDim`). MLA (DeepSeek-V2/V3)
   * caches K rows of 576 and V rows of 512 for one latent KV head.
   */
  headDimV?: number;
  /** Storage type (default `"f32"`). */
  kvDtype?: KVDtype;
  /** Tokens per page: a power of two from 1 to 65536 (default 16). */
  pageSize?: number;
  /** Pages in the pool (each layer stores this many). */
  numPages: number;
  /**
   * 8-bit caches: how scales are kept. `"token"` (default): one K and one V scale per row and KV
   * head, given with each write. `"tensor"`: one K and one V scale per layer, fixed here
   * (`kScale`, `vScale`), as FP8 KV caches with calibrated per-tensor scales keep them; writes
   * quantise with the layer's scales (a write that names other scales is refused), and decodes
   * take the per-tensor kernels, which read no scale per token.
   */
  kvScales?: "token" | "tensor";
  /**
   * With `kvScales: "tensor"`: K's scale (key = code x scale), a finite number > 0 for every
   * layer, or an array with one per layer (default 1).
   */
  kScale?: number | readonly number[];
  /** With `kvScales: "tensor"`: V's scale, like `kScale`. */
  vScale?: number | readonly number[];
  /**
   * V is the first `headDimV` dims of each K row (default false): no V is given, stored or
   * copied; `append`, `write` and `encodeAppend` take K only (and, for 8-bit caches, K's scale,
   * which is V's too), and the decode kernels read V from K's pages. MLA's latent cache
   * (DeepSeek-V2/V3) holds one 576-dim row per token whose first 512 dims are V: a separate V
   * would store 89% more. `headDimV` must be at most `headDim`.
   */
  vFromK?: boolean;
  /** GPU device to keep the pages on; absent: host memory. */
  device?: GPUDevice;
}

/**
 * Rows reserved by one {@linkcode KVCache.extend} call, in every layer.
 *
 * @example
 * ```ts
 * import { type AppendSlots, createKVCache } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 1, numKVHeads: 1, headDim: 8, pageSize: 4, numPages: 8 });
 * const a = cache.addSequence();
 * const b = cache.addSequence();
 * const slots: AppendSlots = cache.extend([a, b], [2, 1]);
 * console.log(Array.from(slots.counts), Array.from(slots.rows)); // [2, 1] [0, 1, 4]
 * ```
 */
export interface AppendSlots {
  /** The sequences extended, in call order. */
  readonly seqs: Uint32Array;
  /** New tokens of each sequence. */
  readonly counts: Uint32Array;
  /** Row of each new token (sequence by sequence, in token order) in every layer's K and V. */
  readonly rows: Uint32Array;
}

/**
 * Memory use of a cache.
 *
 * @example
 * ```ts
 * import { createKVCache, type KVCacheMemory } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 2, numKVHeads: 1, headDim: 8, pageSize: 4, numPages: 8 });
 * const a = cache.addSequence();
 * cache.extend([a], 6);
 * cache.fork(a);
 * const m: KVCacheMemory = cache.memory();
 * console.log(m.pagesUsed, m.pagesFree, m.pagesShared, m.sequences, m.tokens); // 2 6 2 2 12
 * console.log(m.bytesPerPage, m.bytesAllocated, m.bytesUsed); // 512 4096 1024
 * ```
 */
export interface KVCacheMemory {
  /** Tokens per page. */
  readonly pageSize: number;
  /** Pages in the pool. */
  readonly pagesTotal: number;
  /** Pages held by at least one sequence. */
  readonly pagesUsed: number;
  /** Pages on the free list. */
  readonly pagesFree: number;
  /** Pages referenced by more than one sequence (forks). */
  readonly pagesShared: number;
  /** Live sequences. */
  readonly sequences: number;
  /** Tokens over all sequences (a shared prefix counted once per sequence). */
  readonly tokens: number;
  /** Bytes of one page in every layer, K and V (K only with `vFromK`) and 8-bit scales. */
  readonly bytesPerPage: number;
  /** Bytes of K and V storage allocated (all pages, all layers; no V with `vFromK`). */
  readonly bytesAllocated: number;
  /** Bytes of the pages in use. */
  readonly bytesUsed: number;
}

/**
 * Options of {@linkcode KVCache.extend}.
 *
 * @example
 * ```ts
 * import { createKVCache, type ExtendOptions } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 1, numKVHeads: 1, headDim: 8, pageSize: 4, numPages: 8 });
 * const a = cache.addSequence();
 * cache.extend([a], 2);
 * const b = cache.fork(a); // shares a's half-filled page
 * // A host cache copies at once; a GPU cache may record the copy: { encoder }.
 * const options: ExtendOptions = {};
 * cache.extend([b], 1, options); // copy-on-write: b gets its own copy of the page
 * console.log(cache.pageTable(a)[0] !== cache.pageTable(b)[0]); // true
 * ```
 */
export interface ExtendOptions {
  /**
   * Command encoder to record copy-on-write page copies into (GPU caches). Default: they are
   * submitted to the device's queue at once.
   */
  encoder?: GPUCommandEncoder;
}

/**
 * Per-layer data of {@linkcode KVCache.append}: one array per layer, `[token][kvHead][dim]`.
 *
 * @example
 * ```ts
 * import { type AppendData, createKVCache } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 2, numKVHeads: 1, headDim: 8, numPages: 4 });
 * const seq = cache.addSequence();
 * // Two tokens, two layers: each array is [token][kvHead][dim].
 * const data: AppendData = {
 *   k: [new Float32Array(16).fill(1), new Float32Array(16).fill(2)],
 *   v: [new Float32Array(16).fill(3), new Float32Array(16).fill(4)],
 * };
 * const slots = cache.append(seq, data);
 * console.log(cache.length(seq), cache.layerData(1).v[slots.rows[1] * 8]); // 2 4
 * ```
 */
export interface AppendData {
  /**
   * Keys: `Float32Array` values, or the cache dtype's host array (`Uint16Array` bit patterns for
   * f16/bf16, `Int8Array` / `Uint8Array` codes for the 8-bit dtypes).
   */
  k: ReadonlyArray<KVArray>;
  /**
   * Values, like `k` (rows of `headDimV` dims). Absent in a cache created with `vFromK` (V is
   * the first `headDimV` dims of `k`'s rows); required otherwise.
   */
  v?: ReadonlyArray<KVArray>;
  /**
   * 8-bit caches: K's scale per layer (see {@linkcode LayerRows.kScale}); default 1 for every
   * layer.
   */
  kScale?: ReadonlyArray<KVScale | "dynamic">;
  /** 8-bit caches: V's scale per layer, like `kScale` (absent with `vFromK`: K's is V's). */
  vScale?: ReadonlyArray<KVScale | "dynamic">;
}

/**
 * One layer's rows for {@linkcode KVCache.write}.
 *
 * @example
 * ```ts
 * import { createKVCache, type LayerRows } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 1, numKVHeads: 1, headDim: 8, numPages: 4 });
 * const seq = cache.addSequence();
 * const slots = cache.extend([seq], 2);
 * const rows: LayerRows = { k: new Float32Array(16).fill(1), v: new Float32Array(16).fill(2) };
 * cache.write(slots, 0, rows);
 * console.log(cache.layerData(0).v[slots.rows[1] * 8]); // 2
 * ```
 */
export interface LayerRows {
  /**
   * Keys of the slots' tokens: `Float32Array` values, or the cache dtype's host array
   * (`Uint16Array` bits for f16/bf16; `Int8Array` / `Uint8Array` codes, already quantised with
   * `kScale`, for the 8-bit dtypes).
   */
  k: KVArray;
  /**
   * Values, like `k` (rows of `headDimV` dims). Absent in a cache created with `vFromK`;
   * required otherwise.
   */
  v?: KVArray;
  /**
   * 8-bit caches: the scale of `k` (key = code x scale), a finite number > 0 for all rows
   * (default 1) or a `Float32Array` with one per (token, KV head). `Float32Array` keys are
   * quantised with it (round to nearest even, saturating); codes are stored as given.
   * `"dynamic"` (`Float32Array` rows only): each (token, KV head) gets the smallest power of two
   * that fits its largest magnitude (see `dynamicKVScales`). The cache stores one scale per
   * (row, KV head) beside its pages.
   */
  kScale?: KVScale | "dynamic";
  /**
   * 8-bit caches: the scale of `v`, like `kScale`. Absent with `vFromK`: the cache stores K's
   * scale as V's.
   */
  vScale?: KVScale | "dynamic";
}

/**
 * Sources of {@linkcode KVCache.encodeAppend}: the runner's GPU buffers.
 *
 * @example
 * ```ts
 * import { createKVCache, type EncodeAppendOptions } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 2, numKVHeads: 1, headDim: 8, numPages: 4 });
 * const seq = cache.addSequence();
 * const slots = cache.extend([seq], 1); // this step's token
 * // On a GPU cache (created with a device), each layer's new f32 rows are copied in with
 * // cache.encodeAppend(encoder, appendOptions(layer, k, v)).
 * function appendOptions(layer: number, k: GPUBuffer, v: GPUBuffer): EncodeAppendOptions {
 *   return { slots, layer, k, v };
 * }
 * console.log(typeof appendOptions, Array.from(slots.rows)); // function [0]
 * ```
 */
export interface EncodeAppendOptions {
  /** Rows from {@linkcode KVCache.extend}. */
  slots: AppendSlots;
  /** Layer to write. */
  layer: number;
  /** `f32` keys of the new tokens, `[token][kvHead][dim]`, tokens in the slots' order. */
  k: GPUBuffer;
  /**
   * `f32` values, like `k` (rows of `headDimV` dims). Absent in a cache created with `vFromK`
   * (the kernel writes K's rows only); required otherwise.
   */
  v?: GPUBuffer;
  /**
   * 8-bit caches: the per-tensor scale the kernel quantises `k` with (code = value / scale,
   * rounded to nearest even, saturating) and stores for every appended row and KV head; default
   * 1. `"dynamic"`: the kernel gives each (token, KV head) the smallest power of two that fits
   * its largest finite magnitude, as `dynamicKVScales` does on the host (same scales, same
   * codes). Rows with other per-token scales are written from the host with
   * {@linkcode KVCache.write}.
   */
  kScale?: number | "dynamic";
  /**
   * 8-bit caches: the scale of `v`, like `kScale`. Absent with `vFromK`: the kernel stores K's
   * scale as V's.
   */
  vScale?: number | "dynamic";
}

/**
 * Allocation counters of a GPU cache.
 *
 * @example
 * ```ts
 * import { createKVCache, type KVCacheStats } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 1, numKVHeads: 1, headDim: 8, numPages: 4 });
 * const stats: KVCacheStats = cache.stats(); // a host cache creates no GPU objects
 * console.log(stats.buffersCreated, stats.buffersLive, stats.bindGroupsLive); // 0 0 0
 * ```
 */
export interface KVCacheStats {
  /** GPU buffers created since the cache was made. */
  readonly buffersCreated: number;
  /** GPU buffers alive now. */
  readonly buffersLive: number;
  /** Compute pipelines compiled (the append and copy kernels). */
  readonly pipelinesCreated: number;
  /** Bind groups of `encodeAppend` created since the cache was made. */
  readonly bindGroupsCreated: number;
  /**
   * Those not garbage-collected yet. They are cached weakly by the runner's buffers, so this
   * stays flat (after collections) however many new K/V buffers a runner passes.
   */
  readonly bindGroupsLive: number;
  /** Upload regions of `encodeAppend` (one per `extend` in flight; the ring grows to cover them). */
  readonly appendRegions: number;
}

/**
 * A sequence's rows of one layer read back by {@linkcode KVCache.read}: K and V in the storage
 * dtype (`Float32Array`, `Uint16Array` bits, 8-bit codes) and, for 8-bit caches, their scales.
 *
 * @example
 * ```ts
 * import { createKVCache, type StoredRows } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 1, numKVHeads: 1, headDim: 8, numPages: 2, kvDtype: "int8" });
 * const seq = cache.addSequence();
 * cache.append(seq, { k: [new Float32Array(8).fill(1)], v: [new Float32Array(8)], kScale: [0.5] });
 * const rows: StoredRows = await cache.read(0, seq);
 * console.log(rows.k[0], rows.kScale); // 2 Float32Array(1) [ 0.5 ]
 * ```
 */
export interface StoredRows {
  /** Keys, `[token][kvHead][dim]`. */
  k: KVArray;
  /**
   * Values, like `k` (rows of `headDimV` dims). With `vFromK`: the first `headDimV` dims of each
   * of `k`'s rows, copied (the cache stores no V).
   */
  v: KVArray;
  /** 8-bit caches: K's scale per (token, KV head). */
  kScale?: Float32Array;
  /** 8-bit caches: V's scale per (token, KV head) (with `vFromK`, K's). */
  vScale?: Float32Array;
}
