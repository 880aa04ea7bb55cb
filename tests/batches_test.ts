/**
 * Batches as runners build them (issue 16): ragged query lengths (`qLens`), empty requests
 * (sequences of no tokens: out 0, lse -Infinity) and V rows of another head dim (`headDimV`;
 * MLA's own shapes in `tests/mla_test.ts`), against the float64 reference: property tests on the CPU over every strategy,
 * batch invariance, KV windows and plan reuse; paged plans over a `KVCache`; and a small fixed
 * set on the GPU backends (the kernel set's families, see `tests/kernel_set.ts`).
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  createDecoder,
  createPlan,
  type DecodeInput,
  type Decoder,
  KV_DTYPES,
  STRATEGIES,
} from "../mod.ts";
import { executePlanOnCpu, PIECE, PIECE_STRIDE, REDUCE, REDUCE_STRIDE } from "../plan.ts";
import { createKVCache, executePagedPlanOnCpu, planForCache } from "../runner.ts";
import { reusePlan } from "../src/plan/reuse.ts";
import { validateShape } from "../src/core/problem.ts";
import { backendTest } from "./backends.ts";
import {
  assertMatchesReference,
  type CaseSpec,
  describeSpec,
  fcParams,
  makeInput,
} from "./helpers.ts";
import { F32_GQA_Q2, RAGGED_GQA } from "./kernel_set.ts";

/** Multiply-adds a CPU case may cost. */
const BUDGET = 200_000;

const caseArb: fc.Arbitrary<CaseSpec & { batchInvariant: boolean; split: boolean }> = fc.record({
  kv: fc.integer({ min: 1, max: 3 }),
  group: fc.constantFrom(1, 2, 4, 16),
  headDim: fc.integer({ min: 1, max: 12 }).map((n) => 8 * n),
  headDimV: fc.option(fc.integer({ min: 1, max: 12 }).map((n) => 8 * n), { nil: undefined }),
  kvDtype: fc.constantFrom(...KV_DTYPES),
  seqs: fc.array(
    fc.record({
      qLen: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 16 })),
      // -1: an empty request; otherwise the context beyond the query tokens.
      extra: fc.oneof(
        fc.constant(-1),
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 0, max: 700 }),
      ),
    }),
    { minLength: 1, maxLength: 6 },
  ),
  strategy: fc.constantFrom(...STRATEGIES),
  batchInvariant: fc.boolean(),
  split: fc.boolean(),
  seed: fc.integer({ min: 0, max: 0x7fffffff }),
}).map((r) => ({
  numHeads: r.kv * r.group,
  numKVHeads: r.kv,
  headDim: r.headDim,
  headDimV: r.headDimV,
  kvDtype: r.kvDtype,
  qLens: r.seqs.map((s) => s.qLen),
  seqLens: r.seqs.map((s) => (s.extra < 0 ? 0 : s.qLen + s.extra)),
  strategy: r.strategy,
  batchInvariant: r.batchInvariant,
  split: r.split,
  seed: r.seed,
})).filter((c) => {
  // The reference's multiply-adds: every query row over its context, K and V dims.
  let work = 0;
  c.seqLens.forEach((len, i) => (work += len * c.qLens![i] * c.numHeads));
  return work * (c.headDim + (c.headDimV ?? c.headDim)) <= BUDGET * 8;
});

Deno.test("ragged qLens, empty requests and headDimV match the reference on the CPU", async () => {
  const decoders = new Map<string, Awaited<ReturnType<typeof createDecoder>>>();
  try {
    await fc.assert(
      fc.asyncProperty(caseArb, async (spec) => {
        // KV windows: bindings of about a third of the cache (at least one 16-token tile).
        const key = `${spec.batchInvariant}:${spec.split}`;
        let decoder = decoders.get(key);
        if (!decoder) {
          decoder = await createDecoder({
            backend: "cpu",
            grid: 7,
            tileTokens: 16,
            batchInvariant: spec.batchInvariant,
            ...(spec.split ? { maxBindingBytes: 16 * 3 * 96 * 4 * 4 } : {}),
          });
          decoders.set(key, decoder);
        }
        const input = makeInput(spec);
        assertMatchesReference(input, await decoder.decode(input), describeSpec(spec));
      }),
      fcParams(150),
    );
  } finally {
    for (const d of decoders.values()) await d.dispose();
  }
});

Deno.test("a uniform qLens is the qLen batch, bit for bit", async () => {
  const decoder = await createDecoder({ backend: "cpu", grid: 5, tileTokens: 16 });
  try {
    const spec = { ...F32_GQA_Q2, seqLens: [40, 3, 100], seed: 3 };
    const a = makeInput(spec);
    const b: DecodeInput = { ...a, qLen: undefined, qLens: [2, 2, 2] };
    const ra = await decoder.decode(a);
    const rb = await decoder.decode(b);
    assert.deepStrictEqual(rb.out, ra.out);
    assert.deepStrictEqual(rb.lse, ra.lse);
    // Both given and consistent: accepted.
    const rc = await decoder.decode({ ...a, qLen: 2, qLens: [2, 2, 2] });
    assert.deepStrictEqual(rc.out, ra.out);
  } finally {
    await decoder.dispose();
  }
});

Deno.test("a sequence's rows do not depend on the other sequences' query lengths", async () => {
  // The same sequence, once beside a qLen-1 sequence and once beside a qLen-16 one (which changes
  // the block geometry): its output stays that of the reference, and empty rows are identity.
  const decoder = await createDecoder({ backend: "cpu", grid: 3, tileTokens: 16 });
  try {
    for (const other of [1, 16]) {
      const spec = {
        ...RAGGED_GQA,
        qLen: undefined,
        qLens: [3, other, 2],
        seqLens: [50, 0, 70],
        seed: 9,
      };
      const input = makeInput(spec);
      const result = await decoder.decode(input);
      assertMatchesReference(input, result, describeSpec(spec));
    }
  } finally {
    await decoder.dispose();
  }
});

Deno.test("plans skip the empty row blocks of short sequences and give empty requests no tiles", () => {
  // Group 4 with qLens [1, 4]: 16 rows per group at most, blocks of 8: sequence 0 (4 rows)
  // fills one block, sequence 1 two; sequence 2 is empty.
  const shape = {
    seqLens: [100, 100, 0],
    qLens: [1, 4, 2],
    numHeads: 4,
    numKVHeads: 1,
    headDim: 64,
  };
  const plan = createPlan(shape, { grid: 4, tileTokens: 16 });
  assert.equal(plan.tiles.rowsPerBlock, 8);
  assert.equal(plan.tiles.rowBlocks, 2);
  const s = plan.schedule;
  const blocksOf = new Map<number, Set<number>>();
  for (let o = 0; o < s.pieces.length; o += PIECE_STRIDE) {
    const seq = s.pieces[o + PIECE.seq];
    const set = blocksOf.get(seq) ?? new Set();
    set.add(s.pieces[o + PIECE.rowBlock]);
    blocksOf.set(seq, set);
    assert.equal(s.pieces[o + PIECE.qLen], shape.qLens[seq]);
    assert.equal(s.pieces[o + PIECE.qStart], [0, 1, 5][seq]);
  }
  assert.deepStrictEqual([...blocksOf.get(0)!], [0]);
  assert.deepStrictEqual([...blocksOf.get(1)!].sort(), [0, 1]);
  assert.equal(blocksOf.has(2), false, "an empty request gets no pieces");
  // The empty request's rows (4 heads x 2 positions = 8 rows, one block) get one record of no slots.
  const empty = [];
  for (let r = 0; r < s.reduce.length; r += REDUCE_STRIDE) {
    if (s.reduce[r + REDUCE.seq] === 2) empty.push(s.reduce.slice(r, r + REDUCE_STRIDE));
  }
  assert.equal(empty.length, 1);
  assert.equal(empty[0][REDUCE.numSlots], 0);
  assert.equal(empty[0][REDUCE.qStart], 5);
  assert.equal(empty[0][REDUCE.qLen], 2);
  // 2 x 7 tiles: sequence 0's one block and sequence 1's two blocks.
  assert.equal(plan.numTiles, 3 * 7);
});

/** A batch of empty requests only: no tiles, no K/V at all; every row is the identity. */
async function onlyEmpty(decoder: Decoder, label: string): Promise<void> {
  for (const strategy of STRATEGIES) {
    const input = makeInput({
      ...RAGGED_GQA,
      qLen: undefined,
      qLens: [2, 1],
      seqLens: [0, 0],
      strategy,
      seed: 1,
    });
    assert.equal(input.k.length, 0);
    const { out, lse } = await decoder.decode(input);
    assert.equal(lse.length, 3 * RAGGED_GQA.numHeads);
    assert.ok(lse.every((x) => x === -Infinity), `${label} ${strategy}`);
    assert.ok(out.every((x) => Object.is(x, 0)), `${label} ${strategy}`);
  }
}

backendTest("a batch of only empty requests writes every row as the identity", async (decoder) => {
  await onlyEmpty(decoder, "plain");
});

backendTest(
  "a batch-invariant batch of only empty requests, over small KV bindings",
  async (decoder) => {
    await onlyEmpty(decoder, "batch-invariant");
  },
  { decoder: { batchInvariant: true, maxBindingBytes: 65536 } },
);

Deno.test("plan reuse keeps ragged query lengths and refuses other ones", () => {
  const options = { grid: 6, tileTokens: 16 };
  const shape1 = { seqLens: [40, 0, 21], qLens: [1, 3, 2], numHeads: 4, numKVHeads: 2, headDim: 8 };
  const shape2 = { ...shape1, seqLens: [41, 0, 22] };
  const step1 = createPlan(shape1, options);
  const step2 = reusePlan(step1, validateShape(shape2), options);
  assert.ok(step2, "same tile counts and query lengths: reused");
  const fresh = createPlan(shape2, options);
  assert.deepStrictEqual(step2.schedule.pieces, fresh.schedule.pieces);
  assert.deepStrictEqual(step2.schedule.reduce, fresh.schedule.reduce);
  const input = makeInput({ ...shape2, seed: 4 });
  assertMatchesReference(input, executePlanOnCpu(step2, input, 1 / Math.sqrt(8)));
  assert.equal(
    reusePlan(step1, validateShape({ ...shape2, qLens: [1, 3, 3] }), options),
    undefined,
  );
  assert.equal(reusePlan(step1, validateShape({ ...shape2, headDimV: 16 }), options), undefined);
  assert.equal(
    reusePlan(step1, validateShape({ ...shape2, seqLens: [41, 3, 22] }), options),
    undefined,
  );
});

Deno.test("paged plans take ragged qLens and empty requests", () => {
  const cache = createKVCache({
    numLayers: 1,
    numKVHeads: 2,
    headDim: 16,
    pageSize: 8,
    numPages: 32,
  });
  const seqs = [cache.addSequence(), cache.addSequence(), cache.addSequence()];
  cache.extend([seqs[0], seqs[2]], [37, 5]);
  const data = cache.layerData(0);
  const k = data.k as Float32Array;
  const v = data.v as Float32Array;
  for (let i = 0; i < k.length; i++) {
    k[i] = Math.sin(i * 0.37);
    v[i] = Math.cos(i * 0.11) + 0.5;
  }
  const qLens = [3, 2, 5];
  const plan = planForCache(cache, { seqs, numHeads: 4, qLens }, { grid: 5, tileTokens: 16 });
  assert.deepStrictEqual(Array.from(plan.problem.qLens), qLens);
  const q = new Float32Array(10 * 4 * 16).map((_, i) => Math.sin(i * 1.7));
  const got = executePagedPlanOnCpu(plan, { q, ...data });
  // The same tokens, dense: each sequence's rows gathered from its pages.
  const denseK: number[] = [];
  const denseV: number[] = [];
  const row = 2 * 16;
  for (const id of seqs) {
    const pages = cache.pageTable(id);
    for (let t = 0; t < cache.length(id); t++) {
      const at = (pages[t >> 3] * 8 + (t & 7)) * row;
      denseK.push(...k.subarray(at, at + row));
      denseV.push(...v.subarray(at, at + row));
    }
  }
  const input: DecodeInput = {
    q,
    k: Float32Array.from(denseK),
    v: Float32Array.from(denseV),
    seqLens: [37, 0, 5],
    qLens,
    numHeads: 4,
    numKVHeads: 2,
    headDim: 16,
  };
  assertMatchesReference(input, got);
  assert.throws(
    () => planForCache(cache, { seqs, numHeads: 4, qLens: [3, 2, 6] }, { grid: 5 }),
    (e: unknown) =>
      e instanceof RangeError &&
      /^seqs\[2\] \(sequence 2\) must hold at least qLens\[2\] \(6\) tokens: got 5/.test(e.message),
  );
  assert.throws(
    () => planForCache(cache, { seqs, numHeads: 4, qLens: [3, 2] }, { grid: 5 }),
    (e: unknown) =>
      e instanceof RangeError &&
      /^qLens must hold one query length per sequence \(3\): got 2$/.test(e.message),
  );
  for (
    const [qLensBad, cls, message] of [
      [null, TypeError, /^qLens must be an array of numbers: got null$/],
      ["3", TypeError, /^qLens must be an array of numbers: got "3"$/],
      [[3, "2", 1], TypeError, /^qLens\[1\] must be a number: got "2"$/],
      [[3, 2, 0], RangeError, /^qLens\[2\] must be an integer from 1 to 16: got 0$/],
    ] as const
  ) {
    assert.throws(
      () =>
        planForCache(cache, {
          seqs,
          numHeads: 4,
          qLens: qLensBad as unknown as number[],
        }, { grid: 5 }),
      (e: unknown) => e instanceof cls && message.test((e as Error).message),
      String(qLensBad),
    );
  }
  // The cache stays usable.
  assert.ok(planForCache(cache, { seqs, numHeads: 4, qLens }, { grid: 5 }));
});

/** GPU (and CPU) on the kernel set's families: ragged rows, an empty request and MLA-like dims. */
backendTest("ragged qLens with an empty request, every strategy", async (decoder) => {
  for (const strategy of STRATEGIES) {
    const spec = {
      ...RAGGED_GQA,
      qLen: undefined,
      qLens: [2, 1, 2, 1],
      seqLens: [130, 0, 2, 65],
      strategy,
      seed: 31,
    };
    const input = makeInput(spec);
    assertMatchesReference(input, await decoder.decode(input), describeSpec(spec));
  }
});

backendTest("empty requests' rows are written over poisoned output", async (decoder) => {
  // GPU backends in tests poison the result buffer (NaN) before each call: the empty rows must
  // come back as the identity, not NaN; twice, so a reused buffer is overwritten again.
  for (let i = 0; i < 2; i++) {
    const spec = {
      ...RAGGED_GQA,
      qLen: undefined,
      qLens: [2, 1],
      seqLens: [0, 40 + i],
      seed: 5 + i,
    };
    const input = makeInput(spec);
    assertMatchesReference(input, await decoder.decode(input), describeSpec(spec));
  }
});

Deno.test("batch-invariant CPU plans: a sequence's rows are the same bits beside ragged neighbours", async () => {
  const decoder = await createDecoder({
    backend: "cpu",
    grid: 6,
    tileTokens: 16,
    batchInvariant: true,
  });
  try {
    const shape = { numHeads: 4, numKVHeads: 2, headDim: 16 };
    const alone = makeInput({ ...shape, seqLens: [300], qLens: [2], seed: 8 });
    const a = await decoder.decode(alone);
    // The same sequence after an empty request and a long qLen-7 verification.
    const other = makeInput({ ...shape, seqLens: [0, 500], qLens: [3, 7], seed: 9 });
    const rows = (3 + 7) * 4;
    const batch: DecodeInput = {
      ...other,
      seqLens: [0, 500, 300],
      qLens: [3, 7, 2],
      q: Float32Array.from([...other.q, ...alone.q]),
      k: Float32Array.from([...(other.k as Float32Array), ...(alone.k as Float32Array)]),
      v: Float32Array.from([...(other.v as Float32Array), ...(alone.v as Float32Array)]),
    };
    const b = await decoder.decode(batch);
    assert.deepStrictEqual(b.lse.subarray(rows), a.lse);
    assert.deepStrictEqual(b.out.subarray(rows * 16), a.out);
  } finally {
    await decoder.dispose();
  }
});
