/**
 * The specialisation of a kernel: the values baked into its WGSL as constants. The spec's key is
 * the pipeline cache key, so two plans with the same key share a pipeline.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { KVDtype } from "../core/problem.ts";
import { elementsPerLoad, kernelLayout, kvLoadDim } from "./kernel_layout.ts";
import type { KernelVariantFlags } from "./variant_wgsl.ts";

/** Compile-time parameters of the decode and merge kernels. */
export interface KernelSpec {
  readonly headDim: number;
  /** Head dimension of V and the output (default `headDim`; MLA's V rows are shorter). */
  readonly headDimV?: number;
  /**
   * V rows of their own head dim (`headDimV`) are the first dims of K's rows (MLA's latent
   * cache): the V binding is K's, and `kv_addr_v` is `kv_addr`.
   */
  readonly vFromK?: boolean;
  readonly kvDtype: KVDtype;
  readonly tileTokens: number;
  readonly rowsPerBlock: number;
  readonly workgroupSize: number;
  /**
   * Threads that read one token's K and V row together (a power of two dividing the row's
   * 16-byte chunks). Default: up to 16 (see {@linkcode kernelLayout}).
   */
  readonly lanes?: number;
  /**
   * Tokens each lane group loads before it computes (more bytes in flight). Default 4 / chunks
   * per lane, halved with prefetch.
   */
  readonly unroll?: number;
  /**
   * Reduce the lanes' partial dot products with subgroup shuffles (needs the `subgroups`
   * feature and `lanes` at most the adapter's smallest subgroup); workgroup memory otherwise.
   */
  readonly subgroups?: boolean;
  /** Read K and V through page tables (binding 8) instead of dense rows. */
  readonly paged?: boolean;
  /**
   * Element order of a page, for paged specs: `"NHD"` (default, `[page][token][kvHead][dim]`)
   * or `"HND"` (`[page][kvHead][token][dim]`).
   */
  readonly kvLayout?: "NHD" | "HND";
  /** Element type of the query buffer (default `"f32"`; `"f16"` is read packed in `u32`s). */
  readonly qDtype?: "f32" | "f16";
  /** Element type of the output buffer (default `"f32"`; `"f16"` is written packed in `u32`s). */
  readonly outDtype?: "f32" | "f16";
  /**
   * Request the next step's K and V before this step's arithmetic (software pipelining), or
   * (`"split"`) the next step's K once this step's dot products have used its K and the next V
   * once its V is used: loads stay in flight through the arithmetic while the thread holds one
   * tensor's load registers, not two.
   */
  readonly prefetch?: boolean | "split";
  /**
   * Hold the block's query rows in workgroup memory instead of each thread's registers (each
   * vector read once per step for the step's tokens): fewer registers per thread. Default false.
   */
  readonly queryShared?: boolean;
  /**
   * Each piece's query rows are read from memory once per workgroup (one 16-byte load per thread
   * for a 4-row d128 block) into workgroup memory, and each thread copies its chunks into its
   * registers from there, instead of every lane group reading them from memory (16 groups of a
   * 128-thread workgroup read each row 16 times). The same values, so the same bits. Only where
   * it applies (see {@linkcode queryStaged}); otherwise ignored. Default false.
   */
  readonly queryStaged?: boolean;
  /**
   * Packed f16 arithmetic (f16, int8 and FP8 E4M3 KV; the device needs `shader-f16`, which the
   * kernel then enables). Dot products: f16 keys are used as stored, E4M3 keys (and int8 keys
   * where integer dot products, {@linkcode intDots}, do not take them) unpacked into f16 halves,
   * query rows rounded to f16, and each lane's partial score carried in f16 before the f32 sum
   * over lanes. With E4M3 (and int8 whose keys do not take integer dot products) at per-tensor
   * scales the weighted sum of V is packed too (see {@linkcode halfValues}): each row's weighted codes are added in f16 for `halfSteps` steps,
   * then into the f32 output state. Fewer multiply-adds, at about f16's precision (relative
   * errors of the output near 1e-3 instead of 1e-6); on Deno's WebGPU the bytes reach f16 through
   * conversions (its compiler has no bitcast to f16), which take back most of the gain
   * (bench/notes.md, session 33; through Dawn, whose compiler has the bitcast, the H200 ran no
   * faster with it, session 45). E5M2 (whose codes reach 57344, beyond what a sum of f16 terms
   * holds) and f32/bf16 keep the f32 path. Ignores `queryShared`. Default false.
   */
  readonly halfMath?: boolean;
  /**
   * int8 keys by packed integer dot products (`dot4I8Packed`, no shader feature): each lane's
   * query chunks of a row as fixed point at a power-of-two scale of its own (15 bits, so
   * f32-grade scores), split into a high and a low signed byte per element; each K word then
   * costs two integer dot products per row instead of its unpacking and four multiply-adds.
   * Only where it applies (see {@linkcode intDots}); otherwise ignored. Default false.
   */
  readonly intDots?: boolean;
  /**
   * Steps whose weighted V codes a packed f16 weighted sum ({@linkcode halfValues}) adds in f16
   * before it adds them into the f32 output state (fewer conversions for longer f16 sums, more
   * registers held across steps). Default 1: on the H200 one step was 2-12% faster than 2, 4 or
   * 8 (session 33, bench/notes.md). A sum holds `unroll x halfSteps` codes of at most 127 (int8)
   * or 1.75 (E4M3, unpacked over 2^8) times weights of at most 1.
   */
  readonly halfSteps?: number;
  /**
   * Whether `halfMath`'s weighted sums of V are packed f16 ({@linkcode halfValues}). Default: on
   * for int8 and E4M3 at per-tensor scales, off for f16 KV, whose halves then enter the sums as
   * stored (no unpacking); a sum of `unroll x halfSteps` f16 values times weights of at most 1
   * must stay within f16's range (|V| below 65504 / (`unroll` x `halfSteps`)).
   */
  readonly halfValues?: boolean;
  /**
   * Steps whose tokens every row may see skip the masking arithmetic and rescale the running
   * state only when the maximum rises (default true; false runs every step masked).
   */
  readonly fastSteps?: boolean;
  /**
   * Scores' dot products as chains of scalar multiply-adds (query rows in registers: one chain
   * per token and row; in workgroup memory: each vector's four products added by multiply-adds)
   * instead of sums of `vec4` dot products, each of which compiles to a multiply and three
   * multiply-adds, then an add (16 operations per 16 dims instead of 19). Default false here;
   * `kernelSpec` sets it unless the tuning's `fmaDots` is false.
   */
  readonly fmaDots?: boolean;
  /**
   * The attention variants compiled in (sliding window, soft-cap, ALiBi, sinks; see
   * `src/core/variant.ts` and `variant_wgsl.ts`); none by default (plain causal attention), which
   * adds nothing to the key.
   */
  readonly variant?: KernelVariantFlags;
  /**
   * Row sets: the block's query rows are split among this many lane groups per token, each
   * holding `rowsPerBlock / rowSets` rows, and the lane groups of one token read the same K and
   * V chunks in the same load (one memory request). Fewer registers per thread (more workgroups
   * per multiprocessor) for more K/V unpacking. Default 1; halved until it divides the rows.
   */
  readonly rowSets?: number;
  /**
   * Each token group takes `unroll` consecutive tokens per step instead of tokens `groups` apart
   * (the same tokens per step, in another order within the groups). Default false.
   */
  readonly tokenRuns?: boolean;
  /**
   * A step unpacks its V chunks one token at a time, inside its softmax update, after every
   * row's weights (instead of all its tokens' before the update): a token's V floats are live
   * for its multiply-adds only, not the whole step's, and each output element adds the tokens in
   * the same order (the same bits). Default false.
   */
  readonly vPerToken?: boolean;
  /**
   * The next step's K and V words (whole prefetch) are used before the step's softmax update, in
   * a test that never holds, so NVIDIA's compiler issues their loads at the top of the loop body
   * instead of sinking them to its end: the step's dot products and unpacking then run while
   * they are in flight (the same operations, so the same bits). With per-token scales the next
   * step's scale pairs go with them, and in paged kernels the page-table entries read ahead.
   * Only where it applies (see {@linkcode earlyLoads}); otherwise ignored. Default false;
   * `kernelSpec` sets it for 4-row int8 kernels with integer keys (6.6-8.6% faster on the H200,
   * session 34) and 4-row int8 and E4M3 kernels with per-token scales (session 35).
   */
  readonly earlyLoads?: boolean;
  /**
   * Paged kernels with early loads: the page-table entries read ahead go early with the K and V
   * words (default true; false leaves them out of the early test, and the compiler then issues
   * their reads where it likes: `kernelSpec` sets it for int8 at per-tensor scales with page
   * slices, session 36). The same bits.
   */
  readonly earlyPages?: boolean;
  /**
   * FP8 E4M3 chunks unpacked to f32 (K without `halfMath`, V without `halfValues` or
   * `vPerToken`) skip their per-word NaN-code tests: the step tests all its K chunks at once, and
   * all its V chunks, and makes the NaN codes NaN in a branch taken only then (two branches per
   * step instead of one per word; the same bits). Ignored for other dtypes.
   */
  readonly nanSteps?: boolean;
  /**
   * Dense kernels with whole prefetch address the next step's rows from the piece's first row
   * read again from the schedule a step ahead (the read's index depends on the step, so it stays
   * in the loop), as paged kernels read their pages a step ahead: with early loads NVIDIA's
   * compiler then schedules the 4-row E4M3 loop as it does the paged one (11-13% faster on the
   * H200, session 37). The same rows, so the same bits. Default false; `kernelSpec` sets it for
   * 4-row E4M3 kernels at per-tensor scales.
   */
  readonly baseAhead?: boolean;
  /**
   * Each lane group's partial scores are added so that each lane ends with one row's score (a
   * reduce-scatter over the lanes, then the row's softmax on its lanes only), and the rows'
   * weights reach the other lanes by shuffles: fewer shuffles, adds and exponentials per token
   * than every lane adding and weighing every row. Only where it applies (see
   * {@linkcode rowScatter}); otherwise ignored. Default false.
   */
  readonly rowScatter?: boolean;
  /**
   * Paged kernels with `tokenRuns` and prefetch whose pages hold at least `unroll` tokens: a
   * group's tokens of a step lie in at most two pages, so it reads two page-table entries per
   * step instead of one per token (`kernelSpec` sets it from the plan's page size).
   */
  readonly pageRuns?: boolean;
  /**
   * With `pageRuns`: the page size, the tiles and so every run's first token are multiples of
   * `unroll`, so a group's run of a step lies in one page and the group reads one page-table
   * entry per step instead of two (`kernelSpec` sets it from the plan's page size). The same
   * addresses, so the same bits.
   */
  readonly alignedRuns?: boolean;
  /**
   * Paged kernels with prefetch whose pages and tiles are whole multiples of the workgroup's
   * token groups (pieces then begin at a multiple of them too): the pages' slices of `groups`
   * tokens each (page size / groups). Each step's `groups` tokens `u * groups + g` lie in one
   * page, so a step reads one page-table entry per slice, not per token, and a row's address is
   * its page's plus the slice's place in the page (none with one slice per page) plus the
   * thread's fixed offset. A slice past the piece's last page reads that page again; rows past
   * the piece's end are masked like every token past it (`kernelSpec` sets it from the plan's
   * page size).
   */
  readonly pageSlices?: number;
  /**
   * 8-bit KV dtypes: where the scales come from, `"tensor"` (default: `kScale` / `vScale` of the
   * params block), `"token"` (the `kvScales` binding, one `vec2<f32>(k, v)` per row and KV head)
   * or `"layer"` (one pair for the whole tensor, the first of the `kvScales` binding: a paged
   * cache created with per-tensor scales keeps its layer's pair in every row, and one plan's
   * params serve all layers). See {@linkcode scaleTable}.
   */
  readonly kvScales?: KVScaleSource;
  /**
   * Token groups whose states are first added with subgroup shuffles at the end of a piece, before
   * the workgroup's merge of the groups (a power of two; needs `subgroups`, and that many groups'
   * lanes within the adapter's smallest subgroup). The merge through workgroup memory then has
   * that many times fewer groups: fewer rounds and shorter chains of additions. Default 1.
   */
  readonly shuffleGroups?: number;
  /**
   * The tiled kernel (`src/kernels/tiled_kernel.ts`) instead of the decode kernel: blocks of 16,
   * 32 or 64 query rows over head dims above 256 (MLA), each tile of tokens computed as two
   * small matrix products through workgroup memory, by `workgroupSize` 256 threads. The lane
   * fields above do not apply. Default false.
   */
  readonly tiled?: boolean;
  /** Head dims the tiled kernel stages per step (16 or 32, default 32: fewer barriers). */
  readonly matrixChunk?: number;
  /**
   * With `tiled`: the matrix-unit kernel (`src/kernels/matrix_kernel.ts`) instead of the tiled
   * one: both products of a tile on Dawn's subgroup matrices (f16 operands, f32 sums), f16 or
   * 8-bit K/V of head dims 16-128 in steps of 16 (160-256 in steps of 32 at 16 rows),
   * `workgroupSize` 128 (four subgroups). Needs `shader-f16`, `subgroups` and
   * `chromium-experimental-subgroup-matrix`. Default false.
   */
  readonly matrix?: boolean;
}

/**
 * Whether a spec stages its query rows through workgroup memory (`queryStaged`): where the rows
 * live in registers, i.e. neither `queryShared` nor packed f16 dot products.
 *
 * @example
 * ```ts
 * import { queryStaged } from "./kernel_spec.ts";
 * const spec = {
 *   headDim: 128, kvDtype: "f16" as const, tileTokens: 64, rowsPerBlock: 4, workgroupSize: 128,
 *   queryStaged: true,
 * };
 * console.log(queryStaged(spec), queryStaged({ ...spec, queryShared: true })); // true false
 * ```
 */
export function queryStaged(spec: KernelSpec): boolean {
  return spec.queryStaged === true && !spec.queryShared && !halfMath(spec);
}

/**
 * Whether a spec's row scatter applies: asked for, lanes adding with subgroup shuffles, a power
 * of two of rows per thread (at least 2, at most the lanes), and no logits hooks (soft-cap and
 * ALiBi act on every row's score in every lane).
 *
 * @example
 * ```ts
 * import { rowScatter } from "./kernel_spec.ts";
 * const spec = {
 *   headDim: 128, kvDtype: "f16" as const, tileTokens: 64, rowsPerBlock: 4, workgroupSize: 128,
 *   lanes: 8, subgroups: true, rowScatter: true,
 * };
 * console.log(rowScatter(spec), rowScatter({ ...spec, rowsPerBlock: 1 })); // true false
 * ```
 */
export function rowScatter(spec: KernelSpec): boolean {
  const l = kernelLayout(spec);
  const rp = l.rowsPerThread;
  const flags = spec.variant ?? {};
  return spec.rowScatter === true && l.subgroups && rp >= 2 && (rp & (rp - 1)) === 0 &&
    rp <= l.lanes && !flags.softCap && !flags.alibi;
}

/**
 * Whether a spec's packed f16 dot products apply (`halfMath` on f16, int8 or FP8 E4M3 KV).
 *
 * @example
 * ```ts
 * import { halfMath } from "./kernel_spec.ts";
 * const spec = {
 *   headDim: 128, kvDtype: "int8" as const, tileTokens: 64, rowsPerBlock: 4, workgroupSize: 128,
 *   halfMath: true,
 * };
 * console.log(halfMath(spec), halfMath({ ...spec, kvDtype: "fp8e5m2" })); // true false
 * ```
 */
export function halfMath(spec: KernelSpec): boolean {
  return spec.halfMath === true &&
    (spec.kvDtype === "f16" || KV_DTYPE_INFO[spec.kvDtype].wgslUnpackHalf !== undefined);
}

/**
 * Whether a spec's weighted sum of V is packed f16 too: `halfMath` on int8 or FP8 E4M3 KV with
 * per-tensor scales (a scale per token would have to join each weight, whose f16 products then
 * lose the small weights' precision), unless int8 keys take integer dot products
 * ({@linkcode intDots}): beside those, f16 sums of V were 3.5-4.6% slower than f32's on the H200
 * (session 33), so `halfMath` leaves such a kernel as it is. f16 V takes them where the spec's
 * `halfValues` asks (its halves used as stored); `halfValues: false` turns them off for 8-bit V.
 *
 * @example
 * ```ts
 * import { halfValues } from "./kernel_spec.ts";
 * const spec = {
 *   headDim: 128, kvDtype: "int8" as const, tileTokens: 64, rowsPerBlock: 4, workgroupSize: 128,
 *   halfMath: true,
 * };
 * console.log(halfValues(spec), halfValues({ ...spec, kvScales: "token" as const })); // true false
 * console.log(halfValues({ ...spec, intDots: true })); // false
 * console.log(halfValues({ ...spec, kvDtype: "f16" }), halfValues({ ...spec, kvDtype: "f16", halfValues: true })); // false true
 * ```
 */
export function halfValues(spec: KernelSpec): boolean {
  if (!halfMath(spec) || spec.kvScales === "token" || intDots(spec)) return false;
  return spec.kvDtype === "f16" ? spec.halfValues === true : spec.halfValues !== false;
}

/**
 * Whether a spec's int8 keys take packed integer dot products (`intDots`): int8 KV, query rows
 * in registers (not `queryShared` or `queryStaged`), at most 512 dims per lane (so the integer sums
 * stay within an i32). They take precedence over `halfMath`'s f16 keys and sums of V, which they
 * beat.
 *
 * @example
 * ```ts
 * import { intDots } from "./kernel_spec.ts";
 * const spec = {
 *   headDim: 128, kvDtype: "int8" as const, tileTokens: 64, rowsPerBlock: 4, workgroupSize: 128,
 *   intDots: true,
 * };
 * console.log(intDots(spec), intDots({ ...spec, kvDtype: "f16" })); // true false
 * ```
 */
export function intDots(spec: KernelSpec): boolean {
  const l = kernelLayout(spec);
  return spec.intDots === true && spec.kvDtype === "int8" && !spec.queryShared &&
    !queryStaged(spec) &&
    l.chunksPerLane * elementsPerLoad(spec.kvDtype, kvLoadDim(spec.headDim, spec.headDimV)) <=
      512;
}

/** Steps of a packed f16 weighted sum between its additions into the f32 state. */
export function halfSteps(spec: KernelSpec): number {
  const steps = spec.halfSteps ?? 1;
  if (!Number.isInteger(steps) || steps < 1) {
    throw new RangeError(`halfSteps must be a positive integer: got ${spec.halfSteps}`);
  }
  return steps;
}

/** Where an 8-bit kernel's scales come from (see {@linkcode KernelSpec.kvScales}). */
export type KVScaleSource = "tensor" | "token" | "layer";

/**
 * Whether a spec's kernel binds the `kvScales` table: 8-bit KV with per-token scales, or with
 * one pair per layer read from the table's first entry.
 *
 * @example
 * ```ts
 * import { scaleTable } from "./kernel_spec.ts";
 * const spec = {
 *   headDim: 128, kvDtype: "int8" as const, tileTokens: 64, rowsPerBlock: 4, workgroupSize: 128,
 * };
 * console.log(scaleTable(spec), scaleTable({ ...spec, kvScales: "layer" as const })); // false true
 * ```
 */
export function scaleTable(spec: KernelSpec): boolean {
  return KV_DTYPE_INFO[spec.kvDtype].scaled &&
    (spec.kvScales === "token" || spec.kvScales === "layer");
}

/**
 * Whether a spec's next-step loads are used early ({@linkcode KernelSpec.earlyLoads}): with
 * whole prefetch. A word of each chunk (of f16 chunks read as `KHalves` by packed f16 math, one
 * half of each of their two parts); with per-token scales the next step's scale pairs too, and
 * with pages the page-table entries read ahead.
 *
 * @example
 * ```ts
 * import { earlyLoads } from "./kernel_spec.ts";
 * const spec = {
 *   headDim: 128, kvDtype: "int8" as const, tileTokens: 64, rowsPerBlock: 4, workgroupSize: 128,
 *   prefetch: true, earlyLoads: true,
 * };
 * console.log(earlyLoads(spec), earlyLoads({ ...spec, prefetch: "split" as const })); // true false
 * ```
 */
export function earlyLoads(spec: KernelSpec): boolean {
  return spec.earlyLoads === true && spec.prefetch === true;
}
