/**
 * Bad decoder and plan options are rejected with the right class and a message naming the field
 * and the value: `createDecoder` before opening a backend (grids, tiles, backends, non-object
 * options), and `createPlan` (grids, tiles, strategies); good tile options still make working
 * decoders. Bad decode input: tests/input_validation_test.ts.
 */

import assert from "node:assert/strict";
import { createDecoder, createPlan, type DecoderOptions, type PlanOptions } from "../mod.ts";
import { ALL_BACKENDS } from "./backend_names.ts";
import { assertMatchesReference } from "./helpers.ts";
import { type ErrorClass, type Loose, matches, SHAPE, valid } from "./validation.ts";

interface OptionCase {
  name: string;
  options: Loose;
  error: ErrorClass;
  message: RegExp;
}

const OPTION_CASES: OptionCase[] = [
  { name: "grid 0", options: { grid: 0 }, error: RangeError, message: /^grid .*got 0$/ },
  { name: "grid -4", options: { grid: -4 }, error: RangeError, message: /^grid .*got -4$/ },
  { name: "grid 2.5", options: { grid: 2.5 }, error: RangeError, message: /^grid .*got 2\.5$/ },
  { name: "grid NaN", options: { grid: NaN }, error: RangeError, message: /^grid .*got NaN$/ },
  {
    name: "grid as a string",
    options: { grid: "8" },
    error: TypeError,
    message: /^grid must be a number/,
  },
  {
    name: "tileTokens 48",
    options: { tileTokens: 48 },
    error: RangeError,
    message: /^tileTokens must be a power of two from 16 to 256: got 48$/,
  },
  {
    name: "tileTokens 8",
    options: { tileTokens: 8 },
    error: RangeError,
    message: /^tileTokens .*got 8$/,
  },
  {
    name: "tileTokens 512",
    options: { tileTokens: 512 },
    error: RangeError,
    message: /^tileTokens .*got 512$/,
  },
  {
    name: "tileTokens as a string",
    options: { tileTokens: "64" },
    error: TypeError,
    message: /^tileTokens must be a number/,
  },
  {
    name: "workgroupSize 48",
    options: { workgroupSize: 48 },
    error: RangeError,
    message: /^workgroupSize .*got 48$/,
  },
  {
    name: "workgroupSize 512",
    options: { workgroupSize: 512 },
    error: RangeError,
    message: /^workgroupSize .*got 512$/,
  },
];

Deno.test("createDecoder rejects bad grid and tile options before opening a backend", async () => {
  for (const backend of [...ALL_BACKENDS, "auto"]) {
    for (const c of OPTION_CASES) {
      const options = { ...c.options, backend } as DecoderOptions;
      await assert.rejects(
        () => createDecoder(options),
        matches(c.error, c.message),
        `${c.name} (${backend})`,
      );
    }
  }
});

Deno.test("createDecoder rejects unknown backends and non-object options", async () => {
  await assert.rejects(
    () => createDecoder({ backend: "metal" as "cpu" }),
    matches(RangeError, /^backend must be one of "auto", "cpu", "webgpu", "dawn": got "metal"$/),
  );
  await assert.rejects(
    () => createDecoder({ backend: "CPU" as "cpu" }),
    matches(RangeError, /^backend .*got "CPU"$/),
  );
  await assert.rejects(
    () => createDecoder({ backend: 3 as unknown as "cpu" }),
    matches(TypeError, /^backend must be a string: got number$/),
  );
  await assert.rejects(
    () => createDecoder(null as unknown as DecoderOptions),
    matches(TypeError, /^options must be an object: got null$/),
  );
  await assert.rejects(
    () => createDecoder("cpu" as unknown as DecoderOptions),
    matches(TypeError, /^options must be an object: got string$/),
  );
});

Deno.test("good tile options still produce working decoders", async () => {
  const decoder = await createDecoder({
    backend: "cpu",
    grid: 5,
    tileTokens: 32,
    workgroupSize: 16,
  });
  try {
    assert.equal(decoder.profile.grid, 5);
    const plan = decoder.plan(SHAPE);
    assert.equal(plan.tiles.tileTokens, 32);
    assert.equal(plan.tiles.workgroupSize, 16);
    const input = valid();
    assertMatchesReference(input, await decoder.decode(input));
  } finally {
    await decoder.dispose();
  }
});

Deno.test("createPlan rejects bad grids, tiles and strategies", () => {
  const cases: [Loose, ErrorClass, RegExp][] = [
    [{}, TypeError, /^grid must be a number/],
    [{ grid: "8" }, TypeError, /^grid must be a number/],
    [{ grid: 0 }, RangeError, /^grid must be a positive integer: got 0$/],
    [{ grid: 1.5 }, RangeError, /^grid .*got 1\.5$/],
    [{ grid: 8, tileTokens: 100 }, RangeError, /^tileTokens .*got 100$/],
    [{ grid: 8, workgroupSize: 8 }, RangeError, /^workgroupSize .*got 8$/],
    [{ grid: 8, workgroupSize: 512 }, RangeError, /^workgroupSize .*got 512$/],
    [{ grid: 8, strategy: "greedy" }, RangeError, /^strategy .*got "greedy"$/],
    [{ grid: 8, strategy: 0 }, TypeError, /^strategy must be a string: got 0$/],
  ];
  for (const [options, cls, message] of cases) {
    assert.throws(
      () => createPlan(SHAPE, options as PlanOptions),
      matches(cls, message),
      JSON.stringify(options),
    );
  }
  assert.throws(
    () => createPlan({ ...SHAPE, seqLens: [1, 0], qLen: 2 }, { grid: 8 }),
    matches(RangeError, /^seqLens\[0\] must be 0 or an integer >= qLen \(2\): got 1$/),
  );
});
