/**
 * The benchmark's paged mode: a case's K and V in a paged `KVCache` (pages of 16 tokens, handed
 * out to the sequences in turn, as decode steps would), planned and recorded through the
 * attention encoder, timed on a warm GPU like the dense path.
 *
 * @module
 */

import type { DecodeInput, KernelTuning } from "../mod.ts";
import {
  type AttentionEncoder,
  createAttentionEncoder,
  createKVCache,
  type KVCache,
} from "../runner.ts";
import { BufferUsage } from "../src/gpu/gpu_runtime.ts";
import { timeWarm, type WarmTiming } from "../src/gpu/gpu_timing.ts";
import { variantFields } from "./bench_input.ts";
import type { BenchCase } from "./bench_cases.ts";

/** Tokens per page. */
export const PAGE_SIZE = 16;

/** What {@linkcode timePaged} measured, or why the case was skipped. */
export type PagedResult =
  | { timing: WarmTiming; workgroups: number; pages: number }
  | { skipped: string };

/** Options of {@linkcode timePaged}. */
export interface PagedTimingOptions {
  /** The lean grid of the case's rows class (the decoder's calibrated grid). */
  grid: number;
  runs: number;
  warmupMs: number;
  /** Also time runs back to back (see `WarmTimingOptions.streamMs`; 0: not). */
  streamMs: number;
  /** Copies of the cache rotated between runs (one cache layer each). */
  kvSets: number;
  kernel?: KernelTuning;
  /** The encoder's tile size (default: the planner's). */
  tileTokens?: number;
  /**
   * 8-bit cases with per-tensor scales: keep them per token in the cache anyway (the cache's
   * default, `kvScales: "token"`) instead of a cache created with the case's per-tensor scales.
   */
  tokenScales?: boolean;
}

/**
 * The paged mode's cache of a case (pages of {@linkcode PAGE_SIZE} tokens): 8-bit cases with
 * per-tensor scales get a cache created with them (its per-tensor kernels) unless per-token
 * tables are asked for (`tensor` says which).
 */
export function pagedCache(
  device: GPUDevice,
  c: BenchCase,
  input: DecodeInput,
  options: Pick<PagedTimingOptions, "tokenScales">,
  numLayers: number,
  numPages: number,
): { cache: KVCache; tensor: boolean } {
  const tensor = typeof input.kScale === "number" && typeof input.vScale === "number" &&
    !options.tokenScales;
  const cache = createKVCache({
    device,
    numLayers,
    numKVHeads: c.numKVHeads,
    headDim: c.headDim,
    ...(c.headDimV === undefined ? {} : { headDimV: c.headDimV }),
    ...(c.vFromK ? { vFromK: true } : {}),
    kvDtype: c.kvDtype ?? "f16",
    pageSize: PAGE_SIZE,
    numPages,
    ...(tensor
      ? {
        kvScales: "tensor" as const,
        kScale: input.kScale as number,
        vScale: input.vScale as number,
      }
      : {}),
  });
  return { cache, tensor };
}

/** The paged mode's attention encoder: the mode's grid, kernel tuning and tile size. */
export function pagedEncoder(
  device: GPUDevice,
  options: Pick<PagedTimingOptions, "grid" | "kernel" | "tileTokens">,
): Promise<AttentionEncoder> {
  return createAttentionEncoder(device, {
    grid: options.grid,
    kernel: options.kernel,
    ...(options.tileTokens === undefined ? {} : { tileTokens: options.tileTokens }),
  });
}

/** Times a case's lean decode through a paged cache and the attention encoder. */
export async function timePaged(
  device: GPUDevice,
  c: BenchCase,
  input: DecodeInput,
  options: PagedTimingOptions,
): Promise<PagedResult> {
  const rowBytes = c.numKVHeads * c.headDim * (input.k as Uint8Array).BYTES_PER_ELEMENT;
  const pages = c.seqLens.reduce((sum, n) => sum + Math.ceil(n / PAGE_SIZE), 0);
  const limit = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
  if (pages * PAGE_SIZE * rowBytes > limit) {
    return { skipped: `one layer's K (${pages * PAGE_SIZE * rowBytes} bytes) exceeds a binding` };
  }
  const { cache, tensor } = pagedCache(device, c, input, options, options.kvSets, pages);
  const attention = await pagedEncoder(device, options);
  const buffers: GPUBuffer[] = [];
  try {
    const seqs = c.seqLens.map(() => cache.addSequence());
    // A page at a time to every sequence that needs one: pages of a sequence are scattered.
    const left = [...c.seqLens];
    while (left.some((n) => n > 0)) {
      const active = seqs.filter((_, i) => left[i] > 0);
      const counts = left.filter((n) => n > 0).map((n) => Math.min(PAGE_SIZE, n));
      cache.extend(active, counts);
      for (let i = 0; i < left.length; i++) left[i] -= Math.min(PAGE_SIZE, left[i]);
    }
    const k = input.k as Uint16Array;
    const v = input.v as Uint16Array | undefined;
    const size = k.BYTES_PER_ELEMENT;
    for (let layer = 0; layer < options.kvSets; layer++) {
      const b = cache.layerBuffers(layer);
      // (K's and V's rows differ in length in MLA.)
      const n = Math.min(k.length, b.k.size / size);
      device.queue.writeBuffer(b.k, 0, k.buffer as ArrayBuffer, k.byteOffset, size * n);
      // (A latent cache's V is K's rows: its `v` binding is K's buffer.)
      if (v !== undefined) {
        const nv = Math.min(v.length, b.v.size / size);
        device.queue.writeBuffer(b.v, 0, v.buffer as ArrayBuffer, v.byteOffset, size * nv);
      }
      if (b.scales && !tensor) {
        // 8-bit: every row's scales (the bench's per-tensor scales, or the first token's).
        const pair = [input.kScale, input.vScale].map((s) => typeof s === "number" ? s : s![0]);
        const table = new Float32Array(b.scales.size / 4);
        for (let i = 0; i < table.length; i += 2) table.set(pair, i);
        device.queue.writeBuffer(b.scales, 0, table);
      }
    }
    const make = (bytes: number) => {
      const b = device.createBuffer({
        size: bytes,
        usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC,
      });
      buffers.push(b);
      return b;
    };
    const q = make(input.q.byteLength);
    device.queue.writeBuffer(q, 0, input.q as Float32Array<ArrayBuffer>);
    const out = make(input.q.byteLength / c.headDim * (c.headDimV ?? c.headDim));
    const plan = attention.plan(cache, {
      seqs,
      numHeads: c.numHeads,
      qLen: c.qLen,
      ...variantFields(c),
    });
    const timing = await timeWarm(
      device,
      (pass, i) => attention.encode(pass, { plan, layer: i % options.kvSets, q, out }),
      { runs: options.runs, warmupMs: options.warmupMs, streamMs: options.streamMs },
    );
    return { timing, workgroups: plan.schedule.workgroups, pages };
  } finally {
    attention.dispose();
    cache.dispose();
    for (const b of buffers) b.destroy();
  }
}
