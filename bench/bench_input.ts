/**
 * Inputs of the benchmark cases: f16 K and V of random bit patterns in ±[0.5, 1) (fast to make,
 * never zero; caches beyond 16M elements repeat a random block), a smooth query.
 */

import type { DecodeInput } from "../mod.ts";
import type { BenchCase } from "./bench_cases.ts";

/** Halves drawn one by one; longer arrays repeat this block (timing does not need more). */
const BLOCK = (1 << 24) + 4099;

/** Random f16 bit patterns in ±[0.5, 1). */
export function randomHalves(n: number, seed: number): Uint16Array {
  const out = new Uint16Array(n);
  let s = seed >>> 0 || 1;
  const drawn = Math.min(n, BLOCK);
  for (let i = 0; i < drawn; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = (s & 0x83ff) | 0x3800;
  }
  // Doubling copies: a few memcpy passes instead of billions of draws for the largest caches.
  for (let have = drawn; have < n; have *= 2) out.copyWithin(have, 0, Math.min(have, n - have));
  return out;
}

/** The decode input of a benchmark case (f16 KV unless the case says bf16). */
export function makeBenchInput(c: BenchCase): DecodeInput {
  const tokens = c.seqLens.reduce((a, b) => a + b, 0);
  const kv = tokens * c.numKVHeads * c.headDim;
  const headDimV = c.headDimV ?? c.headDim;
  const q = new Float32Array(c.seqLens.length * c.qLen * c.numHeads * c.headDim);
  for (let i = 0; i < q.length; i++) q[i] = Math.sin(i * 12.9898) * 0.5;
  return {
    q,
    k: randomHalves(kv, 1),
    // (The same bit patterns read as bf16 are finite and nonzero too.)
    v: randomHalves(tokens * c.numKVHeads * headDimV, 2),
    seqLens: c.seqLens,
    numHeads: c.numHeads,
    numKVHeads: c.numKVHeads,
    headDim: c.headDim,
    qLen: c.qLen,
    ...(headDimV === c.headDim ? {} : { headDimV }),
    kvDtype: c.kvDtype ?? "f16",
  };
}
