/**
 * The decoder API around decode calls: backend and profile, plans from the decoder's grid, inputs
 * left untouched, fresh outputs per call, the "auto" backend, and the CPU plan executor.
 */

import assert from "node:assert/strict";
import { createDecoder, createPlan, MAX_HEAD_DIM, MAX_Q_LEN, STRATEGIES } from "../mod.ts";
import { CPU_GRID, executePlanOnCpu, gridFor, resolveScale } from "../plan.ts";
import { ALL_BACKENDS, backendTest } from "./backends.ts";
import { assertMatchesReference, type CaseSpec, makeInput, sameBits } from "./helpers.ts";
import { BF16_Q2, F32_GQA } from "./kernel_set.ts";

const SPEC: CaseSpec = { ...F32_GQA, seqLens: [200, 2, 77], seed: 7 };

Deno.test("the CPU decoder reports its backend and profile", async () => {
  const decoder = await createDecoder({ backend: "cpu" });
  assert.equal(decoder.backend, "cpu");
  assert.equal(decoder.profile.grid, CPU_GRID);
  assert.equal(decoder.profile.source, "builtin");
  await decoder.dispose();
  const tuned = await createDecoder({ backend: "cpu", grid: 5 });
  assert.equal(tuned.profile.grid, 5);
  assert.equal(tuned.profile.source, "option");
  assert.equal(tuned.plan(SPEC).grid, 5);
  await tuned.dispose();
});

backendTest("decoder.plan is createPlan with the device's grid", async (decoder, backend) => {
  assert.equal(decoder.backend, backend);
  assert.ok(Number.isInteger(decoder.profile.grid) && decoder.profile.grid >= 1);
  for (const strategy of [undefined, ...STRATEGIES]) {
    const plan = decoder.plan(SPEC, { strategy });
    // The grid calibrated for kernels of this plan's rows per block (GPUs), else the profile's.
    const grid = gridFor(decoder.profile, plan.tiles.rowsPerBlock, SPEC.headDim);
    assert.deepStrictEqual(plan, createPlan(SPEC, { grid, strategy }));
    if (!decoder.profile.gridByRows) assert.equal(grid, decoder.profile.grid);
    assert.equal(plan.strategy, strategy ?? "lean");
  }
  await Promise.resolve();
});

backendTest("decode leaves its inputs untouched", async (decoder) => {
  for (const family of [F32_GQA, BF16_Q2]) {
    const input = makeInput({ ...SPEC, ...family, scale: 0.2 });
    const copy = structuredClone(input);
    await decoder.decode(input);
    assert.deepStrictEqual(input, copy);
  }
});

backendTest("each call returns fresh output arrays", async (decoder) => {
  const input = makeInput(SPEC);
  const first = await decoder.decode(input);
  const keep = { out: first.out.slice(), lse: first.lse.slice() };
  const second = await decoder.decode(input);
  assert.notEqual(first.out.buffer, second.out.buffer);
  assert.notEqual(first.out.buffer, input.q.buffer);
  first.out.fill(NaN);
  first.lse.fill(NaN);
  const third = await decoder.decode(input);
  assert.ok(sameBits(second.out, keep.out) && sameBits(third.out, keep.out));
  assert.ok(sameBits(second.lse, keep.lse) && sameBits(third.lse, keep.lse));
});

Deno.test({
  name: "the auto backend opens a working decoder",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const decoder = await createDecoder();
    try {
      assert.ok(ALL_BACKENDS.includes(decoder.backend), decoder.backend);
      const input = makeInput(SPEC);
      assertMatchesReference(input, await decoder.decode(input), `auto (${decoder.backend})`);
    } finally {
      await decoder.dispose();
    }
  },
});

Deno.test("executePlanOnCpu gives the CPU decoder's bits for every strategy", async () => {
  const decoder = await createDecoder({ backend: "cpu", grid: 6, tileTokens: 32 });
  try {
    for (const strategy of STRATEGIES) {
      const input = makeInput({ ...SPEC, strategy, kvDtype: "f16" });
      const plan = createPlan(input, { grid: 6, tileTokens: 32, strategy });
      const direct = executePlanOnCpu(plan, input, resolveScale(input));
      const viaDecoder = await decoder.decode(input);
      assert.ok(sameBits(direct.out, viaDecoder.out) && sameBits(direct.lse, viaDecoder.lse));
    }
  } finally {
    await decoder.dispose();
  }
});

Deno.test("limits and defaults are exported", () => {
  assert.equal(MAX_Q_LEN, 16);
  assert.equal(MAX_HEAD_DIM, 576);
  assert.deepStrictEqual([...STRATEGIES], ["lean", "split", "single"]);
  assert.equal(resolveScale({ headDim: 64 }), 0.125);
  assert.equal(resolveScale({ headDim: 64, scale: 0.3 }), 0.3);
});
