/**
 * Determinism: repeated calls give bitwise identical `out` and `lse`, for every strategy and
 * backend, also when other batches run in between.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { type DecodeOutput, KV_DTYPES, STRATEGIES } from "../mod.ts";
import { backendTest, propertyParams } from "./backends.ts";
import { assertMatchesReference, type CaseSpec, makeInput, sameBits } from "./helpers.ts";

/** A batch whose lean plan has many split segments and partial states to merge. */
const SPLIT_HEAVY: CaseSpec = {
  seqLens: [900, 5, 333, 64, 1200],
  numHeads: 8,
  numKVHeads: 2,
  headDim: 64,
  qLen: 2,
  seed: 101,
};

backendTest("repeated calls are bitwise identical for every strategy", async (decoder) => {
  for (const kvDtype of KV_DTYPES) {
    for (const strategy of STRATEGIES) {
      const input = makeInput({ ...SPLIT_HEAVY, kvDtype, strategy });
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
  const b = makeInput({
    seqLens: [3000, 17],
    numHeads: 4,
    numKVHeads: 1,
    headDim: 128,
    qLen: 5,
    kvDtype: "f16",
    seed: 102,
  });
  const c = makeInput({ seqLens: [1], numHeads: 1, numKVHeads: 1, headDim: 8, seed: 103 });
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

backendTest("repeated calls agree bitwise on random shapes", async (decoder, backend) => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 1, max: 600 }), { minLength: 1, maxLength: 5 }),
      fc.constantFrom(...STRATEGIES),
      fc.constantFrom(...KV_DTYPES),
      fc.integer({ min: 0, max: 1 << 30 }),
      async (seqLens, strategy, kvDtype, seed) => {
        const input = makeInput({
          seqLens,
          numHeads: 4,
          numKVHeads: 2,
          headDim: 32,
          strategy,
          kvDtype,
          seed,
        });
        const x = await decoder.decode(input);
        const y = await decoder.decode(input);
        assert.ok(sameBits(x.out, y.out) && sameBits(x.lse, y.lse));
      },
    ),
    propertyParams(backend, 20, 4),
  );
});
