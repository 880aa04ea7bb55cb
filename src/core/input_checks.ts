/**
 * Checks of a decode input's data against its validated shape: the query, K and V arrays (type
 * and length), the 8-bit KV scales and the softmax scale. Part of `validateInput`
 * (`problem.ts`); each throws `TypeError` for a wrong type and `RangeError` for a wrong value,
 * naming the field and the value.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "./dtypes.ts";
import { checkKVScale } from "./kv8.ts";
import { describe } from "./field_checks.ts";
import type { DecodeInput, Problem } from "./problem.ts";

function checkArray(
  name: string,
  value: unknown,
  ctor:
    | typeof Float32Array
    | typeof Uint16Array
    | typeof Int8Array
    | typeof Uint8Array,
  expected: number,
  what: string,
): void {
  if (!(value instanceof ctor)) {
    throw new TypeError(`${name} must be a ${ctor.name}${what}: got ${describe(value)}`);
  }
  if (value.length !== expected) {
    throw new RangeError(`${name} must have ${expected} elements: got ${value.length}`);
  }
}

/**
 * Checks `q`, `k`, `v`, `kScale` / `vScale` and `scale` of an input against its problem `p`
 * (`validateShape` of the input); with `vFromK`, that `v` and `vScale` are absent.
 *
 * @example
 * ```ts
 * import { checkInputData } from "./input_checks.ts";
 * import { validateShape } from "./problem.ts";
 * const input = {
 *   q: new Float32Array(8), k: new Float32Array(16), v: new Float32Array(15),
 *   seqLens: [2], numHeads: 1, numKVHeads: 1, headDim: 8,
 * };
 * try {
 *   checkInputData(input, validateShape(input));
 * } catch (e) {
 *   console.log((e as Error).message); // v must have 16 elements: got 15
 * }
 * ```
 */
export function checkInputData(input: DecodeInput, p: Problem): void {
  if (p.vFromK && input.v !== undefined) {
    throw new TypeError(
      `v must be absent with vFromK (V is the first headDimV dims of k's rows): got ${
        describe(input.v)
      }`,
    );
  }
  const qElems = p.totalQueries * p.numHeads * p.headDim;
  checkArray("q", input.q, Float32Array, qElems, "");
  const kvElems = p.totalTokens * p.numKVHeads * p.headDim;
  const dtype = KV_DTYPE_INFO[p.kvDtype];
  const ctor = dtype.HostArray;
  const note = !dtype.packed
    ? ' (kvDtype "f32")'
    : ` of ${dtype.scaled ? "codes" : "bit patterns"} (kvDtype "${p.kvDtype}")`;
  checkArray("k", input.k, ctor, kvElems, note);
  if (!p.vFromK) {
    checkArray("v", input.v, ctor, p.totalTokens * p.numKVHeads * p.headDimV, note);
  }
  for (const name of ["kScale", "vScale"] as const) {
    const value = input[name];
    if (value === undefined) continue;
    if (p.vFromK && name === "vScale") {
      throw new TypeError(
        `vScale must be absent with vFromK (V is read from K's rows, with kScale): got ${
          describe(value)
        }`,
      );
    }
    if (!dtype.scaled) {
      throw new RangeError(
        `${name} applies to the 8-bit kvDtypes only: got ${
          describe(value)
        } for kvDtype "${p.kvDtype}"`,
      );
    }
    checkKVScale(name, value, p.totalTokens * p.numKVHeads, kvElems);
  }
  if (input.scale !== undefined) {
    if (typeof input.scale !== "number") {
      throw new TypeError(`scale must be a number: got ${describe(input.scale)}`);
    }
    if (!Number.isFinite(input.scale) || input.scale <= 0) {
      throw new RangeError(`scale must be a finite number > 0: got ${input.scale}`);
    }
  }
}
