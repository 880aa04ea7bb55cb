/**
 * Fuzzing with fast-check, over 500 cases per run on the CPU plus a GPU share: random shapes,
 * lengths, dtypes, strategies, batch invariance and KV binding splits against the float64
 * reference, and random bad inputs that must throw `TypeError`/`RangeError` with a sentence-case
 * message naming the field and the value, leaving the decoder usable. Failures shrink to a
 * minimal case (checked on a planted bug). `FC_SEED=random` explores other cases.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { createDecoder, type DecodeInput, type Decoder, KV_DTYPES, STRATEGIES } from "../mod.ts";
import { gpuTest, propertyParams } from "./backends.ts";

import {
  assertMatchesReference,
  type CaseSpec,
  describeSpec,
  fcParams,
  makeInput,
} from "./helpers.ts";
import { F16_D8, F16_MHA, F32_GQA } from "./kernel_set.ts";

/** Multiply-adds a CPU case may cost. */
const BUDGET = 250_000;

const cpuFamily = fc.record({
  kv: fc.integer({ min: 1, max: 4 }),
  group: fc.constantFrom(1, 2, 4),
  headDim: fc.integer({ min: 1, max: 32 }).map((n) => 8 * n),
  qLen: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 16 })),
  kvDtype: fc.constantFrom(...KV_DTYPES),
}).map((f) => ({
  numHeads: f.kv * f.group,
  numKVHeads: f.kv,
  headDim: f.headDim,
  qLen: f.qLen,
  kvDtype: f.kvDtype,
}));

/** GPU shapes: the kernel set's families with one query row position (no new compiles). */
const GPU_FAMILIES = [F32_GQA, F16_MHA, F16_D8];

function caseArb(gpu: boolean): fc.Arbitrary<CaseSpec> {
  const family = gpu ? fc.constantFrom(...GPU_FAMILIES) : cpuFamily;
  return fc.record({
    family,
    extra: fc.array(
      fc.oneof(
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: 300 }),
        fc.integer({ min: 0, max: 3000 }),
      ),
      { minLength: 1, maxLength: 7 },
    ),
    strategy: fc.constantFrom(...STRATEGIES),
    scale: fc.option(fc.double({ min: 0.01, max: 1, noNaN: true }), { nil: undefined }),
    qAmplitude: fc.double({ min: 0.1, max: 4, noNaN: true }),
    seed: fc.integer({ min: 0, max: 0x7fffffff }),
  }).map((r) => {
    const perToken = r.family.numHeads * r.family.qLen * r.family.headDim;
    const tokens = r.extra.reduce((a, b) => a + b, 0) + r.family.qLen * r.extra.length;
    const shrink = gpu ? 1 : Math.min(1, BUDGET / (perToken * tokens));
    return {
      ...r.family,
      seqLens: r.extra.map((e) => r.family.qLen + Math.floor(e * shrink)),
      strategy: r.strategy,
      scale: r.scale,
      qAmplitude: r.qAmplitude,
      seed: r.seed,
    };
  });
}

/** Decoder variants: plain, batch-invariant, KV split over 16 KiB bindings, and both. */
const VARIANTS: readonly { batchInvariant?: boolean; maxBindingBytes?: number }[] = [
  {},
  { batchInvariant: true },
  { maxBindingBytes: 1 << 14 },
  { batchInvariant: true, maxBindingBytes: 1 << 14 },
];

async function withDecoders<T>(
  open: (options: object) => Promise<Decoder>,
  fn: (decoders: Decoder[]) => Promise<T>,
): Promise<T> {
  const decoders: Decoder[] = [];
  try {
    for (const v of VARIANTS) decoders.push(await open(v));
    return await fn(decoders);
  } finally {
    for (const d of decoders) await d.dispose();
  }
}

/** Binding-split variants need a binding that holds one tile of rows. */
function fits(spec: CaseSpec, variant: number): boolean {
  if (VARIANTS[variant].maxBindingBytes === undefined) return true;
  const bytes = spec.numKVHeads * spec.headDim * (spec.kvDtype === "f32" ? 4 : 2);
  return bytes * 64 <= VARIANTS[variant].maxBindingBytes!;
}

Deno.test("fuzz: 400 random valid cases on the CPU match the reference", async () => {
  await withDecoders((o) => createDecoder({ ...o, backend: "cpu" }), async (decoders) => {
    await fc.assert(
      fc.asyncProperty(caseArb(false), fc.nat(3), async (spec, v) => {
        const variant = fits(spec, v) ? v : 1;
        const input = makeInput(spec);
        const label = `${describeSpec(spec)} ${JSON.stringify(VARIANTS[variant])}`;
        assertMatchesReference(input, await decoders[variant].decode(input), label);
      }),
      fcParams(400),
    );
  });
});

gpuTest("fuzz: random valid cases on GPU kernel shapes match the reference", async (backend) => {
  const b = backend.name;
  await withDecoders((o) => backend.open(o), async (decoders) => {
    await fc.assert(
      fc.asyncProperty(caseArb(true), fc.nat(3), async (spec, v) => {
        const variant = fits(spec, v) ? v : 0;
        const input = makeInput(spec);
        const label = `${describeSpec(spec)} ${JSON.stringify(VARIANTS[variant])}`;
        assertMatchesReference(input, await decoders[variant].decode(input), label);
      }),
      propertyParams(b, 0, 12),
    );
  });
});

/** One corruption of a valid input: the field it breaks and the error class it must raise. */
interface Corruption {
  field: string;
  apply: (input: DecodeInput) => Record<string, unknown>;
  error: typeof TypeError | typeof RangeError;
}

const notNumbers = ["8", null, true, [8], {}, 8n] as const;

function corruptionArb(): fc.Arbitrary<Corruption> {
  const numberField = (field: "numHeads" | "numKVHeads" | "headDim" | "qLen") =>
    fc.oneof(
      fc.constantFrom(...notNumbers).map((bad) => ({
        field,
        apply: (i: DecodeInput) => ({ ...i, [field]: bad }),
        error: TypeError,
      })),
      fc.constantFrom(0, -1, 2.5, NaN, Infinity, -Infinity, 1e12).map((bad) => ({
        field,
        apply: (i: DecodeInput) => ({ ...i, [field]: bad }),
        error: RangeError,
      })),
    );
  const arrayField = (field: "q" | "k" | "v") =>
    fc.oneof(
      fc.constantFrom("Float64Array", "Array", "null", "Int16Array", "string", "other16").map(
        (kind) => ({
          field,
          apply: (i: DecodeInput) => {
            const a = i[field]!;
            const wrong = kind === "Float64Array"
              ? Float64Array.from(a)
              : kind === "Array"
              ? Array.from(a)
              : kind === "null"
              ? null
              : kind === "Int16Array"
              ? new Int16Array(a.length)
              : kind === "string"
              ? "data"
              : a instanceof Float32Array
              ? (field === "q" ? new Uint16Array(a.length) : new Uint16Array(a.length))
              : new Float32Array(a.length);
            return { ...i, [field]: wrong };
          },
          error: TypeError,
        }),
      ),
      fc.integer({ min: -5, max: 5 }).filter((d) => d !== 0).map((d) => ({
        field,
        apply: (i: DecodeInput) => {
          const a = i[field]!;
          const n = Math.max(0, a.length + d);
          const resized = new (a.constructor as Float32ArrayConstructor)(n);
          return { ...i, [field]: resized };
        },
        error: RangeError,
      })),
    );
  return fc.oneof(
    numberField("numHeads"),
    numberField("numKVHeads"),
    numberField("headDim"),
    numberField("qLen"),
    fc.constantFrom(7, 12, 264, 1000).map((bad) => ({
      field: "headDim",
      apply: (i: DecodeInput) => ({ ...i, headDim: bad }),
      error: RangeError,
    })),
    fc.constant({
      field: "qLen",
      apply: (i: DecodeInput) => ({ ...i, qLen: 17 }),
      error: RangeError,
    }),
    fc.constantFrom(3, 5, 7).map((bad) => ({
      field: "numKVHeads",
      apply: (i: DecodeInput) => ({ ...i, numHeads: 8, numKVHeads: bad }),
      error: RangeError,
    })),
    arrayField("q"),
    arrayField("k"),
    arrayField("v"),
    fc.oneof(
      fc.constantFrom(0, -1, 1.5, NaN, Infinity, 2 ** 33).map((bad) => ({
        field: "seqLens",
        apply: (i: DecodeInput) => ({ ...i, seqLens: [...Array.from(i.seqLens), bad] }),
        error: RangeError,
      })),
      fc.constantFrom("3", null, undefined, [1]).map((bad) => ({
        field: "seqLens",
        apply: (i: DecodeInput) => ({ ...i, seqLens: [bad, ...Array.from(i.seqLens)] }),
        error: TypeError,
      })),
      fc.constantFrom(5, "abc", null, true).map((bad) => ({
        field: "seqLens",
        apply: (i: DecodeInput) => ({ ...i, seqLens: bad }),
        error: TypeError,
      })),
      fc.constant({
        field: "seqLens",
        apply: (i: DecodeInput) => ({ ...i, seqLens: [] }),
        error: RangeError,
      }),
    ),
    fc.oneof(
      fc.constantFrom("fp16", "f64", "").map((bad) => ({
        field: "kvDtype",
        apply: (i: DecodeInput) => ({ ...i, kvDtype: bad }),
        error: RangeError,
      })),
      fc.constantFrom(16, true, {}).map((bad) => ({
        field: "kvDtype",
        apply: (i: DecodeInput) => ({ ...i, kvDtype: bad }),
        error: TypeError,
      })),
    ),
    fc.oneof(
      fc.constantFrom(0, -0.5, NaN, Infinity).map((bad) => ({
        field: "scale",
        apply: (i: DecodeInput) => ({ ...i, scale: bad }),
        error: RangeError,
      })),
      fc.constantFrom("0.1", null, [0.1]).map((bad) => ({
        field: "scale",
        apply: (i: DecodeInput) => ({ ...i, scale: bad }),
        error: TypeError,
      })),
    ),
    fc.oneof(
      fc.constantFrom("fast", "LEAN", "").map((bad) => ({
        field: "strategy",
        apply: (i: DecodeInput) => ({ ...i, strategy: bad }),
        error: RangeError,
      })),
      fc.constantFrom(1, {}, false).map((bad) => ({
        field: "strategy",
        apply: (i: DecodeInput) => ({ ...i, strategy: bad }),
        error: TypeError,
      })),
    ),
  ) as fc.Arbitrary<Corruption>;
}

/** Decodes a corrupted input: it must throw the expected class with a well-formed message. */
async function checkRejected(decoder: Decoder, valid: DecodeInput, c: Corruption): Promise<void> {
  const bad = c.apply(valid) as unknown as DecodeInput;
  let error: unknown;
  try {
    await decoder.decode(bad);
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof c.error, `${c.field}: expected ${c.error.name}, got ${error}`);
  const message = (error as Error).message;
  // Some corruptions of one field are reported through a related one (numHeads vs numKVHeads,
  // seqLens vs qLen, q's length vs the shape): the message names one of the shape's fields.
  const named = [c.field, "numHeads", "numKVHeads", "seqLens", "qLen", "q", "k", "v"];
  assert.ok(
    named.some((f) => new RegExp(`\\b${f}\\b`).test(message)),
    `names no field: ${message}`,
  );
  assert.ok(/: got \S/.test(message), `names no value: ${message}`);
  assert.ok(/^[a-z][A-Za-z]*(\[\d+\])? /.test(message), `not a sentence on the field: ${message}`);
  assert.ok(!/\.$/.test(message) && !/\n/.test(message), `sentence-case, one line: ${message}`);
}

async function fuzzBadInputs(decoder: Decoder, runs: ReturnType<typeof fcParams>, gpu: boolean) {
  await fc.assert(
    fc.asyncProperty(caseArb(gpu), corruptionArb(), async (spec, c) => {
      const valid = makeInput({
        ...spec,
        seqLens: spec.seqLens.slice(0, 3).map((l) => Math.min(l, 400)),
      });
      await checkRejected(decoder, valid, c);
      // The decoder is still usable.
      assertMatchesReference(valid, await decoder.decode(valid), describeSpec(spec));
    }),
    runs,
  );
}

Deno.test("fuzz: 200 random bad inputs are rejected clearly on the CPU", async () => {
  const decoder = await createDecoder({ backend: "cpu" });
  try {
    await fuzzBadInputs(decoder, fcParams(200), false);
  } finally {
    await decoder.dispose();
  }
});

gpuTest("fuzz: bad inputs on GPU decoders leave them usable", async (backend) => {
  const decoder = await backend.open();
  try {
    await fuzzBadInputs(decoder, propertyParams(backend.name, 0, 20), true);
  } finally {
    await decoder.dispose();
  }
});

Deno.test("fuzz failures shrink to a minimal case (a planted bug)", async () => {
  const decoder = await createDecoder({ backend: "cpu" });
  try {
    // A wrapper that breaks every sequence longer than 100 tokens beyond a 2-token prefix.
    const buggy = async (input: DecodeInput) => {
      const r = await decoder.decode(input);
      const lens = Array.from(input.seqLens);
      if (lens.some((l) => l > 100)) r.out[0] += 1;
      return r;
    };
    const details = await fc.check(
      fc.asyncProperty(caseArb(false), async (spec) => {
        const input = makeInput(spec);
        assertMatchesReference(input, await buggy(input));
      }),
      fcParams(300),
    );
    assert.ok(details.failed, "the planted bug was found");
    const [minimal] = details.counterexample as [CaseSpec];
    // Shrunk to one sequence just over the threshold, the smallest head dim and heads.
    assert.equal(Math.max(...minimal.seqLens), 101, describeSpec(minimal));
    assert.ok(minimal.seqLens.length <= 2, describeSpec(minimal));
    assert.equal(minimal.headDim, 8);
    assert.equal(minimal.numKVHeads, 1);
  } finally {
    await decoder.dispose();
  }
});
