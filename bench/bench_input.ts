/**
 * Inputs of the benchmark cases: f16 K and V of random bit patterns in ±[0.5, 1) (fast to make,
 * never zero), a smooth query.
 */

import type { DecodeInput } from "../mod.ts";
import type { BenchCase } from "./bench_cases.ts";

/** Random f16 bit patterns in ±[0.5, 1). */
export function randomHalves(n: number, seed: number): Uint16Array {
  const out = new Uint16Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = (s & 0x83ff) | 0x3800;
  }
  return out;
}

/** The decode input of a benchmark case (f16 KV). */
export function makeBenchInput(c: BenchCase): DecodeInput {
  const tokens = c.seqLens.reduce((a, b) => a + b, 0);
  const kv = tokens * c.numKVHeads * c.headDim;
  const q = new Float32Array(c.seqLens.length * c.qLen * c.numHeads * c.headDim);
  for (let i = 0; i < q.length; i++) q[i] = Math.sin(i * 12.9898) * 0.5;
  return {
    q,
    k: randomHalves(kv, 1),
    v: randomHalves(kv, 2),
    seqLens: c.seqLens,
    numHeads: c.numHeads,
    numKVHeads: c.numKVHeads,
    headDim: c.headDim,
    qLen: c.qLen,
    kvDtype: "f16",
  };
}
