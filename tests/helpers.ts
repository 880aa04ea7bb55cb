/**
 * Shared test helpers: a seeded PRNG, deterministic input generation, error metrics against the
 * float64 reference, and fast-check settings.
 *
 * @module
 */

import assert from "node:assert/strict";
import { KV_DTYPE_INFO } from "../src/core/dtypes.ts";
import {
  type DecodeInput,
  type DecodeOutput,
  encodeKV,
  type KVDtype,
  referenceAttention,
  type Strategy,
} from "../mod.ts";

/**
 * A one-sequence f16 input of `spec` whose keys grow along the sequence (to 13x at its end): each
 * row's largest score rises from tile to tile far past the matrix kernel's lazy-rescaling margin
 * (8 in log2 units), so its sums are rescaled again and again.
 */
export function risingKeysInput(spec: CaseSpec, tokens: number, seed: number): DecodeInput {
  const base = makeInput({ ...spec, seqLens: [tokens], kvDtype: "f32", qAmplitude: 2, seed });
  const k = base.k as Float32Array;
  const row = base.numKVHeads * base.headDim;
  for (let t = 0; t < tokens; t++) {
    const f = 1 + 12 * (t / tokens) ** 2;
    for (let i = t * row; i < (t + 1) * row; i++) k[i] *= f;
  }
  return {
    ...base,
    k: encodeKV(k, "f16"),
    v: encodeKV(base.v as Float32Array, "f16"),
    kvDtype: "f16",
  };
}

/** Largest relative L2 error of `out` against the float64 reference. */
export const OUT_TOLERANCE = 2e-5;
/** Largest absolute error of `lse` against the float64 reference. */
export const LSE_TOLERANCE = 2e-4;

/** A source of uniform numbers in `[0, 1)`. */
export type Rng = () => number;

/**
 * A small seeded PRNG (splitmix32 finaliser over a Weyl sequence): same seed, same stream.
 * Quality is ample for test data; speed matters more.
 */
export function seededRng(seed: number): Rng {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    z = (z ^ (z >>> 15)) >>> 0;
    return z / 4294967296;
  };
}

/** Uniform integer in `[lo, hi]`. */
export function randomInt(rng: Rng, lo: number, hi: number): number {
  return lo + Math.floor(rng() * (hi - lo + 1));
}

/** Floats uniform in `[-amplitude, amplitude)`. */
export function randomFloats(rng: Rng, length: number, amplitude = 1): Float32Array {
  const a = new Float32Array(length);
  for (let i = 0; i < length; i++) a[i] = (2 * rng() - 1) * amplitude;
  return a;
}

/** Everything that decides one decode case; the data is derived from `seed`. */
export interface CaseSpec {
  seqLens: number[];
  numHeads: number;
  numKVHeads: number;
  headDim: number;
  /** V's head dim (MLA-style); default `headDim`. */
  headDimV?: number;
  qLen?: number;
  /** Each sequence's query tokens (a ragged batch), instead of `qLen`. */
  qLens?: number[];
  kvDtype?: KVDtype;
  strategy?: Strategy;
  /** Explicit softmax scale; left out to use the default `1 / sqrt(headDim)`. */
  scale?: number;
  /** Seed of the data. */
  seed: number;
  /** Amplitude of the queries (larger: peakier softmax). Default 1. */
  qAmplitude?: number;
  /**
   * 8-bit kvDtypes: one scale per tensor (default) or random scales per (token, KV head). The
   * codes use about 6 bits of the format's range either way.
   */
  kvScales?: "tensor" | "token";
}

/**
 * Builds a decode input from a spec. Queries and keys are uniform in `[-a, a)`; values are uniform
 * noise around a per-(KV head, dim) offset, so outputs are not near zero and a relative error is
 * meaningful. f16/bf16 K/V are encoded with `encodeKV` (the reference decodes the same bits).
 */
export function makeInput(spec: CaseSpec): DecodeInput {
  const rng = seededRng(spec.seed);
  const qLen = spec.qLen ?? 1;
  const kvDtype = spec.kvDtype ?? "f32";
  const tokens = spec.seqLens.reduce((a, b) => a + b, 0);
  const { numHeads, numKVHeads, headDim } = spec;
  const headDimV = spec.headDimV ?? headDim;
  const queries = spec.qLens?.reduce((a, b) => a + b, 0) ?? spec.seqLens.length * qLen;
  const q = randomFloats(rng, queries * numHeads * headDim, spec.qAmplitude);
  const k = randomFloats(rng, tokens * numKVHeads * headDim);
  const offsets = randomFloats(rng, numKVHeads * headDimV);
  const v = randomFloats(rng, tokens * numKVHeads * headDimV);
  for (let i = 0; i < v.length; i++) v[i] += offsets[i % offsets.length];
  const scales = KV_DTYPE_INFO[kvDtype].scaled
    ? (spec.kvScales === "token"
      ? {
        kScale: Float32Array.from({ length: tokens * numKVHeads }, () => 2 ** -6 * (0.5 + rng())),
        vScale: Float32Array.from({ length: tokens * numKVHeads }, () => 2 ** -5 * (0.5 + rng())),
      }
      : { kScale: 2 ** -6, vScale: 2 ** -5 })
    : {};
  const input: DecodeInput = {
    q,
    k: encodeKV(k, kvDtype, scales.kScale ? { scale: scales.kScale } : undefined),
    v: encodeKV(v, kvDtype, scales.vScale ? { scale: scales.vScale } : undefined),
    ...scales,
    seqLens: spec.seqLens.slice(),
    numHeads,
    numKVHeads,
    headDim,
    ...(spec.qLens === undefined ? { qLen } : { qLens: spec.qLens.slice() }),
    ...(spec.headDimV === undefined ? {} : { headDimV }),
    kvDtype,
  };
  if (spec.strategy !== undefined) input.strategy = spec.strategy;
  if (spec.scale !== undefined) input.scale = spec.scale;
  return input;
}

/** `||actual - expected||_2 / ||expected||_2` (NaN if lengths differ). */
export function relativeL2Error(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) return NaN;
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = actual[i] - expected[i];
    diff += d * d;
    norm += expected[i] * expected[i];
  }
  return Math.sqrt(diff) / Math.max(Math.sqrt(norm), Number.MIN_VALUE);
}

/** Largest `|actual[i] - expected[i]|` (NaN if lengths differ or any entry is NaN). */
export function maxAbsError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) return NaN;
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (Number.isNaN(d)) return NaN;
    worst = Math.max(worst, d);
  }
  return worst;
}

/**
 * Asserts that an output array is a `Float32Array` of the expected length whose entries are all
 * numbers and none is NaN or infinite (catches unwritten, poisoned or garbage entries).
 */
export function assertNoPoison(name: string, values: unknown, length: number): void {
  assert.ok(values instanceof Float32Array, `${name} must be a Float32Array`);
  assert.equal(values.length, length, `${name} must have ${length} entries`);
  for (let i = 0; i < length; i++) {
    const x: unknown = values[i];
    if (typeof x !== "number" || !Number.isFinite(x)) {
      assert.fail(`${name}[${i}] is not a finite number: ${x}`);
    }
  }
}

/** The errors of one result against the reference. */
export interface ResultErrors {
  outError: number;
  lseError: number;
}

/**
 * Asserts a decode result matches the float64 reference: shapes, no poison, relative L2 error of
 * `out` below {@linkcode OUT_TOLERANCE}, max abs LSE error below {@linkcode LSE_TOLERANCE}.
 */
export function assertMatchesReference(
  input: DecodeInput,
  result: DecodeOutput,
  label = "",
): ResultErrors {
  const ref = referenceAttention(input);
  // Rows of empty requests (reference lse -Infinity) must be exactly the merge identity: out 0,
  // lse -Infinity; every other entry must be a finite number.
  const dim = ref.lse.length === 0 ? 0 : ref.out.length / ref.lse.length;
  assert.ok(result.out instanceof Float32Array, `out ${label} must be a Float32Array`);
  assert.ok(result.lse instanceof Float32Array, `lse ${label} must be a Float32Array`);
  const out = result.out;
  const lse = Float32Array.from(result.lse);
  assert.equal(result.lse.length, ref.lse.length, `lse ${label} length`);
  for (let row = 0; row < ref.lse.length; row++) {
    if (ref.lse[row] !== -Infinity) continue;
    assert.equal(result.lse[row], -Infinity, `lse ${label}: empty row ${row}`);
    for (let d = 0; d < dim; d++) {
      assert.ok(Object.is(result.out[row * dim + d], 0), `out ${label}: empty row ${row} dim ${d}`);
    }
    lse[row] = 0; // checked; the finite checks below skip it
  }
  assertNoPoison(`out ${label}`, out, ref.out.length);
  assertNoPoison(`lse ${label}`, lse, ref.lse.length);
  for (let row = 0; row < ref.lse.length; row++) {
    if (ref.lse[row] === -Infinity) lse[row] = -Infinity;
  }
  const outError = relativeL2Error(result.out, ref.out);
  const lseError = maxAbsError(
    lse.map((x) => (x === -Infinity ? 0 : x)),
    ref.lse.map((x) => (x === -Infinity ? 0 : x)),
  );
  assert.ok(
    outError < OUT_TOLERANCE,
    `out ${label}: relative L2 error ${outError} >= ${OUT_TOLERANCE}`,
  );
  assert.ok(
    lseError < LSE_TOLERANCE,
    `lse ${label}: max abs error ${lseError} >= ${LSE_TOLERANCE}`,
  );
  return { outError, lseError };
}

/** A short description of a spec for failure messages. */
export function describeSpec(spec: CaseSpec): string {
  const lens = spec.seqLens.length > 6
    ? `${spec.seqLens.slice(0, 6).join(",")},...(${spec.seqLens.length})`
    : spec.seqLens.join(",");
  return `[${lens}] H=${spec.numHeads}/${spec.numKVHeads} D=${spec.headDim}${
    spec.headDimV === undefined ? "" : `/${spec.headDimV}`
  } qLen=${spec.qLens === undefined ? spec.qLen ?? 1 : `[${spec.qLens.join(",")}]`} ${
    spec.kvDtype ?? "f32"
  } ${spec.strategy ?? "lean"} scale=${spec.scale ?? "default"}`;
}

/** Bitwise equality of two float arrays (NaN payloads and signed zeros included). */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

function envSeed(): string | undefined {
  const perm = Deno.permissions.querySync({ name: "env", variable: "FC_SEED" });
  return perm.state === "granted" ? Deno.env.get("FC_SEED") : undefined;
}

/**
 * fast-check run parameters. The seed is fixed so CI is reproducible; set `FC_SEED` to another
 * integer to explore different cases, or to `random` for fast-check's own random seed.
 */
export function fcParams(numRuns: number): { numRuns: number; seed?: number } {
  const env = envSeed();
  if (env === "random") return { numRuns };
  const seed = env === undefined ? 0x1ea4 : Number.parseInt(env, 10);
  return { numRuns, seed: Number.isFinite(seed) ? seed : 0x1ea4 };
}
