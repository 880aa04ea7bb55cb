/**
 * Shared by the tests of the library's paged cache with `vFromK` (tests/mla_latent_cache_test.ts,
 * tests/mla_latent_cache_gpu_test.ts): the caches' shape, a latent cache and its twin (V stored,
 * given K's rows' prefixes and K's scales), the same sequences built in both (appends, forks,
 * writes, a free), a cache's sequences read back as a dense `vFromK` input, and an assertion on a
 * thrown error's class and message.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type DecodeInput, dynamicKVScales, encodeKV, type KVArray, type KVDtype } from "../mod.ts";
import { createKVCache, type KVCache } from "../runner.ts";
import { randomFloats, seededRng } from "./helpers.ts";
import { kRowsPrefix as prefix } from "./mla_cache.ts";

/** The caches' shape: K rows of D dims, V (their prefix) of DV, query heads, layers, page size. */
export const D = 24;
export const DV = 16;
export const NUM_HEADS = 4;
export const NUM_LAYERS = 2;
export const PAGE = 4;

/** An array's bits: f32 values as their u32 patterns (NaNs and -0 compare), others as they are. */
export const bits = (a: KVArray): number[] =>
  Array.from(a instanceof Float32Array ? new Uint32Array(a.buffer, a.byteOffset, a.length) : a);

export const is8bit = (d: KVDtype): boolean => d === "int8" || d.startsWith("fp8");

/** One host case: dtype, KV heads and (8-bit) scale mode. */
export interface HostCase {
  kvDtype: KVDtype;
  numKVHeads: number;
  kvScales?: "token" | "tensor";
}

/** Per-tensor scales of the 8-bit caches created with `kvScales: "tensor"`, one per layer. */
const TENSOR_SCALES = [2 ** -5, 0.03];

/** A latent cache and its twin (V stored, filled here with K's rows' prefixes). */
export function cachePair(c: HostCase, numPages = 32): CachePair {
  const common = {
    numLayers: NUM_LAYERS,
    numKVHeads: c.numKVHeads,
    headDim: D,
    headDimV: DV,
    kvDtype: c.kvDtype,
    pageSize: PAGE,
    numPages,
    ...(c.kvScales === "tensor" ? { kvScales: "tensor" as const, kScale: TENSOR_SCALES } : {}),
  };
  const latent = createKVCache({ ...common, vFromK: true });
  const twin = createKVCache({
    ...common,
    ...(c.kvScales === "tensor" ? { vScale: TENSOR_SCALES } : {}),
  });
  return { latent, twin };
}

/** One layer's new rows for the latent cache (K only) and for its twin (V copied from K). */
interface PairRows {
  latent: { k: KVArray; kScale?: Float32Array | "dynamic" };
  twin: { k: KVArray; v: KVArray; kScale?: Float32Array; vScale?: Float32Array };
}

/**
 * One layer's `n` new rows, given one way of several (`how`): f32 values (8-bit per-token: with
 * scales of their own), the dtype's host arrays (bits, codes), or (8-bit, per-token) dynamic
 * scales, the twin getting the same scales as numbers.
 */
function pairRows(
  c: HostCase,
  rng: () => number,
  n: number,
  layer: number,
  how: "values" | "encoded" | "dynamic",
): PairRows {
  const k = randomFloats(rng, n * c.numKVHeads * D, 1.5);
  const plain = (kk: KVArray): PairRows => ({
    latent: { k: kk },
    twin: { k: kk, v: prefix(kk, D, DV) },
  });
  if (!is8bit(c.kvDtype)) return plain(how === "encoded" ? encodeKV(k, c.kvDtype) : k);
  if (c.kvScales === "tensor") {
    const scale = TENSOR_SCALES[layer];
    return plain(how === "encoded" ? encodeKV(k, c.kvDtype, { scale }) : k);
  }
  const scale = how === "dynamic"
    ? dynamicKVScales(k, c.kvDtype, { headDim: D })
    : Float32Array.from({ length: n * c.numKVHeads }, () => 2 ** -6 * (0.5 + rng()));
  const kk = how === "encoded" ? encodeKV(k, c.kvDtype, { scale }) : k;
  return {
    latent: { k: kk, kScale: how === "dynamic" ? "dynamic" : scale },
    twin: { k: kk, v: prefix(kk, D, DV), kScale: scale, vScale: scale },
  };
}

/** A latent cache and its twin. */
export interface CachePair {
  latent: KVCache;
  twin: KVCache;
}

/** Appends `n` tokens to `seq` of both caches (every layer; `how` as `pairRows`). */
function appendBoth(
  pair: CachePair,
  c: HostCase,
  rng: () => number,
  seq: number,
  n: number,
  how: "values" | "encoded" | "dynamic",
): void {
  const layers = Array.from({ length: NUM_LAYERS }, (_, l) => pairRows(c, rng, n, l, how));
  const scaled = layers[0].latent.kScale !== undefined;
  pair.latent.append(seq, {
    k: layers.map((x) => x.latent.k),
    ...(scaled ? { kScale: layers.map((x) => x.latent.kScale!) } : {}),
  });
  pair.twin.append(seq, {
    k: layers.map((x) => x.twin.k),
    v: layers.map((x) => x.twin.v),
    ...(scaled
      ? { kScale: layers.map((x) => x.twin.kScale!), vScale: layers.map((x) => x.twin.vScale!) }
      : {}),
  });
}

/** Extends sequences of both caches and writes the new rows of every layer (`write`). */
function writeBoth(
  pair: CachePair,
  c: HostCase,
  rng: () => number,
  seqs: number[],
  counts: number[],
): void {
  const slots = pair.latent.extend(seqs, counts);
  const twinSlots = pair.twin.extend(seqs, counts);
  assert.deepStrictEqual(slots.rows, twinSlots.rows);
  const n = counts.reduce((a, b) => a + b, 0);
  for (let l = 0; l < NUM_LAYERS; l++) {
    const rows = pairRows(c, rng, n, l, "values");
    pair.latent.write(slots, l, rows.latent);
    pair.twin.write(twinSlots, l, rows.twin);
  }
}

/** Builds the same sequences in both caches: appends, a fork copied on write, writes, a free. */
export function buildSequences(pair: CachePair, c: HostCase, seed: number): number[] {
  const rng = seededRng(seed);
  const { latent, twin } = pair;
  const both = <T>(f: (cache: KVCache) => T): T => {
    const a = f(latent);
    assert.deepStrictEqual(f(twin), a);
    return a;
  };
  const append = (seq: number, n: number, how: "values" | "encoded" | "dynamic") =>
    appendBoth(pair, c, rng, seq, n, how);
  const a = both((x) => x.addSequence());
  const empty = both((x) => x.addSequence());
  const c0 = both((x) => x.addSequence());
  append(a, 6, "values");
  const f = both((x) => x.fork(a));
  append(f, 3, "encoded"); // copies a's half-filled second page first
  assert.notEqual(latent.pageTable(a)[1], latent.pageTable(f)[1]);
  assert.equal(latent.pageTable(a)[0], latent.pageTable(f)[0]);
  append(a, 2, "dynamic");
  append(c0, 5, "encoded");
  writeBoth(pair, c, rng, [a, c0], [1, 2]);
  const g = both((x) => x.fork(c0));
  both((x) => x.free(c0));
  append(g, 1, "dynamic");
  return [a, empty, f, g];
}

/** The dense `vFromK` input of a cache's sequences (read back from it) with queries `q`. */
export async function denseInput(
  cache: KVCache,
  layer: number,
  seqs: number[],
  q: Float32Array,
): Promise<DecodeInput> {
  const rows = await Promise.all(seqs.map((s) => cache.read(layer, s)));
  const Ctor = rows[0].k.constructor as new (n: number) => KVArray;
  const k = new Ctor(rows.reduce((n, r) => n + r.k.length, 0));
  let at = 0;
  for (const r of rows) {
    (k as Uint8Array).set(r.k as Uint8Array, at);
    at += r.k.length;
  }
  const kScale = rows[0].kScale
    ? Float32Array.from(rows.flatMap((r) => [...r.kScale!]))
    : undefined;
  return {
    q,
    k,
    ...(kScale ? { kScale } : {}),
    seqLens: seqs.map((s) => cache.length(s)),
    numHeads: NUM_HEADS,
    numKVHeads: cache.numKVHeads,
    headDim: D,
    headDimV: DV,
    vFromK: true,
    kvDtype: cache.kvDtype,
  };
}

export const HOST_CASES: HostCase[] = (["f32", "f16", "bf16", "int8", "fp8e4m3"] as const).flatMap(
  (kvDtype) =>
    [1, 2].flatMap((numKVHeads) =>
      is8bit(kvDtype)
        ? (["token", "tensor"] as const).map((kvScales) => ({ kvDtype, numKVHeads, kvScales }))
        : [{ kvDtype, numKVHeads }]
    ),
);

/** An assertion that `f` throws `Class` with a message matching `re`. */
export function throwsWith(f: () => unknown, Class: ErrorConstructor, re: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof Class, `${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    assert.match((e as Error).message, re);
    return true;
  });
}
