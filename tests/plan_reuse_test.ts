/**
 * Plans of consecutive steps derived from the previous plan equal fresh plans field for field,
 * and are only derived when the tile counts allow it.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { createPlan } from "../mod.ts";
import { validateShape } from "../plan.ts";
import { createKVCache, planForCache } from "../runner.ts";
import { reusePlan } from "../src/plan/reuse.ts";
import { fcParams } from "./helpers.ts";

/** A plan's content without the cache object (compared by identity elsewhere). */
function content(plan: object): unknown {
  const { cache: _cache, ...rest } = plan as { cache?: unknown };
  return rest;
}

Deno.test("decode steps planned from the previous plan equal fresh plans", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 6 }),
      fc.constantFrom(1, 2, 4),
      fc.constantFrom(1, 3, 8, 40, 132),
      fc.constantFrom("lean", "split", "single"),
      fc.constantFrom(16, 64),
      fc.array(fc.integer({ min: 0, max: 70 }), { minLength: 1, maxLength: 6 }),
      (lens, kvHeads, grid, strategy, pageSize, steps) => {
        const cache = createKVCache({
          numLayers: 1,
          numKVHeads: kvHeads,
          headDim: 8,
          pageSize,
          numPages: 4096,
        });
        const seqs = lens.map((n) => {
          const s = cache.addSequence();
          cache.extend([s], n);
          return s;
        });
        const step = { seqs, numHeads: kvHeads * 2 };
        const options = { grid, strategy, tileTokens: 16 };
        let previous = planForCache(cache, step, options);
        let reused = 0;
        for (const grow of steps) {
          for (let g = 0; g < grow; g++) cache.extend(seqs, 1);
          const derived = planForCache(cache, step, { ...options, previous });
          const fresh = planForCache(cache, step, options);
          assert.deepStrictEqual(content(derived), content(fresh));
          if (derived.partition === previous.partition) reused++;
          previous = derived;
        }
        // Steps of fewer tokens than a tile keep every tile count at times: reuse must happen.
        if (steps.some((g) => g === 0)) assert.ok(reused > 0, "a step that adds nothing reuses");
      },
    ),
    fcParams(150),
  );
});

Deno.test("a plan is reused only while every sequence keeps its tile count", () => {
  const shape = (seqLens: number[]) => ({ seqLens, numHeads: 4, numKVHeads: 2, headDim: 16 });
  const options = { grid: 16, tileTokens: 16 };
  const base = createPlan(shape([30, 64]), options);
  const same = reusePlan(base, validateShape(shape([32, 49])), options);
  assert.ok(same, "30 -> 32 and 64 -> 49 tokens keep 2 and 4 tiles");
  assert.deepStrictEqual(same, createPlan(shape([32, 49]), options));
  assert.equal(reusePlan(base, validateShape(shape([33, 64])), options), undefined, "3 tiles");
  assert.equal(reusePlan(base, validateShape(shape([30])), options), undefined, "1 sequence");
  assert.equal(reusePlan(base, validateShape(shape([30, 64])), { ...options, grid: 8 }), undefined);
  assert.equal(
    reusePlan(base, validateShape(shape([30, 64])), { ...options, strategy: "split" }),
    undefined,
  );
  assert.equal(
    reusePlan(base, validateShape(shape([30, 64])), { ...options, tileTokens: 32 }),
    undefined,
  );
  assert.equal(
    reusePlan(base, validateShape(shape([30, 64])), { ...options, batchInvariant: true }),
    undefined,
  );
  const windowed = createPlan(shape([30, 64]), { ...options, maxBindingBytes: 2048 });
  assert.ok(windowed.schedule.windows.length > 1);
  assert.equal(reusePlan(windowed, validateShape(shape([30, 64])), options), undefined);
});

Deno.test("a derived plan leaves the previous plan's tables untouched", () => {
  const shape = (seqLens: number[]) => ({ seqLens, numHeads: 2, numKVHeads: 1, headDim: 8 });
  const options = { grid: 4, tileTokens: 16 };
  const base = createPlan(shape([40, 20]), options);
  const pieces = base.schedule.pieces.slice();
  const next = reusePlan(base, validateShape(shape([41, 21])), options);
  assert.ok(next);
  assert.deepStrictEqual(base.schedule.pieces, pieces);
  assert.notDeepStrictEqual(next.schedule.pieces, pieces);
});
