/**
 * Shared by the 8-bit cache tests (tests/kv8_cache_test.ts, tests/kv8_cache_gpu_test.ts): the
 * 8-bit dtypes, and sequences grown with random tokens beside the codes and scales they should
 * hold.
 *
 * @module
 */

import { encodeKV, type KVArray, type KVDtype } from "../mod.ts";
import type { KVCache } from "../runner.ts";
import { randomFloats, seededRng } from "./helpers.ts";

/** The 8-bit KV dtypes. */
export const KV8: readonly KVDtype[] = ["int8", "fp8e4m3", "fp8e5m2"];

/** What a sequence should hold per layer: codes and scales of K and V, token by token. */
export interface Held {
  k: KVArray[];
  v: KVArray[];
  kScale: Float32Array[];
  vScale: Float32Array[];
}

/** `a` then `b`, in an array of `a`'s type. */
export function concat<T extends KVArray>(a: T, b: T): T {
  const out = new (a.constructor as { new (n: number): T })(a.length + b.length);
  out.set(a as never);
  out.set(b as never, a.length);
  return out;
}

/**
 * Appends `n` random tokens to `seq`: odd seeds as floats with per-(token, KV head) scales,
 * even seeds as floats with one scale per layer; keeps the expected codes and scales.
 */
export function growKV8(
  cache: KVCache,
  seq: number,
  n: number,
  held: Map<number, Held>,
  seed: number,
): void {
  const rng = seededRng(seed);
  const L = cache.numLayers;
  const entries = n * cache.numKVHeads;
  const k = Array.from({ length: L }, () => randomFloats(rng, n * cache.rowElements, 3));
  const v = Array.from({ length: L }, () => randomFloats(rng, n * cache.rowElements, 3));
  const perToken = seed % 2 === 1;
  const scale = () =>
    perToken
      ? Float32Array.from({ length: entries }, () => 0.01 + 0.05 * rng())
      : 0.01 + 0.05 * rng();
  const kScale = Array.from({ length: L }, scale);
  const vScale = Array.from({ length: L }, scale);
  cache.append(seq, { k, v, kScale, vScale });
  const h = held.get(seq) ?? {
    k: Array.from({ length: L }, () => encodeKV(new Float32Array(0), cache.kvDtype)),
    v: Array.from({ length: L }, () => encodeKV(new Float32Array(0), cache.kvDtype)),
    kScale: Array.from({ length: L }, () => new Float32Array(0)),
    vScale: Array.from({ length: L }, () => new Float32Array(0)),
  };
  const full = (s: number | Float32Array) =>
    typeof s === "number" ? new Float32Array(entries).fill(s) : s;
  held.set(seq, {
    k: h.k.map((a, l) => concat(a, encodeKV(k[l], cache.kvDtype, { scale: kScale[l] }))),
    v: h.v.map((a, l) => concat(a, encodeKV(v[l], cache.kvDtype, { scale: vScale[l] }))),
    kScale: h.kScale.map((a, l) => concat(a, full(kScale[l]))),
    vScale: h.vScale.map((a, l) => concat(a, full(vScale[l]))),
  });
}
