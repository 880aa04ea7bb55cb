/**
 * Issue 16's features where they meet, paged: plans over explicit page tables and runner page
 * tables (createIndptrPageTable, NHD and HND, page sizes 1 to 256, empty requests, V rows of
 * their own head dim) equal the dense plans bit for bit on every combination
 * (tests/combinations.ts), and runner steps derived from the previous plan equal fresh plans.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { createPlan, STRATEGIES } from "../mod.ts";
import { executePlanOnCpu, resolveScale } from "../plan.ts";
import {
  createIndptrPageTable,
  createKVCache,
  createPagedPlan,
  executePagedPlanOnCpu,
  type PageLayout,
  planForCache,
} from "../runner.ts";
import {
  comboArb,
  comboInput,
  describeCombo,
  indptrOptions,
  scatterPages,
  shapeOf,
  work,
} from "./combinations.ts";
import { assertMatchesReference, fcParams, sameBits } from "./helpers.ts";

const pagedArb = fc.tuple(
  comboArb.filter(({ spec }) => work(spec) <= 400_000),
  fc.integer({ min: 0, max: 8 }),
  fc.constantFrom<PageLayout>("NHD", "HND"),
);

Deno.test("paged plans (explicit tables, NHD and HND) equal dense plans bit for bit on every combination", () => {
  fc.assert(
    fc.property(pagedArb, ([c, pageShift, layout]) => {
      const input = comboInput(c);
      const label = `${describeCombo(c)} page ${1 << pageShift} ${layout}`;
      const pages = scatterPages(input, 1 << pageShift, layout, c.spec.seed);
      const options = {
        grid: c.grid,
        tileTokens: c.tileTokens,
        strategy: c.spec.strategy,
        batchInvariant: c.batchInvariant,
      };
      const shape = shapeOf(input);
      const paged = createPagedPlan(shape, pages, options);
      const got = executePagedPlanOnCpu(paged, { q: input.q, ...pages });
      // Paged plans are the dense plans (no KV windows: a page table has no binding limit).
      const dense = executePlanOnCpu(createPlan(shape, options), input, resolveScale(input));
      assert.ok(sameBits(got.out, dense.out), `${label}: out`);
      assert.ok(sameBits(got.lse, dense.lse), `${label}: lse`);
      assertMatchesReference(input, got, label);
    }),
    fcParams(150),
  );
});

Deno.test("runner page tables (createIndptrPageTable) with planForCache equal dense plans bit for bit on every combination", () => {
  fc.assert(
    fc.property(
      pagedArb,
      ([c, pageShift, layout]) => {
        const input = comboInput(c);
        const label = `${describeCombo(c)} page ${1 << pageShift} ${layout}`;
        const pages = scatterPages(input, 1 << pageShift, layout, c.spec.seed);
        const table = createIndptrPageTable(indptrOptions(input, pages));
        const step = {
          seqs: table.seqs,
          numHeads: input.numHeads,
          ...(input.qLens === undefined ? { qLen: input.qLen } : { qLens: input.qLens }),
          strategy: c.spec.strategy,
          ...c.variant,
        };
        const options = {
          grid: c.grid,
          tileTokens: c.tileTokens,
          batchInvariant: c.batchInvariant,
        };
        const plan = planForCache(table, step, options);
        const got = executePagedPlanOnCpu(plan, { q: input.q, ...pages });
        const dense = executePlanOnCpu(
          createPlan(shapeOf(input), { ...options, strategy: c.spec.strategy }),
          input,
          resolveScale(input),
        );
        assert.ok(sameBits(got.out, dense.out), `${label}: out`);
        assert.ok(sameBits(got.lse, dense.lse), `${label}: lse`);
      },
    ),
    fcParams(100),
  );
});

Deno.test("runner steps planned from the previous plan equal fresh plans with windows, ragged qLens and empty requests", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          len: fc.oneof(fc.constant(0), fc.integer({ min: 16, max: 600 })),
          qLen: fc.integer({ min: 1, max: 16 }),
        }),
        { minLength: 1, maxLength: 5 },
      ),
      fc.option(fc.integer({ min: 1, max: 200 }), { nil: undefined, freq: 3 }),
      fc.constantFrom(1, 3, 8, 40),
      fc.constantFrom(...STRATEGIES),
      fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 6 }),
      (seqSpecs, slidingWindow, grid, strategy, steps) => {
        const cache = createKVCache({
          numLayers: 1,
          numKVHeads: 2,
          headDim: 8,
          pageSize: 16,
          numPages: 4096,
        });
        const seqs = seqSpecs.map(({ len }) => {
          const s = cache.addSequence();
          if (len > 0) cache.extend([s], len);
          return s;
        });
        const live = seqs.filter((_, i) => seqSpecs[i].len > 0);
        const step = {
          seqs,
          numHeads: 4,
          qLens: seqSpecs.map((s) => s.qLen),
          slidingWindow,
          sinks: Float32Array.of(1, 2, 3, 4),
        };
        const options = { grid, strategy, tileTokens: 16 };
        let previous = planForCache(cache, step, options);
        for (const grow of steps) {
          // The empty requests stay empty; the others gain tokens.
          if (live.length > 0) { for (let g = 0; g < grow; g++) cache.extend(live, 1); }
          const derived = planForCache(cache, step, { ...options, previous });
          const fresh = planForCache(cache, step, options);
          const { cache: _a, ...a } = derived as unknown as { cache?: unknown };
          const { cache: _b, ...b } = fresh as unknown as { cache?: unknown };
          assert.deepStrictEqual(a, b);
          previous = derived;
        }
      },
    ),
    fcParams(150),
  );
});
