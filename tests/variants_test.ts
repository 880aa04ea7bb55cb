/**
 * The attention variants (sliding window, logit soft-cap, ALiBi, sinks): the float64 reference
 * follows their definitions, every backend matches the reference for each variant and their
 * combinations (the CPU on the whole shape space, a software adapter on the variants' kernel
 * family with every flag on), sinks are added exactly once whatever the split, and bad values
 * are rejected naming the field.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  createDecoder,
  type DecodeInput,
  KV_DTYPES,
  referenceAttention,
  STRATEGIES,
  type VariantOptions,
} from "../mod.ts";
import { kvRowBytes } from "../plan.ts";
import { backendTest, propertyParams } from "./backends.ts";
import {
  assertMatchesReference,
  type CaseSpec,
  describeSpec,
  fcParams,
  makeInput,
  maxAbsError,
  randomFloats,
  relativeL2Error,
  seededRng,
} from "./helpers.ts";
import { VARIANTS_GQA_Q2 } from "./kernel_set.ts";
import { definition, variantArb as anyVariantArb } from "./combinations.ts";

/** A variant with windows up to 700 tokens (beyond the contexts drawn here). */
const variantArb = (numHeads: number, all = false) => anyVariantArb(numHeads, all, 700);

/** The case with its variant fields. */
function withVariant(spec: CaseSpec, variant: VariantOptions): DecodeInput {
  return { ...makeInput(spec), ...variant };
}

function describeVariant(v: VariantOptions): string {
  return JSON.stringify({
    ...v,
    alibiSlopes: v.alibiSlopes && Array.from(v.alibiSlopes),
    sinks: v.sinks && Array.from(v.sinks),
  });
}

const smallCaseArb = fc.record({
  heads: fc.constantFrom([1, 1], [2, 1], [4, 2], [3, 3]),
  headDim: fc.constantFrom(8, 16),
  qLen: fc.integer({ min: 1, max: 4 }),
  extras: fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 1, maxLength: 3 }),
  kvDtype: fc.constantFrom(...KV_DTYPES),
  scale: fc.option(fc.double({ min: 0.05, max: 2, noNaN: true }), { nil: undefined }),
  seed: fc.integer({ min: 0, max: 0x7fffffff }),
}).chain((c) => fc.tuple(fc.constant(c), variantArb(c.heads[0])));

Deno.test("the reference follows each variant's definition, alone and combined", () => {
  fc.assert(
    fc.property(smallCaseArb, ([c, variant]) => {
      const input = withVariant({
        seqLens: c.extras.map((e) => e + c.qLen),
        numHeads: c.heads[0],
        numKVHeads: c.heads[1],
        headDim: c.headDim,
        qLen: c.qLen,
        kvDtype: c.kvDtype,
        scale: c.scale,
        seed: c.seed,
        qAmplitude: 3,
      }, variant);
      const want = definition(input);
      const got = referenceAttention(input);
      assert.ok(maxAbsError(got.out, want.out) < 1e-12, describeVariant(variant));
      assert.ok(maxAbsError(got.lse, want.lse) < 1e-12, describeVariant(variant));
    }),
    fcParams(300),
  );
});

Deno.test("the reference: a window of W over the last token is attention over the last W tokens", () => {
  const base = makeInput({ seqLens: [50], numHeads: 2, numKVHeads: 1, headDim: 8, seed: 3 });
  const W = 13;
  const row = 8;
  const cut: DecodeInput = {
    ...base,
    seqLens: [W],
    k: (base.k as Float32Array).slice((50 - W) * row),
    v: (base.v as Float32Array).slice((50 - W) * row),
  };
  const a = referenceAttention({ ...base, slidingWindow: W });
  const b = referenceAttention(cut);
  assert.deepEqual(a, b);
  // A window as long as the context changes nothing.
  assert.deepEqual(referenceAttention({ ...base, slidingWindow: 50 }), referenceAttention(base));
});

/**
 * Tiny geometries force splits, merges and KV windows on short contexts. A KV binding is sized in
 * tiles of the case's K rows (`bindingTiles`), so that it always holds one tile: a fixed byte
 * size (16 KiB) was too small for 64-token tiles of 3 heads x 64 dims in f32, which the decoder
 * rightly refuses (seed 1022175729, session 42).
 */
const decoderOptionsArb = fc.record({
  grid: fc.constantFrom(1, 3, 7, 16, 40),
  tileTokens: fc.constantFrom(16, 32, 64),
  batchInvariant: fc.boolean(),
  bindingTiles: fc.option(fc.constantFrom(1, 2, 5), { nil: undefined }),
});

Deno.test("CPU decode matches the reference for every variant combination [cpu]", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        heads: fc.constantFrom([1, 1], [4, 1], [8, 2], [3, 3]),
        headDim: fc.constantFrom(8, 16, 64),
        qLen: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 16 })),
        extras: fc.array(fc.integer({ min: 0, max: 600 }), { minLength: 1, maxLength: 4 }),
        kvDtype: fc.constantFrom(...KV_DTYPES),
        strategy: fc.constantFrom(...STRATEGIES),
        seed: fc.integer({ min: 0, max: 0x7fffffff }),
        options: decoderOptionsArb,
      }).chain((c) => fc.tuple(fc.constant(c), variantArb(c.heads[0]))),
      async ([c, variant]) => {
        const spec: CaseSpec = {
          seqLens: c.extras.map((e) => e + c.qLen),
          numHeads: c.heads[0],
          numKVHeads: c.heads[1],
          headDim: c.headDim,
          qLen: c.qLen,
          kvDtype: c.kvDtype,
          strategy: c.strategy,
          seed: c.seed,
          qAmplitude: 2,
        };
        const input = withVariant(spec, variant);
        const { bindingTiles, ...options } = c.options;
        const maxBindingBytes = bindingTiles &&
          bindingTiles * options.tileTokens * kvRowBytes({ ...spec, kvDtype: c.kvDtype });
        await using decoder = await createDecoder({ backend: "cpu", ...options, maxBindingBytes });
        assertMatchesReference(
          input,
          await decoder.decode(input),
          `${describeSpec(spec)} ${describeVariant(variant)} ${JSON.stringify(c.options)}`,
        );
      },
    ),
    fcParams(120),
  );
});

backendTest(
  "decode matches the reference with every variant on (the variants' kernel family)",
  async (decoder, backend, context) => {
    const f = VARIANTS_GQA_Q2;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          extras: fc.array(fc.integer({ min: 0, max: 500 }), { minLength: 1, maxLength: 4 }),
          strategy: fc.constantFrom(...STRATEGIES),
          seed: fc.integer({ min: 0, max: 0x7fffffff }),
          variant: variantArb(f.numHeads, true),
        }),
        async (c) => {
          const spec: CaseSpec = {
            seqLens: c.extras.map((e) => e + f.qLen),
            numHeads: f.numHeads,
            numKVHeads: f.numKVHeads,
            headDim: f.headDim,
            qLen: f.qLen,
            kvDtype: f.kvDtype,
            strategy: c.strategy,
            seed: c.seed,
            qAmplitude: 2,
          };
          const input = withVariant(spec, c.variant);
          assertMatchesReference(
            input,
            await decoder.decode(input),
            `${describeSpec(spec)} ${describeVariant(c.variant)}`,
          );
        },
      ),
      propertyParams(backend, 60, 8, context),
    );
  },
  { decoder: { grid: 7, tileTokens: 64 } },
);

/**
 * Sinks, added once: with sink logits `z`, the result is the plain result with `e^z` added to
 * its denominator, `lse' = log(e^lse + e^z)` and `out' = out * e^(lse - lse')`, whatever the
 * strategy and split (a sink added per partial state would count it once per split).
 */
function assertSinkAddedOnce(
  plain: { out: Float32Array; lse: Float32Array },
  sunk: { out: Float32Array; lse: Float32Array },
  sinks: Float32Array,
  input: DecodeInput,
  label: string,
): void {
  const H = input.numHeads;
  const D = input.headDim;
  const wantOut = new Float64Array(plain.out.length);
  const wantLse = new Float64Array(plain.lse.length);
  for (let row = 0; row < plain.lse.length; row++) {
    const z = sinks[row % H];
    const m = Math.max(plain.lse[row], z);
    wantLse[row] = m + Math.log(Math.exp(plain.lse[row] - m) + Math.exp(z - m));
    const f = Math.exp(plain.lse[row] - wantLse[row]);
    for (let d = 0; d < D; d++) wantOut[row * D + d] = plain.out[row * D + d] * f;
  }
  const outError = relativeL2Error(sunk.out, wantOut);
  const lseError = maxAbsError(sunk.lse, wantLse);
  assert.ok(outError < 1e-5, `${label}: out error ${outError}`);
  assert.ok(lseError < 1e-5, `${label}: lse error ${lseError}`);
}

for (const grid of [1, 5, 64]) {
  backendTest(
    `sinks are added exactly once with every strategy (grid ${grid})`,
    async (decoder) => {
      const f = VARIANTS_GQA_Q2;
      for (const strategy of STRATEGIES) {
        const spec: CaseSpec = {
          seqLens: [700, 2, 129],
          numHeads: f.numHeads,
          numKVHeads: f.numKVHeads,
          headDim: f.headDim,
          qLen: f.qLen,
          strategy,
          seed: grid,
        };
        // The family's kernel has every flag on: neutral values leave only the sinks.
        const neutral = {
          slidingWindow: 1e6,
          logitsSoftCap: 1e6,
          alibiSlopes: new Float32Array(f.numHeads),
        };
        const sinks = Float32Array.of(0.5, -3, 4, 1.25);
        const input = makeInput(spec);
        // Sinks of -100 add e^-100 to sums of at least e^-10 or so: nothing in f32.
        const free = await decoder.decode({
          ...input,
          ...neutral,
          sinks: new Float32Array(4).fill(-100),
        });
        const sunk = await decoder.decode({ ...input, ...neutral, sinks });
        assertMatchesReference({ ...input, ...neutral, sinks }, sunk, `${strategy} grid ${grid}`);
        assertSinkAddedOnce(free, sunk, sinks, input, `${strategy} grid ${grid}`);
      }
    },
    { decoder: { grid, tileTokens: 64 } },
  );
}

Deno.test("batch-invariant plans with sinks: a sequence's result is the same in any batch [cpu]", async () => {
  const sinks = Float32Array.of(1, -1, 2, 0);
  const variant = { sinks, slidingWindow: 300, logitsSoftCap: 20 };
  const shape = { numHeads: 4, numKVHeads: 2, headDim: 16, qLen: 2 };
  await using decoder = await createDecoder({ backend: "cpu", grid: 5, batchInvariant: true });
  const alone = withVariant({ ...shape, seqLens: [900], seed: 1 }, variant);
  const a = await decoder.decode(alone);
  const rng = seededRng(9);
  const other = randomFloats(rng, 400 * 2 * 16);
  const batch: DecodeInput = {
    ...alone,
    seqLens: [400, 900],
    q: Float32Array.from([...randomFloats(rng, 2 * 4 * 16), ...alone.q]),
    k: Float32Array.from([...other, ...(alone.k as Float32Array)]),
    v: Float32Array.from([...other, ...(alone.v as Float32Array)]),
  };
  const b = await decoder.decode(batch);
  assert.deepEqual(b.out.subarray(2 * 4 * 16), a.out);
  assert.deepEqual(b.lse.subarray(2 * 4), a.lse);
});
