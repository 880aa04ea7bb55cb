/**
 * A decode call's inputs as they were when it was made: a call that cannot upload them at once
 * (it waits for the GPU backend's gate, or for its kernel class's grid calibration) holds copies
 * of the arrays it reads, whatever the caller does to them afterwards.
 *
 * @module
 */

import type { DecodeInput } from "./problem.ts";

/**
 * A decode input with copies of the arrays a run reads (`q`, `k`, `v`, and per-token scales);
 * every other field as it is (the shape, already validated into the call's problem).
 *
 * @example
 * ```ts
 * import { copyInputArrays } from "./input_copy.ts";
 * const input = {
 *   q: new Float32Array(8), k: new Float32Array(8), v: new Float32Array(8),
 *   seqLens: [1], numHeads: 1, numKVHeads: 1, headDim: 8,
 * };
 * const held = copyInputArrays(input);
 * input.q.fill(1);
 * console.log(held.q[0], held.seqLens === input.seqLens); // 0 true
 * ```
 */
export function copyInputArrays(input: DecodeInput): DecodeInput {
  return {
    ...input,
    q: input.q.slice(),
    k: input.k.slice(),
    ...(input.v === undefined ? {} : { v: input.v.slice() }),
    ...(input.kScale instanceof Float32Array ? { kScale: input.kScale.slice() } : {}),
    ...(input.vScale instanceof Float32Array ? { vScale: input.vScale.slice() } : {}),
  };
}
