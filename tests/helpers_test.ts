/**
 * The test helpers themselves: the PRNG is deterministic, inputs have the right shapes, and the
 * reference check fails on wrong answers (so passing tests mean something).
 */

import assert from "node:assert/strict";
import { referenceAttention } from "../mod.ts";
import {
  assertMatchesReference,
  assertNoPoison,
  type CaseSpec,
  makeInput,
  maxAbsError,
  relativeL2Error,
  seededRng,
} from "./helpers.ts";

const SPEC: CaseSpec = {
  seqLens: [40, 3],
  numHeads: 4,
  numKVHeads: 2,
  headDim: 16,
  qLen: 2,
  seed: 3,
};

/** The reference output as a float32 result. */
function exact(spec: CaseSpec) {
  const input = makeInput(spec);
  const ref = referenceAttention(input);
  return { input, out: Float32Array.from(ref.out), lse: Float32Array.from(ref.lse) };
}

Deno.test("seededRng is deterministic and uniform-ish in [0, 1)", () => {
  const a = seededRng(42);
  const b = seededRng(42);
  const c = seededRng(43);
  const xs = Array.from({ length: 10_000 }, a);
  assert.deepStrictEqual(Array.from({ length: 10_000 }, b), xs);
  assert.notDeepStrictEqual(Array.from({ length: 10_000 }, c), xs);
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.02, `mean ${mean}`);
});

Deno.test("makeInput builds deterministic inputs of the right shapes and dtypes", () => {
  const a = makeInput(SPEC);
  assert.deepStrictEqual(makeInput(SPEC), a);
  assert.equal(a.q.length, 2 * 2 * 4 * 16);
  assert.equal(a.k.length, 43 * 2 * 16);
  assert.ok(a.k instanceof Float32Array && a.v instanceof Float32Array);
  const h = makeInput({ ...SPEC, kvDtype: "bf16" });
  assert.ok(h.k instanceof Uint16Array && h.v instanceof Uint16Array);
  assert.equal(h.kvDtype, "bf16");
  assert.notDeepStrictEqual(makeInput({ ...SPEC, seed: 4 }).q, a.q);
});

Deno.test("the reference check accepts the reference itself", () => {
  const { input, out, lse } = exact(SPEC);
  const errors = assertMatchesReference(input, { out, lse });
  assert.ok(errors.outError < 1e-7 && errors.lseError < 1e-6);
});

Deno.test("the reference check rejects wrong answers", () => {
  const { input, out, lse } = exact(SPEC);
  const wrong: [string, Float32Array, Float32Array][] = [];
  const nan = out.slice();
  nan[5] = NaN;
  wrong.push(["a NaN", nan, lse]);
  const zeroRow = out.slice();
  zeroRow.fill(0, 16, 32);
  wrong.push(["a zeroed row", zeroRow, lse]);
  const shifted = lse.slice();
  shifted[3] += 1e-3;
  wrong.push(["an LSE off by 1e-3", out, shifted]);
  const scaled = out.map((x) => x * (1 + 1e-4));
  wrong.push(["out off by 1e-4", scaled, lse]);
  wrong.push(["a short out", out.subarray(1), lse]);
  // The answer for a context one token shorter.
  const shorter = exact({ ...SPEC, seqLens: [39, 3] });
  wrong.push(["a dropped token", out, Float32Array.from([...shorter.lse])]);
  for (const [what, o, l] of wrong) {
    assert.throws(
      () => assertMatchesReference(input, { out: o, lse: l }),
      assert.AssertionError,
      what,
    );
  }
});

Deno.test("metrics and the poison check", () => {
  assert.equal(relativeL2Error([3, 4], [3, 4]), 0);
  assert.ok(Math.abs(relativeL2Error([3, 5], [3, 4]) - 0.2) < 1e-12);
  assert.ok(Number.isNaN(relativeL2Error([1], [1, 2])));
  assert.equal(maxAbsError([1, 2, 3], [1, 2.5, 2]), 1);
  assert.ok(Number.isNaN(maxAbsError([NaN], [0])));
  assertNoPoison("x", new Float32Array([0, -1, 2]), 3);
  assert.throws(() => assertNoPoison("x", new Float32Array([0, Infinity]), 2));
  assert.throws(() => assertNoPoison("x", new Float32Array([0, NaN]), 2));
  assert.throws(() => assertNoPoison("x", [0, 1], 2));
  assert.throws(() => assertNoPoison("x", new Float32Array(2), 3));
});
