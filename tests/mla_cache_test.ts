/**
 * MLA through the library's own paged cache on the host: a `KVCache` with V rows of their own
 * head dim (`headDimV`) stores, reads back, forks and copies-on-write both row sizes, in every
 * dtype family (f32, f16, 8-bit with its scales); `planForCache` carries `headDimV` into the plan,
 * and the CPU decodes its pages like the dense plan and the float64 reference, MLA's real 576/512
 * dims included; bad `headDimV` and V rows are refused. On the GPU: tests/mla_cache_gpu_test.ts.
 */

import assert from "node:assert/strict";
import {
  createPlan,
  type DecodeInput,
  dynamicKVScales,
  encodeKV,
  STRATEGIES,
  type Strategy,
} from "../mod.ts";
import { executePlanOnCpu } from "../plan.ts";
import { createKVCache, executePagedPlanOnCpu, type KVCache, planForCache } from "../runner.ts";
import { assertMatchesReference, randomFloats, seededRng } from "./helpers.ts";
import { assertStored, type BatchSpec, layerInputs, seqRows } from "./mla_cache.ts";

/**
 * Fills a host cache with the batch: sequence 0's prefix appended, forked into sequence 1, both
 * grown (copy-on-write of the shared partial page), sequence 2 by extend + write, sequence 3
 * empty. Returns the sequence ids in batch order.
 */
function fillCache(cache: KVCache, layers: DecodeInput[], spec: BatchSpec): number[] {
  const [len0, len1, len2] = spec.seqLens;
  const append = (seq: number, s: number, from: number, to: number) => {
    const rows = layers.map((input) => seqRows(input, s, from, to));
    cache.append(seq, {
      k: rows.map((r) => r.k),
      v: rows.map((r) => r.v),
      ...(rows[0].kScale
        ? { kScale: rows.map((r) => r.kScale!), vScale: rows.map((r) => r.vScale!) }
        : {}),
    });
  };
  const a = cache.addSequence();
  append(a, 0, 0, spec.prefix);
  const b = cache.fork(a);
  append(a, 0, spec.prefix, len0);
  append(b, 1, spec.prefix, len1);
  const c = cache.addSequence();
  const slots = cache.extend([c], len2);
  layers.forEach((input, l) => cache.write(slots, l, seqRows(input, 2, 0, len2)));
  return [a, b, c, cache.addSequence()];
}

const BATCH_64_32: Omit<BatchSpec, "kvDtype"> = {
  seqLens: [21, 13, 9, 0],
  qLens: [1, 3, 2, 1],
  prefix: 6,
  numHeads: 8,
  numKVHeads: 2,
  headDim: 64,
  headDimV: 32,
};

async function checkBatch(spec: BatchSpec, strategies: readonly Strategy[], seed: number) {
  const numLayers = 2;
  const cache = createKVCache({
    numLayers,
    numKVHeads: spec.numKVHeads,
    headDim: spec.headDim,
    headDimV: spec.headDimV,
    kvDtype: spec.kvDtype,
    pageSize: 4,
    numPages: 24,
  });
  const layers = layerInputs(spec, numLayers, seed);
  const seqs = fillCache(cache, layers, spec);
  // The fork shares sequence 0's full pages; the partial one was copied on write.
  const [ta, tb] = [cache.pageTable(seqs[0]), cache.pageTable(seqs[1])];
  assert.equal(ta[0], tb[0]);
  assert.notEqual(ta[1], tb[1]);
  await assertStored(cache, layers, seqs);
  for (const strategy of strategies) {
    const step = { seqs, numHeads: spec.numHeads, qLens: spec.qLens, strategy };
    const plan = planForCache(cache, step, { grid: 5 });
    assert.equal(plan.problem.headDimV, spec.headDimV);
    for (let l = 0; l < numLayers; l++) {
      const input = layers[l];
      const got = executePagedPlanOnCpu(plan, { q: input.q, ...cache.layerData(l) });
      assertMatchesReference(input, got, `${spec.kvDtype} ${strategy} layer ${l}`);
      // Bitwise the dense plan's result: same schedule, rows read through the pages.
      const dense = executePlanOnCpu(
        createPlan(input, { grid: 5, strategy }),
        input,
        plan.scale,
      );
      assert.deepStrictEqual(got.out, dense.out);
      assert.deepStrictEqual(got.lse, dense.lse);
    }
  }
  cache.dispose();
}

Deno.test("a cache with V rows of 32 under K rows of 64: rows, forks, copy-on-write, plans (f32, f16, bf16)", async () => {
  for (const kvDtype of ["f32", "f16"] as const) {
    await checkBatch({ ...BATCH_64_32, kvDtype }, STRATEGIES, 11);
  }
  // V rows longer than K's work alike.
  await checkBatch({ ...BATCH_64_32, headDim: 32, headDimV: 64, kvDtype: "bf16" }, ["lean"], 12);
  const cache = createKVCache({
    numLayers: 2,
    numKVHeads: 2,
    headDim: 64,
    headDimV: 32,
    pageSize: 4,
    numPages: 8,
  });
  assert.equal(cache.headDimV, 32);
  assert.equal(cache.rowBytesV, 2 * 32 * 4);
  assert.equal(cache.layerData(0).k.length, 8 * 4 * 128);
  assert.equal(cache.layerData(0).v.length, 8 * 4 * 64);
  assert.equal(cache.memory().bytesPerPage, 2 * 4 * (512 + 256));
  // Without headDimV, V rows are K's.
  assert.equal(createKVCache({ numLayers: 1, numKVHeads: 1, headDim: 8, numPages: 1 }).headDimV, 8);
});

Deno.test("an 8-bit cache with headDimV keeps codes and per-(row, KV head) scales of K and V", async () => {
  await checkBatch({ ...BATCH_64_32, kvDtype: "int8" }, ["lean", "split"], 21);
  await checkBatch({ ...BATCH_64_32, kvDtype: "fp8e4m3" }, ["lean"], 22);
  // Dynamic scales group V's values by its own head dim.
  const cache = createKVCache({
    numLayers: 1,
    numKVHeads: 2,
    headDim: 64,
    headDimV: 32,
    kvDtype: "int8",
    pageSize: 4,
    numPages: 4,
  });
  const rng = seededRng(5);
  const k = randomFloats(rng, 3 * 128, 3);
  const v = randomFloats(rng, 3 * 64, 0.1);
  const seq = cache.addSequence();
  cache.append(seq, { k: [k], v: [v], kScale: ["dynamic"], vScale: ["dynamic"] });
  const got = await cache.read(0, seq);
  const kScale = dynamicKVScales(k, "int8", { headDim: 64 });
  const vScale = dynamicKVScales(v, "int8", { headDim: 32 });
  assert.deepStrictEqual(got.kScale, kScale);
  assert.deepStrictEqual(got.vScale, vScale);
  assert.deepStrictEqual(got.k, encodeKV(k, "int8", { scale: kScale }));
  assert.deepStrictEqual(got.v, encodeKV(v, "int8", { scale: vScale }));
});

Deno.test("MLA's real dims in a cache: K 576, V 512, one latent KV head under 16 query heads (CPU)", async () => {
  const spec: BatchSpec = {
    seqLens: [19, 10, 6, 0],
    qLens: [2, 1, 1, 1],
    prefix: 5,
    numHeads: 16,
    numKVHeads: 1,
    headDim: 576,
    headDimV: 512,
    kvDtype: "f32",
  };
  await checkBatch(spec, ["lean"], 31);
});

Deno.test("bad headDimV and V rows of the wrong length throw naming the field, and change nothing", () => {
  const options = { numLayers: 2, numKVHeads: 2, headDim: 64, pageSize: 4, numPages: 4 };
  const error = (type: typeof TypeError, re: RegExp) => (e: unknown) =>
    e instanceof type && re.test((e as Error).message);
  assert.throws(
    () => createKVCache({ ...options, headDimV: "32" as unknown as number }),
    error(TypeError, /^headDimV must be a number: got string$/),
  );
  for (const bad of [12, 0, -8, 8.5, 584, NaN]) {
    assert.throws(
      () => createKVCache({ ...options, headDimV: bad }),
      error(RangeError, new RegExp(`^headDimV must be .*: got ${bad}$`)),
      `headDimV ${bad}`,
    );
  }
  const cache = createKVCache({ ...options, headDimV: 32 });
  const seq = cache.addSequence();
  const k = new Float32Array(128);
  // V rows sized like K's: refused before the sequence grows.
  assert.throws(
    () => cache.append(seq, { k: [k, k], v: [k, new Float32Array(64)] }),
    error(RangeError, /^v\[0\] must have 64 elements \(1 tokens x 2 KV heads x 32\): got 128$/),
  );
  assert.equal(cache.length(seq), 0);
  const slots = cache.extend([seq], 1);
  assert.throws(
    () => cache.write(slots, 0, { k, v: new Float32Array(32) }),
    error(RangeError, /^v must have 64 elements \(1 tokens x 2 KV heads x 32\): got 32$/),
  );
  // K rows sized like V's are K's error.
  assert.throws(
    () => cache.write(slots, 0, { k: new Float32Array(64), v: new Float32Array(64) }),
    error(RangeError, /^k must have 128 elements \(1 tokens x 2 KV heads x 64\): got 64$/),
  );
  // The cache is still usable.
  cache.write(slots, 1, { k: k.fill(1), v: new Float32Array(64).fill(2) });
  assert.equal(cache.layerData(1).v[slots.rows[0] * 64 + 63], 2);
  assert.equal(cache.layerData(1).k[slots.rows[0] * 128 + 127], 1);
});
