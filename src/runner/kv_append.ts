/**
 * The GPU path of `KVCache.encodeAppend`: the append kernel (from the device context's pipeline
 * cache, with the explicit layout of `src/kernels/abi.ts`), the upload ring holding each
 * `extend`'s params and rows, and the bind groups, cached weakly by the runner's buffers. A cache
 * with `vFromK` (no V storage) appends K's rows only: V's rows get 0 words (the kernel's V half
 * does nothing, and stores K's scale as V's), its source binding is K's, its destination a
 * 16-byte placeholder.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import { APPEND_BINDING, APPEND_PARAMS_RECORD, namedEntries, packRecord } from "../kernels/abi.ts";
import { APPEND_PARAMS_WORDS, APPEND_WORKGROUP } from "../kernels/append_kernel.ts";
import type { KVDtype } from "../core/problem.ts";
import { BindGroupCache } from "../gpu/bind_group_cache.ts";
import type { GpuContext } from "../gpu/gpu_context.ts";
import { BufferUsage } from "../gpu/gpu_runtime.ts";
import { dispatchSize } from "../gpu/kernel_choice.ts";
import type { AppendSlots } from "./kv_cache_types.ts";
import { type RingRegion, UploadRing } from "./upload_ring.ts";

/**
 * One layer's append: the slots' rows, the runner's `f32` rows and the cache's buffers (no `v`
 * and no `dstV` for a cache with `vFromK`).
 */
export interface AppendJob {
  readonly slots: AppendSlots;
  /** The rows the slots reserved (checked by the cache). */
  readonly rowIds: Uint32Array;
  readonly layer: number;
  readonly k: GPUBuffer;
  readonly v?: GPUBuffer;
  readonly dstK: GPUBuffer;
  readonly dstV?: GPUBuffer;
  /** 8-bit caches: the layer's scale table, and the per-tensor scales to quantise with. */
  readonly dstScales?: GPUBuffer;
  readonly kScale?: number | "dynamic";
  readonly vScale?: number | "dynamic";
}

/** Allocation counters of the append path. */
export interface AppendStats {
  readonly buffersCreated: number;
  readonly buffersLive: number;
  readonly pipelinesCreated: number;
  readonly bindGroupsCreated: number;
  readonly bindGroupsLive: number;
  readonly appendRegions: number;
}

/** The append kernel of one cache. */
export class AppendPath {
  readonly #device: GPUDevice;
  readonly #ctx: GpuContext;
  readonly #kvDtype: KVDtype;
  readonly #rowElements: number;
  readonly #rowWords: number;
  /**
   * V's row (MLA's differ from K's): floats of a source row, words of a cache row; 0 for a cache
   * with `vFromK`, whose V half of the kernel then does nothing.
   */
  readonly #rowElementsV: number;
  readonly #rowWordsV: number;
  /** `vFromK`: the placeholder bound as V's destination (the kernel never writes it). */
  #noValues: GPUBuffer | undefined;
  #noValuesCreated = 0;
  /** 8-bit caches: KV heads of a row and layers (one scale slot per layer in each region). */
  readonly #kvHeads: number;
  readonly #scaleSlots: number;
  #kernel: { pipeline: GPUComputePipeline; group: GPUBindGroupLayout } | undefined;
  /** Regions for the append kernel's params and rows, one per `extend` (see upload_ring.ts). */
  #ring: UploadRing | undefined;
  #uploads = new WeakMap<AppendSlots, { region: RingRegion; generation: number }>();
  /** Row capacity of an append region (grows in powers of two). */
  #rowsCap = 0;
  #bindGroups = new BindGroupCache();

  /**
   * The append path of a cache on `ctx`'s device, for K rows of `rowElements` `kvDtype`s
   * (`shape`: KV heads of a row and layers, for the scale tables of 8-bit caches, V's row
   * elements when they differ from K's, and `vFromK` when V is K's rows' prefix).
   */
  constructor(
    ctx: GpuContext,
    kvDtype: KVDtype,
    rowElements: number,
    shape: { numKVHeads: number; numLayers: number; rowElementsV?: number; vFromK?: boolean } = {
      numKVHeads: 1,
      numLayers: 0,
    },
  ) {
    this.#ctx = ctx;
    this.#device = ctx.device;
    this.#kvHeads = shape.numKVHeads;
    this.#scaleSlots = KV_DTYPE_INFO[kvDtype].scaled ? shape.numLayers : 0;
    this.#kvDtype = kvDtype;
    this.#rowElements = rowElements;
    // Destination words per row: packed dtypes hold two elements per word.
    this.#rowWords = (rowElements * KV_DTYPE_INFO[kvDtype].bytes) / 4;
    this.#rowElementsV = shape.vFromK ? 0 : shape.rowElementsV ?? rowElements;
    this.#rowWordsV = (this.#rowElementsV * KV_DTYPE_INFO[kvDtype].bytes) / 4;
  }

  /**
   * Records one layer's append into a command encoder (its own compute pass) or an open
   * compute pass (`pass`, when given). Every argument is checked by the cache before.
   */
  record(
    target: GPUCommandEncoder | GPUComputePassEncoder,
    pass: GPUComputePassEncoder | undefined,
    job: AppendJob,
  ): void {
    const device = this.#device;
    const { slots, rowIds, layer, k, dstK } = job;
    // vFromK: K's source stands in for V's (read only), a placeholder for V's destination.
    const v = job.v ?? k;
    const dstV = job.dstV ?? this.#placeholder();
    const tokens = rowIds.length;
    // The slots' params and rows go to a region of their own on first use (once for every
    // layer), so the appends of several extend() calls may share a command buffer.
    const ring = this.#ring ??= new UploadRing(device, {
      label: "kv append rows",
      usage: BufferUsage.UNIFORM | BufferUsage.STORAGE,
    });
    const rowsOffset = ring.align;
    // 8-bit caches: after the rows, one aligned slot per layer for its scales.
    const scalesOffset = () =>
      rowsOffset + Math.ceil((4 * this.#rowsCap) / ring.align) * ring.align;
    let up = this.#uploads.get(slots);
    if (!up || !ring.holds(up.region, up.generation)) {
      this.#rowsCap = Math.max(this.#rowsCap, 64, 2 ** Math.ceil(Math.log2(tokens)));
      const region = ring.acquire(
        this.#scaleSlots > 0
          ? scalesOffset() + this.#scaleSlots * ring.align
          : rowsOffset + 4 * this.#rowsCap,
        String(this.#rowsCap),
      );
      const words = new Uint32Array(rowsOffset / 4 + tokens); // params, then rows
      words.set(packRecord(APPEND_PARAMS_RECORD, {
        tokens,
        rowWords: this.#rowWords,
        srcRow: this.#rowElements,
        kvHeads: this.#kvHeads,
        rowWordsV: this.#rowWordsV,
        srcRowV: this.#rowElementsV,
      }));
      words.set(rowIds, rowsOffset / 4);
      device.queue.writeBuffer(region.buffer, region.offset, words);
      up = { region, generation: region.generation };
      this.#uploads.set(slots, up);
    }
    const kernel = this.#kernel ??= this.#ctx.pipelines.append(this.#kvDtype);
    // Weakly by region and the runner's buffers: a group keeps its buffers alive.
    const region = up.region;
    const scaleAt = this.#scaleSlots > 0 ? region.offset + scalesOffset() + layer * ring.align : 0;
    if (this.#scaleSlots > 0) {
      // This layer's scales, in its own slot: written before the command buffer runs (z, w: 1
      // for dynamic scales).
      const dyn = (s: number | "dynamic" | undefined) => s === "dynamic" ? [1, 1] : [s ?? 1, 0];
      const [ks, kd] = dyn(job.kScale);
      const [vs, vd] = dyn(job.vScale);
      const scales = new Float32Array([ks, vs, kd, vd]);
      device.queue.writeBuffer(region.buffer, scaleAt, scales);
    }
    const keys = [region, k, v];
    const tag = `${layer}:${this.#rowsCap}`;
    let group = this.#bindGroups.get(keys, tag);
    if (!group) {
      const tables = region.buffer;
      group = device.createBindGroup({
        layout: kernel.group,
        entries: namedEntries(APPEND_BINDING, {
          params: { buffer: tables, offset: region.offset, size: 4 * APPEND_PARAMS_WORDS },
          rows: { buffer: tables, offset: region.offset + rowsOffset, size: 4 * this.#rowsCap },
          srcK: { buffer: k },
          srcV: { buffer: v },
          dstK: { buffer: dstK },
          dstV: { buffer: dstV },
          ...(this.#scaleSlots > 0
            ? {
              layerScale: { buffer: tables, offset: scaleAt, size: 16 },
              dstScales: { buffer: job.dstScales! },
            }
            : {}),
        }),
      });
      this.#bindGroups.set(keys, tag, group);
    }
    // One thread per word of the longer of K's and V's rows.
    const words = tokens * Math.max(this.#rowWords, this.#rowWordsV);
    const [x, y] = dispatchSize(
      Math.ceil(words / APPEND_WORKGROUP),
      device.limits.maxComputeWorkgroupsPerDimension,
    );
    const p = pass ?? (target as GPUCommandEncoder).beginComputePass({});
    // Once per command buffer: lets the ring know when the GPU is done with the rows.
    ring.mark(region, p, target);
    p.setPipeline(kernel.pipeline);
    p.setBindGroup(0, group);
    p.dispatchWorkgroups(x, y);
    if (!pass) p.end();
  }

  /** The placeholder bound as V's destination of a cache with `vFromK`, made on first use. */
  #placeholder(): GPUBuffer {
    if (!this.#noValues) {
      this.#noValues = this.#device.createBuffer({
        size: 16,
        usage: BufferUsage.STORAGE,
        label: "lean-attention kv append no values",
      });
      this.#noValuesCreated++;
    }
    return this.#noValues;
  }

  /** Gives back the upload region of slots whose command buffers will never be submitted. */
  discard(slots: AppendSlots): void {
    const up = this.#uploads.get(slots);
    if (up) this.#ring?.release(up.region, up.generation);
    this.#uploads.delete(slots);
  }

  /** Allocation counters. */
  stats(): AppendStats {
    const ring = this.#ring;
    return {
      buffersCreated: (ring?.buffersCreated ?? 0) + this.#noValuesCreated,
      buffersLive: (ring?.buffersLive ?? 0) + (this.#noValues ? 1 : 0),
      pipelinesCreated: this.#ctx.pipelines.created + (ring?.pipelinesCreated ?? 0),
      bindGroupsCreated: this.#bindGroups.created,
      bindGroupsLive: this.#bindGroups.live,
      appendRegions: ring?.regions.total ?? 0,
    };
  }

  /** Destroys the upload ring and forgets the bind groups. */
  destroy(): void {
    this.#ring?.destroy();
    this.#noValues?.destroy();
    this.#noValues = undefined;
    this.#bindGroups.clear();
  }
}
