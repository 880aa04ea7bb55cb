/**
 * MLA through the library's own paged cache: a `KVCache` with V rows of their own head dim
 * (`headDimV`) stores, reads back, forks and copies-on-write both row sizes, in every dtype
 * family (f32, f16, 8-bit with its scales); `planForCache` carries `headDimV` into the plan, and
 * the CPU backend and the attention encoder decode its pages like the dense float64 reference.
 * On the GPU backends: the append kernel (one pipeline per dtype) copies K and V rows of
 * different lengths, and a cache filled by it decodes through the kernel set's MLA-like wide
 * family (the real 576/512 dims run on the CPU).
 */

import assert from "node:assert/strict";
import {
  createPlan,
  type DecodeInput,
  dynamicKVScales,
  encodeKV,
  type KVArray,
  type KVDtype,
  STRATEGIES,
  type Strategy,
} from "../mod.ts";
import { executePlanOnCpu } from "../plan.ts";
import {
  createAttentionEncoder,
  createKVCache,
  executePagedPlanOnCpu,
  type KVCache,
  planForCache,
} from "../runner.ts";
import { assertMatchesReference, makeInput, randomFloats, seededRng } from "./helpers.ts";
import { MLA_WIDE } from "./kernel_set.ts";
import { deviceTests, gpuBuffer, readF32 } from "./gpu_device.ts";

/** A batch's shape: sequence 1 shares sequence 0's first `prefix` tokens (a fork). */
interface BatchSpec {
  seqLens: number[];
  qLens: number[];
  prefix: number;
  numHeads: number;
  numKVHeads: number;
  headDim: number;
  headDimV: number;
  kvDtype: KVDtype;
}

/** One dense input per layer, sequence 1's first `prefix` tokens made equal to sequence 0's. */
function layerInputs(spec: BatchSpec, numLayers: number, seed: number): DecodeInput[] {
  const scaled = spec.kvDtype === "int8" || spec.kvDtype.startsWith("fp8");
  return Array.from({ length: numLayers }, (_, l) => {
    const input = makeInput({ ...spec, seed: seed + l, ...(scaled ? { kvScales: "token" } : {}) });
    const start1 = spec.seqLens[0];
    const share = (a: KVArray | Float32Array | number | undefined, row: number) => {
      if (typeof a !== "object") return;
      a.copyWithin(start1 * row, 0, spec.prefix * row);
    };
    share(input.k, spec.numKVHeads * spec.headDim);
    share(input.v, spec.numKVHeads * spec.headDimV);
    share(input.kScale, spec.numKVHeads);
    share(input.vScale, spec.numKVHeads);
    return input;
  });
}

/** Rows `[from, to)` of sequence `s` of a dense input: K, V and (8-bit) their scales. */
function seqRows(input: DecodeInput, s: number, from: number, to: number) {
  const start = Array.from(input.seqLens).slice(0, s).reduce((a, b) => a + b, 0);
  const h = input.numKVHeads;
  const part = <T extends KVArray>(a: T, row: number) =>
    a.subarray((start + from) * row, (start + to) * row) as T;
  return {
    k: part(input.k, h * input.headDim),
    v: part(input.v, h * (input.headDimV ?? input.headDim)),
    ...(input.kScale instanceof Float32Array
      ? { kScale: part(input.kScale, h), vScale: part(input.vScale as Float32Array, h) }
      : {}),
  };
}

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

const f32Bits = (a: KVArray) =>
  a instanceof Float32Array ? new Uint32Array(a.buffer, a.byteOffset, a.length) : a;

/** Every sequence of every layer reads back as its dense rows, bit for bit, with its scales. */
async function assertStored(cache: KVCache, layers: DecodeInput[], seqs: number[]) {
  for (let l = 0; l < layers.length; l++) {
    for (let s = 0; s < seqs.length; s++) {
      const want = seqRows(layers[l], s, 0, layers[l].seqLens[s]);
      const got = await cache.read(l, seqs[s]);
      const at = `layer ${l} sequence ${s}`;
      assert.equal(got.k.constructor, want.k.constructor, `${at} k type`);
      assert.deepStrictEqual(Array.from(f32Bits(got.k)), Array.from(f32Bits(want.k)), `${at} k`);
      assert.deepStrictEqual(Array.from(f32Bits(got.v)), Array.from(f32Bits(want.v)), `${at} v`);
      if (want.kScale) {
        assert.deepStrictEqual(got.kScale, want.kScale, `${at} kScale`);
        assert.deepStrictEqual(got.vScale, want.vScale, `${at} vScale`);
      }
    }
  }
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

await deviceTests((test) => {
  test(
    "the append kernel copies K and V rows of different lengths (f32, f16, int8; V shorter, longer)",
    async ({ device }) => {
      const H = 2;
      const cases = [["f32", 64, 32], ["f16", 64, 32], ["int8", 64, 32], ["f32", 32, 64]] as const;
      for (const [kvDtype, D, DV] of cases) {
        const cache = createKVCache({
          device,
          numLayers: 2,
          numKVHeads: H,
          headDim: D,
          headDimV: DV,
          kvDtype,
          pageSize: 4,
          numPages: 8,
        });
        const a = cache.addSequence();
        const b = cache.addSequence();
        const rng = seededRng(7);
        const k = randomFloats(rng, 9 * H * D, 2);
        const v = randomFloats(rng, 9 * H * DV, 0.5);
        const [kb, vb] = [gpuBuffer(device, k), gpuBuffer(device, v)];
        const int8 = kvDtype === "int8";
        const scales = int8 ? { kScale: 2 ** -6, vScale: "dynamic" as const } : {};
        let slots = cache.extend([a, b], [3, 4]);
        let enc = device.createCommandEncoder();
        cache.encodeAppend(enc, { slots, layer: 1, k: kb, v: vb, ...scales });
        device.queue.submit([enc.finish()]);
        // A fork of a's partial page, copied on write (on the GPU), then one more token each.
        const c = cache.fork(a);
        slots = cache.extend([c, a], [1, 1]);
        const [kb2, vb2] = [
          gpuBuffer(device, k.subarray(7 * H * D)),
          gpuBuffer(device, v.subarray(7 * H * DV)),
        ];
        enc = device.createCommandEncoder();
        cache.encodeAppend(enc, { slots, layer: 1, k: kb2, v: vb2, ...scales });
        device.queue.submit([enc.finish()]);
        // The host's encoding of the same values: tokens 0-2 are a's, 3-6 b's, 7 c's, 8 a's.
        const vScale = int8 ? dynamicKVScales(v, "int8", { headDim: DV }) : undefined;
        const want = {
          k: encodeKV(k, kvDtype, int8 ? { scale: 2 ** -6 } : undefined),
          v: encodeKV(v, kvDtype, vScale ? { scale: vScale } : undefined),
        };
        const tokens = { [a]: [0, 1, 2, 8], [b]: [3, 4, 5, 6], [c]: [0, 1, 2, 7] };
        for (const seq of [a, b, c]) {
          const got = await cache.read(1, seq);
          const rowsOf = (x: KVArray, row: number) =>
            tokens[seq].flatMap((t) => Array.from(f32Bits(x.subarray(t * row, (t + 1) * row))));
          assert.deepStrictEqual(
            Array.from(f32Bits(got.k)),
            rowsOf(want.k, H * D),
            `${kvDtype} k ${seq}`,
          );
          assert.deepStrictEqual(
            Array.from(f32Bits(got.v)),
            rowsOf(want.v, H * DV),
            `${kvDtype} v ${seq}`,
          );
          if (int8) {
            assert.deepStrictEqual(Array.from(got.kScale!), new Array(4 * H).fill(2 ** -6));
            const vs = tokens[seq].flatMap((t) => Array.from(vScale!.subarray(t * H, (t + 1) * H)));
            assert.deepStrictEqual(Array.from(got.vScale!), vs, `int8 vScale ${seq}`);
          }
        }
        // Host writes of V rows land at V's row size too.
        const rows = cache.extend([b], 1);
        cache.write(rows, 0, {
          k: new Float32Array(H * D).fill(1),
          v: new Float32Array(H * DV).fill(0.5),
        });
        const got0 = await cache.read(0, b);
        assert.deepStrictEqual(
          Array.from(f32Bits(got0.v.subarray(4 * H * DV))),
          Array.from(f32Bits(encodeKV(new Float32Array(H * DV).fill(0.5), kvDtype))),
        );
        assert.deepStrictEqual(
          Array.from(f32Bits(got0.k.subarray(4 * H * D))),
          Array.from(f32Bits(encodeKV(new Float32Array(H * D).fill(1), kvDtype))),
        );
        // The runner's V buffer must hold V rows (of headDimV), K's K rows.
        const small = gpuBuffer(device, 4 * H * DV - 4);
        assert.throws(
          () =>
            cache.encodeAppend(device.createCommandEncoder(), {
              slots: rows,
              layer: 0,
              k: kb,
              v: small,
            }),
          (e: unknown) =>
            e instanceof RangeError &&
            e.message.startsWith(`v must hold 1 f32 rows of ${H * DV} (${4 * H * DV} bytes)`),
        );
        for (const buf of [kb, vb, kb2, vb2, small]) buf.destroy();
        cache.dispose();
      }
    },
    { dawnOnSoftware: true },
  );

  test(
    "a cache filled by the append kernel decodes MLA-like wide rows (K 272, V 264) through the attention encoder",
    async ({ device }) => {
      const { numHeads, numKVHeads, headDim } = MLA_WIDE;
      const headDimV = MLA_WIDE.headDimV!;
      const spec: BatchSpec = {
        seqLens: [37, 18, 20, 0],
        qLens: [1, 1, 1, 1],
        prefix: 13,
        numHeads,
        numKVHeads,
        headDim,
        headDimV,
        kvDtype: "f32",
      };
      const [input] = layerInputs(spec, 1, 41);
      const cache = createKVCache({
        device,
        numLayers: 1,
        numKVHeads,
        headDim,
        headDimV,
        pageSize: 8,
        numPages: 16,
      });
      // MLA_WIDE's class without subgroups, paged (as tests/mla_test.ts's paged test).
      const attention = await createAttentionEncoder(device, {
        grid: 5,
        kernel: { subgroups: false },
      });
      const made: GPUBuffer[] = [];
      const append = (seq: number, s: number, from: number, to: number) => {
        const rows = seqRows(input, s, from, to);
        const k = gpuBuffer(device, rows.k as Float32Array);
        const v = gpuBuffer(device, rows.v as Float32Array);
        made.push(k, v);
        const slots = cache.extend([seq], to - from);
        const enc = device.createCommandEncoder();
        cache.encodeAppend(enc, { slots, layer: 0, k, v });
        device.queue.submit([enc.finish()]);
      };
      try {
        const a = cache.addSequence();
        append(a, 0, 0, spec.prefix);
        const b = cache.fork(a);
        append(a, 0, spec.prefix, 37);
        append(b, 1, spec.prefix, 18);
        const c = cache.addSequence();
        append(c, 2, 0, 20);
        const seqs = [a, b, c, cache.addSequence()];
        await assertStored(cache, [input], seqs);
        const rows = 4 * numHeads;
        const q = gpuBuffer(device, input.q);
        const out = gpuBuffer(device, new Float32Array(rows * headDimV).fill(NaN));
        const lse = gpuBuffer(device, new Float32Array(rows).fill(NaN));
        made.push(q, out, lse);
        for (const strategy of ["lean", "split"] as const) {
          const plan = attention.plan(cache, { seqs, numHeads, strategy });
          assert.equal(plan.problem.headDimV, headDimV);
          const enc = device.createCommandEncoder();
          attention.encode(enc, { plan, layer: 0, q, out, lse });
          device.queue.submit([enc.finish()]);
          const got = {
            out: await readF32(device, out, rows * headDimV),
            lse: await readF32(device, lse, rows),
          };
          assertMatchesReference(input, got, `cache ${strategy}`);
        }
      } finally {
        for (const buf of made) buf.destroy();
        attention.dispose();
        cache.dispose();
      }
    },
  );
});
