/**
 * The tiled decode kernel's blocking (`src/kernels/tiled_kernel.ts`): block and tile sizes, the
 * threads' shares of each phase, and its workgroup memory's regions, named once here for the
 * kernel's WGSL and the host's checks (does a device hold it).
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { KernelSpec } from "./kernel_spec.ts";

/** Threads of a tiled workgroup. */
export const TILED_THREADS = 256;

/** The blocking a tiled spec resolves to. */
export interface TiledLayout {
  /** Query rows per block. */
  readonly RB: number;
  /** Tokens per tile. */
  readonly TS: number;
  /** Head dims per staged chunk. */
  readonly DC: number;
  /** Tokens per thread in the score phase (4 rows each). */
  readonly MA_T: number;
  /** Output rows per thread in the weighted sum. */
  readonly MB_R: number;
  /** Threads of one row group along V's 8-dim pieces. */
  readonly NCV: number;
  /** Token groups of the weighted sum. */
  readonly TG: number;
  /** V tokens requested ahead in the weighted sum. */
  readonly U: number;
  /** K elements per 16-byte chunk (4 f32, 8 f16/bf16, 16 8-bit). */
  readonly EPC: number;
  /** K chunks per token and stage. */
  readonly CPS: number;
  /** Score-phase threads along a tile's tokens (`TS / MA_T`). */
  readonly NTX: number;
  /** Row stride of the staged rows and keys, in `vec4`s (one of padding). */
  readonly QS4: number;
  /** K chunk loads per thread and stage. */
  readonly KL: number;
  /** Query `vec4` loads per thread and stage. */
  readonly QL: number;
  /**
   * Offsets (in `vec4<f32>`s) of workgroup memory's regions, defined once here: the staged query
   * rows (`RB x QS4`), the staged keys (`TS x QS4`), the tile's scores then probabilities
   * (`[token][row]`), the softmax's partial maxima and sums (`2 x 256` floats), the rows' rescale
   * factors (`RB`), and their final sums, output rescales and NaN flags (`3 x RB`). At the end
   * of a piece the token groups' outputs reuse the memory from 0.
   */
  readonly offsets: {
    readonly query: number;
    readonly keys: number;
    readonly scores: number;
    readonly exchange: number;
    readonly alpha: number;
    readonly final: number;
  };
  /** `vec4<f32>`s of workgroup memory. */
  readonly smem4: number;
}

/**
 * Resolves a tiled spec's blocking: 64-token tiles for blocks of 64 rows, 128 for smaller blocks
 * (so each thread scores at least 2 tokens), `matrixChunk` dims per stage (default 32).
 *
 * @example
 * ```ts
 * import { tiledLayout } from "./tiled_layout.ts";
 * const l = tiledLayout({
 *   headDim: 576, headDimV: 512, kvDtype: "f16", tileTokens: 64, rowsPerBlock: 64,
 *   workgroupSize: 256, tiled: true,
 * });
 * console.log(l.TS, l.MA_T, l.MB_R, l.TG, l.smem4 * 16); // 64 4 16 1 37888
 * ```
 */
export function tiledLayout(spec: KernelSpec): TiledLayout {
  const W = TILED_THREADS;
  const RB = spec.rowsPerBlock;
  const DV = spec.headDimV ?? spec.headDim;
  const DC = spec.matrixChunk ?? 32;
  const TS = RB >= 64 ? 64 : 128;
  const MA_T = (TS * RB) / (4 * W);
  const NCV = DV / 8;
  const MB_R = Math.min(RB, Math.max(4, (RB * NCV) / W));
  const TG = W / (NCV * (RB / MB_R));
  const U = 4;
  if (
    ![16, 32, 64].includes(RB) || !Number.isInteger(MA_T) || !Number.isInteger(TG) ||
    TG < 1 || (TS / TG) % U !== 0 || spec.headDim % DC !== 0 ||
    DC % (16 / KV_DTYPE_INFO[spec.kvDtype].bytes) !== 0 || spec.workgroupSize !== W
  ) {
    throw new RangeError(
      `tiled kernel: no layout for ${RB} rows, head dims ${spec.headDim}/${DV}, ${spec.kvDtype}`,
    );
  }
  const EPC = 16 / KV_DTYPE_INFO[spec.kvDtype].bytes;
  const CPS = DC / EPC;
  const QS4 = DC / 4 + 1;
  const query = 0;
  const keys = query + RB * QS4;
  const scores = keys + TS * QS4;
  const exchange = scores + (TS * RB) / 4;
  const alpha = exchange + (2 * W) / 4;
  const final = alpha + RB / 4;
  const main = final + (3 * RB) / 4;
  const reduce = TG > 1 ? (RB * DV) / 4 : 0;
  return {
    RB,
    TS,
    DC,
    MA_T,
    MB_R,
    NCV,
    TG,
    U,
    EPC,
    CPS,
    NTX: TS / MA_T,
    QS4,
    KL: Math.ceil((TS * CPS) / W),
    QL: Math.ceil((RB * DC) / 4 / W),
    offsets: { query, keys, scores, exchange, alpha, final },
    smem4: Math.max(main, reduce),
  };
}

/**
 * Whether a device's workgroup memory (`maxComputeWorkgroupStorageSize`, bytes) holds the tiled
 * kernel of every block size at 16 dims per step (its smallest form; about 31 KiB).
 *
 * @example
 * ```ts
 * import { tiledFitsDevice } from "./tiled_layout.ts";
 * console.log(tiledFitsDevice(16384), tiledFitsDevice(32768)); // false true
 * ```
 */
export function tiledFitsDevice(workgroupBytes: number): boolean {
  return [16, 32, 64].every((rowsPerBlock) =>
    tiledWorkgroupBytes({
      headDim: 576,
      headDimV: 512,
      kvDtype: "f16",
      tileTokens: 64,
      rowsPerBlock,
      workgroupSize: TILED_THREADS,
      tiled: true,
      matrixChunk: 16,
    }) <= workgroupBytes
  );
}

/**
 * Bytes of workgroup memory a tiled kernel declares.
 *
 * @example
 * ```ts
 * import { tiledWorkgroupBytes } from "./tiled_layout.ts";
 * const spec = {
 *   headDim: 576, headDimV: 512, kvDtype: "f16" as const, tileTokens: 64, rowsPerBlock: 64,
 *   workgroupSize: 256, tiled: true,
 * };
 * console.log(tiledWorkgroupBytes(spec), tiledWorkgroupBytes({ ...spec, matrixChunk: 16 })); // 37888 29696
 * ```
 */
export function tiledWorkgroupBytes(spec: KernelSpec): number {
  return tiledLayout(spec).smem4 * 16;
}
