/**
 * The caller's kernel choices (`KernelTuning`): what a backend may be told to take or avoid for
 * every plan, each defaulting to the kernel table's choice. Kept apart from the choice itself
 * (`kernel_choice.ts`) because every decoder, encoder and benchmark option type names it.
 *
 * @module
 */

/**
 * Kernel choices a backend makes for every plan (see `KernelSpec`).
 *
 * @example
 * ```ts
 * import type { DecoderOptions, KernelTuning } from "@lean/attention";
 * const kernel: KernelTuning = { subgroups: false, lanes: 8, unroll: 2, prefetch: true };
 * // Passed to createDecoder (GPU backends) or createAttentionEncoder.
 * const options: DecoderOptions = { backend: "webgpu", kernel };
 * console.log(options.kernel?.lanes); // 8
 * ```
 */
export interface KernelTuning {
  /** Use subgroup shuffles when the device offers them (default true). */
  subgroups?: boolean;
  /**
   * Threads per token (default: the kernel table's choice for the block's rows and head dim, at
   * most the smallest subgroup; see `KERNEL_TABLE` in `src/kernels/kernel_table.ts`). Rows whose
   * 16-byte chunks it does not divide take the most lanes (a power of two) that divide them.
   */
  lanes?: number;
  /** Tokens each lane group loads per step (default: the kernel table's choice). */
  unroll?: number;
  /**
   * Request the next step's K and V before this step's arithmetic (default: the kernel table's
   * choice; `"split"` requests each tensor once the step has used its own).
   */
  prefetch?: boolean | "split";
  /** Query rows in workgroup memory (default: the kernel table's choice). */
  queryShared?: boolean;
  /**
   * Packed f16 arithmetic where the device has `shader-f16` and the KV is f16, int8 or FP8 E4M3
   * (default false): dot products of queries and keys, and with E4M3 (and int8 whose keys do not
   * take `intDots`) at per-tensor scales the weighted sum of V too, at about f16's precision
   * (output relative errors near 1e-3) for fewer instructions per token; int8 keys that take
   * `intDots` keep them, and their V stays f32; elsewhere the f32 path runs. Over f16 KV on 4-
   * and 8-row blocks it takes early loads by default (`earlyLoads`): 0-2.7% faster than packed
   * keys alone on the H200's GQA cases, GQA 32/8 128k at 90.7% of its roofline (session 35). See
   * `KernelSpec.halfMath`.
   */
  halfMath?: boolean;
  /**
   * int8 keys by packed integer dot products (default true; false: the f32 dot products): query
   * rows as 15-bit fixed point (f32-grade scores), two `dot4I8Packed` per K word and row instead
   * of its unpacking and four multiply-adds: 6-12% faster on the H200's GQA int8 cases (session
   * 33). See `KernelSpec.intDots`.
   */
  intDots?: boolean;
  /**
   * The next step's K and V loads issued at the top of the token loop's body, where the step's
   * dot products overlap them (default: on for 4-row int8 kernels with integer keys, 6.6-8.6%
   * faster on the H200 in session 34; for 4-row int8 and E4M3 kernels with per-token scales,
   * dense or paged, whose scale pairs and page-table entries go early too, 1.0-3.9% faster in
   * session 35; and for packed f16 keys (`halfMath` over f16) on 4- and 8-row blocks, 0-2.7%
   * faster than the packed keys alone in session 35; for 4-row int8 and E4M3 paged kernels with
   * page slices, whose loads the slices sink to the loop's end otherwise (per-tensor E4M3 12%
   * slower, session 36); off elsewhere, where f16 kernels spilled in session 28 and dense
   * per-tensor E4M3 was 4-6% slower). The same bits. See
   * `KernelSpec.earlyLoads`.
   */
  earlyLoads?: boolean;
  /**
   * Paged kernels with early loads put the page-table entries read ahead in the early test too
   * (default: on, but off for int8 at per-tensor scales with page slices, which it took from
   * 1.004-1.051x of dense to 0.990-1.001x on the H200, session 36; E4M3 was 0.1-2.1% slower
   * without). The same bits. See `KernelSpec.earlyPages`.
   */
  earlyPages?: boolean;
  /**
   * FP8 E4M3 kernels test a step's K chunks for NaN codes at once, and its V chunks, instead of
   * each word (default: on for 4-row blocks, 1-row paged ones and 1-row dense ones at per-tensor
   * scales). The same bits. See `KernelSpec.nanSteps`.
   */
  nanSteps?: boolean;
  /**
   * Dense kernels with whole prefetch read the piece's first row again a step ahead and address
   * the next step's rows from it (default: on for 4- and 1-row E4M3 kernels at per-tensor
   * scales, with early loads: 11-13% and 15% faster on the H200, sessions 37 and 38; int8 was 3%
   * slower, f16 no faster). The same bits. See `KernelSpec.baseAhead`.
   */
  baseAhead?: boolean;
  /**
   * Steps a packed f16 weighted sum of V adds in f16 before it joins the f32 output state
   * (default 1; for measurements). See `KernelSpec.halfSteps`.
   */
  halfSteps?: number;
  /**
   * Packed f16 weighted sums of V under `halfMath` (default: on for int8 and E4M3 at per-tensor
   * scales, off for f16 KV; true turns them on for f16 V, whose halves then enter the sums as
   * stored: 3.6-15% slower than the packed keys alone on the H200, session 34). See
   * `KernelSpec.halfValues`.
   */
  halfValues?: boolean;
  /**
   * Steps that mask no token skip the masking arithmetic (default true; false masks every step,
   * as kernels before 0.2 did: for measurements).
   */
  fastSteps?: boolean;
  /**
   * Each score's dot product as a chain of scalar multiply-adds (default true: 16 operations per
   * 16 dims; false sums `vec4` dot products, 19 per 16 dims: for measurements).
   */
  fmaDots?: boolean;
  /**
   * Lane groups that split a block's query rows, reading the same K and V (default: the kernel
   * table's choice; see `KernelSpec.rowSets`).
   */
  rowSets?: number;
  /**
   * Each token group takes consecutive tokens per step (default: the kernel table's choice; see
   * `KernelSpec.tokenRuns`): a paged cache whose pages hold a step's tokens of a group then reads
   * two page-table entries per group and step instead of one per token.
   */
  tokenRuns?: boolean;
  /**
   * Paged kernels with token runs read one page-table entry per group and step where the page
   * size and the tiles are multiples of the step's tokens per group, so no run crosses a page
   * (default true; false reads the pages of a run's first and last token, as before session 39:
   * for measurements). The same bits. See `KernelSpec.alignedRuns`.
   */
  alignedRuns?: boolean;
  /**
   * Paged kernels read one page-table entry per slice of a step's tokens where pages and tiles
   * hold whole slices, and address its rows from the page's (default: on for 8-bit K/V, 0.6-2.8%
   * faster than a page read and page arithmetic per token on the H200's paged 8-bit rows, and
   * off for f16, bf16 and f32, whose paged kernels are bound by their reads: f16 0-1.5% slower
   * with them, session 36). See `KernelSpec.pageSlices`.
   */
  pageSlices?: boolean;
  /**
   * Each step unpacks V one token at a time in its softmax update (default: the kernel table's
   * choice; see `KernelSpec.vPerToken`): fewer V floats live at once, the same results.
   */
  vPerToken?: boolean;
  /**
   * Query rows read once per workgroup into workgroup memory and copied into each thread's
   * registers from there (default: the kernel table's choice; see `KernelSpec.queryStaged`): the
   * same results.
   */
  queryStaged?: boolean;
  /**
   * Each lane group's scores reduce-scattered, one row per lane, the rows' weights shuffled to
   * the other lanes (default: the kernel table's choice; see `KernelSpec.rowScatter`).
   */
  rowScatter?: boolean;
  /**
   * Most token groups whose states are added with subgroup shuffles before the workgroup's merge
   * of the groups (default: as many as the smallest subgroup holds; 1 turns it off; see
   * `KernelSpec.shuffleGroups`).
   */
  shuffleGroups?: number;
  /**
   * MLA-sized row groups (16 or more rows over head dims above 256) take the tiled kernel where
   * the device holds it (default true; false keeps the decode kernel's 4-row blocks there: for
   * measurements). See `src/kernels/tiled_kernel.ts`.
   */
  tiled?: boolean;
  /**
   * KV groups of 7 or more query rows (`matrixMinRows`; fewer than 16 in one block of 16, the
   * other rows masked) over f16 or 8-bit K/V (int8, FP8 E4M3 and E5M2, staged as their
   * values in f16) of head dims 16-128 (in steps of 16; 160-256 in steps of 32, in blocks of 16
   * rows), and MLA's f16 K rows above 256 dims (up to 576) with V rows of their own (up to 512, in
   * blocks of 16 rows) take the matrix-unit kernel where the device offers Dawn's experimental
   * subgroup matrices (f16 x f16 -> f32, 16 x 16 x 16, subgroups of 32: NVIDIA's GPUs through
   * `@lean/attention/dawn`), default false. Its products take f16 operands (queries and weights
   * rounded to f16; sums in f32), so outputs carry f16-grade errors (within 2e-3 of float64) for
   * faster decodes where many query rows share a KV head: on the H200 through Dawn 0.26x of the
   * default kernels' time at MQA h128/1 b8 32k, 0.40-0.57x with 2-8 query tokens over GQA groups,
   * 0.70x at qLen 4 GQA 16k, 0.13-0.63x over 8-bit K/V (session 51), and 0.17-0.49x at head dims
   * 192-256 (session 52), MLA 0.24-0.40x of the tiled kernel's (session 55), GQA's groups of 7-12
   * rows at qLen 1 0.52-0.81x (session 57). Ignored where the
   * device lacks the feature, and for other shapes. See `src/kernels/matrix_kernel.ts`.
   */
  matrixMath?: boolean;
  /**
   * Most query rows of the matrix kernel's blocks: 16, 32 or 64 (default 64). Each block takes a
   * workgroup of four subgroups, whose staged tile of K and V its rows share; smaller blocks make
   * more workgroups (on the H200, 32 rows helped batch-1 MQA and qLen 8, and slowed MQA b8).
   * Head dims above 128 take blocks of 16 rows whatever this asks.
   */
  matrixRows?: number;
  /**
   * Fewest query rows of a KV group that take the matrix kernel with `matrixMath` (1 to 16;
   * default 7): a group of fewer rows takes one block of 16, its other rows masked. On the H200
   * through Dawn, GQA at qLen 1 over f16 K/V: 0.70x of the default kernels' time at 7 rows
   * (Qwen2.5 7B's 28/4), 0.81x at 8 (Llama 3 70B's 64/8), 0.52x at 12 (Mistral Large 2's 96/8),
   * the same at 5 and 1.17x at 4; over int8 and FP8 E4M3 K/V 0.55-0.94x at 7-12 rows (session
   * 57).
   */
  matrixMinRows?: number;
  /**
   * Blocks of 7 rows at head dims 65-128 run as 8, the 8th masked, so the kernel's two row sets
   * split them (default true; 0.73-0.81x the time on the H200, see `TileOptions.padRows`).
   */
  padRows?: boolean;
}
