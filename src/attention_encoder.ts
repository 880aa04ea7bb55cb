/**
 * The runner-facing API: attention recorded into the runner's own command encoder on the
 * runner's `GPUDevice`, reading K/V from a paged {@linkcode KVCache}, with no readback.
 *
 * `plan(cache, step)` runs once per decode step on the host (the schedule and the page tables of
 * the batch) and serves every layer. `encode(encoder, { plan, layer, q, out })` records the
 * decode and merge dispatches of one layer: the first `encode` of a plan uploads its tables with
 * `queue.writeBuffer` (so submit a step's command buffer before encoding the next step's plan),
 * later layers only record. Pipelines, bind groups and internal buffers are cached: steady state
 * creates nothing.
 *
 * @module
 */

import { kernelParams, type KernelSpec, PARAMS_WORDS, specKey } from "../shaders/kernel_spec.ts";
import { mergeWorkgroups } from "../shaders/merge_kernel.ts";
import { BufferIds } from "./buffer_ids.ts";
import { BufferPool } from "./buffer_pool.ts";
import { tableProfile } from "./device_profile.ts";
import {
  acceptsSubgroupsDirective,
  BufferUsage,
  kernelCaps,
  summarizeAdapter,
} from "./gpu_runtime.ts";
import type { KVCache } from "./kv_cache.ts";
import {
  type CachePlanOptions,
  createPagedPlan,
  type PagedPlan,
  type PageTables,
  planForCache,
} from "./paged_plan.ts";
import { PipelineCache } from "./pipeline_cache.ts";
import type { DecodeShape, Strategy } from "./problem.ts";
import { slotFloats } from "./reducer.ts";
import { PIECE_STRIDE, REDUCE_STRIDE } from "./scheduler.ts";
import type { TileOptions } from "./tile_config.ts";
import { dispatchSize, kernelSpec, type KernelTuning } from "./webgpu_backend.ts";

/**
 * Options of {@linkcode createAttentionEncoder}.
 *
 * @example
 * ```ts
 * import type { AttentionEncoderOptions } from "@lean/attention";
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
 * import { createKVCache, type EncodeAttentionOptions, planForCache } from "@lean/attention";
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
  /** Output, `f32`, shaped like `q`. */
  out: GPUBuffer;
  /** Natural-log LSE, `f32`, `[seq][qpos][head]` (optional). */
  lse?: GPUBuffer;
}

/**
 * Allocation counters of an encoder.
 *
 * @example
 * ```ts
 * import type { AttentionEncoderStats } from "@lean/attention";
 * // Steady state: a step's attention.stats() equals the previous step's.
 * function steady(before: AttentionEncoderStats, after: AttentionEncoderStats): boolean {
 *   return after.buffersCreated === before.buffersCreated &&
 *     after.pipelinesCreated === before.pipelinesCreated &&
 *     after.bindGroupsCreated === before.bindGroupsCreated;
 * }
 * const s = { buffersCreated: 6, buffersLive: 6, pipelinesCreated: 2, bindGroupsCreated: 4 };
 * console.log(steady(s, { ...s })); // true
 * ```
 */
export interface AttentionEncoderStats {
  /** GPU buffers created since the encoder was made. */
  readonly buffersCreated: number;
  /** GPU buffers alive now. */
  readonly buffersLive: number;
  /** Compute pipelines compiled. */
  readonly pipelinesCreated: number;
  /** Bind groups created (cached per plan, layer and buffers). */
  readonly bindGroupsCreated: number;
}

const STORAGE_OUT = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;
/** Params (uniform), schedule and page list (read-only storage) of a plan, in one buffer. */
const TABLES = BufferUsage.UNIFORM | BufferUsage.STORAGE | BufferUsage.COPY_DST;

function isBuffer(x: unknown): x is GPUBuffer {
  return typeof (x as GPUBuffer)?.destroy === "function" &&
    typeof (x as GPUBuffer)?.size === "number";
}

/** The tables of one plan as uploaded: what every layer's bind group points at. */
interface Uploaded {
  plan: PagedPlan;
  decode: GPUComputePipeline;
  merge: GPUComputePipeline | undefined;
  decodeSize: [number, number];
  mergeSize: [number, number];
  /** Bind group key prefix: the pipelines' spec key and the table regions. */
  prefix: string;
  /** Where the schedule and the page list lie in the tables buffer, and their bound sizes. */
  regions: TableRegions;
}

/** Byte ranges of the tables buffer: params at 0, then the schedule, then the page list. */
interface TableRegions {
  schedOffset: number;
  schedBytes: number;
  pagesOffset: number;
  pagesBytes: number;
  bytes: number;
}

/** The compiled kernels of one kernel spec. */
interface Kernels {
  /** Shape fields the spec was derived from. */
  signature: string;
  spec: KernelSpec;
  key: string;
  layout: GPUBindGroupLayout;
  decode: GPUComputePipeline;
  /** Compiled on the first plan with partial states. */
  merge: GPUComputePipeline | undefined;
}

/** The bind group a layer slot used last, and what it was made for. */
interface RecentGroup {
  generation: number;
  prefix: string;
  q: GPUBuffer;
  out: GPUBuffer;
  lse: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  group: GPUBindGroup;
}

/**
 * Attention for LLM runners on a caller's device; create it with
 * {@linkcode createAttentionEncoder}.
 *
 * @example
 * ```ts ignore
 * import { createAttentionEncoder, createKVCache } from "@lean/attention";
 * const adapter = await navigator.gpu.requestAdapter();
 * const device = await adapter!.requestDevice();
 * const cache = createKVCache({ device, numLayers: 2, numKVHeads: 2, headDim: 64, numPages: 64 });
 * const attention = await createAttentionEncoder(device);
 * const seq = cache.addSequence();
 * const slots = cache.extend([seq], 1); // this step's token, every layer
 * const plan = attention.plan(cache, { seqs: [seq], numHeads: 8 });
 * const buf = (n: number) => device.createBuffer({ size: 4 * n, usage: GPUBufferUsage.STORAGE });
 * const k = buf(128), v = buf(128), q = buf(512), out = buf(512);
 * const enc = device.createCommandEncoder();
 * for (let layer = 0; layer < 2; layer++) {
 *   cache.encodeAppend(enc, { slots, layer, k, v }); // the runner's new K/V rows
 *   attention.encode(enc, { plan, layer, q, out });
 * }
 * device.queue.submit([enc.finish()]);
 * ```
 */
export class AttentionEncoder {
  /** The runner's device. */
  readonly device: GPUDevice;
  /** The lean grid plans are cut for. */
  readonly grid: number;
  #tiles: TileOptions;
  #strategy: Strategy | undefined;
  #batchInvariant: boolean;
  #caps: ReturnType<typeof kernelCaps>;
  #tuning: KernelTuning;
  #pipelines: PipelineCache;
  #pool: BufferPool;
  #uploaded: Uploaded | undefined;
  /** The last plan of `plan()`: the next step's plan derives from it while tile counts hold. */
  #lastPlan: PagedPlan | undefined;
  #buffers: GPUBuffer[] = [];
  #groups = new Map<string, GPUBindGroup>();
  #groupsCreated = 0;
  #generation = 0;
  #recent = new Map<number, RecentGroup>();
  #sizes = new WeakMap<GPUBuffer, number>();
  #kernels: Kernels | undefined;
  #staging = new Uint32Array(0);
  /** Words of the schedule and page-list regions so far. */
  #schedCap = 0;
  #pagesCap = 0;
  /** Offset alignment of the tables buffer's regions (uniform and storage bindings). */
  #align: number;
  #ids = new BufferIds();
  #disposed = false;

  /** Prefer {@linkcode createAttentionEncoder}. */
  constructor(
    device: GPUDevice,
    grid: number,
    options: AttentionEncoderOptions,
    caps: ReturnType<typeof kernelCaps>,
    pipelines: PipelineCache,
  ) {
    this.device = device;
    this.grid = grid;
    this.#tiles = { tileTokens: options.tileTokens, workgroupSize: options.workgroupSize };
    this.#strategy = options.strategy;
    this.#batchInvariant = options.batchInvariant ?? false;
    this.#caps = caps;
    this.#tuning = options.kernel ?? {};
    this.#pipelines = pipelines;
    this.#pool = new BufferPool(device);
    const limits = device.limits;
    this.#align = Math.max(
      256,
      limits.minUniformBufferOffsetAlignment ?? 256,
      limits.minStorageBufferOffsetAlignment ?? 256,
    );
  }

  #check(): void {
    if (this.#disposed) {
      throw new Error(
        "AttentionEncoder is disposed: create a new one with createAttentionEncoder()",
      );
    }
  }

  /**
   * Plans one step over sequences of a cache (host only; reused by every layer). Extend the
   * sequences with the step's tokens first: a plan sees the lengths and pages of the moment.
   */
  plan(cache: KVCache, step: CachePlanOptions): PagedPlan {
    this.#check();
    if (cache?.device !== this.device) {
      throw new TypeError("cache must be a KVCache on this encoder's device");
    }
    const plan = planForCache(cache, step, {
      ...this.#tiles,
      grid: this.grid,
      strategy: step?.strategy ?? this.#strategy,
      batchInvariant: this.#batchInvariant,
      previous: this.#lastPlan,
    });
    this.#lastPlan = plan;
    return plan;
  }

  /** Plans a batch over explicit page tables (K/V storage passed to `encode` as `k`, `v`). */
  planPages(
    shape: DecodeShape,
    tables: PageTables,
    options: { scale?: number; strategy?: Strategy } = {},
  ): PagedPlan {
    this.#check();
    return createPagedPlan(shape, tables, {
      ...this.#tiles,
      grid: this.grid,
      strategy: options.strategy ?? this.#strategy,
      batchInvariant: this.#batchInvariant,
      scale: options.scale,
    });
  }

  /**
   * A runner buffer's size, checked to be a `GPUBuffer` on first sight. Sizes never change, and
   * reading one from Dawn's objects crosses into native code: known buffers are looked up.
   */
  #sizeOf(name: string, b: unknown): number {
    let size = this.#sizes.get(b as GPUBuffer);
    if (size === undefined) {
      if (!isBuffer(b)) throw new TypeError(`${name} must be a GPUBuffer: got ${typeof b}`);
      size = b.size;
      this.#sizes.set(b, size);
    }
    return size;
  }

  /** Takes a pooled buffer; a new buffer for a role drops the bind groups that used the old. */
  #take(index: number, role: string, bytes: number, usage: number): GPUBuffer {
    const b = this.#pool.get(role, bytes, usage);
    if (this.#buffers[index] !== b) {
      this.#buffers[index] = b;
      this.#groups.clear();
      this.#generation++;
    }
    return b;
  }

  /** The kernels for a plan's shape; looked up again only when the shape fields change. */
  #kernelsFor(plan: PagedPlan): Kernels {
    const { problem: p, tiles: t } = plan;
    const signature =
      `${p.headDim}:${p.kvDtype}:${t.tileTokens}:${t.rowsPerBlock}:${t.workgroupSize}`;
    let k = this.#kernels;
    if (k?.signature !== signature) {
      const spec: KernelSpec = {
        ...kernelSpec(plan, this.#caps, this.#tuning, true),
        sharedLayout: true,
      };
      k = {
        signature,
        spec,
        key: specKey("decode", spec),
        layout: this.#pipelines.sharedLayout(spec).group,
        decode: this.#pipelines.get("decode", spec),
        merge: undefined,
      };
      this.#kernels = k;
    }
    return k;
  }

  /** Uploads a plan's params, schedule and page list with one `writeBuffer`. */
  #upload(plan: PagedPlan): Uploaded {
    const { problem: p, schedule: s, paging } = plan;
    const kernels = this.#kernelsFor(plan);
    const merges = s.reduce.length / REDUCE_STRIDE;
    if (merges > 0) kernels.merge ??= this.#pipelines.get("merge", kernels.spec);
    // Capacities are upper bounds for the batch's segments and the grid, so a steady batch
    // composition never regrows a buffer or moves a region.
    const segments = plan.numSegments;
    const maxWg = Math.max(s.workgroups, Math.min(this.grid, plan.numTiles));
    const maxPieces = maxWg + segments;
    const maxReduce = Math.min(segments, 2 * maxWg);
    const pieceBase = s.workgroups + 1;
    const reduceBase = pieceBase + s.pieces.length;
    const schedWords = reduceBase + s.reduce.length;
    // Regions only grow, so bind groups made for a larger plan stay valid for smaller ones.
    const schedCap = Math.max(
      this.#schedCap,
      schedWords,
      maxWg + 1 + maxPieces * PIECE_STRIDE + maxReduce * REDUCE_STRIDE,
    );
    const pagesCap = Math.max(
      this.#pagesCap,
      paging.pages.length,
      (plan.cache?.numPages ?? 0) + 64,
      16,
    );
    this.#schedCap = schedCap;
    this.#pagesCap = pagesCap;
    const align = this.#align;
    const schedOffset = align;
    const pagesOffset = schedOffset + Math.ceil((4 * schedCap) / align) * align;
    const regions: TableRegions = {
      schedOffset,
      schedBytes: 4 * schedCap,
      pagesOffset,
      pagesBytes: 4 * pagesCap,
      bytes: pagesOffset + 4 * pagesCap,
    };
    const tables = this.#take(0, "tables", regions.bytes, TABLES);
    const slot = 4 * slotFloats(plan.tiles.rowsPerBlock, p.headDim);
    this.#take(
      1,
      "partials",
      Math.max(16, slot * Math.max(s.partialSlots, maxPieces)),
      STORAGE_OUT,
    );
    this.#take(2, "lse scratch", Math.max(16, 4 * p.numSeqs * p.qLen * p.numHeads), STORAGE_OUT);
    // One staging array, one write: each writeBuffer costs ~15 us in Deno whatever its size.
    const used = pagesOffset / 4 + paging.pages.length;
    if (this.#staging.length < used) this.#staging = new Uint32Array(regions.bytes / 4);
    const staging = this.#staging;
    staging.set(
      kernelParams({
        ...p,
        pieceBase,
        reduceBase,
        count: s.workgroups,
        mergeCount: merges,
        scale: plan.scale,
        pageShift: paging.pageShift,
      }),
      0,
    );
    const at = schedOffset / 4;
    staging.set(s.pieceOffsets, at);
    staging.set(s.pieces, at + pieceBase);
    staging.set(s.reduce, at + reduceBase);
    staging.set(paging.pages, pagesOffset / 4);
    this.device.queue.writeBuffer(tables, 0, staging.buffer, 0, 4 * used);
    const maxDim = this.device.limits.maxComputeWorkgroupsPerDimension;
    return {
      plan,
      decode: kernels.decode,
      merge: merges > 0 ? kernels.merge : undefined,
      decodeSize: dispatchSize(s.workgroups, maxDim),
      mergeSize: dispatchSize(
        Math.max(1, mergeWorkgroups(merges, plan.tiles.rowsPerBlock)),
        maxDim,
      ),
      prefix: `${kernels.key}:${regions.schedBytes}:${regions.pagesOffset}:${regions.pagesBytes}`,
      regions,
    };
  }

  /** The bind group of both kernels for a layer's buffers (cached by buffer identity). */
  #bindGroup(
    up: Uploaded,
    q: GPUBuffer,
    out: GPUBuffer,
    lseBuffer: GPUBuffer,
    kb: GPUBuffer,
    vb: GPUBuffer,
  ): GPUBindGroup {
    const key = `${up.prefix}:${this.#ids.of(q)}:${this.#ids.of(out)}:${this.#ids.of(lseBuffer)}:${
      this.#ids.of(kb)
    }:${this.#ids.of(vb)}`;
    let group = this.#groups.get(key);
    if (!group) {
      const [tables, partials] = this.#buffers;
      const r = up.regions;
      const whole = [q, kb, vb, out, partials, lseBuffer];
      group = this.device.createBindGroup({
        layout: this.#kernels!.layout,
        entries: [
          { binding: 0, resource: { buffer: tables, offset: 0, size: 4 * PARAMS_WORDS } },
          { binding: 1, resource: { buffer: tables, offset: r.schedOffset, size: r.schedBytes } },
          ...whole.map((buffer, i) => ({ binding: 2 + i, resource: { buffer } })),
          { binding: 8, resource: { buffer: tables, offset: r.pagesOffset, size: r.pagesBytes } },
        ],
      });
      this.#groupsCreated++;
      this.#groups.set(key, group);
    }
    return group;
  }

  /**
   * Records one layer's attention for a plan: the decode dispatch and, when the plan has partial
   * states, the merge dispatch, into `target` (a command encoder: in a compute pass of their own;
   * or an open compute pass, whose pipeline and bind group 0 it then leaves set to its own).
   * Reads the plan cache's `layer` (or the `k`/`v` given), writes `out` and, when given, `lse`.
   * Nothing is read back.
   */
  encode(target: GPUCommandEncoder | GPUComputePassEncoder, options: EncodeAttentionOptions): void {
    this.#check();
    const { plan, q, out, lse } = options ?? ({} as EncodeAttentionOptions);
    if (!plan?.paging) throw new TypeError("plan must be a paged plan from plan() or planPages()");
    if (plan.grid !== this.grid) {
      throw new RangeError(
        `plan must be cut for this encoder's grid (${this.grid}): got grid ${plan.grid}`,
      );
    }
    let k = options.k;
    let v = options.v;
    const cache = plan.cache;
    if (options.layer !== undefined) {
      if (!cache) throw new TypeError("layer needs a plan made from a cache: pass k and v instead");
      if (cache.version !== plan.cacheVersion) {
        throw new RangeError(
          `plan is stale: the cache changed (version ${cache.version}, planned at ${plan.cacheVersion}); plan again after extend, fork or free`,
        );
      }
      ({ k, v } = cache.layerBuffers(options.layer));
    } else if (!isBuffer(k) || !isBuffer(v)) {
      throw new TypeError("encode needs a layer (plans of a cache) or k and v GPUBuffers");
    }
    const p = plan.problem;
    const qBytes = 4 * p.numSeqs * p.qLen * p.numHeads * p.headDim;
    const kvBytes = plan.paging.numPages * plan.paging.pageSize * p.numKVHeads * p.headDim *
      (p.kvDtype === "f32" ? 4 : 2);
    this.#checkSize("q", q, qBytes);
    this.#checkSize("out", out, qBytes);
    this.#checkSize("k", k, kvBytes);
    this.#checkSize("v", v, kvBytes);
    if (lse !== undefined) this.#checkSize("lse", lse, qBytes / p.headDim);
    const pass = typeof (target as GPUComputePassEncoder)?.dispatchWorkgroups === "function"
      ? target as GPUComputePassEncoder
      : undefined;
    if (!pass && typeof (target as GPUCommandEncoder)?.beginComputePass !== "function") {
      throw new TypeError("target must be a GPUCommandEncoder or a GPUComputePassEncoder");
    }
    let up = this.#uploaded;
    if (up?.plan !== plan) {
      up = this.#upload(plan);
      this.#uploaded = up;
    }
    const lseBuffer = lse ?? this.#buffers[2];
    const kb = k as GPUBuffer;
    const vb = v as GPUBuffer;
    // The last bind group of each layer slot, by identity: the steady-state path.
    const slotIndex = options.layer ?? -1;
    let recent = this.#recent.get(slotIndex);
    if (
      !recent || recent.generation !== this.#generation || recent.prefix !== up.prefix ||
      recent.q !== q || recent.out !== out || recent.lse !== lseBuffer || recent.k !== kb ||
      recent.v !== vb
    ) {
      recent = {
        generation: this.#generation,
        prefix: up.prefix,
        q,
        out,
        lse: lseBuffer,
        k: kb,
        v: vb,
        group: this.#bindGroup(up, q, out, lseBuffer, kb, vb),
      };
      this.#recent.set(slotIndex, recent);
    }
    const cp = pass ?? (target as GPUCommandEncoder).beginComputePass({});
    // Both kernels use the shared layout: the group stays bound across the pipeline change.
    cp.setPipeline(up.decode);
    cp.setBindGroup(0, recent.group);
    cp.dispatchWorkgroups(up.decodeSize[0], up.decodeSize[1]);
    if (up.merge) {
      cp.setPipeline(up.merge);
      cp.dispatchWorkgroups(up.mergeSize[0], up.mergeSize[1]);
    }
    if (!pass) cp.end();
  }

  #checkSize(name: string, b: unknown, bytes: number): void {
    const size = this.#sizeOf(name, b);
    if (size < bytes) {
      throw new RangeError(`${name} must hold at least ${bytes} bytes for this plan: got ${size}`);
    }
  }

  /** Allocation counters: steady-state steps leave them unchanged. */
  stats(): AttentionEncoderStats {
    return {
      buffersCreated: this.#pool.created,
      buffersLive: this.#pool.live,
      pipelinesCreated: this.#pipelines.created,
      bindGroupsCreated: this.#groupsCreated,
    };
  }

  /** Destroys the encoder's own buffers (the device, cache and runner buffers stay). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#pool.destroy();
    this.#pipelines.clear();
    this.#groups.clear();
    this.#uploaded = undefined;
    this.#lastPlan = undefined;
    this.#kernels = undefined;
    this.#recent.clear();
  }
}

/**
 * Creates an attention encoder on a runner's device (Deno's WebGPU, a browser's, or Dawn's).
 * The device is the caller's: the encoder never destroys it.
 *
 * @example
 * ```ts ignore
 * import { createAttentionEncoder } from "@lean/attention";
 * const device = await (await navigator.gpu.requestAdapter())!.requestDevice();
 * const attention = await createAttentionEncoder(device, { grid: 1056 });
 * console.log(attention.grid); // 1056
 * ```
 */
export async function createAttentionEncoder(
  device: GPUDevice,
  options: AttentionEncoderOptions = {},
): Promise<AttentionEncoder> {
  if (typeof device?.createBindGroup !== "function") {
    throw new TypeError(
      `device must be a GPUDevice: got ${device === null ? "null" : typeof device}`,
    );
  }
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `options must be an object: got ${options === null ? "null" : typeof options}`,
    );
  }
  const info = (device as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  let grid = options.grid;
  if (grid === undefined) {
    const summary = summarizeAdapter(info);
    grid = tableProfile(summary.description, summary.software).grid;
  } else if (typeof grid !== "number") {
    throw new TypeError(`grid must be a number: got ${typeof grid}`);
  } else if (!Number.isInteger(grid) || grid < 1) {
    throw new RangeError(`grid must be a positive integer: got ${grid}`);
  }
  const caps = kernelCaps(device, info);
  const enableDirective = caps.subgroups && await acceptsSubgroupsDirective(device);
  const pipelines = new PipelineCache(device, { enableDirective });
  return new AttentionEncoder(device, grid, options, caps, pipelines);
}
