/**
 * A resident, paged KV cache for LLM runners. A page holds `pageSize` consecutive token rows of
 * every KV head of one layer (row layout `[kvHead][dim]`, the dense layout, f16/bf16 packed two
 * per `u32`, 8-bit codes four per `u32`); each layer has one K and one V buffer of `numPages`
 * pages (V rows of `headDimV` dims: MLA's differ from K's), and 8-bit caches a scale table beside
 * them (K's and V's scale per row and KV head). A cache created with `vFromK` (MLA's latent
 * cache) stores no V: V is the first `headDimV` dims of each K row, and its scale K's.
 * Page numbers come from one {@linkcode PagePool} and mean the same rows in every layer, so one
 * page table per sequence serves all layers, and one plan per step serves all layers.
 *
 * Sequences grow with {@linkcode KVCache.extend} (rows for new tokens in every layer), then the
 * rows are filled from host arrays ({@linkcode KVCache.write}, {@linkcode KVCache.append}) or
 * from the runner's GPU buffers with a small copy kernel ({@linkcode KVCache.encodeAppend}).
 * {@linkcode KVCache.fork} shares a sequence's pages (copy-on-write: extending a sequence whose
 * partially filled last page is shared copies that page first). Running out of pages throws a
 * `RangeError` before anything changes.
 *
 * With a `device` the pages live in GPU buffers; without, in host memory (the CPU backend reads
 * them with `executePagedPlanOnCpu`).
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type {
  AppendData,
  AppendSlots,
  EncodeAppendOptions,
  ExtendOptions,
  KVCacheMemory,
  KVCacheOptions,
  KVCacheStats,
  LayerRows,
  StoredRows,
} from "./kv_cache_types.ts";
import { AppendPath } from "./kv_append.ts";
import { PageTables, type Sequence } from "./page_tables.ts";
import { registerCache } from "./cache_registry.ts";
import { checkCacheOptions, checkLayer } from "./kv_cache_checks.ts";
import { appendHostRows, encodeAppendRows, writeSlotRows } from "./kv_cache_writes.ts";
import {
  cacheMemory,
  type CacheState,
  cacheStats,
  disposeCacheState,
  extendSequences,
  openCacheState,
} from "./kv_cache_state.ts";
import type { PageTableSource } from "./page_table_source.ts";
import type { KVArray, KVDtype } from "../core/problem.ts";

/**
 * A paged KV cache; create it with {@linkcode createKVCache}. `V` is the type of
 * {@linkcode KVCache.layerData}'s `v`: `KVArray` for a cache with V storage, `undefined` for one
 * created with `vFromK` (`createKVCache` picks it from the options where they say).
 *
 * @example
 * ```ts
 * import { createKVCache } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 2, numKVHeads: 1, headDim: 8, pageSize: 4, numPages: 8 });
 * const a = cache.addSequence();
 * const row = (x: number) => new Float32Array(8).fill(x);
 * cache.append(a, { k: [row(1), row(2)], v: [row(3), row(4)] }); // one token, two layers
 * const b = cache.fork(a);
 * console.log(cache.length(b), cache.memory().pagesShared); // 1 1
 * cache.free(a);
 * cache.free(b);
 * console.log(cache.memory().pagesUsed); // 0
 * ```
 */
export class KVCache<V extends KVArray | undefined = KVArray | undefined>
  implements PageTableSource {
  /** Layers, each with its own K and V pages. */
  readonly numLayers: number;
  /** KV heads per token row. */
  readonly numKVHeads: number;
  /** Elements per head of K. */
  readonly headDim: number;
  /** Elements per head of V (`headDim` unless created with another, as MLA's). */
  readonly headDimV: number;
  /** `true` with `vFromK` (else absent): V is each K row's first `headDimV` dims, not stored. */
  declare readonly vFromK?: true;
  /** Element type of K and V. */
  readonly kvDtype: KVDtype;
  /** Tokens per page (a power of two). */
  readonly pageSize: number;
  /** Pages in the pool (shared by all layers: page n is row block n of every layer). */
  readonly numPages: number;
  /** The device holding the pages, or `undefined` for a host cache. */
  readonly device: GPUDevice | undefined;
  /** `log2(pageSize)`. */
  readonly pageShift: number;
  /** Identity token: the cache's paged plans name it by this number. */
  readonly id: number;
  /** K elements of one token row (all KV heads). */
  readonly rowElements: number;
  /** Bytes of one token row of K. */
  readonly rowBytes: number;
  /** V elements of one token row (all KV heads, `headDimV` dims each; not stored with `vFromK`). */
  readonly rowElementsV: number;
  /** Bytes of one token row of V (with `vFromK`: of V's rows read out of K's, not stored). */
  readonly rowBytesV: number;
  /**
   * 8-bit caches: `"token"` (a K and a V scale per row and KV head, given with each write) or
   * `"tensor"` (one pair per layer, fixed at creation; see {@linkcode KVCache.layerScales}).
   * `"token"` for other dtypes, which keep no scales.
   */
  readonly kvScales: "token" | "tensor";
  /** Page tables, storage, device context and append path (see kv_cache_state.ts). */
  #state: CacheState;

  /** Prefer {@linkcode createKVCache}, which validates the options first. */
  constructor(options: KVCacheOptions) {
    const o = checkCacheOptions(options);
    this.numLayers = o.numLayers;
    this.numKVHeads = o.numKVHeads;
    this.headDim = o.headDim;
    this.headDimV = o.headDimV;
    if (o.vFromK) this.vFromK = true;
    this.kvDtype = o.kvDtype;
    this.pageSize = o.pageSize;
    this.pageShift = Math.log2(o.pageSize);
    this.numPages = o.numPages;
    this.rowElements = this.numKVHeads * this.headDim;
    this.rowBytes = this.rowElements * KV_DTYPE_INFO[o.kvDtype].bytes;
    this.rowElementsV = this.numKVHeads * this.headDimV;
    this.rowBytesV = this.rowElementsV * KV_DTYPE_INFO[o.kvDtype].bytes;
    this.kvScales = o.tensorScales ? "tensor" : "token";
    const tables = new PageTables(this.numPages, o.pageSize);
    this.id = registerCache(this);
    this.device = o.device;
    this.#state = openCacheState(this, tables, o);
  }

  /** Throws when disposed, and for calls that touch the GPU (`gpu`) when the device is lost. */
  #check(gpu = false): void {
    if (this.#state.disposed) {
      throw new Error("KVCache is disposed: create a new one with createKVCache()");
    }
    if (gpu) this.#state.gpu?.guard.check();
  }

  #seq(id: unknown, name = "seq"): Sequence {
    return this.#state.tables.get(id, name);
  }

  #layer(layer: unknown): number {
    return checkLayer(layer, this.numLayers);
  }

  /**
   * Counts the changes to sequences (extend, fork, free): a plan made at an older version is
   * stale, and encoding it throws.
   */
  get version(): number {
    return this.#state.tables.version;
  }

  /** Adds an empty sequence and returns its id. */
  addSequence(): number {
    this.#check();
    return this.#state.tables.add();
  }

  /** Ids of the live sequences, in creation order. */
  sequences(): number[] {
    return [...this.#state.tables.seqs.keys()];
  }

  /** Tokens in a sequence. */
  length(seq: number): number {
    return this.#seq(seq).length;
  }

  /** A copy of a sequence's page table (page numbers, in token order). */
  pageTable(seq: number): Uint32Array {
    const s = this.#seq(seq);
    return s.pages.slice(0, s.numPages);
  }

  /** Writes a sequence's page table into `target` at `offset`; returns the entries written. */
  copyPageTable(seq: number, target: Uint32Array, offset: number): number {
    const s = this.#seq(seq);
    target.set(s.pages.subarray(0, s.numPages), offset);
    return s.numPages;
  }

  /** Pages of a sequence (without copying its table). */
  pageCount(seq: number): number {
    return this.#seq(seq).numPages;
  }

  /** References held on a page: the sequences sharing it (0: free). */
  pageRefCount(page: number): number {
    return this.#state.tables.pool.refCount(page);
  }

  /**
   * Forks a sequence: the new sequence shares every page of `seq` (no copy now). Appending to
   * either copies their shared partially filled last page first. Returns the new id.
   */
  fork(seq: number): number {
    this.#check();
    return this.#state.tables.fork(this.#seq(seq));
  }

  /** Frees a sequence: its pages return to the pool unless another sequence still shares them. */
  free(seq: number): void {
    this.#check();
    this.#state.tables.free(seq, this.#seq(seq));
  }

  /** Pages an {@linkcode KVCache.extend} of these sequences would take (new and copied). */
  pagesNeeded(seqs: ArrayLike<number>, counts: number | ArrayLike<number>): number {
    return this.#state.tables.plan(seqs, counts).need;
  }

  /**
   * Reserves rows for `counts` new tokens (one count for all, or one per sequence) at the end of
   * each sequence, in every layer, and returns them. Sequences grow at once; fill the rows with
   * {@linkcode KVCache.write} or {@linkcode KVCache.encodeAppend} before attention reads them.
   * A shared partially filled last page is copied first (copy-on-write). Throws `RangeError`
   * when the pool has too few free pages, before changing anything.
   */
  extend(
    seqs: ArrayLike<number>,
    counts: number | ArrayLike<number>,
    options: ExtendOptions = {},
  ): AppendSlots {
    this.#check(true);
    return extendSequences(this.#state, seqs, counts, options);
  }

  /**
   * Writes one layer's K and V rows of the tokens reserved by `slots`, from host arrays
   * (`[token][kvHead][dim]`, tokens in the slots' order). On a GPU cache the writes go through
   * `queue.writeBuffer`, so they land before the next submitted command buffer. Slots are stale,
   * and throw `RangeError`, once a sequence they extended was freed (its pages may be another's
   * now) or a copy-on-write moved their rows; rows still shared with a fork are written for both.
   */
  write(slots: AppendSlots, layer: number, rows: LayerRows): void {
    this.#check(true);
    this.#layer(layer);
    writeSlotRows(this.#state, slots, layer, rows);
  }

  /**
   * Appends tokens to one sequence from host arrays, one array per layer (`[token][kvHead][dim]`):
   * {@linkcode KVCache.extend} then {@linkcode KVCache.write} for every layer. The data is
   * checked before the sequence grows.
   */
  append(seq: number, data: AppendData, options: ExtendOptions = {}): AppendSlots {
    this.#check(true);
    this.#seq(seq);
    return appendHostRows(this.#state, data, (tokens) => this.extend([seq], tokens, options));
  }

  /**
   * Records the append kernel: copies one layer's new K and V rows from the runner's `f32` GPU
   * buffers into the rows `slots` reserved, converting to the cache's dtype. The slots' rows are
   * uploaded once (on the first layer) into an upload region of their own, so the appends of
   * several `extend` calls may share a command buffer. Stale slots (see `write`) and bad buffers
   * throw before anything is recorded. Records into a command encoder (its own compute pass) or
   * into an open compute pass. Once the upload ring covers the extends in flight, steady state
   * creates no buffers.
   */
  encodeAppend(
    target: GPUCommandEncoder | GPUComputePassEncoder,
    options: EncodeAppendOptions,
  ): void {
    this.#check(true);
    const s = this.#state;
    encodeAppendRows(
      s,
      target,
      options,
      () => this.#layer(options?.layer),
      () => s.append ??= new AppendPath(s.gpu!, this.kvDtype, this.rowElements, this),
    );
  }

  /**
   * Gives back the upload region of `slots` (their rows for `encodeAppend`) at once, for slots
   * whose command buffers will never be submitted (a step abandoned after an error): otherwise
   * the region stays busy until `dispose()`, as the library cannot tell a dropped command buffer
   * from one not submitted yet. Never call it while a submitted command buffer holding their
   * appends may still run.
   */
  discardUpload(slots: AppendSlots): void {
    if (this.#state.disposed) return;
    this.#state.append?.discard(slots);
  }

  /**
   * A layer's per-tensor K and V scales in a cache created with `kvScales: "tensor"` (undefined
   * otherwise).
   *
   * @example
   * ```ts
   * import { createKVCache } from "@lean/attention/runner";
   * const cache = createKVCache({
   *   numLayers: 2, numKVHeads: 1, headDim: 8, numPages: 2, kvDtype: "fp8e4m3",
   *   kvScales: "tensor", kScale: [0.5, 0.25], vScale: 2,
   * });
   * console.log(cache.layerScales(1)); // { kScale: 0.25, vScale: 2 }
   * ```
   */
  layerScales(layer: number): { kScale: number; vScale: number } | undefined {
    this.#check();
    const l = this.#layer(layer);
    const t = this.#state.tensorScales;
    return t ? { kScale: t.k[l], vScale: t.v[l] } : undefined;
  }

  /**
   * A GPU cache's K and V buffers of one layer (bound whole by the decode kernel) and, for 8-bit
   * dtypes, its scale table (`[row][kvHead][2]` f32: K's scale, V's scale). With `vFromK`, `v` is
   * the K buffer: the kernels read V from K's rows.
   */
  layerBuffers(layer: number): { k: GPUBuffer; v: GPUBuffer; scales?: GPUBuffer } {
    this.#check(true);
    this.#layer(layer);
    if (!this.device) {
      throw new TypeError("layerBuffers needs a GPU cache: this cache is in host memory");
    }
    const s = this.#state.store;
    const v = this.vFromK ? s.gpuK : s.gpuV;
    return s.layer(layer, s.gpuK, v, s.gpuScales) as { k: GPUBuffer; v: GPUBuffer };
  }

  /**
   * A host cache's K and V storage of one layer (`[row][kvHead][dim]`, V's of `headDimV`) and,
   * for 8-bit dtypes, its scale table (`[row][kvHead][2]`: K's scale, V's scale), as
   * `executePagedPlanOnCpu` takes them. With `vFromK`, `v` is `undefined` (the cache stores no
   * V: it is the first `headDimV` dims of `k`'s rows).
   */
  layerData(layer: number): { k: KVArray; v: V; scales?: Float32Array } {
    this.#check();
    this.#layer(layer);
    if (this.device) throw new TypeError("layerData needs a host cache: this cache is on a GPU");
    const s = this.#state.store;
    return s.layer(layer, s.hostK, s.hostV, s.hostScales) as { k: KVArray; v: V };
  }

  /**
   * Reads a sequence's K and V of one layer back as dense arrays (`[token][kvHead][dim]`, the
   * storage dtype: `Float32Array`, or `Uint16Array` bits). With `vFromK`, V is the first
   * `headDimV` dims of each K row, copied. For tests and debugging: on a GPU cache it creates and
   * destroys a readback buffer.
   */
  async read(layer: number, seq: number): Promise<StoredRows> {
    this.#check(true);
    this.#layer(layer);
    const s = this.#seq(seq);
    const { store, gpu } = this.#state;
    return await store.read(layer, s.pages, s.numPages, s.length, gpu?.guard);
  }

  /** Memory use: pages used, free and shared, and bytes. */
  memory(): KVCacheMemory {
    return cacheMemory(this.#state);
  }

  /** GPU allocation counters: steady-state appends leave them unchanged. */
  stats(): KVCacheStats {
    return cacheStats(this.#state);
  }

  /** Destroys the cache's GPU buffers (the device stays the caller's); later calls throw. */
  dispose(): void {
    disposeCacheState(this.#state);
  }

  /** {@linkcode KVCache.dispose}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
    return Promise.resolve();
  }
}

/**
 * Creates a paged KV cache: on `options.device` when given (GPU buffers per layer), else in host
 * memory.
 *
 * @example
 * ```ts
 * import { createKVCache } from "@lean/attention/runner";
 * const cache = createKVCache({
 *   numLayers: 32, numKVHeads: 8, headDim: 128, kvDtype: "f16", pageSize: 16, numPages: 64,
 * });
 * console.log(cache.memory().bytesPerPage); // 2097152
 * ```
 */
export function createKVCache(options: KVCacheOptions & { vFromK: true }): KVCache<undefined>;
/** A cache without `vFromK`: `layerData(l).v` is its V storage. */
export function createKVCache(options: KVCacheOptions & { vFromK?: false }): KVCache<KVArray>;
/** A cache whose options may or may not say `vFromK`. */
export function createKVCache(options: KVCacheOptions): KVCache;
export function createKVCache(options: KVCacheOptions): KVCache {
  return new KVCache(options);
}
