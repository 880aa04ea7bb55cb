/**
 * Inputs of the benchmark cases: f16 K and V of random bit patterns in ±[0.5, 1) (fast to make,
 * never zero; caches beyond 16M elements repeat a random block), a smooth query.
 */

import type { DecodeInput } from "../mod.ts";
import type { BenchCase } from "./bench_cases.ts";
import { variantFields as flagVariantFields } from "../src/cli/variant_flags.ts";

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

/**
 * `n` random 8-bit codes of small magnitude (no FP8 NaN or infinity), drawn like
 * {@linkcode randomHalves}.
 */
function randomBytes(n: number, seed: number, signed: boolean): Int8Array | Uint8Array {
  const out = signed ? new Int8Array(n) : new Uint8Array(n);
  const drawn = Math.min(n, 1 << 20);
  let s = seed * 2654435761 || 1;
  for (let i = 0; i < drawn; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = signed ? ((s & 0x7f) - 64) : (s & 0xbf) | 0x20; // |x| < 2 in both FP8 formats
  }
  for (let have = drawn; have < n; have *= 2) out.copyWithin(have, 0, Math.min(have, n - have));
  return out;
}

/** The decode input of a benchmark case (its KV dtype, f16 by default). */
export function makeBenchInput(c: BenchCase): DecodeInput {
  const tokens = c.seqLens.reduce((a, b) => a + b, 0);
  const kv = tokens * c.numKVHeads * c.headDim;
  const headDimV = c.headDimV ?? c.headDim;
  const q = new Float32Array(c.seqLens.length * c.qLen * c.numHeads * c.headDim);
  for (let i = 0; i < q.length; i++) q[i] = Math.sin(i * 12.9898) * 0.5;
  const dtype = c.kvDtype ?? "f16";
  if (dtype === "int8" || dtype === "fp8e4m3" || dtype === "fp8e5m2") {
    const signed = dtype === "int8";
    const unit = signed ? 1 / 64 : 1;
    const scale = (x: number) =>
      c.kvScales === "token"
        ? Float32Array.from({ length: tokens * c.numKVHeads }, (_, i) => x * (1 + (i % 7) / 8))
        : x;
    return {
      q,
      k: randomBytes(kv, 1, signed),
      v: randomBytes(kv, 2, signed),
      kScale: scale(unit),
      vScale: scale(unit / 2),
      seqLens: c.seqLens,
      numHeads: c.numHeads,
      numKVHeads: c.numKVHeads,
      headDim: c.headDim,
      qLen: c.qLen,
      kvDtype: dtype,
      ...variantFields(c),
    };
  }
  return {
    q,
    k: randomHalves(kv, 1),
    // (The same bit patterns read as bf16 are finite and nonzero too.) MLA's latent: V is K's.
    ...(c.vFromK ? { vFromK: true } : { v: randomHalves(tokens * c.numKVHeads * headDimV, 2) }),
    seqLens: c.seqLens,
    numHeads: c.numHeads,
    numKVHeads: c.numKVHeads,
    headDim: c.headDim,
    qLen: c.qLen,
    ...(headDimV === c.headDim ? {} : { headDimV }),
    kvDtype: c.kvDtype ?? "f16",
    ...variantFields(c),
  };
}

/**
 * A case's attention variants as decode fields and as a runner's plan options, as the CLI's
 * variant flags make them (sinks: a fixed logit pattern per query head).
 */
export function variantFields(
  c: BenchCase,
): { slidingWindow?: number; logitsSoftCap?: number; sinks?: Float32Array } {
  return flagVariantFields({
    "sliding-window": c.slidingWindow,
    "soft-cap": c.logitsSoftCap,
    sinks: c.attentionSinks,
  }, c.numHeads);
}
