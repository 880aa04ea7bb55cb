/**
 * The kernel table: the tuned lanes, unroll, prefetch and row sets of each kernel class (query
 * rows per block and head dim), which `kernelSpec` starts from.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { KVDtype } from "../core/problem.ts";

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
  /** Consecutive tokens per group and step (`KernelSpec.tokenRuns`). */
  readonly tokenRuns?: boolean;
  /** V unpacked one token at a time in the softmax update (`KernelSpec.vPerToken`). */
  readonly vPerToken?: boolean;
  /** Query rows read once per workgroup (`KernelSpec.queryStaged`). */
  readonly queryStaged?: boolean;
  /** Each lane ends with one row's score (`KernelSpec.rowScatter`). */
  readonly rowScatter?: boolean;
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
 * d256 from session 19's sweep of split prefetch and shared query rows; their token runs from
 * session 28: paged d256 32k at 1.047x dense instead of 1.072x, d64 32k 1.026x instead of 1.041x,
 * dense unchanged); r4 d128 and r8 d128 (4 rows per thread in both) add their lanes' sums by
 * row scatter since session 29 (`rowScatter`: 1.7-7.6% faster on the GQA, int8 and qLen 4 cases
 * on the H200, the same bits), r4 d64 and r4 d256 (2 rows per thread) since session 30 (d64 32k
 * 8.4% faster, d256 32k 3.8%). r4 d256 keeps its query rows in registers since session 31 (row
 * scatter left room for them: d256 32k 2.6% faster back to back than with them in workgroup
 * memory, one run on the H200). r8 d64 (gpt-oss: 8 rows of 64 dims) and r2 d128 (Gemma 2 27B,
 * Gemma 3: 2 rows of 128) since session 60's sweep through Deno's WebGPU on the H200
 * (`bash bench/h200_s60_session.sh sweep|sweep2`): gpt-oss-shaped 32k / 128k 0.79x / 0.72x of
 * the fallback's time (4 lanes, two row sets: each token's sums and softmax shared by half the
 * lanes), Gemma 3-shaped 32k / 128k 0.90x / 0.89x (94.5% of the roofline at 128k). The others
 * keep the choice of the kernel before the table (the most lanes up to 16 that divide the row,
 * unroll 2 / chunks per lane).
 */
export const KERNEL_TABLE: Readonly<Record<string, KernelChoice>> = {
  "r1 d64": { lanes: 8, unroll: 2 },
  "r1 d128": { lanes: 8, unroll: 2 },
  "r1 d256": { lanes: 16, unroll: 1 },
  "r2 d64": { lanes: 8, unroll: 2 },
  "r2 d128": { lanes: 16, unroll: 4, prefetch: true, rowScatter: true },
  "r2 d256": { lanes: 16, unroll: 1 },
  "r4 d64": {
    lanes: 8,
    unroll: 8,
    prefetch: "split",
    rowSets: 2,
    queryShared: true,
    tokenRuns: true,
    rowScatter: true,
  },
  "r4 d128": { lanes: 8, unroll: 4, prefetch: true, rowScatter: true },
  "r4 d256": {
    lanes: 16,
    unroll: 8,
    prefetch: "split",
    rowSets: 2,
    tokenRuns: true,
    rowScatter: true,
  },
  "r8 d64": { lanes: 4, unroll: 4, prefetch: true, rowSets: 2, rowScatter: true },
  "r8 d128": { lanes: 8, unroll: 4, prefetch: true, rowSets: 2, rowScatter: true },
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
 * most 8), head dims up to 64, up to 128, and beyond. 8-bit KV (`int8`, `fp8e4m3`, `fp8e5m2`)
 * takes the class's `"<class> 8-bit"` entry where the table has one (see
 * {@linkcode kernelChoiceKey}), else the class's own.
 *
 * @example
 * ```ts
 * import { kernelChoice } from "./kernel_table.ts";
 * console.log(kernelChoice(128, 1).lanes, kernelChoice(128, 3) === kernelChoice(128, 4)); // 8 true
 * console.log(kernelChoice(128, 4, "int8") === kernelChoice(128, 4)); // true (no 8-bit entry)
 * ```
 */
export function kernelChoice(
  headDim: number,
  rowsPerBlock: number,
  kvDtype?: KVDtype,
): KernelChoice {
  return KERNEL_TABLE[kernelChoiceKey(KERNEL_TABLE, headDim, rowsPerBlock, kvDtype)];
}

/**
 * The key of a table (the built-in {@linkcode KERNEL_TABLE}, or one picked from a sweep) that a
 * block shape and KV dtype take: `"<class> 8-bit"` for 8-bit KV where the table has that entry
 * (an 8-bit token row is half an f16 row, so the same lanes and unroll keep half the bytes in
 * flight: the class may want other choices), else the class key of
 * {@linkcode kernelTableKey}. Grids stay calibrated per class, whatever the dtype.
 *
 * @example
 * ```ts
 * import { kernelChoiceKey } from "./kernel_table.ts";
 * const table = { "r1 d128": { lanes: 8, unroll: 2 }, "r1 d128 8-bit": { lanes: 8, unroll: 4 } };
 * console.log(kernelChoiceKey(table, 128, 1, "fp8e5m2"), kernelChoiceKey(table, 128, 1, "f16"));
 * // r1 d128 8-bit r1 d128
 * ```
 */
export function kernelChoiceKey(
  table: Readonly<Record<string, KernelChoice>>,
  headDim: number,
  rowsPerBlock: number,
  kvDtype?: KVDtype,
): string {
  const key = kernelTableKey(headDim, rowsPerBlock);
  const eightBit = kvDtype !== undefined && KV_DTYPE_INFO[kvDtype].scaled;
  return eightBit && table[`${key} 8-bit`] ? `${key} 8-bit` : key;
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

/**
 * The class of a block shape for lean grids (`DeviceProfile.gridByClass`): the kernel table's
 * class, or for the tiled kernel's matrix blocks (more than 8 rows over head dims above 256)
 * `"tiled r<rows>"`, and for the matrix-unit kernel's (more than 8 rows at head dims up to 256, or
 * blocks cut for it at MLA's: `matrixUnits`) `"matrix r<rows> d<class>"`, since those run far
 * fewer workgroups at once than any table class
 * (a table class's key would take the decode kernel's grid of 8-row blocks). With an
 * 8-bit `kvDtype`, a table class's key names the dtype too (`"r1 d128 fp8e4m3"`): its kernels
 * keep registers of their own, so the class is calibrated apart.
 *
 * @example
 * ```ts
 * import { gridClassKey } from "./kernel_table.ts";
 * console.log(gridClassKey(576, 64), gridClassKey(576, 4), gridClassKey(128, 16)); // tiled r64 r4 d576 matrix r16 d128
 * console.log(gridClassKey(576, 16, "f16", true)); // matrix r16 d576
 * console.log(gridClassKey(128, 1, "fp8e4m3"), gridClassKey(128, 1, "f16")); // r1 d128 fp8e4m3 r1 d128
 * ```
 */
export function gridClassKey(
  headDim: number,
  rowsPerBlock: number,
  kvDtype?: KVDtype,
  matrixUnits = false,
): string {
  const key = kernelTableKey(headDim, rowsPerBlock);
  if (rowsPerBlock > 8) {
    return headDim > 256 && !matrixUnits
      ? `tiled r${rowsPerBlock}`
      : `matrix r${rowsPerBlock} ${key.slice(3)}`;
  }
  return kvDtype !== undefined && KV_DTYPE_INFO[kvDtype].bytes === 1 ? `${key} ${kvDtype}` : key;
}
