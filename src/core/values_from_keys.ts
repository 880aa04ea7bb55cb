/**
 * V rows of an input whose V is a prefix of K's rows (`vFromK`, MLA's latent cache): the CPU
 * backend and the float64 reference take V as its own array, so they copy it out of K; the GPU
 * kernels read it in place.
 *
 * @module
 */

import type { KVScale } from "./kv8.ts";
import type { KVArray, Problem } from "./problem.ts";

/**
 * V's rows `[token][kvHead][headDimV]`: `input.v`, or with `vFromK` the first `headDimV` dims of
 * each of `k`'s rows, copied (same dtype as `k`).
 *
 * @example
 * ```ts
 * import { valuesOf } from "./values_from_keys.ts";
 * import { validateShape } from "./problem.ts";
 * const p = validateShape({ seqLens: [2], numHeads: 1, numKVHeads: 1, headDim: 16, headDimV: 8, vFromK: true });
 * const k = Float32Array.from({ length: 32 }, (_, i) => i);
 * console.log(Array.from(valuesOf({ k }, p).subarray(6, 10))); // [ 6, 7, 16, 17 ]
 * ```
 */
export function valuesOf(input: { k: KVArray; v?: KVArray }, p: Problem): KVArray {
  return p.vFromK ? prefixRows(input.k, p.headDim, p.headDimV) : input.v as KVArray;
}

/**
 * The first `dimV` elements of each row of `dim` elements in `data`, as rows of their own (an
 * array of `data`'s type): V's rows of a K storage, dense or paged (NHD and HND alike hold a
 * page's rows one head row after another).
 *
 * @example
 * ```ts
 * import { prefixRows } from "./values_from_keys.ts";
 * console.log(prefixRows(new Uint16Array([1, 2, 3, 4, 5, 6]), 3, 2)); // Uint16Array(4) [ 1, 2, 4, 5 ]
 * ```
 */
export function prefixRows<T extends KVArray>(data: T, dim: number, dimV: number): T {
  const rows = Math.floor(data.length / dim);
  const out = new (data.constructor as new (n: number) => T)(rows * dimV);
  for (let r = 0; r < rows; r++) {
    out.set(data.subarray(r * dim, r * dim + dimV) as never, r * dimV);
  }
  return out;
}

/**
 * V's scale of an 8-bit input: `vScale`, or with `vFromK` `kScale` (V's codes are K's).
 *
 * @example
 * ```ts
 * import { valueScaleOf } from "./values_from_keys.ts";
 * console.log(valueScaleOf({ kScale: 0.5 }, { vFromK: true })); // 0.5
 * ```
 */
export function valueScaleOf(
  input: { kScale?: KVScale; vScale?: KVScale },
  p: Pick<Problem, "vFromK">,
): KVScale | undefined {
  return p.vFromK ? input.kScale : input.vScale;
}

/**
 * An input's K and V arrays and scales with V as its own array (copied out of K with `vFromK`),
 * for the code that takes them so: the CPU backend and the reference.
 *
 * @example
 * ```ts
 * import { keysAndValues } from "./values_from_keys.ts";
 * import { validateShape } from "./problem.ts";
 * const p = validateShape({ seqLens: [1], numHeads: 1, numKVHeads: 1, headDim: 16, headDimV: 8, vFromK: true });
 * console.log(keysAndValues({ k: new Float32Array(16).fill(2) }, p).v); // Float32Array(8) [ 2, 2, 2, 2, 2, 2, 2, 2 ]
 * ```
 */
export function keysAndValues(
  input: { k: KVArray; v?: KVArray; kScale?: KVScale; vScale?: KVScale },
  p: Problem,
): { k: KVArray; v: KVArray; kScale?: KVScale; vScale?: KVScale } {
  return {
    k: input.k,
    v: valuesOf(input, p),
    kScale: input.kScale,
    vScale: valueScaleOf(input, p),
  };
}
