/**
 * A KV cache's private state (page tables, storage, device context, append path) and the parts of
 * the cache's work over it that are more than a call: making it, growing sequences (`extend`'s
 * page check and copy-on-write page copies), accounting (`memory`, `stats`) and disposal. The
 * `KVCache` class keeps the public surface and its checks (disposed, device lost, sequence,
 * layer); these run after them.
 *
 * @module
 */

import type { AppendSlots, ExtendOptions, KVCacheMemory, KVCacheStats } from "./kv_cache_types.ts";
import { isCommandEncoder } from "./checks.ts";
import type { AppendPath } from "./kv_append.ts";
import { KVStorage, type KVStorageShape } from "./kv_storage.ts";
import type { PageTables } from "./page_tables.ts";
import type { CheckedCacheOptions, RowLayout } from "./kv_cache_checks.ts";
import type { CacheRows } from "./kv_cache_writes.ts";
import { adoptGpuContext, type GpuContext } from "../gpu/gpu_context.ts";

/** A cache's private state: what its row writes use, and what its own work adds. */
export interface CacheState extends CacheRows {
  /** The cache's geometry (the cache itself). */
  readonly cache: RowLayout & KVStorageShape;
  /** The device holding the pages, or `undefined` for a host cache. */
  readonly device: GPUDevice | undefined;
  /** The device's context (pipeline cache, device guard) for GPU caches. */
  readonly gpu: GpuContext | undefined;
  /** The append kernel's pipeline, upload ring and bind groups, made on first use. */
  append: AppendPath | undefined;
  /** Set by `dispose`: later calls throw. */
  disposed: boolean;
}

/**
 * Makes a cache's state from its checked options: allocates every layer's storage (`RangeError`
 * when it does not fit) and, on a GPU cache, adopts the device's context. `tables` are the
 * cache's page tables, made (before the cache registered its identity) by the cache.
 *
 * @example
 * ```ts
 * import { createKVCache } from "@lean/attention/runner";
 * // The KVCache constructor calls openCacheState after checking its options.
 * const cache = createKVCache({ numLayers: 1, numKVHeads: 1, headDim: 8, pageSize: 4, numPages: 2 });
 * console.log(cache.layerData(0).k.length); // 64
 * ```
 */
export function openCacheState(
  cache: RowLayout & KVStorageShape,
  tables: PageTables,
  options: CheckedCacheOptions,
): CacheState {
  const { device, tensorScales } = options;
  const store = new KVStorage(cache, device, tensorScales);
  const lostRemedy = "create a new device and a new cache on it";
  return {
    cache,
    tables,
    store,
    ...(tensorScales ? { tensorScales } : {}),
    device,
    gpu: device ? adoptGpuContext(device, { lostRemedy }) : undefined,
    append: undefined,
    disposed: false,
  };
}

/**
 * `KVCache.extend` after the cache's checks: throws `RangeError` when the pool has too few free
 * pages and `TypeError` for a bad `options.encoder`, both before changing anything; then grows
 * the sequences, copying shared partially filled last pages (recorded into `options.encoder`, or
 * into a command buffer of its own that it submits), and hands out the slots.
 *
 * @example
 * ```ts
 * import { createKVCache } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 1, numKVHeads: 1, headDim: 8, pageSize: 4, numPages: 2 });
 * const slots = cache.extend([cache.addSequence()], 5); // extendSequences
 * console.log(slots.rows.length, cache.memory().pagesUsed); // 5 2
 * ```
 */
export function extendSequences(
  s: CacheState,
  seqs: ArrayLike<number>,
  counts: number | ArrayLike<number>,
  options: ExtendOptions,
): AppendSlots {
  const { need, list, n, cow, tokens } = s.tables.plan(seqs, counts);
  if (need > s.tables.pool.free) {
    throw new RangeError(
      `Out of KV cache pages: extending ${list.length} sequence(s) by ${tokens} token(s) needs ${need} page(s), ${s.tables.pool.free} free of ${s.cache.numPages}`,
    );
  }
  if (options.encoder !== undefined && !isCommandEncoder(options.encoder)) {
    throw new TypeError(`encoder must be a GPUCommandEncoder: got ${typeof options.encoder}`);
  }
  let copies: GPUCommandEncoder | undefined;
  const { rows, starts } = s.tables.grow(list, n, cow, tokens, (old, page, count) => {
    if (s.device) copies ??= options.encoder ?? s.device.createCommandEncoder();
    s.store.copyPage(copies, old, page, count);
  });
  if (copies && options.encoder === undefined) s.device!.queue.submit([copies.finish()]);
  return s.tables.issue(seqs, list, n, starts, rows);
}

/**
 * `KVCache.memory`: pages used, free and shared, and bytes (a page holds `pageSize` rows of K,
 * V (none with `vFromK`) and, for 8-bit dtypes, scales, in every layer).
 *
 * @example
 * ```ts
 * import { createKVCache } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 2, numKVHeads: 1, headDim: 8, pageSize: 4, numPages: 2 });
 * console.log(cache.memory().bytesPerPage); // 512 (cacheMemory: 2 layers * 4 rows * 64 bytes)
 * ```
 */
export function cacheMemory(s: CacheState): KVCacheMemory {
  const scaleBytes = 4 * s.store.scaleRow;
  const rowBytes = s.cache.rowBytes + (s.cache.vFromK ? 0 : s.cache.rowBytesV) + scaleBytes;
  return s.tables.memory(s.cache.numLayers * s.cache.pageSize * rowBytes);
}

/**
 * `KVCache.stats`: the storage's and the append path's GPU allocation counters, summed.
 *
 * @example
 * ```ts
 * import { createKVCache } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 1, numKVHeads: 1, headDim: 8, pageSize: 4, numPages: 2 });
 * console.log(cache.stats().buffersCreated); // 0 (cacheStats: a host cache makes no buffers)
 * ```
 */
export function cacheStats(s: CacheState): KVCacheStats {
  const append = s.append?.stats();
  return {
    buffersCreated: s.store.buffersCreated + (append?.buffersCreated ?? 0),
    buffersLive: s.store.buffersLive + (append?.buffersLive ?? 0),
    pipelinesCreated: append?.pipelinesCreated ?? 0,
    bindGroupsCreated: append?.bindGroupsCreated ?? 0,
    bindGroupsLive: append?.bindGroupsLive ?? 0,
    appendRegions: append?.appendRegions ?? 0,
  };
}

/**
 * `KVCache.dispose`: destroys the storage's GPU buffers and the append path, and clears the
 * device context's pipelines (the device stays the caller's); once only.
 *
 * @example
 * ```ts
 * import { createKVCache } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 1, numKVHeads: 1, headDim: 8, pageSize: 4, numPages: 2 });
 * cache.dispose(); // disposeCacheState
 * cache.dispose(); // a second dispose does nothing
 * ```
 */
export function disposeCacheState(s: CacheState): void {
  if (s.disposed) return;
  s.disposed = true;
  s.store.destroy();
  s.append?.destroy();
  s.gpu?.pipelines.clear();
}
