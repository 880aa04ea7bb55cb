/**
 * Error metrics of a decode result against the float64 reference.
 *
 * @module
 */

/**
 * Relative L2 error `|got - want| / |want|`; NaN anywhere in `got` gives NaN.
 *
 * @example
 * ```ts
 * import { relativeL2 } from "@lean/attention/cli";
 * console.log(relativeL2(new Float32Array([1, 1]), new Float64Array([1, 1]))); // 0
 * ```
 */
export function relativeL2(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) {
    throw new RangeError(`got must have the reference's length ${want.length}: got ${got.length}`);
  }
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    const d = got[i] - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/**
 * Largest absolute difference; NaN anywhere in `got` gives NaN.
 *
 * @example
 * ```ts
 * import { maxAbsError } from "@lean/attention/cli";
 * console.log(maxAbsError(new Float32Array([1, 2.5]), new Float64Array([1, 2]))); // 0.5
 * ```
 */
export function maxAbsError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) {
    throw new RangeError(`got must have the reference's length ${want.length}: got ${got.length}`);
  }
  let max = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= max)) max = d; // NaN sticks
  }
  return max;
}
