/**
 * The one GPU attention program of both front ends. A plan (dense over its KV windows, or
 * paged) is written into one table layout, in one region of one buffer:
 *
 * ```text
 * [params of window 0] [params of window 1] ... (one aligned block each)
 * [sched: window 0's section] [window 1's section] ... [reduce records]   (sections aligned)
 * [page list]                                                              (paged plans only)
 * [per-head table]                        (ALiBi slopes and sinks, when the kernels read them)
 * ```
 *
 * A window's section holds its workgroups' piece offsets (rebased to 0) and then its piece
 * records; the reduce records follow the last section. Window `i`'s decode dispatch binds its
 * params block and the schedule from its section to the end (so its `reduce_base` reaches the
 * reduce records too); the merge dispatch runs with the last window's bind group. The decode and
 * merge kernels share one bind group layout (see `kernelLayoutEntries` in `src/kernels/abi.ts`),
 * so a single-window plan binds one group for both dispatches.
 *
 * The dense decoder (`webgpu_backend.ts`) puts the region in a pooled buffer and adds its
 * readback; the runner's encoder puts it in an upload ring region and records into the caller's
 * pass. Both record through {@linkcode recordProgram}.
 *
 * @module
 */

import type { KernelSpec } from "../kernels/kernel_spec.ts";
import { kernelParams, PARAMS_WORDS } from "../kernels/kernel_params.ts";
import { BINDING, type BindingName, namedEntries } from "../kernels/abi.ts";
import { mergeWorkgroups } from "../kernels/merge_kernel.ts";
import { PIECE, PIECE_STRIDE, REDUCE_STRIDE } from "../plan/schedule.ts";
import type { Plan } from "../plan/plan.ts";
import { dispatchSize } from "./kernel_choice.ts";
import type { PipelineCache } from "./pipeline_cache.ts";
import { variantFlags } from "../core/variant_options.ts";
import { headTable, headTableFloats, needsHeadTable } from "../kernels/variant_wgsl.ts";

/** One KV window's part of the tables. */
export interface ProgramSection {
  /** Byte offset of the window's params block in the region. */
  readonly paramsOffset: number;
  /** Byte offset of the window's section in the schedule (a multiple of the alignment). */
  readonly offset: number;
  /** Workgroups of the window's decode dispatch. */
  readonly workgroups: number;
  /** `u32` index of the section's first piece record, counted from the section. */
  readonly pieceBase: number;
  /** `u32` index of the first reduce record, counted from the section. */
  readonly reduceBase: number;
}

/** Where a plan's tables sit in a region (byte offsets from the region's start). */
export interface ProgramLayout {
  /** One section per KV window, in window order. */
  readonly sections: readonly ProgramSection[];
  readonly schedOffset: number;
  readonly schedBytes: number;
  /** The page list (paged plans; `pagesBytes` is 0 for dense ones). */
  readonly pagesOffset: number;
  readonly pagesBytes: number;
  /** The variants' per-head table (`headsBytes` is 0 when the kernels read none). */
  readonly headsOffset: number;
  readonly headsBytes: number;
  /** Bytes of the region. */
  readonly bytes: number;
  /** Reduce records (merge workgroups per row block). */
  readonly merges: number;
}

/**
 * Least sizes of a layout's parts, for a caller that keeps one layout over many plans (the
 * runner's encoder: its bind groups hold while the layout does).
 */
export interface ProgramCapacity {
  /** Words of the schedule. */
  readonly schedWords?: number;
  /** Words of the page list. */
  readonly pageWords?: number;
}

/**
 * The alignment of a region and its parts on a device: its uniform and storage binding offset
 * alignments, at least 256 bytes.
 *
 * @example
 * ```ts
 * import { programAlign } from "./attention_program.ts";
 * const limits = { minUniformBufferOffsetAlignment: 64, minStorageBufferOffsetAlignment: 32 };
 * console.log(programAlign(limits as GPUSupportedLimits)); // 256
 * ```
 */
export function programAlign(limits: GPUSupportedLimits): number {
  return Math.max(
    256,
    limits.minUniformBufferOffsetAlignment ?? 256,
    limits.minStorageBufferOffsetAlignment ?? 256,
  );
}

/**
 * Lays out a plan's tables for `align` (see {@linkcode programAlign}), each part at least its
 * `capacity`.
 *
 * @example
 * ```ts
 * import { createPlan } from "@lean/attention";
 * import { programLayout } from "./attention_program.ts";
 * const plan = createPlan({ seqLens: [300], numHeads: 2, numKVHeads: 2, headDim: 64 }, {
 *   grid: 4, maxBindingBytes: 128 * 512,
 * });
 * const layout = programLayout(plan, 256);
 * console.log(layout.sections.length, layout.schedOffset, layout.sections[1].offset % 256); // 3 768 0
 * ```
 */
export function programLayout(
  plan: Plan,
  align: number,
  capacity: ProgramCapacity = {},
): ProgramLayout {
  const { schedule: s, kv } = plan;
  const alignWords = align / 4;
  const schedOffset = s.windows.length * align;
  const sections: ProgramSection[] = [];
  let at = 0;
  let end = 0;
  for (const [i, w] of s.windows.entries()) {
    at = Math.ceil(end / alignWords) * alignWords;
    const count = w.workgroupEnd - w.workgroupBegin;
    const pieces = s.pieceOffsets[w.workgroupEnd] - s.pieceOffsets[w.workgroupBegin];
    end = at + count + 1 + pieces * PIECE_STRIDE;
    sections.push({
      paramsOffset: i * align,
      offset: 4 * at,
      workgroups: count,
      pieceBase: count + 1,
      reduceBase: 0,
    });
  }
  // The reduce records follow the last section; every section's reduce_base reaches them.
  const withReduce = sections.map((sec) => ({ ...sec, reduceBase: end - sec.offset / 4 }));
  const schedWords = Math.max(capacity.schedWords ?? 0, end + s.reduce.length, 4);
  const pagesOffset = schedOffset + Math.ceil((4 * schedWords) / align) * align;
  const pageWords = kv.kind === "paged" ? Math.max(capacity.pageWords ?? 0, kv.pages.length, 4) : 0;
  const tablesEnd = kv.kind === "paged"
    ? pagesOffset + 4 * pageWords
    : schedOffset + 4 * schedWords;
  const headsOffset = Math.ceil(tablesEnd / align) * align;
  const headsBytes = 4 * planHeadFloats(plan);
  return {
    sections: withReduce,
    schedOffset,
    schedBytes: 4 * schedWords,
    pagesOffset,
    pagesBytes: 4 * pageWords,
    headsOffset,
    headsBytes,
    bytes: headsBytes > 0 ? headsOffset + headsBytes : tablesEnd,
    merges: s.reduce.length / REDUCE_STRIDE,
  };
}

/** Floats of a plan's per-head table: 0 when its kernels read none (no ALiBi, no sinks). */
function planHeadFloats(plan: Plan): number {
  const { variant, numHeads } = plan.problem;
  return needsHeadTable("decode", variantFlags(variant)) ? headTableFloats(numHeads) : 0;
}

/**
 * Writes a plan's tables into `staging` (the region's words from its start) at their layout's
 * offsets, and returns the words written. A paged kernel reads a piece's page-list offset from
 * its `kvStart` field: written here from the plan's `kv.pageOffsets`, in place of the dense row
 * the schedule holds.
 *
 * @example
 * ```ts
 * import { createPlan } from "@lean/attention";
 * import { programLayout, writeProgramTables } from "./attention_program.ts";
 * const plan = createPlan({ seqLens: [100], numHeads: 1, numKVHeads: 1, headDim: 8 }, { grid: 2 });
 * const layout = programLayout(plan, 256);
 * const staging = new Uint32Array(layout.bytes / 4);
 * const words = writeProgramTables(staging, plan, layout, 0.35);
 * // Window 0's params: its workgroups (word 8, `count`); its piece offsets start the schedule.
 * console.log(staging[8], Array.from(staging.subarray(64, 67)), words * 4 <= layout.bytes);
 * // 2 [ 0, 1, 2 ] true
 * ```
 */
export function writeProgramTables(
  staging: Uint32Array,
  plan: Plan,
  layout: ProgramLayout,
  scale: number,
  tensorScales?: { readonly kScale: number; readonly vScale: number },
): number {
  const { problem: p, schedule: s, kv } = plan;
  const paged = kv.kind === "paged";
  const sched = layout.schedOffset / 4;
  for (const [i, w] of s.windows.entries()) {
    const sec = layout.sections[i];
    staging.set(
      kernelParams({
        ...p,
        pieceBase: sec.pieceBase,
        reduceBase: sec.reduceBase,
        count: sec.workgroups,
        mergeCount: layout.merges,
        scale,
        pageShift: paged ? kv.pageShift : 0,
        ...tensorScales,
      }),
      sec.paramsOffset / 4,
    );
    const at = sched + sec.offset / 4;
    const p0 = s.pieceOffsets[w.workgroupBegin];
    for (let g = 0; g <= sec.workgroups; g++) {
      staging[at + g] = s.pieceOffsets[w.workgroupBegin + g] - p0;
    }
    const first = at + sec.pieceBase;
    const p1 = s.pieceOffsets[w.workgroupEnd];
    staging.set(s.pieces.subarray(p0 * PIECE_STRIDE, p1 * PIECE_STRIDE), first);
    if (paged) {
      for (let o = 0; o < (p1 - p0) * PIECE_STRIDE; o += PIECE_STRIDE) {
        staging[first + o + PIECE.kvStart] = kv.pageOffsets[staging[first + o + PIECE.seq]];
      }
    }
  }
  const last = layout.sections[layout.sections.length - 1];
  const reduceAt = sched + last.offset / 4 + last.reduceBase;
  staging.set(s.reduce, reduceAt);
  if (layout.headsBytes > 0) {
    const heads = headTable(p.variant, p.numHeads);
    staging.set(new Uint32Array(heads.buffer, 0, heads.length), layout.headsOffset / 4);
  }
  if (paged) staging.set(kv.pages, layout.pagesOffset / 4);
  if (layout.headsBytes > 0) return layout.bytes / 4;
  return paged ? layout.pagesOffset / 4 + kv.pages.length : reduceAt + s.reduce.length;
}

/** The kernels of a program: decode, merge (for plans with partial states), their layout. */
export interface ProgramKernels {
  readonly decode: GPUComputePipeline;
  readonly merge: GPUComputePipeline | undefined;
  /** The bind group layout both kernels share. */
  readonly group: GPUBindGroupLayout;
}

/** The pipelines of a spec (the merge only when `merges > 0`), compiled on first use. */
export function programKernels(
  pipelines: PipelineCache,
  spec: KernelSpec,
  merges: number,
): ProgramKernels {
  return {
    decode: pipelines.get("decode", spec),
    merge: merges > 0 ? pipelines.get("merge", spec) : undefined,
    group: pipelines.layout(spec).group,
  };
}

/** The buffers a program reads and writes besides its tables (K and V of one window). */
export interface ProgramBuffers {
  readonly q: GPUBufferBinding;
  readonly k: GPUBufferBinding;
  readonly v: GPUBufferBinding;
  readonly out: GPUBufferBinding;
  readonly lse: GPUBufferBinding;
  readonly partials: GPUBufferBinding;
  /** The per-token scale table of 8-bit K and V (kernels with per-token scales). */
  readonly kvScales?: GPUBufferBinding;
}

/** The bind group of window `window`'s dispatches, the tables in `region` at `offset`. */
export function bindProgram(
  device: GPUDevice,
  group: GPUBindGroupLayout,
  layout: ProgramLayout,
  tables: { readonly buffer: GPUBuffer; readonly offset: number },
  window: number,
  buffers: ProgramBuffers,
): GPUBindGroup {
  const sec = layout.sections[window];
  const base = tables.offset;
  const resources: Partial<Record<BindingName, GPUBufferBinding>> = {
    params: { buffer: tables.buffer, offset: base + sec.paramsOffset, size: 4 * PARAMS_WORDS },
    sched: {
      buffer: tables.buffer,
      offset: base + layout.schedOffset + sec.offset,
      size: layout.schedBytes - sec.offset,
    },
    ...buffers,
  };
  if (layout.pagesBytes > 0) {
    resources.pages = {
      buffer: tables.buffer,
      offset: base + layout.pagesOffset,
      size: layout.pagesBytes,
    };
  }
  if (layout.headsBytes > 0) {
    resources.heads = {
      buffer: tables.buffer,
      offset: base + layout.headsOffset,
      size: layout.headsBytes,
    };
  }
  return device.createBindGroup({ layout: group, entries: namedEntries(BINDING, resources) });
}

/** What to record for a program: its kernels and each dispatch's workgroups. */
export interface ProgramRun {
  readonly decode: GPUComputePipeline;
  readonly merge: GPUComputePipeline | undefined;
  /** Workgroups of each window's decode dispatch (split over x and y past the limit). */
  readonly decodeSizes: readonly (readonly [number, number])[];
  readonly mergeSize: readonly [number, number];
}

/**
 * The dispatches of a laid-out plan on a device with `maxPerDim` workgroups per dimension.
 *
 * @example
 * ```ts
 * import { createPlan } from "@lean/attention";
 * import { programLayout, programRun } from "./attention_program.ts";
 * const plan = createPlan({ seqLens: [300], numHeads: 2, numKVHeads: 2, headDim: 64 }, {
 *   grid: 4, maxBindingBytes: 128 * 512,
 * });
 * const pipeline = {} as GPUComputePipeline;
 * const kernels = { decode: pipeline, merge: pipeline, group: {} as GPUBindGroupLayout };
 * const run = programRun(kernels, programLayout(plan, 256), plan.tiles.rowsPerBlock, 65535);
 * console.log(run.decodeSizes.length, run.decodeSizes.every(([, y]) => y === 1)); // 3 true
 * ```
 */
export function programRun(
  kernels: ProgramKernels,
  layout: ProgramLayout,
  rowsPerBlock: number,
  maxPerDim: number,
): ProgramRun {
  return {
    decode: kernels.decode,
    merge: kernels.merge,
    decodeSizes: layout.sections.map((sec) => dispatchSize(sec.workgroups, maxPerDim)),
    mergeSize: dispatchSize(
      Math.max(1, mergeWorkgroups(layout.merges, rowsPerBlock)),
      maxPerDim,
    ),
  };
}

/**
 * Records a program into a compute pass: each window's decode dispatch with its bind group, then
 * the merge (when the plan has partial states) with the last window's. A bind group already set
 * is not set again, so a single-window plan sets one group for both dispatches.
 *
 * @example
 * ```ts
 * import { recordProgram } from "./attention_program.ts";
 * const calls: string[] = [];
 * const pass = {
 *   setPipeline: (p: { name: string }) => calls.push(p.name),
 *   setBindGroup: () => calls.push("group"),
 *   dispatchWorkgroups: (x: number) => calls.push(`dispatch ${x}`),
 * } as unknown as GPUComputePassEncoder;
 * const [decode, merge] = [{ name: "decode" }, { name: "merge" }] as unknown as GPUComputePipeline[];
 * const run = { decode, merge, decodeSizes: [[8, 1]] as const, mergeSize: [2, 1] as const };
 * recordProgram(pass, run, [{} as GPUBindGroup]);
 * console.log(calls.join(", ")); // decode, group, dispatch 8, merge, dispatch 2
 * ```
 */
export function recordProgram(
  pass: GPUComputePassEncoder,
  run: ProgramRun,
  groups: readonly GPUBindGroup[],
): void {
  let group: GPUBindGroup | undefined;
  pass.setPipeline(run.decode);
  for (let i = 0; i < run.decodeSizes.length; i++) {
    if (groups[i] !== group) pass.setBindGroup(0, group = groups[i]);
    pass.dispatchWorkgroups(run.decodeSizes[i][0], run.decodeSizes[i][1]);
  }
  if (run.merge) {
    pass.setPipeline(run.merge);
    const last = groups[groups.length - 1];
    if (last !== group) pass.setBindGroup(0, last);
    pass.dispatchWorkgroups(run.mergeSize[0], run.mergeSize[1]);
  }
}
