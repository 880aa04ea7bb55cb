/**
 * The runner-facing API: attention recorded into the runner's own command encoder on the
 * runner's `GPUDevice`, reading K/V from a paged {@linkcode KVCache}, with no readback.
 *
 * `plan(cache, step)` runs once per decode step on the host (the schedule and the page tables of
 * the batch) and serves every layer. `encode(encoder, { plan, layer, q, out })` records the
 * decode and merge dispatches of one layer (the attention program of `src/gpu/attention_program.ts`,
 * as the dense decoder runs it): the first `encode` of a plan uploads its tables with
 * `queue.writeBuffer` into a region of their own (see `upload_ring.ts`), so any number of plans
 * may be encoded before a submit; later layers only record. Pipelines, bind groups and internal
 * buffers are cached: once the ring of table regions covers the steps in flight, steady state
 * creates nothing.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import { BindGroupCache } from "../gpu/bind_group_cache.ts";
import type { DeviceGuard } from "../gpu/device_guard.ts";
import type { GpuContext } from "../gpu/gpu_context.ts";
import { BufferUsage, type KernelCaps } from "../gpu/gpu_runtime.ts";
import type { KVCache } from "./kv_cache.ts";
import { IndptrPageTable } from "./indptr_page_table.ts";
import {
  type CachePlanOptions,
  createPagedPlan,
  type PagedPlan,
  type PageTables,
  planForCache,
} from "./paged_plan.ts";
import type { PipelineCache } from "../gpu/pipeline_cache.ts";
import type { DecodeShape, Strategy } from "../core/problem.ts";
import { slotFloats } from "../core/reducer.ts";
import type { TileOptions } from "../plan/tiles.ts";
import { tiledFitsDevice } from "../kernels/tiled_layout.ts";
import { UploadRing } from "./upload_ring.ts";
import { cacheById } from "./cache_registry.ts";
import type { KVScaleSource } from "../kernels/kernel_spec.ts";
import { kernelSpec, matrixUnitsOn } from "../gpu/kernel_choice.ts";
import type { KernelTuning } from "../gpu/kernel_tuning.ts";
import {
  bindProgram,
  programLayout,
  programRun,
  recordProgram,
  writeProgramTables,
} from "../gpu/attention_program.ts";
import {
  type CheckedBinding,
  type EncodeBindings,
  encodeStorage,
  RunnerBuffers,
  type RunnerFormats,
} from "./encoder_checks.ts";
import {
  encoderKernels,
  type Kernels,
  type Scratch,
  scratchFor,
  tableCapacity,
  type Uploaded,
} from "./encoder_tables.ts";
import type {
  AttentionEncoderOptions,
  AttentionEncoderStats,
  EncodeAttentionOptions,
} from "./encoder_types.ts";

export type {
  AttentionEncoderOptions,
  AttentionEncoderStats,
  EncodeAttentionOptions,
} from "./encoder_types.ts";

/** Params (uniform), schedule and page list (read-only storage) of plans, in ring regions. */
const TABLES = BufferUsage.UNIFORM | BufferUsage.STORAGE;

/**
 * Attention for LLM runners on a caller's device; create it with
 * {@linkcode createAttentionEncoder}.
 *
 * @example
 * ```ts ignore
 * import { createAttentionEncoder, createKVCache } from "@lean/attention/runner";
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
  #caps: KernelCaps;
  #tuning: KernelTuning;
  #pipelines: PipelineCache;
  #ring: UploadRing;
  #guard: DeviceGuard;
  /** Each plan's upload; a plan whose region was reclaimed is uploaded again. */
  #uploads = new WeakMap<PagedPlan, Uploaded>();
  /** The last plan of `plan()`: the next step's plan derives from it while tile counts hold. */
  #lastPlan: PagedPlan | undefined;
  #groups = new BindGroupCache();
  /** The bind group key of one encode, reused (and emptied after use: it must not hold buffers). */
  #keys: object[] = [];
  /** The bind group list of one encode (one window), reused likewise. */
  #groupList: GPUBindGroup[] = [];
  #buffers: RunnerBuffers;
  /** Element types of the query and output buffers (compile-time flags of the kernels). */
  #io: { qDtype?: "f16"; outDtype?: "f16" };
  #formats: RunnerFormats;
  #kernels: Kernels | undefined;
  #scratch: Scratch | undefined;
  #staging = new Uint32Array(0);
  /** Words of the schedule and page-list parts of a region so far (they only grow). */
  #capacity = { schedWords: 0, pageWords: 0 };
  #disposed = false;

  /** Prefer {@linkcode createAttentionEncoder}, which opens the device's context. */
  constructor(ctx: GpuContext, grid: number, options: AttentionEncoderOptions) {
    const device = ctx.device;
    this.device = device;
    this.grid = grid;
    this.#tiles = {
      tileTokens: options.tileTokens,
      workgroupSize: options.workgroupSize,
      // MLA-sized row groups get the tiled kernel's blocks where the device holds it.
      matrixBlocks: options.kernel?.tiled !== false &&
        tiledFitsDevice(device.limits.maxComputeWorkgroupStorageSize),
      // Row groups of 16 or more over f16 or 8-bit K/V take the matrix kernel where asked and
      // offered.
      matrixUnits: options.kernel?.matrixMath === true && matrixUnitsOn(ctx.caps),
      matrixUnitRows: options.kernel?.matrixRows,
      matrixUnitMinRows: options.kernel?.matrixMinRows,
      padRows: options.kernel?.padRows,
    };
    this.#strategy = options.strategy;
    this.#batchInvariant = options.batchInvariant ?? false;
    this.#caps = ctx.caps;
    this.#tuning = options.kernel ?? {};
    this.#pipelines = ctx.pipelines;
    this.#ring = new UploadRing(device, { label: "plan tables", usage: TABLES });
    this.#guard = ctx.guard;
    this.#buffers = new RunnerBuffers(device.limits.minStorageBufferOffsetAlignment ?? 256);
    this.#io = {
      ...(options.qDtype === "f16" ? { qDtype: "f16" } : {}),
      ...(options.outDtype === "f16" ? { outDtype: "f16" } : {}),
    };
    this.#formats = {
      qBytes: options.qDtype === "f16" ? 2 : 4,
      outBytes: options.outDtype === "f16" ? 2 : 4,
    };
  }

  #check(): void {
    if (this.#disposed) {
      throw new Error(
        "AttentionEncoder is disposed: create a new one with createAttentionEncoder()",
      );
    }
    this.#guard.check();
  }

  /**
   * Plans one step over sequences of a cache (host only; reused by every layer). Extend the
   * sequences with the step's tokens first: a plan sees the lengths and pages of the moment.
   * A runner's own page table (`createIndptrPageTable`) plans likewise; its plans are encoded
   * with the runner's page buffers as `k` and `v`.
   */
  plan(cache: KVCache | IndptrPageTable, step: CachePlanOptions): PagedPlan {
    this.#check();
    if (!(cache instanceof IndptrPageTable) && cache?.device !== this.device) {
      throw new TypeError(
        "cache must be a KVCache on this encoder's device or a runner's page table (createIndptrPageTable)",
      );
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

  /** The kernels for a plan's shape; looked up again only when the shape fields change. */
  #kernelsFor(plan: PagedPlan): Kernels {
    return this.#kernels = encoderKernels(plan, this.#kernels, this.#pipelines, {
      // Paged 8-bit K/V: scales per (row, KV head) beside the pages, or (a cache created with
      // per-tensor scales) the layer's pair, which every row of its table holds.
      ...kernelSpec(plan, this.#caps, this.#tuning, true, scaleSource(plan)),
      ...this.#io,
    });
  }

  /** Uploads a plan's params, schedule and page list into a region of its own, in one write. */
  #upload(plan: PagedPlan): Uploaded {
    const { problem: p, schedule: s } = plan;
    const kernels = this.#kernelsFor(plan);
    // The region layout of the tables (capacities only grow, see tableCapacity).
    const capacity = tableCapacity(plan, this.grid, this.#capacity);
    const layout = programLayout(plan, this.#ring.align, capacity);
    this.#capacity = { schedWords: layout.schedBytes / 4, pageWords: layout.pagesBytes / 4 };
    if (layout.merges > 0) kernels.merge ??= this.#pipelines.get("merge", kernels.spec);
    const slot = 4 * slotFloats(plan.tiles.rowsPerBlock, p.headDimV);
    const scratch = this.#scratch = scratchFor(
      this.#ring,
      this.#scratch,
      slot * Math.max(s.partialSlots, capacity.maxPieces),
      4 * p.totalQueries * p.numHeads,
    );
    const layoutKey = `${layout.schedBytes}:${layout.pagesBytes}:${layout.headsBytes}`;
    const region = this.#ring.acquire(layout.bytes, layoutKey);
    // One staging array, one write: each writeBuffer costs ~15 us in Deno whatever its size.
    if (this.#staging.length < layout.bytes / 4) this.#staging = new Uint32Array(layout.bytes / 4);
    const used = writeProgramTables(this.#staging, plan, layout, plan.scale);
    this.device.queue.writeBuffer(region.buffer, region.offset, this.#staging.buffer, 0, 4 * used);
    const run = programRun(
      { ...kernels, merge: layout.merges > 0 ? kernels.merge : undefined },
      layout,
      plan.tiles.rowsPerBlock,
      this.device.limits.maxComputeWorkgroupsPerDimension,
    );
    return {
      region,
      generation: region.generation,
      run,
      tag: `${kernels.key}:${layoutKey}:${scratch.id}`,
      layout,
    };
  }

  /**
   * The bind group of both kernels for a layer's buffers, cached weakly by buffer identity (a
   * group keeps its buffers alive: the runner's must be free to go) and by their ranges.
   */
  #bindGroup(up: Uploaded, b: EncodeBindings & { readonly scales?: CheckedBinding }): GPUBindGroup {
    // The region is a key too: a group per region and buffers, dropped with either.
    const keys = this.#keys;
    keys[0] = up.region;
    keys[1] = b.q.buffer;
    keys[2] = b.out.buffer;
    keys[3] = b.lse.buffer;
    keys[4] = b.k.buffer;
    keys[5] = b.v.buffer;
    // 8-bit caches: the scale table is a key too.
    if (b.scales) keys[6] = b.scales.buffer;
    else keys.length = 6;
    const tag =
      `${up.tag}|${b.q.offset}+${b.q.size}|${b.out.offset}+${b.out.size}|${b.lse.offset}+${b.lse.size}|${b.k.offset}+${b.k.size}|${b.v.offset}+${b.v.size}`;
    let group = this.#groups.get(keys, tag);
    if (!group) {
      const { scales, ...buffers } = b;
      group = bindProgram(this.device, this.#kernels!.group, up.layout, up.region, 0, {
        ...buffers,
        partials: { buffer: this.#scratch!.partials },
        ...(scales ? { kvScales: scales } : {}),
      });
      this.#groups.set(keys, tag, group);
    }
    keys.length = 0;
    return group;
  }

  /**
   * Records one layer's attention for a plan: the decode dispatch and, when the plan has partial
   * states, the merge dispatch, into `target` (a command encoder: in a compute pass of their own;
   * or an open compute pass, whose pipeline and bind group 0 it then leaves set to its own).
   * Reads the plan cache's `layer` (or the `k`/`v` given), writes `out` and, when given, `lse`.
   * Nothing is read back. Every buffer is checked before anything is recorded (a bad one would
   * otherwise invalidate the runner's whole command buffer).
   */
  encode(target: GPUCommandEncoder | GPUComputePassEncoder, options: EncodeAttentionOptions): void {
    this.#check();
    const { plan, q, out, lse } = options ?? ({} as EncodeAttentionOptions);
    if (plan?.kv?.kind !== "paged") {
      throw new TypeError("plan must be a paged plan from plan() or planPages()");
    }
    if (plan.grid !== this.grid) {
      throw new RangeError(
        `plan must be cut for this encoder's grid (${this.grid}): got grid ${plan.grid}`,
      );
    }
    const { k, v, scales } = encodeStorage(plan, options, this.device);
    const b = this.#buffers.checkAll(plan, { q, out, lse, k, v, scales }, this.#formats);
    const pass = typeof (target as GPUComputePassEncoder)?.dispatchWorkgroups === "function"
      ? target as GPUComputePassEncoder
      : undefined;
    if (!pass && typeof (target as GPUCommandEncoder)?.beginComputePass !== "function") {
      throw new TypeError("target must be a GPUCommandEncoder or a GPUComputePassEncoder");
    }
    let up = this.#uploads.get(plan);
    if (!up || !this.#ring.holds(up.region, up.generation)) {
      up = this.#upload(plan);
      this.#uploads.set(plan, up);
    }
    const scratchLse = this.#scratch!.lse;
    const group = this.#bindGroup(up, {
      ...b,
      lse: b.lse ?? { buffer: scratchLse, offset: 0, size: scratchLse.size },
    });
    const cp = pass ?? (target as GPUCommandEncoder).beginComputePass({});
    // Once per command buffer: lets the ring know when the GPU is done with the tables.
    this.#ring.mark(up.region, cp, target);
    // Paged plans have one KV window: one group, bound once for both kernels.
    const groups = this.#groupList;
    groups[0] = group;
    recordProgram(cp, up.run, groups);
    groups.length = 0;
    if (!pass) cp.end();
  }

  /**
   * Gives back a plan's upload region at once, for a plan whose command buffers will never be
   * submitted (a step abandoned after an error, a benchmark that only records): otherwise the
   * region stays busy until `dispose()`, as the library cannot tell a dropped command buffer from
   * one not submitted yet. Never call it while a submitted command buffer holding the plan may
   * still run. A later `encode` of the plan uploads it again.
   */
  discardUpload(plan: PagedPlan): void {
    if (this.#disposed) return;
    const up = this.#uploads.get(plan);
    if (up) this.#ring.release(up.region, up.generation);
    this.#uploads.delete(plan);
  }

  /** Allocation counters: steady-state steps leave them unchanged. */
  stats(): AttentionEncoderStats {
    const regions = this.#ring.regions;
    return {
      buffersCreated: this.#ring.buffersCreated,
      buffersLive: this.#ring.buffersLive,
      pipelinesCreated: this.#pipelines.created + this.#ring.pipelinesCreated,
      bindGroupsCreated: this.#groups.created,
      bindGroupsLive: this.#groups.live,
      tableRegions: regions.total,
      tableRegionsBusy: regions.busy,
    };
  }

  /**
   * Destroys the encoder's own buffers (the device, cache and runner buffers stay). Work recorded
   * with the encoder must have been submitted and run first.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#ring.destroy();
    this.#pipelines.clear();
    this.#groups.clear();
    this.#scratch = undefined;
    this.#lastPlan = undefined;
    this.#kernels = undefined;
  }

  /** {@linkcode AttentionEncoder.dispose}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
    return Promise.resolve();
  }
}

/**
 * Where a paged plan's 8-bit kernels read their scales: the per-token table, or the layer's pair
 * (the table's first entry) for plans of a cache created with `kvScales: "tensor"`.
 */
function scaleSource(plan: PagedPlan): KVScaleSource | undefined {
  if (!KV_DTYPE_INFO[plan.problem.kvDtype].scaled) return undefined;
  const cache = plan.cacheId === undefined ? undefined : cacheById(plan.cacheId);
  return cache?.kvScales === "tensor" ? "layer" : "token";
}
