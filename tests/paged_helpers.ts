/**
 * Shared by the paged-cache tests (tests/paged_test.ts, tests/token_runs_test.ts,
 * tests/page_slices_test.ts): growing cache sequences beside their dense copies, one attention
 * pass of the encoder read back, the dense decode input of the same tokens, and a page size's
 * addressing for kernel specs.
 *
 * @module
 */

import { type DecodeInput, encodeKV, type Strategy } from "../mod.ts";
import type { AttentionEncoder, KVCache, PagedPlan } from "../runner.ts";
import type { PagedKV } from "../src/plan/kv_addressing.ts";
import { gpuBuffer, readF32 } from "./gpu_device.ts";
import { randomFloats, seededRng } from "./helpers.ts";

/** Appends random tokens to cache sequences and keeps the dense copy of each (K, V per layer). */
export function grow(
  cache: KVCache,
  seq: number,
  n: number,
  dense: Map<number, Float32Array[]>,
  seed: number,
): void {
  const rng = seededRng(seed);
  const row = cache.rowElements;
  const k = Array.from({ length: cache.numLayers }, () => randomFloats(rng, n * row));
  const v = Array.from({ length: cache.numLayers }, () => randomFloats(rng, n * row));
  cache.append(seq, { k, v });
  const have = dense.get(seq) ??
    Array.from({ length: 2 * cache.numLayers }, () => new Float32Array(0));
  dense.set(seq, have.map((a, i) => new Float32Array([...a, ...(i % 2 === 0 ? k : v)[i >> 1]])));
}

/** One encoded attention pass of `plan` over `layer`, outputs poisoned first, read back. */
export async function encodeAndRead(
  device: GPUDevice,
  attention: AttentionEncoder,
  plan: PagedPlan,
  layer: number,
  q: Float32Array,
  rows: number,
): Promise<{ out: Float32Array; lse: Float32Array }> {
  const qb = gpuBuffer(device, q);
  const out = gpuBuffer(device, new Float32Array(q.length).fill(NaN));
  const lse = gpuBuffer(device, new Float32Array(rows).fill(NaN));
  try {
    const enc = device.createCommandEncoder();
    attention.encode(enc, { plan, layer, q: qb, out, lse });
    device.queue.submit([enc.finish()]);
    return { out: await readF32(device, out, q.length), lse: await readF32(device, lse, rows) };
  } finally {
    for (const buf of [qb, out, lse]) buf.destroy();
  }
}

/** The dense f16 decode input of the cache sequences' tokens of `layer` (from `grow`'s copies). */
export function denseInput(
  cache: KVCache,
  seqs: number[],
  dense: Map<number, Float32Array[]>,
  layer: number,
  q: Float32Array,
  shape: { numHeads: number; strategy: Strategy },
): DecodeInput {
  const cat = (i: number) =>
    new Float32Array(seqs.flatMap((s) => [...dense.get(s)![2 * layer + i]]));
  return {
    q,
    k: encodeKV(cat(0), "f16"),
    v: encodeKV(cat(1), "f16"),
    seqLens: seqs.map((s) => cache.length(s)),
    numHeads: shape.numHeads,
    numKVHeads: cache.numKVHeads,
    headDim: cache.headDim,
    kvDtype: "f16",
    strategy: shape.strategy,
  };
}

/**
 * A paged addressing of `pageSize`-token pages for `kernelSpec` (which reads only its kind, page
 * size and layout): one page, no table.
 */
export function pagedKV(pageSize: number, layout?: "HND"): PagedKV {
  return {
    kind: "paged",
    pageSize,
    pageShift: Math.log2(pageSize),
    numPages: 1,
    pages: new Uint32Array(1),
    pageOffsets: new Uint32Array(2),
    ...(layout ? { layout } : {}),
  };
}
