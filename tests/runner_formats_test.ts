/**
 * Runner formats: plans from a runner's FlashInfer-style page table (`indptr`, `indices`,
 * `lastPageLen`) over its own K/V pages in NHD or HND layout (tests/combinations.ts's page pools),
 * on the CPU (against the dense plan bit for bit and the float64 reference) and through the GPU
 * kernels, there also with f16 queries and outputs in buffer ranges; bad tables and ranges are
 * rejected naming the field and the value.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { createPlan, decodeKV, encodeKV, type KVDtype } from "../mod.ts";
import { executePlanOnCpu } from "../plan.ts";
import {
  createAttentionEncoder,
  createIndptrPageTable,
  createPagedPlan,
  executePagedPlanOnCpu,
  type IndptrPageTableOptions,
  type PageLayout,
  planForCache,
} from "../runner.ts";
import { assertMatchesReference, fcParams, makeInput, sameBits } from "./helpers.ts";
import { bytesBuffer, deviceTests, gpuBuffer, readF32, STORAGE } from "./gpu_device.ts";
import { indptrOptions, scatterPages } from "./combinations.ts";

const SHAPES = [
  { numHeads: 8, numKVHeads: 2, headDim: 64 },
  { numHeads: 4, numKVHeads: 4, headDim: 32 },
  { numHeads: 3, numKVHeads: 1, headDim: 16 },
  { numHeads: 4, numKVHeads: 2, headDim: 8 },
];

Deno.test("runner page tables (NHD, HND, page sizes 1-256) equal dense plans bit for bit on the CPU", () => {
  fc.assert(
    fc.property(
      fc.record({
        seqLens: fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 3 }),
        shape: fc.constantFrom(...SHAPES),
        qLen: fc.integer({ min: 1, max: 3 }),
        kvDtype: fc.constantFrom<KVDtype>("f32", "f16", "bf16"),
        pageShift: fc.integer({ min: 0, max: 8 }),
        layout: fc.constantFrom<PageLayout>("NHD", "HND"),
        strategy: fc.constantFrom("lean" as const, "split" as const, "single" as const),
        seed: fc.integer({ min: 1, max: 1 << 20 }),
      }),
      (c) => {
        const seqLens = c.seqLens.map((n) => Math.max(n, c.qLen));
        const input = makeInput({
          ...c.shape,
          seqLens,
          qLen: c.qLen,
          kvDtype: c.kvDtype,
          seed: c.seed,
        });
        const pages = scatterPages(input, 1 << c.pageShift, c.layout, c.seed);
        const source = createIndptrPageTable(indptrOptions(input, pages));
        const options = { grid: 7, tileTokens: 16, strategy: c.strategy };
        const plan = planForCache(source, {
          seqs: source.seqs,
          numHeads: c.shape.numHeads,
          qLen: c.qLen,
        }, options);
        assert.equal(plan.kv.layout === "HND", c.layout === "HND");
        assert.equal(plan.cacheId, undefined, "a runner's table names no cache");
        const paged = executePagedPlanOnCpu(plan, { q: input.q, k: pages.k, v: pages.v });
        const dense = executePlanOnCpu(
          createPlan(input, options),
          input,
          1 / Math.sqrt(input.headDim),
        );
        const label = `${c.layout} page ${1 << c.pageShift} ${c.kvDtype} ${c.strategy}`;
        assert.ok(sameBits(paged.out, dense.out), `out ${label}`);
        assert.ok(sameBits(paged.lse, dense.lse), `lse ${label}`);
        assertMatchesReference(input, paged, label);
      },
    ),
    fcParams(60),
  );
});

Deno.test("explicit page tables take a layout too (createPagedPlan), checked", () => {
  const input = makeInput({ seqLens: [37, 5], numHeads: 4, numKVHeads: 2, headDim: 16, seed: 4 });
  const { k, v, numPages, pageTables } = scatterPages(input, 8, "HND", 4);
  const tables = { pageSize: 8, numPages, pageTables, layout: "HND" as const };
  const plan = createPagedPlan(input, tables, { grid: 5 });
  assert.equal(plan.kv.layout, "HND");
  assertMatchesReference(input, executePagedPlanOnCpu(plan, { q: input.q, k, v }), "HND");
  assert.throws(
    () => createPagedPlan(input, { ...tables, layout: "hnd" as never }, { grid: 5 }),
    (e: unknown) =>
      e instanceof RangeError && /layout must be "NHD" or "HND": got "hnd"/.test(e.message),
  );
  assert.throws(
    () => createPagedPlan(input, { ...tables, layout: 2 as never }, { grid: 5 }),
    (e: unknown) => e instanceof TypeError && /layout must be a string: got number/.test(e.message),
  );
});

Deno.test("a runner's page table copies its arrays and plans every sequence's length", () => {
  const indptr = [0, 3, 4];
  const table = createIndptrPageTable({
    indptr,
    indices: [5, 2, 7, 0],
    lastPageLen: [3, 4],
    pageSize: 4,
    numPages: 8,
    numKVHeads: 1,
    headDim: 8,
  });
  indptr[1] = 1; // changes nothing
  assert.deepEqual([table.length(0), table.length(1)], [11, 4]);
  assert.deepEqual([table.pageCount(0), table.pageCount(1)], [3, 1]);
  const plan = planForCache(table, { seqs: [1, 0], numHeads: 2 }, { grid: 4 });
  assert.deepEqual(Array.from(plan.problem.seqLens), [4, 11]);
  assert.deepEqual(Array.from(plan.kv.pages), [0, 5, 2, 7]);
  assert.deepEqual(Array.from(plan.kv.pageOffsets), [0, 1, 4]);
  assert.equal(plan.kv.layout, undefined, "NHD is the default addressing");
});

Deno.test("bad runner page tables throw TypeError or RangeError naming the field and value", () => {
  const good: IndptrPageTableOptions = {
    indptr: [0, 2, 3],
    indices: [3, 0, 1],
    lastPageLen: [2, 3],
    pageSize: 4,
    numPages: 4,
    numKVHeads: 2,
    headDim: 8,
    kvDtype: "f16",
    layout: "HND",
  };
  assert.equal(createIndptrPageTable(good).length(0), 6);
  const bad: Array<[Record<string, unknown>, typeof TypeError | typeof RangeError, RegExp]> = [
    [{ pageSize: "4" }, TypeError, /pageSize must be a number: got "4"/],
    [{ pageSize: 3 }, RangeError, /pageSize must be a power of two from 1 to 256: got 3/],
    [{ pageSize: 512 }, RangeError, /pageSize must be an integer from 1 to 256: got 512/],
    [{ pageSize: 0 }, RangeError, /pageSize must be an integer from 1 to 256: got 0/],
    [{ numPages: 0 }, RangeError, /numPages must be an integer from 1 to .*: got 0/],
    [{ numPages: 2.5 }, RangeError, /numPages must be an integer .*: got 2.5/],
    [{ indptr: 5 }, TypeError, /indptr must be an array of integers: got number/],
    [{ indptr: [0] }, RangeError, /indptr must hold numSeqs \+ 1 >= 2 entries: got 1/],
    [
      { indptr: [0, 2, 1] },
      RangeError,
      /indptr must be non-decreasing: indptr\[2\] = 1 after indptr\[1\] = 2/,
    ],
    [{ indptr: [0, 2, 4] }, RangeError, /indptr\[2\] must be an integer from 0 to 3: got 4/],
    [{ indptr: [0, "2", 3] }, TypeError, /indptr\[1\] must be a number: got string/],
    [{ indices: null }, TypeError, /indices must be an array of integers: got null/],
    [{ indices: [3, 4, 1] }, RangeError, /indices\[1\] must be an integer from 0 to 3: got 4/],
    [{ indices: [3, -1, 1] }, RangeError, /indices\[1\] must be an integer from 0 to 3: got -1/],
    [
      { lastPageLen: [2] },
      RangeError,
      /lastPageLen must hold one entry per sequence \(2, from indptr\): got 1/,
    ],
    [
      { indptr: [0, 0, 3], lastPageLen: [2, 3] },
      RangeError,
      /lastPageLen\[0\] must be 0 for a sequence of no pages \(indptr\[0\] = indptr\[1\] = 0, an empty request\): got 2/,
    ],
    [{ lastPageLen: [0, 3] }, RangeError, /lastPageLen\[0\] must be an integer from 1 to 4: got 0/],
    [{ lastPageLen: [2, 5] }, RangeError, /lastPageLen\[1\] must be an integer from 0 to 4: got 5/],
    [{ lastPageLen: "2,3" }, TypeError, /lastPageLen must be an array of integers: got string/],
    [{ kvDtype: 8 }, TypeError, /kvDtype must be a string: got number/],
    [{ kvDtype: "f64" }, RangeError, /kvDtype must be one of .*: got "f64"/],
    [{ layout: 1 }, TypeError, /layout must be a string: got number/],
    [{ layout: "NDH" }, RangeError, /layout must be "NHD" or "HND": got "NDH"/],
  ];
  for (const [change, type, message] of bad) {
    assert.throws(
      () => createIndptrPageTable({ ...good, ...change } as IndptrPageTableOptions),
      (e: unknown) => e instanceof type && message.test((e as Error).message),
      JSON.stringify(change),
    );
  }
  assert.throws(
    () => createIndptrPageTable(null as never),
    /page table must be an object: got null/,
  );
  const table = createIndptrPageTable(good);
  assert.throws(
    () => planForCache(table, { seqs: [0, 2], numHeads: 4 }, { grid: 4 }),
    (e: unknown) =>
      e instanceof RangeError &&
      /seqs must be sequences of the page table \(0 to 1\): got 2/.test(e.message),
  );
  // The shape fields the table carries are checked by planning, naming them.
  const badHeads = createIndptrPageTable({ ...good, numKVHeads: 3 });
  assert.throws(() => planForCache(badHeads, { seqs: [0], numHeads: 4 }, { grid: 4 }), /numHeads/);
  const badDim = createIndptrPageTable({ ...good, headDim: 12 });
  assert.throws(
    () => planForCache(badDim, { seqs: [0], numHeads: 4 }, { grid: 4 }),
    /headDim must be .*got 12/,
  );
  // The CPU executor checks the storage against the table: too few pages' elements.
  const plan = planForCache(table, { seqs: table.seqs, numHeads: 4 }, { grid: 4 });
  assert.throws(
    () =>
      executePagedPlanOnCpu(plan, {
        q: new Float32Array(2 * 4 * 8),
        k: new Uint16Array(8),
        v: new Uint16Array(8),
      }),
    (e: unknown) =>
      e instanceof RangeError &&
      /k must hold 4 pages of 4 rows of 16 elements: got 8/.test(e.message),
  );
});

// ---------------------------------------------------------------------------------------------
// GPU: the paged tests' shape (f16 KV, 8/2 heads, d64), in HND pages: one more decode kernel.

const H = 8;
const KVH = 2;
const D = 64;

await deviceTests((test) => {
  test("a runner's HND pages decode on the GPU bit for bit like its NHD pages", async ({ device }) => {
    const attention = await createAttentionEncoder(device, { grid: 8 });
    try {
      for (const [pageSize, seqLens, seed] of [[16, [300, 9, 129], 1], [1, [40, 3], 2]] as const) {
        const input = makeInput({
          seqLens: [...seqLens],
          numHeads: H,
          numKVHeads: KVH,
          headDim: D,
          kvDtype: "f16",
          seed,
        });
        const results = [];
        for (const layout of ["NHD", "HND"] as const) {
          const pages = scatterPages(input, pageSize, layout, seed);
          const plan = attention.plan(createIndptrPageTable(indptrOptions(input, pages)), {
            seqs: seqLens.map((_, i) => i),
            numHeads: H,
          });
          const kb = bytesBuffer(device, pages.k);
          const vb = bytesBuffer(device, pages.v);
          const qb = gpuBuffer(device, input.q);
          const out = gpuBuffer(device, new Float32Array(input.q.length).fill(NaN));
          const lse = gpuBuffer(device, new Float32Array(seqLens.length * H).fill(NaN));
          const enc = device.createCommandEncoder();
          attention.encode(enc, { plan, k: kb, v: vb, q: qb, out, lse });
          device.queue.submit([enc.finish()]);
          const got = {
            out: await readF32(device, out, input.q.length),
            lse: await readF32(device, lse, seqLens.length * H),
          };
          const label = `${layout} page ${pageSize}`;
          assertMatchesReference(input, got, label);
          results.push(got);
          for (const b of [kb, vb, qb, out, lse]) b.destroy();
        }
        assert.ok(sameBits(results[0].out, results[1].out), `out HND != NHD, page ${pageSize}`);
        assert.ok(sameBits(results[0].lse, results[1].lse), `lse HND != NHD, page ${pageSize}`);
      }
    } finally {
      attention.dispose();
    }
  });

  test("f16 queries and outputs through buffer ranges (a fused buffer) match f32 rounded", async ({ device }) => {
    const align = device.limits.minStorageBufferOffsetAlignment;
    const half = await createAttentionEncoder(device, { grid: 8, qDtype: "f16", outDtype: "f16" });
    const full = await createAttentionEncoder(device, { grid: 8 });
    try {
      const seqLens = [200, 17, 64];
      const input = makeInput({
        seqLens,
        numHeads: H,
        numKVHeads: KVH,
        headDim: D,
        kvDtype: "f16",
        seed: 9,
      });
      const pages = scatterPages(input, 16, "HND", 9);
      const { k, v } = pages;
      const source = createIndptrPageTable(indptrOptions(input, pages));
      // K and V in one buffer, V at an aligned offset.
      const kvBytes = k.byteLength;
      const vAt = Math.ceil(kvBytes / align) * align;
      const kv = device.createBuffer({ size: vAt + kvBytes, usage: STORAGE });
      device.queue.writeBuffer(kv, 0, k as Uint16Array<ArrayBuffer>);
      device.queue.writeBuffer(kv, vAt, v as Uint16Array<ArrayBuffer>);
      const qHalf = encodeKV(input.q, "f16") as Uint16Array<ArrayBuffer>;
      const qRounded = decodeKV(qHalf, "f16");
      // A "fused QKV" buffer: the queries at an aligned offset after other data.
      const fused = device.createBuffer({ size: 2 * align + qHalf.byteLength, usage: STORAGE });
      device.queue.writeBuffer(fused, 2 * align, qHalf);
      const rows = seqLens.length * H;
      const outs = device.createBuffer({ size: align + 2 * rows * D, usage: STORAGE });
      const lses = device.createBuffer({ size: align + 4 * rows, usage: STORAGE });
      const qb = gpuBuffer(device, qRounded);
      const out32 = gpuBuffer(device, new Float32Array(rows * D).fill(NaN));
      const lse32 = gpuBuffer(device, new Float32Array(rows).fill(NaN));
      for (const strategy of ["lean", "split"] as const) {
        device.queue.writeBuffer(outs, 0, new Uint8Array(outs.size).fill(0xff));
        const step = { seqs: source.seqs, numHeads: H, strategy };
        const enc = device.createCommandEncoder();
        half.encode(enc, {
          plan: half.plan(source, step),
          q: { buffer: fused, offset: 2 * align, size: qHalf.byteLength },
          out: { buffer: outs, offset: align },
          lse: { buffer: lses, offset: align, size: 4 * rows },
          k: { buffer: kv, offset: 0, size: kvBytes },
          v: { buffer: kv, offset: vAt },
        });
        full.encode(enc, {
          plan: full.plan(source, step),
          q: qb,
          out: out32,
          lse: lse32,
          k: { buffer: kv, size: kvBytes },
          v: { buffer: kv, offset: vAt, size: kvBytes },
        });
        device.queue.submit([enc.finish()]);
        const outBytes = await readF32(device, outs, (align + 2 * rows * D) / 4);
        const got16 = new Uint16Array(outBytes.buffer, align, rows * D);
        const lse16 = (await readF32(device, lses, (align + 4 * rows) / 4)).subarray(align / 4);
        const want32 = await readF32(device, out32, rows * D);
        const wantLse = await readF32(device, lse32, rows);
        assertMatchesReference({ ...input, q: qRounded }, { out: want32, lse: wantLse }, strategy);
        const want16 = encodeKV(want32, "f16") as Uint16Array;
        for (let i = 0; i < rows * D; i++) {
          assert.equal(got16[i], want16[i], `${strategy} out[${i}]: f16 bits of the f32 result`);
        }
        assert.ok(sameBits(lse16, wantLse), `${strategy} lse`);
      }
      // Bad ranges are refused, naming the field and the value, before anything is recorded.
      const plan = half.plan(source, { seqs: source.seqs, numHeads: H });
      const good = {
        plan,
        q: { buffer: fused, offset: 2 * align },
        out: { buffer: outs, offset: align },
        k: { buffer: kv, size: kvBytes },
        v: { buffer: kv, offset: vAt },
      };
      const enc = device.createCommandEncoder();
      const bad: Array<[Record<string, unknown>, typeof TypeError | typeof RangeError, RegExp]> = [
        [
          { q: { buffer: fused, offset: 4 } },
          RangeError,
          new RegExp(
            `q.offset must be a multiple of the device's minStorageBufferOffsetAlignment \\(${align}\\): got 4`,
          ),
        ],
        [
          { out: { buffer: outs, offset: align / 2 } },
          RangeError,
          /out.offset must be a multiple .*: got/,
        ],
        [
          { q: { buffer: fused, offset: 2 * align, size: 6 } },
          RangeError,
          /q.size must be a multiple of 4: got 6/,
        ],
        [
          { q: { buffer: fused, offset: 2 * align, size: 64 } },
          RangeError,
          new RegExp(`q must hold at least ${qHalf.byteLength} bytes for this plan: got 64`),
        ],
        [
          { v: { buffer: kv, offset: vAt, size: kvBytes + 4 } },
          RangeError,
          /v.size must fit the buffer after the offset .*: got/,
        ],
        [
          { k: { buffer: kv, offset: -256 } },
          RangeError,
          /k.offset must be a non-negative integer: got -256/,
        ],
        [{ k: { buffer: kv, offset: "0" } }, TypeError, /k.offset must be a number: got string/],
        [{ q: { buffer: {} } }, TypeError, /q.buffer must be a GPUBuffer: got object/],
        [
          { out: { buffer: fused, offset: 0 } },
          RangeError,
          /out must not be the same buffer as q/,
        ],
      ];
      for (const [change, type, message] of bad) {
        assert.throws(
          () => half.encode(enc, { ...good, ...change } as never),
          (e: unknown) => e instanceof type && message.test((e as Error).message),
          JSON.stringify(Object.keys(change)) + ` align ${align}`,
        );
      }
      enc.finish(); // nothing was recorded: the command buffer stays valid
      for (
        const [options, type, message] of [
          [{ qDtype: 16 }, TypeError, /qDtype must be a string: got number/],
          [{ outDtype: "bf16" }, RangeError, /outDtype must be "f32" or "f16": got "bf16"/],
        ] as const
      ) {
        await assert.rejects(
          () => createAttentionEncoder(device, options as never),
          (e: unknown) => e instanceof type && message.test((e as Error).message),
        );
      }
      for (const b of [kv, fused, outs, lses, qb, out32, lse32]) b.destroy();
    } finally {
      half.dispose();
      full.dispose();
    }
  });
});
