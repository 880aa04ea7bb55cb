/**
 * The paged KV cache against a simple model (tests/cache_model.ts), under random operations: add,
 * extend, append, write (with fresh or stale slots), fork, free, plan, CPU execution and, on a
 * GPU, append kernels and encoded attention. After every step each sequence must read back
 * exactly the tokens written through it (or through a fork sharing them), stale slots and stale
 * plans must be refused, and every page must be accounted for.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { createAttentionEncoder } from "../runner.ts";
import { Harness, noOutcomes, type Op, tally } from "./cache_model.ts";
import { deviceTest } from "./gpu_device.ts";
import { fcParams } from "./helpers.ts";

/** Random operations, most often those that change the cache or use it. */
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.constant({ kind: "add" as const }), weight: 2 },
  {
    arbitrary: fc.record({
      kind: fc.constant("extend" as const),
      picks: fc.array(fc.nat(), { minLength: 1, maxLength: 3 }),
      n: fc.integer({ min: 0, max: 6 }),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("append" as const),
      pick: fc.nat(),
      n: fc.integer({ min: 1, max: 6 }),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("write" as const),
      pick: fc.nat(),
      layer: fc.nat(1),
      gpu: fc.boolean(),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ kind: fc.constant("fork" as const), pick: fc.nat() }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant("free" as const), pick: fc.nat() }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant("plan" as const),
      picks: fc.array(fc.nat(), { minLength: 1, maxLength: 3 }),
      runNow: fc.boolean(),
      layer: fc.nat(1),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({ kind: fc.constant("run" as const), pick: fc.nat(), layer: fc.nat(1) }),
    weight: 2,
  },
);

Deno.test("random cache operations keep every sequence's tokens and pages (model, CPU)", async () => {
  const seen = noOutcomes();
  await fc.assert(
    fc.asyncProperty(
      fc.array(opArb, { minLength: 8, maxLength: 40 }),
      fc.constantFrom(1, 2, 4),
      async (ops, pageSize) => {
        const h = new Harness({
          numHeads: 2,
          numKVHeads: 1,
          headDim: 8,
          pageSize,
          numPages: 14,
          kvDtype: "f32",
        });
        await h.setUp();
        for (const op of ops) {
          await h.apply(op);
          await h.check();
        }
        tally(seen, h.outcomes);
      },
    ),
    fcParams(300),
  );
  // The runs met every outcome many times (the generator is not stuck on no-ops).
  for (const [outcome, n] of Object.entries(seen)) {
    if (outcome !== "gpuWrote") assert.ok(n >= 30, `${outcome}: ${n}`);
  }
});

await deviceTest(
  "random cache operations with GPU appends and encoded attention (model)",
  async (g) => {
    const attention = await createAttentionEncoder(g.device, { grid: 8 });
    const seen = noOutcomes();
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 12, maxLength: 24 }), async (ops) => {
          // The paged tests' kernel shape: f16, head dim 64, 2 KV heads, 8 query heads.
          const h = new Harness(
            {
              numHeads: 8,
              numKVHeads: 2,
              headDim: 64,
              pageSize: 16,
              numPages: 6,
              kvDtype: "f16",
            },
            g,
            attention,
          );
          try {
            await h.setUp();
            for (const op of ops) {
              await h.apply(op);
              await h.check();
            }
            tally(seen, h.outcomes);
          } finally {
            h.cache.dispose();
          }
        }),
        { ...fcParams(8), endOnFailure: true },
      );
      assert.ok(seen.executed >= 4 && seen.gpuWrote >= 4, JSON.stringify(seen));
    } finally {
      attention.dispose();
      await g.device.queue.onSubmittedWorkDone();
      g.device.destroy();
    }
  },
  { dawnOnSoftware: true },
);
