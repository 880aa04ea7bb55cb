/**
 * The attention encoder's upload state: a plan's tables in an upload region (the one table
 * layout of `src/gpu/attention_program.ts`), the capacities that keep that layout steady over a
 * batch's steps, the compiled kernels and the shared scratch.
 *
 * @module
 */

import { variantKey } from "../kernels/variant_wgsl.ts";
import type { KernelSpec } from "../kernels/kernel_spec.ts";
import { specKey } from "../kernels/spec_key.ts";
import type { PipelineCache } from "../gpu/pipeline_cache.ts";
import { PIECE_STRIDE, REDUCE_STRIDE } from "../plan/schedule.ts";
import type { ProgramCapacity, ProgramLayout, ProgramRun } from "../gpu/attention_program.ts";
import type { PagedPlan } from "./paged_plan.ts";
import type { RingRegion, UploadRing } from "./upload_ring.ts";
import { BufferUsage } from "../gpu/gpu_runtime.ts";

/** A plan's tables as uploaded into a ring region: what its dispatches bind. */
export interface Uploaded {
  region: RingRegion;
  /** The region's generation when this plan took it: the upload is live while it holds. */
  generation: number;
  /** The kernels and workgroups to record. */
  run: ProgramRun;
  /** Bind group tag (with the region as a key): the kernels, the tables layout, the scratch. */
  tag: string;
  /** Where the params, the schedule and the page list sit in the region. */
  layout: ProgramLayout;
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
  /** The bind group layout both kernels share. */
  group: GPUBindGroupLayout;
  decode: GPUComputePipeline;
  /** Compiled on the first plan with partial states. */
  merge: GPUComputePipeline | undefined;
}

/** What a runner buffer is, read once per buffer (reading it from Dawn crosses into native code). */
export interface BufferInfo {
  size: number;
  usage: number | undefined;
}

/** Capacities of a batch's tables, and the most pieces its plans can have. */
export interface TableCapacity extends ProgramCapacity {
  readonly schedWords: number;
  readonly pageWords: number;
  /** Most pieces a plan of this batch can have (its partial slots are at most this). */
  readonly maxPieces: number;
}

/**
 * The table capacities of a plan: upper bounds for the batch's segments and the grid, never
 * below `have` (capacities never shrink), so a steady batch composition never changes the
 * region layout (which would need new bind groups).
 */
export function tableCapacity(
  plan: PagedPlan,
  grid: number,
  have: { readonly schedWords: number; readonly pageWords: number },
): TableCapacity {
  const { schedule: s, kv } = plan;
  const segments = plan.numSegments;
  const maxWg = Math.max(s.workgroups, Math.min(grid, plan.numTiles));
  const maxPieces = maxWg + segments;
  const maxReduce = Math.min(segments, 2 * maxWg);
  const schedWords = Math.max(
    have.schedWords,
    maxWg + 1 + maxPieces * PIECE_STRIDE + maxReduce * REDUCE_STRIDE,
  );
  const cachePages = plan.cacheId === undefined ? 0 : kv.numPages;
  const pageWords = Math.max(have.pageWords, kv.pages.length, cachePages + 64, 16);
  return { schedWords, pageWords, maxPieces };
}

/**
 * The kernels of a spec: `have` while its spec key holds (looked up again only when a plan's
 * shape fields change), else compiled (the merge on the first plan with partial states).
 */
export function encoderKernels(
  plan: PagedPlan,
  have: Kernels | undefined,
  pipelines: PipelineCache,
  spec: KernelSpec,
): Kernels {
  const { problem: p, tiles: t } = plan;
  const signature =
    `${p.headDim}/${p.headDimV}:${p.kvDtype}:${t.tileTokens}:${t.rowsPerBlock}:${t.workgroupSize}:${
      plan.kv.layout ?? "NHD"
    }${variantKey(spec.variant)}${spec.pageRuns ? ":pgr" : ""}${
      spec.pageSlices ? `:pgs${spec.pageSlices}` : ""
    }${spec.kvScales ? `:${spec.kvScales}` : ""}`;
  if (have?.signature === signature) return have;
  return {
    signature,
    spec,
    key: specKey("decode", spec),
    group: pipelines.layout(spec).group,
    decode: pipelines.get("decode", spec),
    merge: undefined,
  };
}

/** Usage of the scratch buffers (partial states and LSE). */
const STORAGE_OUT = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;

/**
 * Scratch at least this large: `have` when it is, else new buffers from `ring` (rounded up to
 * powers of two); a smaller one goes once recorded work is done with it.
 */
export function scratchFor(
  ring: UploadRing,
  have: Scratch | undefined,
  partialBytes: number,
  lseBytes: number,
): Scratch {
  if (have && have.partials.size >= partialBytes && have.lse.size >= lseBytes) return have;
  const round = (n: number) => Math.max(256, 2 ** Math.ceil(Math.log2(n)));
  const id = (have?.id ?? -1) + 1;
  const scratch: Scratch = {
    id,
    partials: ring.createBuffer(
      round(Math.max(partialBytes, have?.partials.size ?? 0)),
      STORAGE_OUT,
      "partials",
    ),
    lse: ring.createBuffer(
      round(Math.max(lseBytes, have?.lse.size ?? 0)),
      STORAGE_OUT,
      "lse scratch",
    ),
  };
  if (have) {
    ring.retire(have.partials);
    ring.retire(have.lse);
  }
  return scratch;
}
