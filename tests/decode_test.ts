/**
 * Property: on random shapes, dtypes, strategies, scales and plan geometries, every backend agrees
 * with the float64 reference within the tolerances.
 */

import fc from "fast-check";
import { KV_DTYPES, STRATEGIES } from "../mod.ts";
import { backendTest, propertyParams } from "./backends.ts";
import { assertMatchesReference, type CaseSpec, describeSpec, makeInput } from "./helpers.ts";
import { KERNEL_FAMILIES } from "./kernel_set.ts";

/** Rough multiply-adds of one case; cases above the budget get shorter contexts. */
const WORK_BUDGET = 1_500_000;

const headDimArb = fc.oneof(
  fc.constantFrom(8, 64, 80, 96, 128, 256),
  fc.integer({ min: 1, max: 32 }).map((n) => 8 * n),
);

/** MHA, GQA with groups of 4, and MQA. */
const headsArb = fc.oneof(
  fc.integer({ min: 1, max: 4 }).map((kv) => ({ numHeads: kv, numKVHeads: kv })),
  fc.integer({ min: 1, max: 2 }).map((kv) => ({ numHeads: 4 * kv, numKVHeads: kv })),
  fc.integer({ min: 1, max: 8 }).map((h) => ({ numHeads: h, numKVHeads: 1 })),
);

/** Context tokens beyond `qLen`: tiny, around tile multiples, and long. */
const extraTokensArb = fc.oneof(
  fc.integer({ min: 0, max: 4 }),
  fc.tuple(fc.integer({ min: 1, max: 12 }), fc.integer({ min: -2, max: 2 })).map(([t, d]) =>
    Math.max(0, 64 * t + d)
  ),
  fc.integer({ min: 0, max: 400 }),
  fc.integer({ min: 0, max: 2500 }),
);

function fitToBudget(spec: CaseSpec, extras: number[]): CaseSpec {
  const qLen = spec.qLen ?? 1;
  const perToken = spec.numHeads * qLen * spec.headDim;
  const tokens = extras.reduce((a, b) => a + b, 0) + qLen * extras.length;
  const factor = Math.min(1, WORK_BUDGET / (perToken * tokens));
  return { ...spec, seqLens: extras.map((e) => qLen + Math.floor(e * factor)) };
}

/**
 * Shape families of a software adapter: every new (head dim, dtype, rows) compiles a kernel, which
 * takes seconds to minutes there, so GPU properties draw shapes from the fixed kernel set (lengths,
 * strategies, scales and values stay random). The CPU and hardware GPUs run the full shape space.
 */
const SET_FAMILIES = KERNEL_FAMILIES.map((f) => ({
  heads: { numHeads: f.numHeads, numKVHeads: f.numKVHeads },
  headDim: f.headDim,
  qLen: f.qLen,
  kvDtype: f.kvDtype,
}));

function caseArb(
  maxSeqs: number,
  extras: fc.Arbitrary<number>,
  fullSpace: boolean,
  families: readonly (typeof SET_FAMILIES)[number][] = SET_FAMILIES,
): fc.Arbitrary<CaseSpec> {
  const family = fullSpace
    ? fc.record({
      heads: headsArb,
      headDim: headDimArb,
      qLen: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 16 })),
      kvDtype: fc.constantFrom(...KV_DTYPES),
    })
    : fc.constantFrom(...families);
  return fc.record({
    family,
    extras: fc.array(extras, { minLength: 1, maxLength: maxSeqs }),
    strategy: fc.constantFrom(...STRATEGIES),
    scale: fc.option(fc.double({ min: 0.02, max: 0.5, noNaN: true }), { nil: undefined }),
    seed: fc.integer({ min: 0, max: 0x7fffffff }),
    qAmplitude: fc.double({ min: 0.25, max: 3, noNaN: true }),
  }).map((r) =>
    fitToBudget({
      seqLens: [],
      numHeads: r.family.heads.numHeads,
      numKVHeads: r.family.heads.numKVHeads,
      headDim: r.family.headDim,
      qLen: r.family.qLen,
      kvDtype: r.family.kvDtype,
      strategy: r.strategy,
      scale: r.scale,
      seed: r.seed,
      qAmplitude: r.qAmplitude,
    }, r.extras)
  );
}

backendTest(
  "decode matches the float64 reference on random shapes",
  async (decoder, backend, context) => {
    await fc.assert(
      fc.asyncProperty(
        // Dawn's smoke set on a software adapter: the first family's kernel only.
        caseArb(
          6,
          extraTokensArb,
          context.exhaustive,
          backend === "dawn" ? SET_FAMILIES.slice(0, 1) : SET_FAMILIES,
        ),
        async (spec) => {
          const input = makeInput(spec);
          assertMatchesReference(input, await decoder.decode(input), describeSpec(spec));
        },
      ),
      propertyParams(backend, 150, 16, context),
    );
  },
  { dawnOnSoftware: true },
);

backendTest(
  "decode matches the reference on many short ragged sequences",
  async (decoder, b, c) => {
    await fc.assert(
      fc.asyncProperty(
        caseArb(32, fc.integer({ min: 0, max: 150 }), c.exhaustive),
        async (spec) => {
          const input = makeInput(spec);
          assertMatchesReference(input, await decoder.decode(input), describeSpec(spec));
        },
      ),
      propertyParams(b, 60, 6, c),
    );
  },
);

/** Plan geometries that stress different cuts: tiny grids, tiny and huge tiles. */
const GEOMETRIES = [
  { grid: 1 },
  { grid: 3, tileTokens: 16 },
  { grid: 7, tileTokens: 32, workgroupSize: 32 },
  { grid: 40, tileTokens: 16 },
  { grid: 64, tileTokens: 256, workgroupSize: 256 },
];

for (const geometry of GEOMETRIES) {
  backendTest(
    `decode matches the reference with ${JSON.stringify(geometry)}`,
    async (decoder, backend, context) => {
      await fc.assert(
        fc.asyncProperty(
          caseArb(
            5,
            fc.integer({ min: 0, max: 700 }),
            context.exhaustive,
            SET_FAMILIES.slice(0, 1),
          ),
          async (spec) => {
            const input = makeInput(spec);
            assertMatchesReference(input, await decoder.decode(input), describeSpec(spec));
          },
        ),
        propertyParams(backend, 30, 3, context),
      );
    },
    { decoder: geometry },
  );
}
