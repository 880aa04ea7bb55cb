/**
 * Shared by the paged-cache tests (tests/paged_plans_test.ts, tests/paged_gpu_test.ts,
 * tests/kv8_cache_test.ts, tests/token_runs_test.ts, tests/page_slices_test.ts): growing cache
 * sequences beside their dense copies, the forked batch those tests decode, the paged CPU decode
 * checked against the dense one, one attention pass of the encoder read back, the dense decode
 * input of the same tokens, and a page size's addressing for kernel specs.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createPlan, type DecodeInput, encodeKV, type Strategy } from "../mod.ts";
import { executePlanOnCpu } from "../plan.ts";
import {
  type AttentionEncoder,
  executePagedPlanOnCpu,
  type KVCache,
  type PagedPlan,
  planForCache,
} from "../runner.ts";
import type { PagedKV } from "../src/plan/kv_addressing.ts";
import { gpuBuffer, readF32 } from "./gpu_device.ts";
import { randomFloats, sameBits, seededRng } from "./helpers.ts";

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

/**
 * Appends `n` random tokens (from `seed`) to a cache sequence and records what it should hold in
 * `held` ({@linkcode grow} here; tests/kv8_cache.ts's for 8-bit caches). It sets a sequence's
 * record anew, never changes one in place: a fork may start from its parent's record.
 */
export type Grow<H> = (
  cache: KVCache,
  seq: number,
  n: number,
  held: Map<number, H>,
  seed: number,
) => void;

/**
 * The forked batch of the paged tests: sequence a of `lens[0]` tokens; b forked from it and grown
 * by `lens[1]` (b shares a's partly filled last page until it copies it, scales included, on
 * write); a grown by `lens[2]` after the fork; and, where `lens[3]` is given, a fresh sequence c of
 * that many tokens. `seeds` seed the growths in that order. Returns `[a, b, c]` (`[a, b]`).
 */
export function forkedBatch<H>(
  cache: KVCache,
  held: Map<number, H>,
  grow: Grow<H>,
  lens: readonly number[],
  seeds: readonly number[],
): number[] {
  const a = cache.addSequence();
  grow(cache, a, lens[0], held, seeds[0]);
  const b = cache.fork(a);
  held.set(b, held.get(a)!);
  grow(cache, b, lens[1], held, seeds[1]);
  grow(cache, a, lens[2], held, seeds[2]);
  if (lens.length < 4) return [a, b];
  const c = cache.addSequence();
  grow(cache, c, lens[3], held, seeds[3]);
  return [a, b, c];
}

/**
 * Asserts that the paged CPU decode of the cache's sequences `seqs` (4 query heads, `qLen` rows
 * each) equals the dense CPU decode of the same tokens bit for bit, layer by layer: one schedule
 * (grid 5, 16-token tiles), the rows read through the pages. `denseKV(layer)` is a layer's K and V
 * of `seqs` in batch order (with their scales, for an 8-bit cache); `label` names the case.
 */
export function assertPagedCpuEqualsDense(
  cache: KVCache,
  seqs: number[],
  qLen: number,
  denseKV: (layer: number) => Pick<DecodeInput, "k" | "v" | "kScale" | "vScale">,
  label: string,
): void {
  const numHeads = 4;
  const options = { grid: 5, tileTokens: 16 };
  const plan = planForCache(cache, { seqs, numHeads, qLen }, options);
  const q = randomFloats(seededRng(9), seqs.length * qLen * numHeads * cache.headDim);
  for (let layer = 0; layer < cache.numLayers; layer++) {
    const paged = executePagedPlanOnCpu(plan, { q, ...cache.layerData(layer) });
    const input: DecodeInput = {
      q,
      ...denseKV(layer),
      seqLens: seqs.map((s) => cache.length(s)),
      numHeads,
      numKVHeads: cache.numKVHeads,
      headDim: cache.headDim,
      qLen,
      kvDtype: cache.kvDtype,
    };
    const scale = 1 / Math.sqrt(cache.headDim);
    const want = executePlanOnCpu(createPlan(input, options), input, scale);
    assert.ok(
      sameBits(paged.out, want.out) && sameBits(paged.lse, want.lse),
      `${label} layer ${layer}`,
    );
  }
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
