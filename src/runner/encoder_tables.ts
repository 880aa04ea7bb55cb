/**
 * The attention encoder's tables: where a plan's params, schedule and page list sit in an upload
 * region (the one table layout the decode and merge kernels bind, see `src/kernels/abi.ts`),
 * and the staging write that fills them.
 *
 * @module
 */

import { kernelParams, type KernelSpec } from "../kernels/kernel_spec.ts";
import { PIECE, PIECE_STRIDE, REDUCE_STRIDE } from "../plan/schedule.ts";
import type { PagedPlan } from "./paged_plan.ts";
import type { RingRegion } from "./upload_ring.ts";
import { headTable, headTableFloats, needsHeadTable, variantKey } from "../kernels/variant_wgsl.ts";
import { variantFlags } from "../core/variant_options.ts";

/** A plan's tables as uploaded into a ring region: what its dispatches bind. */
export interface Uploaded {
  region: RingRegion;
  /** The region's generation when this plan took it: the upload is live while it holds. */
  generation: number;
  decode: GPUComputePipeline;
  merge: GPUComputePipeline | undefined;
  decodeSize: [number, number];
  mergeSize: [number, number];
  /** Bind group tag (with the region as a key): the kernels, the tables layout, the scratch. */
  tag: string;
  /** Byte ranges of a region: params at 0, then the schedule, the page list, the head table. */
  layout: TableLayout;
  /** The bind group layout of the plan's kernels (with the head table when they read it). */
  bindLayout: GPUBindGroupLayout;
}

/** Byte ranges of a tables region (the same in every region of a layout). */
export interface TableLayout {
  schedOffset: number;
  schedBytes: number;
  pagesOffset: number;
  pagesBytes: number;
  /** The variants' per-head table (ALiBi slopes, sinks); 0 bytes when the kernels read none. */
  headsOffset: number;
  headsBytes: number;
  bytes: number;
}

/** Partial states and LSE scratch, shared by all plans (dispatches run in recorded order). */
export interface Scratch {
  id: number;
  partials: GPUBuffer;
  lse: GPUBuffer;
}

/** The compiled kernels of one kernel spec. */
export interface Kernels {
  /** Shape fields the spec was derived from. */
  signature: string;
  spec: KernelSpec;
  key: string;
  layout: GPUBindGroupLayout;
  decode: GPUComputePipeline;
  /** Compiled on the first plan with partial states. */
  merge: GPUComputePipeline | undefined;
}

/** What a runner buffer is, read once per buffer (reading it from Dawn crosses into native code). */
export interface BufferInfo {
  size: number;
  usage: number | undefined;
}

/** A plan's table layout in a region, with the capacities it was laid out for. */
export interface PlanTables {
  readonly layout: TableLayout;
  /** `u32` index of the piece records and the reduce records in the schedule. */
  readonly pieceBase: number;
  readonly reduceBase: number;
  /** Reduce records (merge workgroups per row block). */
  readonly merges: number;
  /** Most pieces a plan of this batch can have (its partial slots are at most this). */
  readonly maxPieces: number;
  /** Words of the schedule and page-list sections (they only grow). */
  readonly schedCap: number;
  readonly pagesCap: number;
}

/** The shape fields and variant flags a plan's kernels are chosen by (the kernels' cache key). */
export function kernelSignature(plan: PagedPlan): string {
  const { problem: p, tiles: t } = plan;
  return `${p.headDim}:${p.kvDtype}:${t.tileTokens}:${t.rowsPerBlock}:${t.workgroupSize}${
    variantKey(variantFlags(p.variant))
  }`;
}

/** The head table's binding of a region's tables, if its layout has one. */
export function headsBinding(
  buffer: GPUBuffer,
  base: number,
  r: TableLayout,
): { heads?: GPUBufferBinding } {
  return r.headsBytes > 0
    ? { heads: { buffer, offset: base + r.headsOffset, size: r.headsBytes } }
    : {};
}

/**
 * Lays out a plan's tables in a region aligned to `align`: params at 0, then the schedule
 * (piece offsets, pieces, reduce records), then the page list, then, when the plan's kernels read
 * it (ALiBi, sinks), the variants' per-head table. Capacities are upper bounds for
 * the batch's segments and the grid, and never shrink, so a steady batch composition never
 * changes the region layout (which would need new bind groups).
 */
export function tableLayout(
  plan: PagedPlan,
  grid: number,
  schedCap: number,
  pagesCap: number,
  align: number,
): PlanTables {
  const headFloats = needsHeadTable("decode", variantFlags(plan.problem.variant))
    ? headTableFloats(plan.problem.numHeads)
    : 0;
  const { schedule: s, kv } = plan;
  const segments = plan.numSegments;
  const maxWg = Math.max(s.workgroups, Math.min(grid, plan.numTiles));
  const maxPieces = maxWg + segments;
  const maxReduce = Math.min(segments, 2 * maxWg);
  const pieceBase = s.workgroups + 1;
  const reduceBase = pieceBase + s.pieces.length;
  const schedWords = reduceBase + s.reduce.length;
  const sched = Math.max(
    schedCap,
    schedWords,
    maxWg + 1 + maxPieces * PIECE_STRIDE + maxReduce * REDUCE_STRIDE,
  );
  const cachePages = plan.cacheId === undefined ? 0 : kv.numPages;
  const pages = Math.max(pagesCap, kv.pages.length, cachePages + 64, 16);
  const schedOffset = align;
  const pagesOffset = schedOffset + Math.ceil((4 * sched) / align) * align;
  const headsOffset = pagesOffset + Math.ceil((4 * pages) / align) * align;
  return {
    layout: {
      schedOffset,
      schedBytes: 4 * sched,
      pagesOffset,
      pagesBytes: 4 * pages,
      headsOffset,
      headsBytes: 4 * headFloats,
      bytes: headFloats > 0 ? headsOffset + 4 * headFloats : pagesOffset + 4 * pages,
    },
    pieceBase,
    reduceBase,
    merges: s.reduce.length / REDUCE_STRIDE,
    maxPieces,
    schedCap: sched,
    pagesCap: pages,
  };
}

/**
 * Writes a plan's params, schedule, page list and head table into `staging` at their layout's
 * offsets and returns the words written. The
 * paged kernel reads a piece's page-list offset from its `kvStart` field: written here, from the
 * plan's `kv.pageOffsets`, in place of the dense row the plan's schedule holds.
 */
export function writeTables(staging: Uint32Array, plan: PagedPlan, t: PlanTables): number {
  const { problem: p, schedule: s, kv } = plan;
  staging.set(
    kernelParams({
      ...p,
      pieceBase: t.pieceBase,
      reduceBase: t.reduceBase,
      count: s.workgroups,
      mergeCount: t.merges,
      scale: plan.scale,
      pageShift: kv.pageShift,
    }),
    0,
  );
  const at = t.layout.schedOffset / 4;
  staging.set(s.pieceOffsets, at);
  staging.set(s.pieces, at + t.pieceBase);
  const pieces = at + t.pieceBase;
  for (let o = 0; o < s.pieces.length; o += PIECE_STRIDE) {
    staging[pieces + o + PIECE.kvStart] = kv.pageOffsets[s.pieces[o + PIECE.seq]];
  }
  staging.set(s.reduce, at + t.reduceBase);
  staging.set(kv.pages, t.layout.pagesOffset / 4);
  if (t.layout.headsBytes === 0) return t.layout.pagesOffset / 4 + kv.pages.length;
  const heads = headTable(p.variant, p.numHeads);
  staging.set(new Uint32Array(heads.buffer, 0, heads.length), t.layout.headsOffset / 4);
  return t.layout.bytes / 4;
}
