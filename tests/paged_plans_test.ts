/**
 * Paged plans on the CPU: over pages scattered in a shuffled pool (explicit page tables) or a
 * cache's sequences after forks and appends, they give bitwise the results of dense plans over the
 * same tokens; they are plain data (a structured clone runs alike); bad page tables, stale plans,
 * another cache's storage and batches whose 32-bit token offsets would wrap are refused. The GPU
 * kernels over the same pages: tests/paged_gpu_test.ts.
 */

import assert from "node:assert/strict";
import { createPlan, encodeKV, type KVDtype, referenceAttention, type Strategy } from "../mod.ts";
import { executePlanOnCpu } from "../plan.ts";
import { createKVCache, createPagedPlan, executePagedPlanOnCpu, planForCache } from "../runner.ts";
import { scatterPages } from "./combinations.ts";
import { assertPagedCpuEqualsDense, forkedBatch, grow } from "./paged_helpers.ts";
import {
  assertMatchesReference,
  type CaseSpec,
  makeInput,
  OUT_TOLERANCE,
  randomFloats,
  relativeL2Error,
  sameBits,
  seededRng,
} from "./helpers.ts";

const CPU_CASES: Array<{ spec: CaseSpec; pageSize: number }> = [
  {
    spec: { seqLens: [300, 1, 129], numHeads: 8, numKVHeads: 2, headDim: 64, seed: 1 },
    pageSize: 16,
  },
  {
    spec: {
      seqLens: [70, 33],
      numHeads: 4,
      numKVHeads: 4,
      headDim: 32,
      kvDtype: "f16",
      qLen: 4,
      seed: 2,
    },
    pageSize: 8,
  },
  {
    spec: {
      seqLens: [513, 5, 64],
      numHeads: 8,
      numKVHeads: 1,
      headDim: 16,
      kvDtype: "bf16",
      seed: 3,
    },
    pageSize: 1,
  },
];

Deno.test("paged plans on the CPU equal dense plans bit for bit (every strategy, dtype, qLen)", () => {
  for (const { spec, pageSize } of CPU_CASES) {
    for (const strategy of ["lean", "split", "single"] as Strategy[]) {
      const input = makeInput({ ...spec, strategy });
      const { k, v, pageTables, numPages } = scatterPages(input, pageSize, "NHD", spec.seed);
      const options = { grid: 7, strategy, tileTokens: 16 };
      const dense = executePlanOnCpu(
        createPlan(input, options),
        input,
        1 / Math.sqrt(spec.headDim),
      );
      const plan = createPagedPlan(input, { pageSize, numPages, pageTables }, options);
      const paged = executePagedPlanOnCpu(plan, { q: input.q, k, v });
      const label = `${spec.kvDtype ?? "f32"} qLen ${spec.qLen ?? 1} ${strategy} page ${pageSize}`;
      assert.ok(sameBits(paged.out, dense.out), `out ${label}`);
      assert.ok(sameBits(paged.lse, dense.lse), `lse ${label}`);
      assertMatchesReference(input, paged, label);
    }
  }
});

Deno.test("bad page tables throw RangeError or TypeError naming the entry", () => {
  const shape = { seqLens: [5, 3], numHeads: 2, numKVHeads: 1, headDim: 8 };
  const plan = (pageTables: unknown, pageSize = 4, numPages = 4) =>
    createPagedPlan(shape, { pageSize, numPages, pageTables: pageTables as number[][] }, {
      grid: 4,
    });
  assert.throws(() => plan([[0, 1]]), {
    name: "RangeError",
    message: "pageTables must hold one page list per sequence (2): got 1",
  });
  assert.throws(() => plan([[0], [1]]), {
    name: "RangeError",
    message: "pageTables[0] must hold at least 2 pages for seqLens[0] = 5 tokens: got 1",
  });
  assert.throws(() => plan([[0, 4], [1]]), {
    name: "RangeError",
    message: "pageTables[0][1] must be a page number from 0 to 3: got 4",
  });
  assert.throws(() => plan([[0, 1], [-1]]), /pageTables\[1\]\[0\] must be a page number/);
  assert.throws(() => plan([[0, 1.5], [2]]), /pageTables\[0\]\[1\] must be a page number/);
  assert.throws(() => plan([[0, "1"], [2]]), {
    name: "TypeError",
    message: /pageTables\[0\]\[1\] must be a number/,
  });
  assert.throws(() => plan([[0, 1], 3]), TypeError);
  assert.throws(
    () => plan([[0, 1], [2]], 3),
    /pageSize must be a power of two from 1 to 65536: got 3/,
  );
  assert.throws(() => plan([[0, 1], [2]], 4, 0), /numPages must be a positive integer/);
  const ok = plan([[3, 1, 2], [0]]);
  assert.deepStrictEqual(Array.from(ok.kv.pages), [3, 1, 0], "extra entries are ignored");
  // Host storage smaller than the tables' pool is rejected before any read.
  assert.throws(
    () =>
      executePagedPlanOnCpu(ok, {
        q: new Float32Array(32),
        k: new Float32Array(8),
        v: new Float32Array(8),
      }),
    /k must hold 4 pages of 4 rows of 8 elements: got 8 elements/,
  );
});

Deno.test("a cache after forks and appends decodes like the dense tokens, bit for bit (CPU)", () => {
  for (const kvDtype of ["f32", "bf16"] as KVDtype[]) {
    const cache = createKVCache({
      numLayers: 2,
      numKVHeads: 2,
      headDim: 16,
      pageSize: 8,
      numPages: 64,
      kvDtype,
    });
    const dense = new Map<number, Float32Array[]>();
    const [a, b, c] = forkedBatch(cache, dense, grow, [37, 20, 3, 4], [1, 2, 3, 4]);
    const seqs = [b, a, c];
    assertPagedCpuEqualsDense(cache, seqs, 3, (layer) => {
      const cat = (i: number) =>
        new Float32Array(seqs.flatMap((s) => [...dense.get(s)![2 * layer + i]]));
      return { k: encodeKV(cat(0), kvDtype), v: encodeKV(cat(1), kvDtype) };
    }, kvDtype);
  }
});

Deno.test("a stale plan or another cache's storage is refused on the CPU too", () => {
  const cache = createKVCache({
    numLayers: 2,
    numKVHeads: 1,
    headDim: 8,
    pageSize: 4,
    numPages: 8,
  });
  const row = (x: number, n: number) => new Float32Array(8 * n).fill(x);
  const a = cache.addSequence();
  cache.append(a, { k: [row(1, 6), row(2, 6)], v: [row(3, 6), row(4, 6)] });
  const plan = planForCache(cache, { seqs: [a], numHeads: 1 }, { grid: 2 });
  const q = new Float32Array(8).fill(0.5);
  assert.equal(executePagedPlanOnCpu(plan, { q, ...cache.layerData(1) }).out[0], 4);
  // a is freed and its pages go to b: the plan would read b's tokens.
  cache.free(a);
  const b = cache.addSequence();
  cache.append(b, { k: [row(5, 6), row(6, 6)], v: [row(7, 6), row(8, 6)] });
  assert.throws(() => executePagedPlanOnCpu(plan, { q, ...cache.layerData(1) }), {
    name: "RangeError",
    message: /^plan is stale: the cache changed \(version \d+, planned at \d+\); plan again/,
  });
  const fresh = planForCache(cache, { seqs: [b], numHeads: 1 }, { grid: 2 });
  const other = createKVCache({
    numLayers: 1,
    numKVHeads: 1,
    headDim: 8,
    pageSize: 4,
    numPages: 8,
  });
  assert.throws(() => executePagedPlanOnCpu(fresh, { q, ...other.layerData(0) }), {
    name: "RangeError",
    message: "k and v must be one layer's storage of the plan's cache (cache.layerData(layer))",
  });
  assert.equal(executePagedPlanOnCpu(fresh, { q, ...cache.layerData(0) }).out[0], 7);
});

Deno.test("paged plans are plain data: a structured clone runs alike and names its cache by id", () => {
  const rng = seededRng(1414);
  const cache = createKVCache({
    numLayers: 1,
    numKVHeads: 2,
    headDim: 8,
    kvDtype: "f16",
    pageSize: 4,
    numPages: 16,
  });
  const a = cache.addSequence();
  const b = cache.addSequence();
  // Interleaved appends, so the sequences' pages alternate in the pool.
  for (const [seq, n] of [[a, 3], [b, 5], [a, 6], [b, 2]]) {
    cache.append(seq, { k: [randomFloats(rng, 16 * n)], v: [randomFloats(rng, 16 * n)] });
  }
  const plan = planForCache(cache, { seqs: [b, a], numHeads: 4, qLen: 2 }, { grid: 3 });
  assert.equal(plan.kv.kind, "paged");
  assert.equal(plan.cacheId, cache.id);
  assert.equal(plan.cacheVersion, cache.version);
  assert.ok(!Object.values(plan).includes(cache), "the plan holds no cache object");
  const clone = structuredClone(plan);
  const q = randomFloats(rng, 2 * 2 * 4 * 8);
  const got = executePagedPlanOnCpu(clone, { q, ...cache.layerData(0) });
  const want = executePagedPlanOnCpu(plan, { q, ...cache.layerData(0) });
  assert.ok(sameBits(got.out, want.out) && sameBits(got.lse, want.lse));
  // Against the float64 reference over the sequences' tokens, read back densely.
  const ka = cache.read(0, a);
  const kb = cache.read(0, b);
  return Promise.all([kb, ka]).then(([rb, ra]) => {
    const cat = (x: Uint16Array, y: Uint16Array) => {
      const c = new Uint16Array(x.length + y.length);
      c.set(x);
      c.set(y, x.length);
      return c;
    };
    const ref = referenceAttention({
      q,
      k: cat(rb.k as Uint16Array, ra.k as Uint16Array),
      v: cat(rb.v as Uint16Array, ra.v as Uint16Array),
      seqLens: [7, 9],
      numHeads: 4,
      numKVHeads: 2,
      headDim: 8,
      qLen: 2,
      kvDtype: "f16",
    });
    assert.ok(relativeL2Error(got.out, ref.out) < OUT_TOLERANCE, "matches the reference");
    cache.extend([a], 1);
    assert.throws(() => executePagedPlanOnCpu(clone, { q, ...cache.layerData(0) }), {
      name: "RangeError",
      message: /^plan is stale: the cache changed/,
    });
  });
});

Deno.test("plans refuse batches whose 32-bit token offsets would wrap", () => {
  // Two sequences of 2^31 tokens: the second starts at 2^31, and the batch ends at 2^32.
  const shape = { seqLens: [2 ** 31, 2 ** 31], numHeads: 1, numKVHeads: 1, headDim: 8 };
  assert.throws(() => createPlan(shape, { grid: 4 }), {
    name: "RangeError",
    message: "seqLens must total at most 4294967295 tokens in one KV window (32-bit offsets): " +
      "got 4294967296; split the KV with maxBindingBytes",
  });
  const pages = new Array(2 ** 15).fill(0);
  assert.throws(
    () =>
      createPagedPlan(shape, { pageSize: 65536, numPages: 1, pageTables: [pages, pages] }, {
        grid: 4,
      }),
    {
      name: "RangeError",
      message: "seqLens must total at most 4294967295 tokens (32-bit offsets): got 4294967296",
    },
  );
  // One token less fits.
  const fits = { ...shape, seqLens: [2 ** 31, 2 ** 31 - 1] };
  assert.equal(createPlan(fits, { grid: 4 }).problem.totalTokens, 2 ** 32 - 1);
});
