/**
 * The kernel specialisation a plan is cut for: tile size, rows per block, workgroup size.
 * The planner, the CPU backend and the WGSL kernels all read the same config, so the CPU
 * executes exactly the tiles and partial states the GPU would.
 *
 * @module
 */

import { integerIn } from "../core/field_checks.ts";
import type { KVDtype } from "../core/problem.ts";
import { MATRIX_WIDE_DIM, matrixHeadDimsFit } from "../kernels/matrix_layout.ts";
import { kernelChoice } from "../kernels/kernel_table.ts";

/**
 * Tile and workgroup geometry shared by the planner and the kernels.
 *
 * @example
 * ```ts
 * import { type TileConfig } from "@lean/attention";
 * import { tileConfig } from "@lean/attention/plan";
 * const c: TileConfig = tileConfig({ headDim: 64, rowsPerGroup: 8, kvDtype: "f32" });
 * console.log(c.tileTokens, c.rowsPerBlock, c.rowBlocks, c.workgroupSize); // 64 8 1 128
 * ```
 */
export interface TileConfig {
  /** KV tokens in one LeanTile. */
  readonly tileTokens: number;
  /** Query rows a work unit keeps state for (a block of the KV group's rows). */
  readonly rowsPerBlock: number;
  /** Blocks the KV group's rows are cut into (1 unless the group is large). */
  readonly rowBlocks: number;
  /** Threads per workgroup of the decode kernel. */
  readonly workgroupSize: number;
  /**
   * Set where the blocks were cut for the GPU's matrix-unit kernel (`TileOptions.matrixUnits`),
   * which MLA's head dims need told apart from the tiled kernel's blocks.
   */
  readonly matrixUnits?: true;
}

/**
 * Overrides for {@linkcode tileConfig}, for tuning.
 *
 * @example
 * ```ts
 * import { type TileOptions } from "@lean/attention";
 * import { tileConfig } from "@lean/attention/plan";
 * const o: TileOptions = { tileTokens: 128, workgroupSize: 256 };
 * const c = tileConfig({ headDim: 64, rowsPerGroup: 1, kvDtype: "f16" }, o);
 * console.log(c.tileTokens, c.workgroupSize); // 128 256
 * ```
 */
export interface TileOptions {
  /** KV tokens per LeanTile (a power of two from 16 to 256). */
  tileTokens?: number;
  /**
   * Threads per decode workgroup (a power of two from 16 to 256). Threads share tokens in groups
   * of `lanes` (see the kernel spec), so a workgroup covers `workgroupSize / lanes` tokens at a
   * time. Default 128.
   */
  workgroupSize?: number;
  /**
   * Blocks of 16, 32 or 64 query rows for head dims above 256 (MLA), cut for the GPU's tiled
   * kernel (`src/kernels/tiled_kernel.ts`), where a KV group has at least 16 rows and its head
   * dims suit that kernel (see {@linkcode matrixBlocksFit}); other shapes keep their blocks. GPU
   * backends set it; default false (blocks of at most 4 rows at such head dims).
   */
  matrixBlocks?: boolean;
  /**
   * Blocks of 16, 32 or 64 query rows over f16 or 8-bit K/V of head dims 16-128 (of 16 rows at
   * head dims 160-256, and over MLA's f16 K rows of up to 576 dims with V rows of their own) for
   * the GPU's matrix-unit kernel (`src/kernels/matrix_kernel.ts`), where a KV group has at least
   * 16 rows (see {@linkcode matrixUnitsFit}); such a plan's tiles carry `matrixUnits: true`. GPU
   * backends set it where the caller asks for `kernel: { matrixMath: true }` and the device has
   * the kernel's features; default false.
   */
  matrixUnits?: boolean;
  /** Most query rows of a matrix-unit block (16, 32 or 64; default 64). */
  matrixUnitRows?: number;
  /**
   * Fewest query rows of a KV group that take matrix-unit blocks with `matrixUnits` (1 to 16;
   * default 7): a group of fewer rows than 16 takes one block of 16, its other rows masked. (On
   * the H200 the matrix kernel's time hardly changes with a block's rows, where the f32 kernels'
   * grows with them: over f16 K/V it takes 1.17x of their time at 4 rows, the same at 5,
   * 0.70-0.81x at 7 and 8, 0.52x at 12; over 8-bit K/V 0.55-0.94x at 7-12 rows; session 57,
   * bench/notes.md.)
   */
  matrixUnitMinRows?: number;
  /**
   * A block of 7 rows at head dims 65-128, which its kernel class's two row sets (each token's
   * rows split between two lane groups) do not divide, so that each thread would hold all 7,
   * takes an 8th row, masked (default true): four rows per thread. On the H200 Qwen2.5 7B's
   * 28/4 at 32k tokens took 0.73x the time over f16 K/V, 0.76x over int8, 0.81x over E4M3
   * (session 58). Blocks of 5 or 3 rows keep theirs (padded they were slower).
   */
  padRows?: boolean;
}

/**
 * Floats of query state a block may hold: each lane keeps `rows x headDim / lanes` query and
 * output values in registers (64 each at 16 lanes), and the block's output in workgroup memory.
 */
const MAX_BLOCK_FLOATS = 1024;
const MAX_ROWS_PER_BLOCK = 8;
/**
 * Most rows a thread of the decode kernel holds before its block is padded to its class's row
 * sets (`TileOptions.padRows`). On the H200 (session 58, Deno's WebGPU), 7-row d128 blocks (one
 * row set, 7 rows per thread) run as 8 (two sets of 4) took 0.73-0.81x the time over f16, int8 and
 * E4M3 (Qwen2.5 7B's 28/4), 0.78x for 14 rows; padding 5 rows to 6 (5 per thread to 3) took
 * 1.16-1.48x, 10 to 12 1.29x, 3 to 4 at d64 and d256 1.03-1.04x, 6 to 8 at d256 1.26x.
 */
const PAD_ROWS_PER_THREAD = 6;
/**
 * Head dims above 256 (MLA's 576) get 32 lanes per token (`KERNEL_TABLE`), so a lane holds a
 * 32nd of each row: blocks of up to 4 rows, their output (at most 2048 floats) in workgroup
 * memory.
 */
const WIDE_BLOCK_FLOATS = 2048;
const WIDE_ROWS_PER_BLOCK = 4;

/** Fewest rows of a KV group that take matrix-unit blocks by default. */
const MATRIX_MIN_ROWS = 7;

/** Most query rows of a matrix block (see `TileOptions.matrixBlocks`). */
const MATRIX_ROWS_PER_BLOCK = 64;

/**
 * Whether head dims suit the tiled kernel's matrix blocks: K rows above 256 dims in steps of
 * 32, V rows (8 dims per thread) of a power of two from 16 to 512 dims.
 *
 * @example
 * ```ts
 * import { matrixBlocksFit } from "@lean/attention/plan";
 * console.log(matrixBlocksFit(576, 512, "f16"), matrixBlocksFit(128, 128, "f16")); // true false
 * ```
 */
export function matrixBlocksFit(headDim: number, headDimV: number, _kvDtype: KVDtype): boolean {
  return headDim > 256 && headDim % 32 === 0 && headDimV >= 16 && headDimV <= 512 &&
    (headDimV & (headDimV - 1)) === 0;
}

/**
 * Whether head dims and a KV dtype suit the matrix-unit kernel's blocks (`TileOptions.matrixUnits`):
 * K and V of one head dim from 16 to 128 in steps of 16 or from 160 to 256 in steps of 32 (in
 * blocks of 16 rows there), in f16 or an 8-bit format (int8, FP8 E4M3 or E5M2, staged as their
 * values rounded to f16); or MLA's f16 K rows above 256 dims up to 576 in steps of 64 with V rows
 * of a multiple of 64 up to K's and 512 (blocks of 16 rows).
 *
 * @example
 * ```ts
 * import { matrixUnitsFit } from "@lean/attention/plan";
 * console.log(matrixUnitsFit(256, 256, "int8"), matrixUnitsFit(128, 128, "bf16")); // true false
 * console.log(matrixUnitsFit(576, 512, "f16")); // true
 * ```
 */
export function matrixUnitsFit(headDim: number, headDimV: number, kvDtype: KVDtype): boolean {
  return matrixHeadDimsFit(headDim, headDimV, kvDtype);
}

function powerOfTwo(name: string, value: number, lo: number, hi: number): number {
  if (typeof value !== "number") {
    throw new TypeError(`${name} must be a number: got ${typeof value}`);
  }
  if (!Number.isInteger(value) || value < lo || value > hi || (value & (value - 1)) !== 0) {
    throw new RangeError(`${name} must be a power of two from ${lo} to ${hi}: got ${value}`);
  }
  return value;
}

/**
 * Picks the tile geometry for a problem. Rows of a large KV group (e.g. MQA with qLen 16) are
 * cut into balanced blocks so a block's query state stays small; each block is its own segment.
 *
 * @example
 * ```ts
 * import { tileConfig } from "@lean/attention/plan";
 * const c = tileConfig({ headDim: 128, rowsPerGroup: 4, kvDtype: "f16" });
 * console.log(c.tileTokens, c.rowsPerBlock, c.rowBlocks); // 64 4 1
 * ```
 */
export function tileConfig(
  problem: { headDim: number; headDimV?: number; rowsPerGroup: number; kvDtype: KVDtype },
  options: TileOptions = {},
): TileConfig {
  const tileTokens = powerOfTwo("tileTokens", options.tileTokens ?? 64, 16, 256);
  const workgroupSize = powerOfTwo("workgroupSize", options.workgroupSize ?? 128, 16, 256);
  if (options.padRows !== undefined && typeof options.padRows !== "boolean") {
    throw new TypeError(`padRows must be a boolean: got ${typeof options.padRows}`);
  }
  const dim = Math.max(problem.headDim, problem.headDimV ?? 0);
  const headDimV = problem.headDimV ?? problem.headDim;
  const matrixUnits = options.matrixUnits === true &&
    matrixUnitsFit(problem.headDim, headDimV, problem.kvDtype);
  const minUnitRows = options.matrixUnitMinRows === undefined
    ? MATRIX_MIN_ROWS
    : integerIn("matrixUnitMinRows", options.matrixUnitMinRows, 1, 16);
  // The tiled kernel's blocks from 16 rows; the matrix kernel's from `minUnitRows`.
  const tiledBlocks = problem.rowsPerGroup >= 16 && options.matrixBlocks === true &&
    matrixBlocksFit(problem.headDim, headDimV, problem.kvDtype);
  if (tiledBlocks || (matrixUnits && problem.rowsPerGroup >= minUnitRows)) {
    // Balanced blocks of at most 64 rows, each a power of two (16, 32 or 64: the kernel's
    // layouts); a block's rows past the group's are masked.
    // (Head dims above MATRIX_WIDE_DIM have blocks of 16 rows only: the kernel's registers.)
    const most = !matrixUnits
      ? MATRIX_ROWS_PER_BLOCK
      : problem.headDim > MATRIX_WIDE_DIM
      ? Math.min(16, powerOfTwo("matrixUnitRows", options.matrixUnitRows ?? 16, 16, 64))
      : powerOfTwo("matrixUnitRows", options.matrixUnitRows ?? MATRIX_ROWS_PER_BLOCK, 16, 64);
    const rowBlocks = Math.ceil(problem.rowsPerGroup / most);
    let rowsPerBlock = 16;
    while (rowsPerBlock * rowBlocks < problem.rowsPerGroup) rowsPerBlock *= 2;
    return {
      tileTokens,
      rowsPerBlock,
      rowBlocks,
      workgroupSize,
      ...(matrixUnits ? { matrixUnits: true as const } : {}),
    };
  }
  const maxRows = Math.max(
    1,
    problem.headDim > 256
      ? Math.min(WIDE_ROWS_PER_BLOCK, Math.floor(WIDE_BLOCK_FLOATS / (problem.headDimV ?? dim)))
      : Math.min(MAX_ROWS_PER_BLOCK, Math.floor(MAX_BLOCK_FLOATS / dim)),
  );
  const rowBlocks = Math.ceil(problem.rowsPerGroup / maxRows);
  let rowsPerBlock = Math.ceil(problem.rowsPerGroup / rowBlocks);
  if (options.padRows !== false) {
    // The kernel halves row sets that do not divide a block's rows (kernelLayout): a block whose
    // threads would then hold more than PAD_ROWS_PER_THREAD rows takes the rows that make its
    // class's row sets divide it, masked.
    const sets = kernelChoice(problem.headDim, rowsPerBlock, problem.kvDtype).rowSets ?? 1;
    let kept = sets;
    while (kept > 1 && rowsPerBlock % kept !== 0) kept /= 2;
    const padded = Math.ceil(rowsPerBlock / sets) * sets;
    if (rowsPerBlock / kept > PAD_ROWS_PER_THREAD && padded <= maxRows) rowsPerBlock = padded;
  }
  return { tileTokens, rowsPerBlock, rowBlocks, workgroupSize };
}
