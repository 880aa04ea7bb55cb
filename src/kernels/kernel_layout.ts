/**
 * The thread layout of a decode kernel spec: lanes per token, token groups, row sets, unroll
 * and step, and the size of one K/V load they are counted in.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { KVDtype } from "../core/problem.ts";
import type { KernelSpec } from "./kernel_spec.ts";

/** The thread layout a spec resolves to. */
export interface KernelLayout {
  /** 16-byte chunks in one token's K row of one KV head. */
  readonly chunks: number;
  /** 16-byte chunks in one token's V row of one KV head (`chunks` unless `headDimV` differs). */
  readonly chunksV: number;
  /** Threads sharing one token (they split its chunks). */
  readonly lanes: number;
  /** K chunks each lane loads per token. */
  readonly chunksPerLane: number;
  /** V chunks each lane loads per token. */
  readonly chunksPerLaneV: number;
  /** Token groups in a workgroup (`workgroupSize / (lanes * rowSets)`). */
  readonly groups: number;
  /** Lane groups sharing a token, each holding `rowsPerThread` of the block's rows. */
  readonly rowSets: number;
  /** Query rows each thread holds (`rowsPerBlock / rowSets`). */
  readonly rowsPerThread: number;
  /** Tokens a group loads per step. */
  readonly unroll: number;
  /** Tokens the workgroup covers per step (`groups * unroll`). */
  readonly step: number;
  readonly subgroups: boolean;
  readonly paged: boolean;
  /** Token groups added with shuffles before the workgroup's merge (1 without). */
  readonly shuffleGroups: number;
}

/** Most lanes per token by default: 16 lanes x 16 bytes is a 256-byte f16 row of d = 128. */
export const DEFAULT_MAX_LANES = 16;

/**
 * Floats of partial sums and scores the workgroup-memory reduction may declare: with the output
 * block (at most 1024 floats) and the groups' maxima it stays within WebGPU's default 16 KiB.
 */
const EXCHANGE_FLOATS = 1920;

function largestPowerOfTwoDividing(n: number, cap: number): number {
  let p = 1;
  while (p * 2 <= cap && n % (p * 2) === 0) p *= 2;
  return p;
}

/**
 * Resolves a spec's thread layout: lanes per token, token groups, unroll and step.
 *
 * @example
 * ```ts
 * import { kernelLayout } from "./kernel_layout.ts";
 * const l = kernelLayout({
 *   headDim: 128, kvDtype: "f16", tileTokens: 64, rowsPerBlock: 1, workgroupSize: 128,
 * });
 * console.log(l.lanes, l.groups, l.step); // 16 8 32
 * ```
 */
export function kernelLayout(spec: KernelSpec): KernelLayout {
  // K and V rows load the same chunk size (8 bytes where an 8-bit row is not 16-byte aligned).
  const load = elementsPerLoad(spec.kvDtype, kvLoadDim(spec.headDim, spec.headDimV));
  const chunks = spec.headDim / load;
  const chunksV = (spec.headDimV ?? spec.headDim) / load;
  // Lanes split both rows: a power of two dividing K's and V's chunks.
  const common =
    largestPowerOfTwoDividing(chunks, 1 << 30) < largestPowerOfTwoDividing(chunksV, 1 << 30)
      ? chunks
      : chunksV;
  let lanes = spec.lanes ?? largestPowerOfTwoDividing(common, DEFAULT_MAX_LANES);
  // Lanes that do not divide the chunks pad the row's last round (see the decode kernel).
  if (!Number.isInteger(lanes) || lanes < 1 || (lanes & (lanes - 1)) !== 0) {
    throw new RangeError(`lanes must be a power of two: got ${lanes}`);
  }
  if (spec.workgroupSize % lanes !== 0) {
    throw new RangeError(
      `workgroupSize must be a multiple of lanes (${lanes}): got ${spec.workgroupSize}`,
    );
  }
  const subgroups = spec.subgroups ?? false;
  const prefetch = spec.prefetch ?? false;
  let rowSets = spec.rowSets ?? 1;
  if (!Number.isInteger(rowSets) || rowSets < 1 || (rowSets & (rowSets - 1)) !== 0) {
    throw new RangeError(`rowSets must be a power of two: got ${rowSets}`);
  }
  while (rowSets > 1 && spec.rowsPerBlock % rowSets !== 0) rowSets /= 2;
  let RP = spec.rowsPerBlock / rowSets;
  // Workgroup memory of the reduction through workgroup memory (none with shuffles or 1 lane).
  const exchange = (l: number, u: number) =>
    subgroups || l === 1 ? 0 : 2 * (spec.workgroupSize / l) * u * RP * (l + 2);
  // Without shuffles, fewer lanes when even one token per step would not fit.
  while (exchange(lanes, 1) > EXCHANGE_FLOATS) lanes /= 2;
  while (rowSets > 1 && spec.workgroupSize % (lanes * rowSets) !== 0) rowSets /= 2;
  RP = spec.rowsPerBlock / rowSets;
  const chunksPerLane = Math.ceil(chunks / lanes);
  const groups = spec.workgroupSize / (lanes * rowSets);
  // Registers: each lane holds `unroll` K and V chunks (twice with prefetch); the reduction in
  // workgroup memory holds unroll x rows sums per group; a step is not longer than a tile.
  let unroll = spec.unroll ?? Math.max(1, Math.floor((prefetch ? 2 : 4) / chunksPerLane));
  while (unroll > 1 && exchange(lanes, unroll) > EXCHANGE_FLOATS) unroll--;
  unroll = Math.max(1, Math.min(unroll, Math.floor(spec.tileTokens / groups)));
  return {
    chunks,
    chunksV,
    lanes,
    chunksPerLane,
    chunksPerLaneV: Math.ceil(chunksV / lanes),
    groups,
    rowSets,
    rowsPerThread: RP,
    unroll,
    step: groups * unroll,
    subgroups,
    paged: spec.paged ?? false,
    shuffleGroups: subgroups ? largestPowerOfTwoDividing(groups, spec.shuffleGroups ?? 1) : 1,
  };
}

/**
 * Bytes of one KV load of the decode kernel: 16, or 8 for 8-bit dtypes whose head rows are not
 * a multiple of 16 bytes (head dims 8, 24, 40, ...: a head's row then starts at any multiple of
 * 8 bytes, so the kernel reads `vec2<u32>` chunks).
 *
 * @example
 * ```ts
 * import { kvLoadBytes } from "./kernel_layout.ts";
 * console.log(kvLoadBytes("int8", 128), kvLoadBytes("int8", 24), kvLoadBytes("f16", 8)); // 16 8 16
 * ```
 */
export function kvLoadBytes(kvDtype: KVDtype, headDim?: number): 8 | 16 {
  const bytes = KV_DTYPE_INFO[kvDtype].bytes;
  return headDim !== undefined && (headDim * bytes) % 16 !== 0 ? 8 : 16;
}

/**
 * The head dim that decides a kernel's load size when K and V rows differ (MLA): their greatest
 * common divisor, so a load size suits both rows.
 *
 * @example
 * ```ts
 * import { kvLoadDim } from "./kernel_layout.ts";
 * console.log(kvLoadDim(576, 512), kvLoadDim(24), kvLoadDim(48, 40)); // 64 24 8
 * ```
 */
export function kvLoadDim(headDim: number, headDimV?: number): number {
  let a = headDim;
  let b = headDimV ?? headDim;
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * KV elements in one load: 4 floats, 8 halves or 16 bytes packed in a `vec4<u32>` (8 bytes in a
 * `vec2<u32>` for the head dims of {@linkcode kvLoadBytes}).
 */
export function elementsPerLoad(kvDtype: KVDtype, headDim?: number): number {
  return kvLoadBytes(kvDtype, headDim) / KV_DTYPE_INFO[kvDtype].bytes;
}

/** Byte size of one KV element. */
export function kvElementBytes(kvDtype: KVDtype): number {
  return KV_DTYPE_INFO[kvDtype].bytes;
}
