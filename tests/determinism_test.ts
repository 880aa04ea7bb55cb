/**
 * Determinism: repeated calls give bitwise identical `out` and `lse`, for every strategy and
 * backend, also when other batches run in between.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { type DecodeOutput, KV_DTYPES, STRATEGIES } from "../mod.ts";
import { backendTest, propertyParams } from "./backends.ts";
import { assertMatchesReference, type CaseSpec, makeInput, sameBits } from "./helpers.ts";
import {
  BF16_Q2,
  F16_D8,
  F16_MHA,
  F32_GQA,
  KERNEL_FAMILIES,
  type KernelFamily,
} from "./kernel_set.ts";

/** A batch whose lean plan has many split segments and partial states to merge. */
const SPLIT_HEAVY: CaseSpec = { ...F32_GQA, seqLens: [900, 5, 333, 64, 1200], seed: 101 };

/** One family of the kernel set per KV dtype. */
const BY_DTYPE = [F32_GQA, F16_MHA, BF16_Q2];

backendTest("repeated calls are bitwise identical for every strategy", async (decoder) => {
  for (const family of BY_DTYPE) {
    const kvDtype = family.kvDtype;
    for (const strategy of STRATEGIES) {
      const input = makeInput({ ...SPLIT_HEAVY, ...family, strategy });
      const first = await decoder.decode(input);
      assertMatchesReference(input, first, `${kvDtype} ${strategy}`);
      for (let i = 0; i < 3; i++) {
        const again = await decoder.decode(input);
        assert.ok(sameBits(first.out, again.out), `out differs on call ${i + 2} (${strategy})`);
        assert.ok(sameBits(first.lse, again.lse), `lse differs on call ${i + 2} (${strategy})`);
      }
    }
  }
});

backendTest("results do not depend on the batches decoded before", async (decoder) => {
  const a = makeInput({ ...SPLIT_HEAVY, strategy: "lean" });
  const b = makeInput({ ...BF16_Q2, seqLens: [3000, 17], seed: 102 });
  const c = makeInput({ ...F16_D8, seqLens: [1], seed: 103 });
  const firstA = await decoder.decode(a);
  const firstC = await decoder.decode(c);
  await decoder.decode(b);
  const againA = await decoder.decode(a);
  const againC = await decoder.decode(c);
  assert.ok(sameBits(firstA.out, againA.out) && sameBits(firstA.lse, againA.lse));
  assert.ok(sameBits(firstC.out, againC.out) && sameBits(firstC.lse, againC.lse));
});

backendTest("concurrent calls give the same bits as sequential ones", async (decoder) => {
  const inputs = STRATEGIES.map((strategy, i) =>
    makeInput({ ...SPLIT_HEAVY, seqLens: [700 + i, 90, 3], strategy, seed: 110 + i })
  );
  const sequential: DecodeOutput[] = [];
  for (const input of inputs) sequential.push(await decoder.decode(input));
  const concurrent = await Promise.all(inputs.map((input) => decoder.decode(input)));
  concurrent.forEach((r, i) => {
    assert.ok(sameBits(r.out, sequential[i].out), `out of call ${i}`);
    assert.ok(sameBits(r.lse, sequential[i].lse), `lse of call ${i}`);
  });
});

/** Any shape with d32 on exhaustive backends; the kernel set's families elsewhere. */
function familyArb(exhaustive: boolean): fc.Arbitrary<KernelFamily> {
  if (!exhaustive) return fc.constantFrom(...KERNEL_FAMILIES);
  return fc.constantFrom(...KV_DTYPES).map((kvDtype) => ({
    numHeads: 4,
    numKVHeads: 2,
    headDim: 32,
    qLen: 1,
    kvDtype,
  }));
}

backendTest("repeated calls agree bitwise on random shapes", async (decoder, backend, context) => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 0, max: 600 }), { minLength: 1, maxLength: 5 }),
      fc.constantFrom(...STRATEGIES),
      familyArb(context.exhaustive),
      fc.integer({ min: 0, max: 1 << 30 }),
      async (extra, strategy, family, seed) => {
        const seqLens = extra.map((e) => e + family.qLen);
        const input = makeInput({ ...family, seqLens, strategy, seed });
        const x = await decoder.decode(input);
        const y = await decoder.decode(input);
        assert.ok(sameBits(x.out, y.out) && sameBits(x.lse, y.lse));
      },
    ),
    propertyParams(backend, 20, 4, context),
  );
});
