/**
 * The lean grid's calibration probe: a decode kernel of a class (rows per block, head dim, KV
 * dtype) over identical pieces of fixed length, dispatched at growing grid sizes by
 * `calibrateGrid` (device_profile.ts) to find how many of its workgroups the device runs at
 * once.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { KVDtype } from "../core/problem.ts";
import type { KernelSpec } from "../kernels/kernel_spec.ts";
import { specKey } from "../kernels/spec_key.ts";
import { kernelParams } from "../kernels/kernel_params.ts";
import { gridClassKey } from "../kernels/kernel_table.ts";
import { BINDING, type BindingName, namedEntries } from "../kernels/abi.ts";
import { DIRECT, PIECE, PIECE_STRIDE } from "../plan/schedule.ts";
import { tileConfig, type TileOptions } from "../plan/tiles.ts";
import type { BufferPool } from "./buffer_pool.ts";
import type { PipelineCache } from "./pipeline_cache.ts";
import { BufferUsage } from "./gpu_runtime.ts";
import type { kernelSpec } from "./kernel_choice.ts";

const STORAGE_IN = BufferUsage.STORAGE | BufferUsage.COPY_DST;
const STORAGE_OUT = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;
const UNIFORM = BufferUsage.UNIFORM | BufferUsage.COPY_DST;

/** Rows-per-block classes the grid is calibrated for (see `gridFor`). */
export const ROW_CLASSES = [1, 2, 4, 8];
/** Head dims of the kernel table's head-dim classes (up to 64, up to 128, beyond). */
export const HEAD_DIM_CLASSES = [128, 64, 256];

/**
 * Builds the calibration probe of a kernel class: `n` workgroups decoding identical pieces with
 * the spec `specOf` gives the class (f16 K/V, or the 8-bit dtype whose class grid is wanted:
 * an 8-bit kernel may keep more registers than its class's f16 kernel, so fewer run at once).
 * Returns the probe, its spec key and the class key of `DeviceProfile.gridByClass`. Each piece
 * holds `probeTokens` tokens (default: below) where a diagnostic asks.
 */
export function calibrationProbe(
  device: GPUDevice,
  pool: BufferPool,
  pipelines: PipelineCache,
  software: boolean,
  tileOptions: TileOptions,
  specOf: (plan: Parameters<typeof kernelSpec>[0]) => KernelSpec,
  rows = 4,
  headDim = 128,
  headDimV = headDim,
  kvDtype: KVDtype = "f16",
  probeTokens?: number,
): { probe: (pass: GPUComputePassEncoder, n: number) => void; key: string; classKey: string } {
  const tiles = tileConfig({ headDim, headDimV, rowsPerGroup: rows, kvDtype }, tileOptions);
  const spec = specOf({ problem: { headDim, headDimV, kvDtype }, tiles });
  // A tiled workgroup (64 rows of MLA) does about 40x a decode workgroup's arithmetic per token,
  // and runs about one per multiprocessor: 512 tokens (about 0.9 ms on the H200) up to 1024
  // workgroups. With 256 tokens Dawn's probe times stayed flat up to 1010 workgroups (its
  // dispatch cost hid a workgroup's), and lean MLA on Dawn ran at half speed (session 25).
  const tokens = probeTokens ?? (software ? 64 : tiles.rowsPerBlock > 8 ? 512 : 1024);
  const maxN = 8192;
  const sched = new Uint32Array(maxN + 1 + maxN * PIECE_STRIDE);
  for (let w = 0; w <= maxN; w++) sched[w] = w;
  // Every workgroup decodes the same piece: all tokens of sequence 0, head 0, row block 0.
  for (let w = 0; w < maxN; w++) {
    const f = maxN + 1 + w * PIECE_STRIDE;
    sched[f + PIECE.tokenBegin] = 0;
    sched[f + PIECE.tokenEnd] = tokens;
    sched[f + PIECE.slot] = DIRECT;
    sched[f + PIECE.kvStart] = 0;
    sched[f + PIECE.seqLen] = tokens;
    sched[f + PIECE.qStart] = 0;
    sched[f + PIECE.qLen] = 1;
  }
  const words = kernelParams({
    numHeads: rows,
    qLen: 1,
    groupSize: rows,
    rowsPerGroup: rows,
    numKVHeads: 1,
    headDim,
    headDimV,
    kvDtype,
    pieceBase: maxN + 1,
    reduceBase: 0,
    count: maxN,
    scale: 0,
  });
  // f16 halves near 1; 8-bit codes all 0x38 (E4M3 1.0, E5M2 0.5, int8 56: no NaN code, so an
  // E4M3 kernel's rare NaN branch stays rare).
  const halves = (dim: number) =>
    KV_DTYPE_INFO[kvDtype].bytes === 1
      ? new Uint32Array(tokens * dim / 4).fill(0x38383838)
      : new Uint32Array(tokens * dim / 2).map((_, i) => 0x3c003c00 ^ (i & 0x3ff));
  const buffers: Partial<Record<BindingName, readonly [ArrayBufferView, number]>> = {
    params: [words, UNIFORM],
    sched: [sched, STORAGE_IN],
    q: [new Float32Array(rows * headDim).fill(0.01), STORAGE_IN],
    k: [halves(headDim), STORAGE_IN],
    v: [halves(headDimV), STORAGE_IN],
    out: [new Float32Array(rows * headDimV), STORAGE_OUT],
    partials: [new Float32Array(16), STORAGE_OUT],
    lse: [new Float32Array(Math.max(4, rows)), STORAGE_OUT],
  };
  const decode = pipelines.get("decode", spec);
  const resources: Partial<Record<BindingName, GPUBufferBinding>> = {};
  for (
    const [name, [data, usage]] of Object.entries(buffers) as [
      BindingName,
      [ArrayBufferView, number],
    ][]
  ) {
    const buffer = pool.get(`calibration ${BINDING[name]}`, data.byteLength, usage);
    device.queue.writeBuffer(buffer, 0, data as unknown as ArrayBuffer);
    resources[name] = { buffer };
  }
  const bindGroup = device.createBindGroup({
    layout: pipelines.layout(spec).group,
    entries: namedEntries(BINDING, resources),
  });
  return {
    key: specKey("decode", spec),
    classKey: gridClassKey(headDim, tiles.rowsPerBlock, kvDtype, tiles.matrixUnits),
    probe: (pass, n) => {
      pass.setPipeline(decode);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(n);
    },
  };
}
