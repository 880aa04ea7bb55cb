/**
 * Paged attention: paged plans give bitwise the results of dense plans over the same tokens (on
 * the CPU and through the GPU kernels), bad page tables are rejected, and the runner API
 * (`createAttentionEncoder`, `KVCache.encodeAppend`) records steady steps without creating GPU
 * objects. GPU tests run on every WebGPU implementation that opens here (Deno's, Dawn's) and are
 * registered as ignored where none does.
 */

import assert from "node:assert/strict";
import {
  createDecoder,
  createPlan,
  encodeKV,
  type KVDtype,
  referenceAttention,
  type Strategy,
} from "../mod.ts";
import { executePlanOnCpu } from "../plan.ts";
import {
  createAttentionEncoder,
  createKVCache,
  createPagedPlan,
  executePagedPlanOnCpu,
  planForCache,
} from "../runner.ts";
import { deviceTests, gpuBuffer, readF32 } from "./gpu_device.ts";
import { denseInput, encodeAndRead, grow } from "./paged_helpers.ts";
import {
  assertMatchesReference,
  assertNoPoison,
  type CaseSpec,
  makeInput,
  OUT_TOLERANCE,
  randomFloats,
  relativeL2Error,
  sameBits,
  seededRng,
} from "./helpers.ts";

/** Scatters a dense input's tokens over a shuffled page pool; returns pool storage and tables. */
function scatter(
  input: ReturnType<typeof makeInput>,
  pageSize: number,
  seed: number,
): {
  k: Float32Array | Uint16Array;
  v: Float32Array | Uint16Array;
  tables: number[][];
  numPages: number;
} {
  const row = input.numKVHeads * input.headDim;
  const lens = Array.from(input.seqLens);
  const numPages = lens.reduce((a, n) => a + Math.ceil(n / pageSize), 0) + 3;
  const rng = seededRng(seed);
  const order = Array.from({ length: numPages }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const Ctor = input.k instanceof Float32Array ? Float32Array : Uint16Array;
  const k = new Ctor(numPages * pageSize * row).fill(Ctor === Float32Array ? NaN : 0x7e00);
  const v = new Ctor(numPages * pageSize * row).fill(Ctor === Float32Array ? NaN : 0x7e00);
  const tables: number[][] = [];
  let next = 0;
  let start = 0;
  for (const len of lens) {
    const table: number[] = [];
    for (let t = 0; t < len; t += pageSize) {
      const page = order[next++];
      table.push(page);
      const n = Math.min(pageSize, len - t) * row;
      k.set(
        input.k.subarray((start + t) * row, (start + t) * row + n) as never,
        page * pageSize * row,
      );
      v.set(
        input.v.subarray((start + t) * row, (start + t) * row + n) as never,
        page * pageSize * row,
      );
    }
    tables.push(table);
    start += len;
  }
  return { k, v, tables, numPages };
}

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
      const { k, v, tables, numPages } = scatter(input, pageSize, spec.seed);
      const options = { grid: 7, strategy, tileTokens: 16 };
      const dense = executePlanOnCpu(
        createPlan(input, options),
        input,
        1 / Math.sqrt(spec.headDim),
      );
      const plan = createPagedPlan(input, { pageSize, numPages, pageTables: tables }, options);
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
    const a = cache.addSequence();
    grow(cache, a, 37, dense, 1);
    const b = cache.fork(a);
    dense.set(b, dense.get(a)!.slice());
    grow(cache, b, 20, dense, 2);
    grow(cache, a, 3, dense, 3);
    const c = cache.addSequence();
    grow(cache, c, 4, dense, 4);
    const seqs = [b, a, c];
    const qLen = 3;
    const plan = planForCache(cache, { seqs, numHeads: 4, qLen }, { grid: 5, tileTokens: 16 });
    const q = randomFloats(seededRng(9), 3 * qLen * 4 * 16);
    for (let layer = 0; layer < 2; layer++) {
      const paged = executePagedPlanOnCpu(plan, { q, ...cache.layerData(layer) });
      const cat = (i: number) =>
        new Float32Array(seqs.flatMap((s) => [...dense.get(s)![2 * layer + i]]));
      const input = {
        q,
        k: encodeKV(cat(0), kvDtype),
        v: encodeKV(cat(1), kvDtype),
        seqLens: seqs.map((s) => cache.length(s)),
        numHeads: 4,
        numKVHeads: 2,
        headDim: 16,
        qLen,
        kvDtype,
      };
      const want = executePlanOnCpu(createPlan(input, { grid: 5, tileTokens: 16 }), input, 0.25);
      assert.ok(
        sameBits(paged.out, want.out) && sameBits(paged.lse, want.lse),
        `${kvDtype} layer ${layer}`,
      );
    }
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

// ---------------------------------------------------------------------------------------------
// GPU: every WebGPU implementation that opens here.

/** The GPU tests' one attention shape (one kernel specialisation per dtype and qLen). */
const H = 8;
const KVH = 2;
const D = 64;
const GRID = 8;

await deviceTests((test) => {
  test(
    "GPU appends store the host's bits (f32 -> f16, bf16 conversion in WGSL)",
    async ({ device }) => {
      for (const kvDtype of ["f16", "bf16", "f32"] as KVDtype[]) {
        const cache = createKVCache({
          device,
          numLayers: 2,
          numKVHeads: KVH,
          headDim: D,
          pageSize: 4,
          numPages: 8,
          kvDtype,
        });
        const a = cache.addSequence();
        const b = cache.addSequence();
        const rng = seededRng(5);
        const vals = randomFloats(rng, 7 * KVH * D, 70000); // beyond f16's range too
        vals.set([0, -0, 1e-7, -6.1e-5, 65519, 65520, 3.0517578125e-5, Infinity, NaN], 0);
        const slots = cache.extend([a, b], [3, 4]);
        const enc = device.createCommandEncoder();
        const src = gpuBuffer(device, vals);
        cache.encodeAppend(enc, { slots, layer: 1, k: src, v: src });
        device.queue.submit([enc.finish()]);
        const want = encodeKV(vals, kvDtype);
        const row = KVH * D;
        const got = [...(await cache.read(1, a)).k, ...(await cache.read(1, b)).v];
        const bits = (x: ArrayLike<number>) =>
          Array.from(
            x instanceof Float32Array ? new Uint32Array(x.buffer, x.byteOffset, x.length) : x,
          );
        const gotBits = bits(kvDtype === "f32" ? new Float32Array(got) : got);
        const wantBits = bits(want);
        // NaN payloads may differ; everything else must be exact.
        for (let i = 0; i < 7 * row; i++) {
          if (Number.isNaN(vals[i])) continue;
          assert.equal(gotBits[i], wantBits[i], `${kvDtype} element ${i} (${vals[i]})`);
        }
        src.destroy();
        cache.dispose();
      }
    },
    { dawnOnSoftware: true },
  );

  test(
    "paged GPU attention equals the dense GPU kernel bit for bit, after forks",
    async ({ device, name }) => {
      const cache = createKVCache({
        device,
        numLayers: 2,
        numKVHeads: KVH,
        headDim: D,
        pageSize: 16,
        numPages: 64,
        kvDtype: "f16",
      });
      const attention = await createAttentionEncoder(device, { grid: GRID });
      const decoder = await createDecoder({ backend: name, device, grid: GRID });
      const dense = new Map<number, Float32Array[]>();
      try {
        const a = cache.addSequence();
        grow(cache, a, 300, dense, 1);
        const b = cache.fork(a);
        dense.set(b, dense.get(a)!.slice());
        grow(cache, b, 9, dense, 2);
        grow(cache, a, 1, dense, 3);
        const c = cache.addSequence();
        grow(cache, c, 129, dense, 4);
        const seqs = [a, b, c];
        for (const strategy of ["lean", "single"] as Strategy[]) {
          const plan = attention.plan(cache, { seqs, numHeads: H, strategy });
          const q = randomFloats(seededRng(7), 3 * H * D);
          for (const layer of [1, 0]) {
            const got = await encodeAndRead(device, attention, plan, layer, q, 3 * H);
            const input = denseInput(cache, seqs, dense, layer, q, { numHeads: H, strategy });
            const want = await decoder.decode(input);
            assertMatchesReference(input, got, `${strategy} layer ${layer}`);
            assert.ok(
              sameBits(got.out, want.out),
              `out ${strategy} layer ${layer}: paged != dense`,
            );
            assert.ok(
              sameBits(got.lse, want.lse),
              `lse ${strategy} layer ${layer}: paged != dense`,
            );
          }
        }
      } finally {
        await decoder.dispose();
        attention.dispose();
        cache.dispose();
      }
    },
    { dawnOnSoftware: true },
  );

  test("speculative verification: qLen 4 over the paged cache, without an lse buffer", async ({ device }) => {
    const cache = createKVCache({
      device,
      numLayers: 1,
      numKVHeads: KVH,
      headDim: D,
      pageSize: 16,
      numPages: 32,
      kvDtype: "f16",
    });
    const attention = await createAttentionEncoder(device, { grid: GRID });
    const dense = new Map<number, Float32Array[]>();
    try {
      const a = cache.addSequence();
      const b = cache.addSequence();
      grow(cache, a, 100, dense, 1);
      grow(cache, b, 4, dense, 2);
      // The 4 draft tokens arrive through the GPU append path.
      const drafts = randomFloats(seededRng(3), 8 * KVH * D);
      const slots = cache.extend([a, b], 4);
      const plan = attention.plan(cache, { seqs: [a, b], numHeads: H, qLen: 4 });
      const q = randomFloats(seededRng(8), 2 * 4 * H * D);
      const qb = gpuBuffer(device, q);
      const out = gpuBuffer(device, new Float32Array(q.length).fill(NaN));
      const src = gpuBuffer(device, drafts);
      const enc = device.createCommandEncoder();
      cache.encodeAppend(enc, { slots, layer: 0, k: src, v: src });
      attention.encode(enc, { plan, layer: 0, q: qb, out });
      device.queue.submit([enc.finish()]);
      const got = await readF32(device, out, q.length);
      const row = KVH * D;
      const cat = (i: number) =>
        new Float32Array([
          ...dense.get(a)![i],
          ...drafts.subarray(0, 4 * row),
          ...dense.get(b)![i],
          ...drafts.subarray(4 * row),
        ]);
      const input = {
        q,
        k: encodeKV(cat(0), "f16"),
        v: encodeKV(cat(1), "f16"),
        seqLens: [104, 8],
        numHeads: H,
        numKVHeads: KVH,
        headDim: D,
        qLen: 4,
        kvDtype: "f16" as const,
      };
      const ref = referenceAttention(input);
      assertNoPoison("out", got, ref.out.length);
      const err = relativeL2Error(got, ref.out);
      assert.ok(err < OUT_TOLERANCE, `qLen 4: relative L2 error ${err}`);
    } finally {
      attention.dispose();
      cache.dispose();
    }
  });

  test("a ragged batch over the paged cache: qLens 4, 1 and an empty request", async ({ device }) => {
    // FlashInfer's qo_indptr: one sequence verifies 4 drafts, one decodes, one holds no tokens
    // (its rows must come back out 0, lse -Infinity over the NaN-filled buffers). Rows per block
    // follow the largest qLen (4): the kernel of the qLen 4 test, no new compile.
    const cache = createKVCache({
      device,
      numLayers: 1,
      numKVHeads: KVH,
      headDim: D,
      pageSize: 16,
      numPages: 32,
      kvDtype: "f16",
    });
    const attention = await createAttentionEncoder(device, { grid: GRID });
    const dense = new Map<number, Float32Array[]>();
    try {
      const seqs = [cache.addSequence(), cache.addSequence(), cache.addSequence()];
      grow(cache, seqs[0], 70, dense, 11);
      grow(cache, seqs[2], 33, dense, 12);
      const qLens = [4, 1, 1];
      for (const strategy of ["lean", "split", "single"] as Strategy[]) {
        const plan = attention.plan(cache, { seqs, numHeads: H, qLens, strategy });
        const q = randomFloats(seededRng(13), 6 * H * D);
        const qb = gpuBuffer(device, q);
        const out = gpuBuffer(device, new Float32Array(q.length).fill(NaN));
        const lse = gpuBuffer(device, new Float32Array(6 * H).fill(NaN));
        const enc = device.createCommandEncoder();
        attention.encode(enc, { plan, layer: 0, q: qb, out, lse });
        device.queue.submit([enc.finish()]);
        const got = {
          out: await readF32(device, out, q.length),
          lse: await readF32(device, lse, 6 * H),
        };
        const cat = (i: number) =>
          new Float32Array([...dense.get(seqs[0])![i], ...dense.get(seqs[2])![i]]);
        const input = {
          q,
          k: encodeKV(cat(0), "f16"),
          v: encodeKV(cat(1), "f16"),
          seqLens: [70, 0, 33],
          qLens,
          numHeads: H,
          numKVHeads: KVH,
          headDim: D,
          kvDtype: "f16" as const,
        };
        assertMatchesReference(input, got, strategy);
        for (const buf of [qb, out, lse]) buf.destroy();
      }
      // A step of the empty request alone: no tiles at all, its rows still written.
      const plan = attention.plan(cache, { seqs: [seqs[1]], numHeads: H, qLens: [2] });
      const qb = gpuBuffer(device, randomFloats(seededRng(14), 2 * H * D));
      const out = gpuBuffer(device, new Float32Array(2 * H * D).fill(NaN));
      const lse = gpuBuffer(device, new Float32Array(2 * H).fill(NaN));
      const enc = device.createCommandEncoder();
      attention.encode(enc, { plan, layer: 0, q: qb, out, lse });
      device.queue.submit([enc.finish()]);
      assert.ok((await readF32(device, out, 2 * H * D)).every((x) => Object.is(x, 0)));
      assert.ok((await readF32(device, lse, 2 * H)).every((x) => x === -Infinity));
      for (const buf of [qb, out, lse]) buf.destroy();
    } finally {
      attention.dispose();
      cache.dispose();
    }
  });

  test("1,000 decode steps: no pipelines after warm-up, upload rings bounded (no growth per step)", async ({ device }) => {
    // A runner that waits for the GPU every 25 steps: the ring of table regions grows to cover
    // the steps in flight during the first windows, then nothing is created.
    const cache = createKVCache({
      device,
      numLayers: 2,
      numKVHeads: KVH,
      headDim: D,
      pageSize: 16,
      numPages: 256,
      kvDtype: "f16",
    });
    const attention = await createAttentionEncoder(device, { grid: GRID });
    try {
      const seqs = [cache.addSequence(), cache.addSequence(), cache.addSequence()];
      const dense = new Map<number, Float32Array[]>();
      seqs.forEach((s, i) => grow(cache, s, [400, 3, 170][i], dense, i));
      const q = gpuBuffer(device, randomFloats(seededRng(1), 3 * H * D));
      const out = gpuBuffer(device, 4 * 3 * H * D);
      const kv = gpuBuffer(device, randomFloats(seededRng(2), 3 * KVH * D));
      let warm: Record<string, number> | undefined;
      let encoders = 0;
      const counters = () => {
        const a = attention.stats();
        const c = cache.stats();
        return {
          buffersCreated: a.buffersCreated + c.buffersCreated,
          buffersLive: a.buffersLive + c.buffersLive,
          pipelinesCreated: a.pipelinesCreated + c.pipelinesCreated,
          tableRegions: a.tableRegions,
          appendRegions: c.appendRegions,
        };
      };
      for (let step = 0; step < 1000; step++) {
        const slots = cache.extend(seqs, 1);
        const plan = attention.plan(cache, { seqs, numHeads: H });
        const enc = device.createCommandEncoder();
        for (let layer = 0; layer < 2; layer++) {
          cache.encodeAppend(enc, { slots, layer, k: kv, v: kv });
          attention.encode(enc, { plan, layer, q, out });
        }
        device.queue.submit([enc.finish()]);
        encoders++;
        if (step % 25 === 24) await device.queue.onSubmittedWorkDone();
        if (step === 199) warm = counters();
      }
      await device.queue.onSubmittedWorkDone();
      assert.equal(encoders, 1000);
      // After warm-up nothing grows with the steps. A ring grows only when its regions run out
      // before the GPU's progress has been read back; on a loaded host (a software adapter
      // sharing the CPU with other work) that readback can be late once more, so one more
      // doubling of each ring (one arena: two buffers) is allowed, never a growth per step.
      const end = counters();
      assert.equal(end.pipelinesCreated, warm!.pipelinesCreated, "no pipeline after warm-up");
      assert.ok(
        end.tableRegions <= 2 * warm!.tableRegions,
        `table regions ${warm!.tableRegions} -> ${end.tableRegions}`,
      );
      assert.ok(
        end.appendRegions <= 2 * warm!.appendRegions,
        `append regions ${warm!.appendRegions} -> ${end.appendRegions}`,
      );
      assert.ok(
        end.buffersCreated <= warm!.buffersCreated + 4,
        `buffers ${warm!.buffersCreated} -> ${end.buffersCreated}`,
      );
      assert.equal(end.buffersLive - warm!.buffersLive, end.buffersCreated - warm!.buffersCreated);
      // A ring learns which regions are free from a probe's map, whose completion this loop sees
      // only at its next await (every 25 steps). Where the map completes after the queue's
      // onSubmittedWorkDone (Dawn under Deno, the README's "Dawn in Deno": 128 table regions for
      // 25 steps on the H200, session 32; Deno's WebGPU on lavapipe in a CI run of session 35,
      // whose poll loop can resolve the two a poll apart), the regions are freed one window
      // later, one more doubling: bounded all the same (the check above: no growth per step).
      const ringBound = 128;
      assert.ok(
        warm!.tableRegions <= ringBound,
        `${warm!.tableRegions} table regions for 25 steps`,
      );
      assert.ok(
        warm!.appendRegions <= ringBound,
        `${warm!.appendRegions} append regions for 25 steps`,
      );
      // One bind group per region and layer at most, each made once.
      const groups = attention.stats().bindGroupsCreated + cache.stats().bindGroupsCreated;
      const bound = 2 * (end.tableRegions + end.appendRegions) + 8;
      assert.ok(groups <= bound, `${groups} bind groups made (bound ${bound})`);
      assert.deepStrictEqual(seqs.map((s) => cache.length(s)), [1400, 1003, 1170]);
      // The last step's output still matches a dense decode of the cache's contents.
      const plan = attention.plan(cache, { seqs, numHeads: H });
      const enc = device.createCommandEncoder();
      attention.encode(enc, { plan, layer: 1, q, out });
      device.queue.submit([enc.finish()]);
      const got = await readF32(device, out, 3 * H * D);
      const parts = await Promise.all(seqs.map((s) => cache.read(1, s)));
      const cat = (key: "k" | "v") => {
        const all = new Uint16Array(parts.reduce((n, p) => n + p[key].length, 0));
        let o = 0;
        for (const p of parts) all.set(p[key] as Uint16Array, (o += p[key].length) - p[key].length);
        return all;
      };
      const input = {
        q: await readF32(device, q, 3 * H * D),
        k: cat("k"),
        v: cat("v"),
        seqLens: [1400, 1003, 1170],
        numHeads: H,
        numKVHeads: KVH,
        headDim: D,
        kvDtype: "f16" as const,
      };
      const ref = assertMatchesReference(input, {
        out: got,
        lse: (await createDecoderCpu(input)).lse,
      }, "step 1000");
      assert.ok(ref.outError < 2e-5);
    } finally {
      attention.dispose();
      cache.dispose();
    }
  });

  test("stale plans, foreign caches and small buffers are clear errors", async ({ device }) => {
    const cache = createKVCache({
      device,
      numLayers: 1,
      numKVHeads: KVH,
      headDim: D,
      pageSize: 16,
      numPages: 4,
      kvDtype: "f16",
    });
    const attention = await createAttentionEncoder(device, { grid: GRID });
    try {
      const a = cache.addSequence();
      cache.extend([a], 5);
      const plan = attention.plan(cache, { seqs: [a], numHeads: H });
      const q = gpuBuffer(device, 4 * H * D);
      const enc = device.createCommandEncoder();
      assert.throws(
        () => attention.encode(enc, { plan, layer: 0, q, out: gpuBuffer(device, 16) }),
        {
          name: "RangeError",
          message: `out must hold at least ${4 * H * D} bytes for this plan: got 16`,
        },
      );
      assert.throws(
        () => attention.encode(enc, { plan, layer: 1, q, out: q }),
        /layer must be an integer from 0 to 0/,
      );
      cache.extend([a], 1);
      assert.throws(
        () => attention.encode(enc, { plan, layer: 0, q, out: q }),
        /plan is stale: the cache changed/,
      );
      assert.throws(
        () => cache.extend([a], 60),
        /Out of KV cache pages: .* needs 4 page\(s\), 3 free of 4/,
      );
      const host = createKVCache({ numLayers: 1, numKVHeads: KVH, headDim: D, numPages: 4 });
      host.extend([host.addSequence()], 1);
      assert.throws(
        () => attention.plan(host, { seqs: [0], numHeads: H }),
        /cache must be a KVCache on this encoder's device/,
      );
      assert.throws(
        () => attention.plan(cache, { seqs: [a], numHeads: 3 }),
        /numHeads \(3\) must be a multiple of numKVHeads/,
      );
      assert.throws(
        () => attention.plan(cache, { seqs: [a], numHeads: H, qLen: 9 }),
        /must hold at least qLen \(9\) tokens: got 6/,
      );
      enc.finish();
    } finally {
      attention.dispose();
      cache.dispose();
    }
  }, { dawnOnSoftware: true });

  // Release the device when this file's tests are done, not at exit: a Dawn device left running
  // while later files run was seen to crash the test process (SIGSEGV) on lavapipe.
  test("the paged tests release their device", async ({ device }) => {
    await device.queue.onSubmittedWorkDone();
    device.destroy();
    await device.lost;
  }, { dawnOnSoftware: true });
});

async function createDecoderCpu(input: Parameters<typeof executePlanOnCpu>[1]) {
  const d = await createDecoder({ backend: "cpu" });
  try {
    return await d.decode(input);
  } finally {
    await d.dispose();
  }
}
