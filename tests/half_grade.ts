/**
 * The f16-grade check of the matrix-unit kernel's results (queries and weights rounded to f16, sums
 * in f32), shared by its emulated tests on lavapipe: no poisoned output left, and the output and
 * LSE within f16 tolerance of the float64 reference.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type DecodeInput, referenceAttention } from "../mod.ts";
import { assertNoPoison, maxAbsError, relativeL2Error } from "./helpers.ts";

/** f16 operands' tolerance (queries and weights rounded to f16), as the hardware test's. */
export const HALF_TOLERANCE = 2e-3;

/**
 * Asserts a result against the float64 reference at f16 grade: every output written, relative
 * L2 error of `out` below {@linkcode HALF_TOLERANCE}, and the LSE's error below it too, scaled
 * by a quarter of the largest |LSE| (f16 queries' error is relative: large scores move the LSE in
 * proportion, 5e-4 of it). Empty rows' -Infinity LSE compare as 0.
 */
export function assertHalfGrade(
  what: string,
  input: DecodeInput,
  got: { out: Float32Array; lse: Float32Array },
): void {
  const ref = referenceAttention(input);
  assertNoPoison(`${what}: out`, got.out, ref.out.length);
  const finite = (a: ArrayLike<number>) => Array.from(a, (x) => (x === -Infinity ? 0 : x));
  const out = relativeL2Error(got.out, ref.out);
  const lse = maxAbsError(finite(got.lse), finite(ref.lse));
  const lseSize = Math.max(1, ...finite(ref.lse).map(Math.abs));
  assert.ok(out < HALF_TOLERANCE, `out ${what}: relative L2 error ${out}`);
  assert.ok(lse < HALF_TOLERANCE * Math.max(1, lseSize / 4), `lse ${what}: ${lse}`);
}
