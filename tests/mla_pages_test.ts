/**
 * MLA on a runner's own page table: `createIndptrPageTable` with `headDimV` (V rows of their own
 * head dim) over the runner's K and V page buffers, each addressed with its own row length, in
 * NHD and HND layout. On the CPU: MLA's real dims (K 576, V 512, one latent KV head) and smaller
 * GQA shapes with V rows shorter and longer than K's, every page size class, ragged query lengths
 * and empty requests, against the dense plan bit for bit and the float64 reference; bad values and
 * storage sized by the wrong row length are refused naming the field and the value, and the table
 * and plan stay usable. On the GPU backends: one runner-owned HND page table through the attention
 * encoder on the kernel set's MLA-like wide family.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { createPlan, type KVDtype, STRATEGIES } from "../mod.ts";
import { executePlanOnCpu, resolveScale } from "../plan.ts";
import {
  createAttentionEncoder,
  createIndptrPageTable,
  executePagedPlanOnCpu,
  type IndptrPageTableOptions,
  type PageLayout,
  planForCache,
} from "../runner.ts";
import { indptrOptions, requestQLens, requestsArb, scatterPages, shapeOf } from "./combinations.ts";
import { assertMatchesReference, fcParams, makeInput, sameBits } from "./helpers.ts";
import { bytesBuffer, deviceTest, gpuBuffer, readF32 } from "./gpu_device.ts";
import { assertInKernelSet, MLA_WIDE } from "./kernel_set.ts";

/** Query heads, KV heads, K's and V's head dims: MLA's real dims, then smaller GQA/MQA shapes. */
const MLA_SHAPES = [
  { numHeads: 16, numKVHeads: 1, headDim: 576, headDimV: 512 },
  { numHeads: 8, numKVHeads: 2, headDim: 64, headDimV: 32 },
  { numHeads: 4, numKVHeads: 1, headDim: 32, headDimV: 64 },
  { numHeads: 6, numKVHeads: 3, headDim: 24, headDimV: 8 },
  { numHeads: 4, numKVHeads: 4, headDim: 16, headDimV: 40 },
];

Deno.test("MLA head dims on a runner's page table (NHD, HND, pages 1-256, ragged, empty) equal the dense plan and the reference", () => {
  fc.assert(
    fc.property(
      fc.record({
        shape: fc.constantFrom(...MLA_SHAPES),
        // 0 tokens: an empty request (no pages, lastPageLen 0).
        seqs: requestsArb(4, 4),
        kvDtype: fc.constantFrom<KVDtype>("f32", "f16", "bf16", "int8", "fp8e4m3"),
        pageShift: fc.integer({ min: 0, max: 8 }),
        layout: fc.constantFrom<PageLayout>("NHD", "HND"),
        strategy: fc.constantFrom(...STRATEGIES),
        grid: fc.constantFrom(1, 5, 16),
        seed: fc.integer({ min: 1, max: 1 << 20 }),
      }),
      (c) => {
        const qLens = requestQLens(c.seqs);
        const input = makeInput({
          ...c.shape,
          seqLens: c.seqs.map((s) => s.len),
          qLens,
          kvDtype: c.kvDtype,
          kvScales: "token",
          seed: c.seed,
          qAmplitude: 2,
        });
        const label = `${c.shape.headDim}/${c.shape.headDimV} ${c.kvDtype} ${c.layout} page ${
          1 << c.pageShift
        } ${c.strategy} lens ${c.seqs.map((s) => s.len)}`;
        const pages = scatterPages(input, 1 << c.pageShift, c.layout, c.seed);
        // Each buffer holds rows of its own length: V's of headDimV.
        const rows = pages.numPages * pages.pageSize * input.numKVHeads;
        assert.equal(pages.k.length, rows * input.headDim);
        assert.equal(pages.v.length, rows * c.shape.headDimV);
        const table = createIndptrPageTable(indptrOptions(input, pages));
        assert.equal(table.headDimV, c.shape.headDimV);
        const options = { grid: c.grid, tileTokens: 16 };
        const plan = planForCache(
          table,
          { seqs: table.seqs, numHeads: input.numHeads, qLens, strategy: c.strategy },
          options,
        );
        assert.equal(plan.problem.headDimV, c.shape.headDimV, label);
        assert.equal(plan.kv.layout === "HND", c.layout === "HND", label);
        const got = executePagedPlanOnCpu(plan, { q: input.q, ...pages });
        assert.equal(got.out.length, plan.problem.totalQueries * input.numHeads * c.shape.headDimV);
        const dense = executePlanOnCpu(
          createPlan(shapeOf(input), { ...options, strategy: c.strategy }),
          input,
          resolveScale(input),
        );
        assert.ok(sameBits(got.out, dense.out), `${label}: out`);
        assert.ok(sameBits(got.lse, dense.lse), `${label}: lse`);
        assertMatchesReference(input, got, label);
      },
    ),
    fcParams(100),
  );
});

Deno.test("a runner's V pages are read with V's row length, per KV head, in NHD and HND", () => {
  // One sequence of 3 tokens in page 1 of 2 (pages of 4), 2 KV heads, K rows of 16, V rows of 8.
  const base: IndptrPageTableOptions = {
    indptr: [0, 1],
    indices: [1],
    lastPageLen: [3],
    pageSize: 4,
    numPages: 2,
    numKVHeads: 2,
    headDim: 16,
  };
  const q = new Float32Array(2 * 16); // zero queries: uniform weights over the 3 tokens
  const k = new Float32Array(2 * 4 * 2 * 16).fill(1);
  // Without headDimV, V's rows are K's: a buffer of 8-dim rows is too small.
  const plain = createIndptrPageTable(base);
  assert.equal(plain.headDimV, 16);
  const plainPlan = planForCache(plain, { seqs: plain.seqs, numHeads: 2 }, { grid: 2 });
  assert.equal(plainPlan.problem.headDimV, 16);
  assert.throws(
    () => executePagedPlanOnCpu(plainPlan, { q, k, v: new Float32Array(2 * 4 * 2 * 8) }),
    /^RangeError: v must hold 2 pages of 4 rows of 32 elements: got 128 elements$/,
  );
  assert.equal(executePagedPlanOnCpu(plainPlan, { q, k, v: k }).out.length, 2 * 16);
  for (const layout of ["NHD", "HND"] as const) {
    const table = createIndptrPageTable({ ...base, headDimV: 8, layout });
    assert.equal(table.headDimV, 8);
    const plan = planForCache(table, { seqs: table.seqs, numHeads: 2 }, { grid: 2 });
    // Every dim of V row (token t, KV head h) holds 10 h + t; every other element is poison.
    const v = new Float32Array(2 * 4 * 2 * 8).fill(NaN);
    for (let t = 0; t < 3; t++) {
      for (let h = 0; h < 2; h++) {
        const row = layout === "HND" ? (1 * 2 + h) * 4 + t : (1 * 4 + t) * 2 + h;
        v.fill(10 * h + t, row * 8, row * 8 + 8);
      }
    }
    const { out, lse } = executePagedPlanOnCpu(plan, { q, k, v });
    assert.equal(out.length, 2 * 8);
    for (let i = 0; i < out.length; i++) {
      // Query head h reads KV head h: the mean of 10 h + 0, 1, 2.
      assert.ok(Math.abs(out[i] - (10 * Math.floor(i / 8) + 1)) < 1e-5, `${layout} out[${i}]`);
    }
    for (const x of lse) assert.ok(Math.abs(x - Math.log(3)) < 1e-6, `${layout} lse ${x}`);
  }
});

Deno.test("bad headDimV and K/V storage sized by the wrong row length throw naming the field and value; the table stays usable", () => {
  const input = makeInput({
    seqLens: [13, 0, 6],
    qLens: [2, 1, 1],
    numHeads: 4,
    numKVHeads: 2,
    headDim: 32,
    headDimV: 16,
    seed: 3,
  });
  const pages = scatterPages(input, 4, "HND", 3);
  const good = indptrOptions(input, pages);
  const error = (type: typeof TypeError, re: RegExp) => (e: unknown) =>
    e instanceof type && re.test((e as Error).message);
  for (const bad of ["16", null, true, [16]]) {
    assert.throws(
      () => createIndptrPageTable({ ...good, headDimV: bad as unknown as number }),
      error(TypeError, /^headDimV must be a number: got /),
      `headDimV ${JSON.stringify(bad)}`,
    );
  }
  for (const bad of [0, -8, 12, 8.5, 584, 1024, NaN, Infinity]) {
    assert.throws(
      () => createIndptrPageTable({ ...good, headDimV: bad }),
      error(RangeError, new RegExp(`^headDimV must be .*: got ${bad}$`)),
      `headDimV ${bad}`,
    );
  }
  const table = createIndptrPageTable(good);
  const step = { seqs: table.seqs, numHeads: 4, qLens: [2, 1, 1] };
  // A bad step leaves the table as it was.
  assert.throws(
    () => planForCache(table, { ...step, seqs: [0, 3] }, { grid: 4 }),
    error(RangeError, /^seqs must be sequences of the page table \(0 to 2\): got 3$/),
  );
  const plan = planForCache(table, step, { grid: 4 });
  const rows = pages.numPages * pages.pageSize;
  // V sized for V's rows less one element; K sized for V's rows (K's are longer).
  assert.throws(
    () => executePagedPlanOnCpu(plan, { q: input.q, k: pages.k, v: pages.v.subarray(1) }),
    error(
      RangeError,
      new RegExp(
        `^v must hold ${pages.numPages} pages of 4 rows of 32 elements: got ${
          rows * 32 - 1
        } elements$`,
      ),
    ),
  );
  assert.throws(
    () => executePagedPlanOnCpu(plan, { q: input.q, k: pages.v, v: pages.v }),
    error(
      RangeError,
      new RegExp(
        `^k must hold ${pages.numPages} pages of 4 rows of 64 elements: got ${rows * 32} elements$`,
      ),
    ),
  );
  // The table and its plan still work.
  assertMatchesReference(input, executePagedPlanOnCpu(plan, { q: input.q, ...pages }), "after");
  const again = planForCache(table, step, { grid: 4 });
  assertMatchesReference(input, executePagedPlanOnCpu(again, { q: input.q, ...pages }), "again");
});

// ---------------------------------------------------------------------------------------------
// GPU: the kernel set's MLA-like wide family (f32, 4/1 heads, K rows of 272, V rows of 264, no
// subgroups), from a runner's HND pages through the attention encoder.

await deviceTest(
  "a runner's HND pages of MLA-like wide rows (K 272, V 264) through the attention encoder",
  async ({ device }) => {
    const { numHeads, headDim } = MLA_WIDE;
    const headDimV = MLA_WIDE.headDimV!;
    const kernel = { subgroups: false };
    const input = makeInput({ ...MLA_WIDE, seqLens: [37, 0, 20], seed: 17 });
    assertInKernelSet(shapeOf(input), { kernel });
    const pages = scatterPages(input, 8, "HND", 17);
    const table = createIndptrPageTable(indptrOptions(input, pages));
    const attention = await createAttentionEncoder(device, { grid: 5, kernel });
    const k = bytesBuffer(device, pages.k);
    const v = bytesBuffer(device, pages.v);
    const q = gpuBuffer(device, input.q);
    const rows = input.seqLens.length * numHeads;
    const out = gpuBuffer(device, new Float32Array(rows * headDimV));
    const lse = gpuBuffer(device, new Float32Array(rows));
    // V's buffer one V row short, and K's sized for V's rows: refused before recording.
    const shortV = bytesBuffer(device, pages.v.subarray(headDimV));
    try {
      const plan = attention.plan(table, { seqs: table.seqs, numHeads });
      assert.equal(plan.problem.headDimV, headDimV);
      const vBytes = pages.v.byteLength;
      const enc = device.createCommandEncoder();
      for (
        const [change, re] of [
          [
            { v: shortV },
            new RegExp(
              `^v must hold at least ${vBytes} bytes for this plan: got ${vBytes - 4 * headDimV}$`,
            ),
          ],
          [
            { k: v },
            new RegExp(
              `^k must hold at least ${
                (vBytes / headDimV) * headDim
              } bytes for this plan: got ${vBytes}$`,
            ),
          ],
        ] as const
      ) {
        assert.throws(
          () => attention.encode(enc, { plan, k, v, q, out, lse, ...change }),
          (e: unknown) => e instanceof RangeError && re.test(e.message),
        );
      }
      enc.finish(); // nothing was recorded
      // The encoder stays usable: each strategy decodes, outputs poisoned first.
      for (const strategy of ["lean", "split"] as const) {
        device.queue.writeBuffer(out, 0, new Float32Array(rows * headDimV).fill(NaN));
        device.queue.writeBuffer(lse, 0, new Float32Array(rows).fill(NaN));
        const p = attention.plan(table, { seqs: table.seqs, numHeads, strategy });
        const e = device.createCommandEncoder();
        attention.encode(e, { plan: p, k, v, q, out, lse });
        device.queue.submit([e.finish()]);
        const got = {
          out: await readF32(device, out, rows * headDimV),
          lse: await readF32(device, lse, rows),
        };
        assertMatchesReference(input, got, `HND ${strategy}`);
      }
    } finally {
      for (const b of [k, v, q, out, lse, shortV]) b.destroy();
      attention.dispose();
    }
  },
);
