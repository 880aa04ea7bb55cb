/**
 * Shared by the MLA cache tests (tests/mla_cache_test.ts, tests/mla_cache_gpu_test.ts): batches
 * whose second sequence shares the first one's prefix (a fork), their dense inputs per layer, a
 * sequence's rows of them, and the check that a cache holds them bit for bit.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { DecodeInput, KVArray, KVDtype } from "../mod.ts";
import type { KVCache } from "../runner.ts";
import { makeInput } from "./helpers.ts";

/** A batch's shape: sequence 1 shares sequence 0's first `prefix` tokens (a fork). */
export interface BatchSpec {
  seqLens: number[];
  qLens: number[];
  prefix: number;
  numHeads: number;
  numKVHeads: number;
  headDim: number;
  headDimV: number;
  kvDtype: KVDtype;
}

/** One dense input per layer, sequence 1's first `prefix` tokens made equal to sequence 0's. */
export function layerInputs(spec: BatchSpec, numLayers: number, seed: number): DecodeInput[] {
  const scaled = spec.kvDtype === "int8" || spec.kvDtype.startsWith("fp8");
  return Array.from({ length: numLayers }, (_, l) => {
    const input = makeInput({ ...spec, seed: seed + l, ...(scaled ? { kvScales: "token" } : {}) });
    const start1 = spec.seqLens[0];
    const share = (a: KVArray | Float32Array | number | undefined, row: number) => {
      if (typeof a !== "object") return;
      a.copyWithin(start1 * row, 0, spec.prefix * row);
    };
    share(input.k, spec.numKVHeads * spec.headDim);
    share(input.v, spec.numKVHeads * spec.headDimV);
    share(input.kScale, spec.numKVHeads);
    share(input.vScale, spec.numKVHeads);
    return input;
  });
}

/** Rows `[from, to)` of sequence `s` of a dense input: K, V and (8-bit) their scales. */
export function seqRows(
  input: DecodeInput,
  s: number,
  from: number,
  to: number,
): { k: KVArray; v: KVArray; kScale?: Float32Array; vScale?: Float32Array } {
  const start = Array.from(input.seqLens).slice(0, s).reduce((a, b) => a + b, 0);
  const h = input.numKVHeads;
  const part = <T extends KVArray>(a: T, row: number) =>
    a.subarray((start + from) * row, (start + to) * row) as T;
  return {
    k: part(input.k, h * input.headDim),
    v: part(input.v!, h * (input.headDimV ?? input.headDim)),
    ...(input.kScale instanceof Float32Array
      ? { kScale: part(input.kScale, h), vScale: part(input.vScale as Float32Array, h) }
      : {}),
  };
}

/** An array's bits: f32 values as their u32 patterns (so NaNs compare), others as they are. */
export const f32Bits = (a: KVArray): KVArray | Uint32Array =>
  a instanceof Float32Array ? new Uint32Array(a.buffer, a.byteOffset, a.length) : a;

/** Every sequence of every layer reads back as its dense rows, bit for bit, with its scales. */
export async function assertStored(
  cache: KVCache,
  layers: DecodeInput[],
  seqs: number[],
): Promise<void> {
  for (let l = 0; l < layers.length; l++) {
    for (let s = 0; s < seqs.length; s++) {
      const want = seqRows(layers[l], s, 0, layers[l].seqLens[s]);
      const got = await cache.read(l, seqs[s]);
      const at = `layer ${l} sequence ${s}`;
      assert.equal(got.k.constructor, want.k.constructor, `${at} k type`);
      assert.deepStrictEqual(Array.from(f32Bits(got.k)), Array.from(f32Bits(want.k)), `${at} k`);
      assert.deepStrictEqual(Array.from(f32Bits(got.v)), Array.from(f32Bits(want.v)), `${at} v`);
      if (want.kScale) {
        assert.deepStrictEqual(got.kScale, want.kScale, `${at} kScale`);
        assert.deepStrictEqual(got.vScale, want.vScale, `${at} vScale`);
      }
    }
  }
}

/** The first `dimV` of each row of `dim` elements, copied (V's rows of K's for the `vFromK` tests, built here rather than by the library). */
export function kRowsPrefix<T extends KVArray>(a: T, dim: number, dimV: number): T {
  const rows = a.length / dim;
  const out = new (a.constructor as new (n: number) => T)(rows * dimV);
  for (let r = 0; r < rows; r++) {
    for (let d = 0; d < dimV; d++) out[r * dimV + d] = a[r * dim + d];
  }
  return out;
}
