/**
 * The kernel table: the tuned lanes, unroll, prefetch and row sets of each kernel class (query
 * rows per block and head dim), which `kernelSpec` starts from.
 *
 * @module
 */

/** Lanes per token and tokens per lane group per step of a kernel class. */
export interface KernelChoice {
  /** Threads sharing one token (capped by the row's chunks and the subgroup size). */
  readonly lanes: number;
  /** Tokens each lane group loads per step (with prefetch). */
  readonly unroll: number;
  /**
   * Request the next step's K and V before this step's arithmetic (default true; `"split"`:
   * each tensor once this step has used its own, see `KernelSpec.prefetch`).
   */
  readonly prefetch?: boolean | "split";
  /** Query rows in workgroup memory (see `KernelSpec.queryShared`; default false). */
  readonly queryShared?: boolean;
  /**
   * The lanes need not divide the row's chunks: the last round is padded (MLA's K row of 576
   * dims is 72 f16 chunks, which no power of two above 8 divides).
   */
  readonly padded?: boolean;
  /** Row sets per token (see `KernelSpec.rowSets`; default 1). */
  readonly rowSets?: number;
}

/**
 * The default kernel choice per class: query rows per block (1, 2, 4, 8) and head dim (up to
 * 64, up to 128, more). Each lane holds `2 x rows x headDim / (lanes x rowSets)` floats of query
 * and output state, so blocks of more rows or longer rows want more lanes or row sets
 * (registers); fewer lanes per token divide each token's per-row work (the shuffles that add
 * the lanes' partial dot products, the softmax, which every lane of the group repeats) among
 * fewer threads, and every row set unpacks its own copy of the token's K and V. The classes of
 * the benchmark's cases (r1 d128, r4 d64/d128/d256, r8 d128) were picked by
 * `bench/pick_table.ts` from the H200 sweeps of `bench/tune.ts` (bench/notes.md; r4 d64 and r4
 * d256 from session 19's sweep of split prefetch and shared query rows); the others
 * keep the choice of the kernel before the table (the most lanes up to 16 that divide the row,
 * unroll 2 / chunks per lane).
 */
export const KERNEL_TABLE: Readonly<Record<string, KernelChoice>> = {
  "r1 d64": { lanes: 8, unroll: 2 },
  "r1 d128": { lanes: 8, unroll: 2 },
  "r1 d256": { lanes: 16, unroll: 1 },
  "r2 d64": { lanes: 8, unroll: 2 },
  "r2 d128": { lanes: 16, unroll: 2 },
  "r2 d256": { lanes: 16, unroll: 1 },
  "r4 d64": { lanes: 8, unroll: 8, prefetch: "split", rowSets: 2, queryShared: true },
  "r4 d128": { lanes: 8, unroll: 4, prefetch: true },
  "r4 d256": { lanes: 16, unroll: 8, prefetch: "split", rowSets: 2, queryShared: true },
  "r8 d64": { lanes: 8, unroll: 2 },
  "r8 d128": { lanes: 8, unroll: 4, prefetch: true, rowSets: 2 },
  "r8 d256": { lanes: 16, unroll: 1 },
  // MLA (K 576, V 512, one latent KV head for 16-128 query heads): a whole 32-lane subgroup per
  // token, so each lane holds (576 + 512) / 32 floats per row and a block serves 4 rows (not yet
  // tuned on hardware).
  "r1 d576": { lanes: 32, unroll: 1, prefetch: false, padded: true },
  "r2 d576": { lanes: 32, unroll: 1, prefetch: false, padded: true },
  "r4 d576": { lanes: 32, unroll: 1, prefetch: false, padded: true },
  "r8 d576": { lanes: 32, unroll: 1, prefetch: false, padded: true },
};

/**
 * The {@linkcode KERNEL_TABLE} entry of a block shape: rows rounded up to a power of two (at
 * most 8), head dims up to 64, up to 128, and beyond.
 *
 * @example
 * ```ts
 * import { kernelChoice } from "./kernel_table.ts";
 * console.log(kernelChoice(128, 1).lanes, kernelChoice(128, 3) === kernelChoice(128, 4)); // 8 true
 * ```
 */
export function kernelChoice(headDim: number, rowsPerBlock: number): KernelChoice {
  return KERNEL_TABLE[kernelTableKey(headDim, rowsPerBlock)];
}

/**
 * The {@linkcode KERNEL_TABLE} key of a block shape, e.g. `"r4 d128"` (see
 * {@linkcode kernelChoice}).
 *
 * @example
 * ```ts
 * import { kernelTableKey } from "./kernel_table.ts";
 * console.log(kernelTableKey(96, 3)); // r4 d128
 * ```
 */
export function kernelTableKey(headDim: number, rowsPerBlock: number): string {
  let rows = 1;
  while (rows < rowsPerBlock && rows < 8) rows *= 2;
  return `r${rows} d${headDim <= 64 ? 64 : headDim <= 128 ? 128 : headDim <= 256 ? 256 : 576}`;
}
