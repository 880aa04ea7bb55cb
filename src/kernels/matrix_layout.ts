/**
 * The matrix-unit decode kernel's blocking (`src/kernels/matrix_kernel.ts`): how its four
 * subgroups share the 16-row blocks of a block of rows, the tokens per tile, the staging loads per
 * thread, and the sizes of its workgroup memory, named once here for the kernel's WGSL and the
 * host's checks.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { KVDtype } from "../core/problem.ts";
import type { KernelSpec } from "./kernel_spec.ts";

/**
 * K/V dtypes the matrix kernel stages: f16 as it is, the 8-bit formats as their values
 * (code times scale) rounded to f16, as an f16 cache would hold them.
 */
export const MATRIX_KV_DTYPES: readonly KVDtype[] = ["f16", "int8", "fp8e4m3", "fp8e5m2"];

/** Threads of every matrix workgroup: four subgroups of 32 lanes (NVIDIA's, which it needs). */
export const MATRIX_THREADS = 128;

/**
 * The largest head dim of blocks of 32 and 64 rows. Above it (multiples of 32 up to
 * {@linkcode MATRIX_MAX_HEAD_DIM}) blocks have 16 rows: a subgroup's query matrices, result
 * matrices, f32 sums and staging loads would need more than its 255 registers at more rows.
 */
export const MATRIX_WIDE_DIM = 128;

/** The largest head dim of the matrix kernel where K's and V's are the same. */
export const MATRIX_MAX_HEAD_DIM = 256;

/**
 * The largest K head dim of the matrix kernel's MLA layout (K rows above
 * {@linkcode MATRIX_MAX_HEAD_DIM} dims: DeepSeek's 576, with V rows of 512): 16-token tiles, each
 * scored by four subgroups over a quarter of K's dims each, and V's dims dealt over them.
 */
export const MATRIX_MLA_MAX_DIM = 576;

/** The largest V head dim of the MLA layout (a subgroup's f32 sums and result matrices). */
export const MATRIX_MLA_MAX_DIM_V = 512;

/**
 * Whether the matrix kernel has a layout for K and V head dims and a KV dtype: equal dims, a
 * multiple of 16 up to {@linkcode MATRIX_WIDE_DIM} or of 32 up to {@linkcode MATRIX_MAX_HEAD_DIM};
 * or (MLA) f16 K rows of a multiple of 64 above that up to {@linkcode MATRIX_MLA_MAX_DIM} with V
 * rows of a multiple of 64 up to K's and {@linkcode MATRIX_MLA_MAX_DIM_V}.
 *
 * @example
 * ```ts
 * import { matrixHeadDimsFit } from "./matrix_layout.ts";
 * console.log(matrixHeadDimsFit(256, 256, "f16"), matrixHeadDimsFit(144, 144, "f16")); // true false
 * console.log(matrixHeadDimsFit(576, 512, "f16"), matrixHeadDimsFit(576, 512, "int8")); // true false
 * ```
 */
export function matrixHeadDimsFit(headDim: number, headDimV: number, kvDtype: KVDtype): boolean {
  if (headDim > MATRIX_MAX_HEAD_DIM) {
    return kvDtype === "f16" && headDim % 64 === 0 && headDim <= MATRIX_MLA_MAX_DIM &&
      headDimV >= 64 && headDimV % 64 === 0 && headDimV <= Math.min(headDim, MATRIX_MLA_MAX_DIM_V);
  }
  return headDimV === headDim && MATRIX_KV_DTYPES.includes(kvDtype) && headDim >= 16 &&
    headDim % (headDim > MATRIX_WIDE_DIM ? 32 : 16) === 0;
}

/** The blocking a matrix spec resolves to. */
export interface MatrixLayout {
  /** Query rows per block (16, 32 or 64). */
  readonly RB: number;
  /** Blocks of 16 rows (`RB / 16`), each the rows of `G` subgroups. */
  readonly NRB: number;
  /**
   * Subgroups per 16-row block (4, 2, 1 at 16, 32, 64 rows): they share its tile, each scoring
   * every `G`th 16-token block (or, where a tile has fewer blocks than `G`, a part of one: `KP`)
   * and taking every `G`th 16-dim block of `P V`.
   */
  readonly G: number;
  /**
   * Parts of the head dim that a 16-token block's scores are cut into (`G / (T / 16)` where a
   * tile has fewer 16-token blocks than a row block has subgroups: 2 at head dims above 128, whose
   * tiles have 32 tokens; else 1). Subgroup `g` scores block `g % (T / 16)` over part
   * `g / (T / 16)` of the dims, so it keeps only that part's query matrices, and the softmax adds
   * the parts' scores.
   */
  readonly KP: number;
  /** Threads per workgroup (128: four subgroups). */
  readonly THREADS: number;
  /** V's head dim (the output's): K's but in the MLA layout. */
  readonly DV: number;
  /**
   * Tokens per tile: 64 at 16 rows (one score block per subgroup) up to head dim 128, 32 up to
   * 256 (at 16 rows of a larger head dim, 64 tokens' staging loads would not fit the registers),
   * 16 in the MLA layout (K rows above 256 dims: 16 x 584 halves of staging, two workgroups per
   * multiprocessor).
   */
  readonly T: number;
  /**
   * Stride of the staged K, V and query rows, in halves (the longer row + 8, against bank
   * conflicts).
   */
  readonly KS: number;
  /** 16-byte chunks per K row of a head. */
  readonly CHUNKS: number;
  /** 16-byte chunks per V row of a head (`CHUNKS` but in the MLA layout). */
  readonly CHUNKS_V: number;
  /** K staging loads per thread and tile. */
  readonly CK: number;
  /** V staging loads per thread and tile. */
  readonly CKV: number;
  /**
   * The MLA layout's order: a tile's V rows are loaded at its start, while its scores are
   * multiplied, instead of a tile ahead with its K rows, so that a thread holds only one of
   * them (72 or 64 registers less beside 36 of query matrices, 64 of result matrices and 64 of
   * f32 sums).
   */
  readonly lateV: boolean;
  /**
   * The MLA layout with V read from K's rows (`vFromK`, MLA's latent cache): a tile's staged K
   * rows hold its V rows (their first `DV` dims, at the same stride), so V is neither loaded nor
   * staged: `P V` reads the K staging that the scores read.
   */
  readonly vInK: boolean;
  /** Query rows staged per round (the staging buffer holds `T` rows). */
  readonly QR: number;
  /**
   * f32s of each 16-row block's region: its tile's scores (`KP` parts of 16 x `T`), and its
   * products `P V` on their way to the threads' f32 sums, `FW` dims at a time.
   */
  readonly SO: number;
  /**
   * Dims of `P V` per pass of a flush (the largest multiple of 16 dividing V's head dim, at most
   * `T`, or in the MLA layout the region's `T KP`): a flush takes `DV / FW` passes through the
   * score region, so the region stays `16 T KP` floats instead of `16 DV`. Session 50 found NVIDIA's driver fitting at most about 56 KB of
   * workgroup memory on a multiprocessor (bench/probe_occupancy.ts): two workgroups share one
   * only below about 27 KB each.
   */
  readonly FW: number;
  /** Bytes of workgroup memory (paged: a tile's token addresses too, `tok_wg`). */
  readonly bytes: number;
}

/**
 * Resolves a matrix spec's blocking.
 *
 * @example
 * ```ts
 * import { matrixLayout } from "./matrix_layout.ts";
 * const l = matrixLayout({
 *   headDim: 128, kvDtype: "f16", tileTokens: 64, rowsPerBlock: 64, workgroupSize: 128,
 *   tiled: true, matrix: true,
 * });
 * console.log(l.G, l.T, l.CK, l.bytes); // 1 32 4 21776
 * ```
 */
export function matrixLayout(spec: KernelSpec): MatrixLayout {
  const RB = spec.rowsPerBlock;
  const D = spec.headDim;
  const DV = spec.headDimV ?? D;
  const NRB = RB / 16;
  const G = 4 / NRB;
  const THREADS = MATRIX_THREADS;
  if (
    ![16, 32, 64].includes(RB) || !matrixHeadDimsFit(D, DV, spec.kvDtype) ||
    (D > MATRIX_WIDE_DIM && RB !== 16) || spec.workgroupSize !== THREADS
  ) {
    throw new RangeError(
      `matrix kernel: no layout for ${RB} rows, head dims ${D}/${spec.headDimV ?? D}, ` +
        `${spec.kvDtype}, ${spec.workgroupSize} threads`,
    );
  }
  const mla = D > MATRIX_MAX_HEAD_DIM;
  const T = mla ? 16 : NRB === 1 && D <= MATRIX_WIDE_DIM ? 64 : 32;
  const KP = Math.max(1, G / (T / 16));
  const KS = Math.max(D, DV) + 8;
  const bytes1 = KV_DTYPE_INFO[spec.kvDtype].bytes;
  const CHUNKS = (D * bytes1) / 16;
  const CHUNKS_V = (DV * bytes1) / 16;
  const SO = 16 * T * KP;
  let FW = Math.min(mla ? T * KP : T, DV);
  while (DV % FW !== 0) FW -= 16;
  // (Each array a multiple of 16 bytes: the matrix loads and stores need them 16-byte aligned.)
  // (Paged: a tile's token addresses, and with per-token scales their rows.)
  // (MLA: K's and V's addresses, whose rows differ in length.)
  const vInK = mla && spec.vFromK === true;
  const pageBytes = !spec.paged ? 0 : T * 4 * (spec.kvScales === "token" || (mla && !vInK) ? 2 : 1);
  const bytes = T * KS * 2 + NRB * SO * 4 + NRB * 16 * T * 2 + 3 * RB * 4 + 16 + pageBytes;
  return {
    RB,
    NRB,
    G,
    KP,
    THREADS,
    DV,
    T,
    KS,
    CHUNKS,
    CHUNKS_V,
    CK: Math.ceil((T * CHUNKS) / THREADS),
    CKV: Math.ceil((T * CHUNKS_V) / THREADS),
    lateV: mla,
    vInK,
    QR: Math.min(RB, T),
    SO,
    FW,
    bytes,
  };
}
