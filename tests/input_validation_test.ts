/**
 * Bad decode input is rejected with the right class (TypeError for a wrong type, RangeError for a
 * wrong size or value) and a message naming the field and the value, on every backend; the
 * decoder keeps working after every rejection; a disposed decoder rejects every call. Bad decoder
 * and plan options: tests/option_validation_test.ts.
 */

import assert from "node:assert/strict";
import type { DecodeInput } from "../mod.ts";
import { backendTest } from "./backends.ts";
import { assertMatchesReference, makeInput } from "./helpers.ts";
import { type ErrorClass, type Loose, matches, SHAPE, valid } from "./validation.ts";

const u16 = (n: number) => new Uint16Array(n);
const f32 = (n: number) => new Float32Array(n);

interface Case {
  name: string;
  change: Loose;
  error: ErrorClass;
  message: RegExp;
}

const CASES: Case[] = [
  // Wrong types.
  {
    name: "q as an Array",
    change: { q: [0, 1] },
    error: TypeError,
    message: /^q .*Float32Array.*got Array$/,
  },
  {
    name: "q as a Float64Array",
    change: { q: new Float64Array(256) },
    error: TypeError,
    message: /^q must be a Float32Array: got Float64Array$/,
  },
  { name: "q missing", change: { q: undefined }, error: TypeError, message: /^q .*got undefined$/ },
  {
    name: "f16 keys in a Float32Array",
    change: { kvDtype: "f16", k: f32(768), v: u16(768) },
    error: TypeError,
    message: /^k must be a Uint16Array of bit patterns \(kvDtype "f16"\): got Float32Array$/,
  },
  {
    name: "bf16 values in a Float32Array",
    change: { kvDtype: "bf16", k: u16(768), v: f32(768) },
    error: TypeError,
    message: /^v must be a Uint16Array .*"bf16".*got Float32Array$/,
  },
  {
    name: "f32 keys given as a Uint16Array",
    change: { k: u16(768) },
    error: TypeError,
    message: /^k must be a Float32Array \(kvDtype "f32"\): got Uint16Array$/,
  },
  {
    name: "numHeads as a string",
    change: { numHeads: "4" },
    error: TypeError,
    message: /^numHeads must be a number: got "4"$/,
  },
  {
    name: "numKVHeads missing",
    change: { numKVHeads: undefined },
    error: TypeError,
    message: /^numKVHeads must be a number: got undefined$/,
  },
  {
    name: "headDim null",
    change: { headDim: null },
    error: TypeError,
    message: /^headDim must be a number: got null$/,
  },
  {
    name: "qLen as a string",
    change: { qLen: "1" },
    error: TypeError,
    message: /^qLen .*got "1"$/,
  },
  {
    name: "seqLens as a string",
    change: { seqLens: "5,9" },
    error: TypeError,
    message: /^seqLens must be an array of numbers: got "5,9"$/,
  },
  {
    name: "a seqLens entry as a string",
    change: { seqLens: [5, "9", 3, 7] },
    error: TypeError,
    message: /^seqLens\[1\] must be a number: got "9"$/,
  },
  {
    name: "kvDtype as a number",
    change: { kvDtype: 16 },
    error: TypeError,
    message: /^kvDtype .*got 16$/,
  },
  {
    name: "strategy as a boolean",
    change: { strategy: true },
    error: TypeError,
    message: /^strategy .*got true$/,
  },
  {
    name: "scale as a string",
    change: { scale: "0.25" },
    error: TypeError,
    message: /^scale .*got "0.25"$/,
  },
  // Wrong sizes and values.
  {
    name: "q too short",
    change: { q: f32(255) },
    error: RangeError,
    message: /^q must have 256 elements: got 255$/,
  },
  {
    name: "k too long",
    change: { k: f32(769) },
    error: RangeError,
    message: /^k must have 768 elements: got 769$/,
  },
  {
    name: "f16 values too short",
    change: { kvDtype: "f16", k: u16(768), v: u16(700) },
    error: RangeError,
    message: /^v must have 768 elements: got 700$/,
  },
  {
    name: "a fractional context length",
    change: { seqLens: [5, 2.5, 3, 7] },
    error: RangeError,
    message: /^seqLens\[1\] must be 0 or an integer >= qLen \(1\): got 2\.5$/,
  },
  {
    name: "a negative context length",
    change: { seqLens: [-3, 9, 3, 7] },
    error: RangeError,
    message: /^seqLens\[0\] .*got -3$/,
  },
  {
    name: "a NaN context length",
    change: { seqLens: [5, 9, NaN, 7] },
    error: RangeError,
    message: /^seqLens\[2\] .*got NaN$/,
  },
  {
    name: "a context shorter than qLen",
    change: { qLen: 4 },
    error: RangeError,
    message: /^seqLens\[2\] must be 0 or an integer >= qLen \(4\): got 3$/,
  },
  {
    name: "a context shorter than its qLens entry",
    change: { qLens: [1, 1, 4, 1], qLen: undefined },
    error: RangeError,
    message: /^seqLens\[2\] must be 0 or an integer >= qLens\[2\] \(4\): got 3$/,
  },
  {
    name: "qLens as a string",
    change: { qLens: "1", qLen: undefined },
    error: TypeError,
    message: /^qLens must be an array of numbers: got "1"$/,
  },
  {
    name: "a qLens entry as a string",
    change: { qLens: [1, "1", 1, 1], qLen: undefined },
    error: TypeError,
    message: /^qLens\[1\] must be a number: got "1"$/,
  },
  {
    name: "qLens of the wrong length",
    change: { qLens: [1, 1], qLen: undefined },
    error: RangeError,
    message: /^qLens must hold one query length per sequence \(4\): got 2$/,
  },
  {
    name: "a qLens entry 0",
    change: { qLens: [1, 0, 1, 1], qLen: undefined },
    error: RangeError,
    message: /^qLens\[1\] must be an integer from 1 to 16: got 0$/,
  },
  {
    name: "a qLens entry 17",
    change: { qLens: [1, 1, 1, 17], qLen: undefined },
    error: RangeError,
    message: /^qLens\[3\] must be an integer from 1 to 16: got 17$/,
  },
  {
    name: "a qLens entry 1.5",
    change: { qLens: [1.5, 1, 1, 1], qLen: undefined },
    error: RangeError,
    message: /^qLens\[0\] must be an integer from 1 to 16: got 1\.5$/,
  },
  {
    name: "qLens and qLen disagreeing",
    change: { qLen: 1, qLens: [1, 2, 1, 1] },
    error: RangeError,
    message: /^qLens\[1\] must equal qLen \(1\) when both are given: got 2$/,
  },
  {
    name: "headDimV as a string",
    change: { headDimV: "16" },
    error: TypeError,
    message: /^headDimV must be a number: got "16"$/,
  },
  {
    name: "headDimV 12",
    change: { headDimV: 12 },
    error: RangeError,
    message: /^headDimV must be a multiple of 8 from 8 to 576: got 12$/,
  },
  {
    name: "headDimV 584",
    change: { headDimV: 584 },
    error: RangeError,
    message: /^headDimV .*576.*got 584$/,
  },
  {
    name: "values too long for headDimV",
    change: { headDimV: 8 },
    error: RangeError,
    message: /^v must have 384 elements: got 768$/,
  },
  {
    name: "an empty batch",
    change: { seqLens: [] },
    error: RangeError,
    message: /^seqLens must not be empty/,
  },
  {
    name: "heads not divisible",
    change: { numHeads: 6, numKVHeads: 4 },
    error: RangeError,
    message: /^numHeads \(6\) must be a multiple of numKVHeads: got 4$/,
  },
  {
    name: "more KV heads than heads",
    change: { numKVHeads: 8 },
    error: RangeError,
    message: /^numHeads \(4\) must be a multiple of numKVHeads: got 8$/,
  },
  { name: "zero heads", change: { numHeads: 0 }, error: RangeError, message: /^numHeads .*got 0$/ },
  {
    name: "fractional heads",
    change: { numHeads: 2.5 },
    error: RangeError,
    message: /^numHeads .*got 2\.5$/,
  },
  { name: "headDim 0", change: { headDim: 0 }, error: RangeError, message: /^headDim .*got 0$/ },
  {
    name: "headDim 7",
    change: { headDim: 7 },
    error: RangeError,
    message: /^headDim must be a multiple of 8 from 8 to 576: got 7$/,
  },
  { name: "headDim 12", change: { headDim: 12 }, error: RangeError, message: /^headDim .*got 12$/ },
  {
    name: "headDim 584",
    change: { headDim: 584 },
    error: RangeError,
    message: /^headDim .*576.*got 584$/,
  },
  { name: "qLen 0", change: { qLen: 0 }, error: RangeError, message: /^qLen .*got 0$/ },
  { name: "qLen 17", change: { qLen: 17 }, error: RangeError, message: /^qLen .*16.*got 17$/ },
  { name: "qLen 1.5", change: { qLen: 1.5 }, error: RangeError, message: /^qLen .*got 1\.5$/ },
  {
    name: "an unknown kvDtype",
    change: { kvDtype: "f64" },
    error: RangeError,
    message:
      /^kvDtype must be one of "f32", "f16", "bf16", "int8", "fp8e4m3", "fp8e5m2": got "f64"$/,
  },
  {
    name: "an upper-case kvDtype",
    change: { kvDtype: "F16" },
    error: RangeError,
    message: /^kvDtype .*got "F16"$/,
  },
  {
    name: "an unknown strategy",
    change: { strategy: "fast" },
    error: RangeError,
    message: /^strategy must be one of "lean", "split", "single": got "fast"$/,
  },
  { name: "scale 0", change: { scale: 0 }, error: RangeError, message: /^scale .*got 0$/ },
  {
    name: "a negative scale",
    change: { scale: -0.5 },
    error: RangeError,
    message: /^scale .*got -0\.5$/,
  },
  { name: "a NaN scale", change: { scale: NaN }, error: RangeError, message: /^scale .*got NaN$/ },
  {
    name: "an infinite scale",
    change: { scale: Infinity },
    error: RangeError,
    message: /^scale .*got Infinity$/,
  },
];

backendTest("every bad input is rejected and the decoder keeps working", async (decoder) => {
  for (const c of CASES) {
    const bad = { ...valid(), ...c.change } as DecodeInput;
    await assert.rejects(() => decoder.decode(bad), matches(c.error, c.message), c.name);
    const good = valid();
    assertMatchesReference(good, await decoder.decode(good), `after ${c.name}`);
  }
});

backendTest("a non-object input is rejected", async (decoder) => {
  for (const input of [null, undefined, 42, "q"]) {
    await assert.rejects(
      () => decoder.decode(input as unknown as DecodeInput),
      matches(TypeError, /^input must be an object: got /),
    );
  }
  const good = valid();
  assertMatchesReference(good, await decoder.decode(good));
});

backendTest("valid f16 and bf16 inputs pass the same checks", async (decoder) => {
  for (const kvDtype of ["f16", "bf16"] as const) {
    const input = makeInput({ ...SHAPE, kvDtype, seed: 2 });
    assert.ok(input.k instanceof Uint16Array);
    assertMatchesReference(input, await decoder.decode(input), kvDtype);
    const wrong = { ...input, kvDtype: kvDtype === "f16" ? "bf16" : "f16" } as DecodeInput;
    // The other 16-bit dtype is accepted (same storage), but means different numbers.
    const other = await decoder.decode(wrong);
    assertMatchesReference(wrong, other, `${kvDtype} bits read as ${wrong.kvDtype}`);
    assert.notDeepEqual(other.out, (await decoder.decode(input)).out);
  }
});

backendTest("decoder.plan rejects bad shapes synchronously", async (decoder) => {
  assert.throws(() => decoder.plan({ ...SHAPE, headDim: 7 }), matches(RangeError, /^headDim .*7$/));
  assert.throws(
    () => decoder.plan({ ...SHAPE, numHeads: "4" as unknown as number }),
    matches(TypeError, /^numHeads .*"4"$/),
  );
  assert.throws(
    () => decoder.plan(SHAPE, { strategy: "x" as unknown as "lean" }),
    matches(RangeError, /^strategy .*"x"$/),
  );
  const plan = decoder.plan(SHAPE, { strategy: "split" });
  assert.equal(plan.strategy, "split");
  await Promise.resolve();
});

backendTest("a disposed decoder rejects every call", async (decoder) => {
  const input = valid();
  await decoder.decode(input);
  await decoder.dispose();
  await assert.rejects(() => decoder.decode(input), matches(Error, /disposed/));
  assert.throws(() => decoder.plan(SHAPE), matches(Error, /disposed/));
  await decoder.dispose(); // idempotent
  await assert.rejects(() => decoder.decode(input), matches(Error, /createDecoder/));
});
