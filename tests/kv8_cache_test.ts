/**
 * The paged KV cache with 8-bit dtypes: codes and their per-(row, KV head) scales stored beside
 * the pages, appended from floats (quantised with a scale) or from codes, kept through forks and
 * copy-on-write, read back, and decoded on the CPU like the dense tokens; bad rows and scales.
 */

import assert from "node:assert/strict";
import {
  createPlan,
  decodeKV,
  dynamicKVScales,
  encodeKV,
  type KVArray,
  type KVDtype,
} from "../mod.ts";
import { executePlanOnCpu } from "../plan.ts";
import {
  createAttentionEncoder,
  createKVCache,
  executePagedPlanOnCpu,
  type KVCache,
  planForCache,
} from "../runner.ts";
import { deviceTests, gpuBuffer, readF32 } from "./gpu_device.ts";
import { assertMatchesReference, randomFloats, sameBits, seededRng } from "./helpers.ts";

const KV8: readonly KVDtype[] = ["int8", "fp8e4m3", "fp8e5m2"];

/** What a sequence should hold per layer: codes and scales of K and V, token by token. */
interface Held {
  k: KVArray[];
  v: KVArray[];
  kScale: Float32Array[];
  vScale: Float32Array[];
}

function concat<T extends KVArray>(a: T, b: T): T {
  const out = new (a.constructor as { new (n: number): T })(a.length + b.length);
  out.set(a as never);
  out.set(b as never, a.length);
  return out;
}

/**
 * Appends `n` random tokens to `seq`: odd seeds as floats with per-(token, KV head) scales,
 * even seeds as floats with one scale per layer; keeps the expected codes and scales.
 */
function grow(cache: KVCache, seq: number, n: number, held: Map<number, Held>, seed: number) {
  const rng = seededRng(seed);
  const L = cache.numLayers;
  const entries = n * cache.numKVHeads;
  const k = Array.from({ length: L }, () => randomFloats(rng, n * cache.rowElements, 3));
  const v = Array.from({ length: L }, () => randomFloats(rng, n * cache.rowElements, 3));
  const perToken = seed % 2 === 1;
  const scale = () =>
    perToken
      ? Float32Array.from({ length: entries }, () => 0.01 + 0.05 * rng())
      : 0.01 + 0.05 * rng();
  const kScale = Array.from({ length: L }, scale);
  const vScale = Array.from({ length: L }, scale);
  cache.append(seq, { k, v, kScale, vScale });
  const h = held.get(seq) ?? {
    k: Array.from({ length: L }, () => encodeKV(new Float32Array(0), cache.kvDtype)),
    v: Array.from({ length: L }, () => encodeKV(new Float32Array(0), cache.kvDtype)),
    kScale: Array.from({ length: L }, () => new Float32Array(0)),
    vScale: Array.from({ length: L }, () => new Float32Array(0)),
  };
  const full = (s: number | Float32Array) =>
    typeof s === "number" ? new Float32Array(entries).fill(s) : s;
  held.set(seq, {
    k: h.k.map((a, l) => concat(a, encodeKV(k[l], cache.kvDtype, { scale: kScale[l] }))),
    v: h.v.map((a, l) => concat(a, encodeKV(v[l], cache.kvDtype, { scale: vScale[l] }))),
    kScale: h.kScale.map((a, l) => concat(a, full(kScale[l]))),
    vScale: h.vScale.map((a, l) => concat(a, full(vScale[l]))),
  });
}

Deno.test("8-bit caches keep codes and scales through appends, forks and copy-on-write", async () => {
  for (const kvDtype of KV8) {
    const cache = createKVCache({
      numLayers: 2,
      numKVHeads: 2,
      headDim: 8,
      pageSize: 4,
      numPages: 32,
      kvDtype,
    });
    const held = new Map<number, Held>();
    const a = cache.addSequence();
    grow(cache, a, 6, held, 1);
    const b = cache.fork(a); // shares a's partially filled last page
    held.set(b, { ...held.get(a)! });
    grow(cache, b, 3, held, 2); // copies the shared page, scales included
    grow(cache, a, 5, held, 3);
    for (const seq of [a, b]) {
      for (let layer = 0; layer < 2; layer++) {
        const got = await cache.read(layer, seq);
        const want = held.get(seq)!;
        const label = `${kvDtype} seq ${seq} layer ${layer}`;
        assert.ok(got.k instanceof (kvDtype === "int8" ? Int8Array : Uint8Array), label);
        assert.deepStrictEqual(Array.from(got.k), Array.from(want.k[layer]), `${label} k`);
        assert.deepStrictEqual(Array.from(got.v), Array.from(want.v[layer]), `${label} v`);
        assert.deepStrictEqual(got.kScale, want.kScale[layer], `${label} kScale`);
        assert.deepStrictEqual(got.vScale, want.vScale[layer], `${label} vScale`);
      }
    }
    // Bytes: codes of K and V plus two f32 scales per (row, KV head).
    assert.equal(cache.memory().bytesPerPage, 2 * 4 * (2 * 16 + 2 * 2 * 4));
  }
});

Deno.test("8-bit paged CPU decode equals the dense decode of the same codes and scales, bit for bit", () => {
  for (const kvDtype of KV8) {
    const cache = createKVCache({
      numLayers: 2,
      numKVHeads: 2,
      headDim: 16,
      pageSize: 8,
      numPages: 64,
      kvDtype,
    });
    const held = new Map<number, Held>();
    const a = cache.addSequence();
    grow(cache, a, 37, held, 1);
    const b = cache.fork(a);
    held.set(b, { ...held.get(a)! });
    grow(cache, b, 20, held, 2);
    grow(cache, a, 3, held, 4);
    const c = cache.addSequence();
    grow(cache, c, 4, held, 5);
    const seqs = [b, a, c];
    const qLen = 2;
    const plan = planForCache(cache, { seqs, numHeads: 4, qLen }, { grid: 5, tileTokens: 16 });
    const q = randomFloats(seededRng(9), 3 * qLen * 4 * 16);
    for (let layer = 0; layer < 2; layer++) {
      const paged = executePagedPlanOnCpu(plan, { q, ...cache.layerData(layer) });
      const cat = <T extends KVArray>(f: (h: Held) => T) =>
        seqs.map((s) => f(held.get(s)!)).reduce((x, y) => concat(x, y));
      const input = {
        q,
        k: cat((h) => h.k[layer]),
        v: cat((h) => h.v[layer]),
        kScale: cat((h) => h.kScale[layer]),
        vScale: cat((h) => h.vScale[layer]),
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

Deno.test("8-bit caches: write stores given codes and scales as they are", async () => {
  const cache = createKVCache({
    numLayers: 1,
    numKVHeads: 2,
    headDim: 8,
    pageSize: 2,
    numPages: 8,
    kvDtype: "fp8e4m3",
  });
  const s = cache.addSequence();
  const slots = cache.extend([s], 3);
  const codes = Uint8Array.from({ length: 48 }, (_, i) => (i * 37) & 0x7e);
  const kScale = Float32Array.from({ length: 6 }, (_, i) => 0.5 + i);
  cache.write(slots, 0, { k: codes, v: codes.slice().reverse(), kScale, vScale: 2 });
  const got = await cache.read(0, s);
  assert.deepStrictEqual(Array.from(got.k), Array.from(codes));
  assert.deepStrictEqual(Array.from(got.v), Array.from(codes.slice().reverse()));
  assert.deepStrictEqual(got.kScale, kScale);
  assert.deepStrictEqual(got.vScale, new Float32Array(6).fill(2));
  const values = decodeKV(got.k, "fp8e4m3", { scale: got.kScale });
  assert.equal(values[8], decodeKV(codes.subarray(8, 9), "fp8e4m3")[0] * 1.5);
});

Deno.test("8-bit caches: bad rows and scales throw naming the field, and change nothing", async () => {
  const cache = createKVCache({
    numLayers: 2,
    numKVHeads: 2,
    headDim: 8,
    pageSize: 4,
    numPages: 8,
    kvDtype: "int8",
  });
  const s = cache.addSequence();
  const rows = (n: number) => new Float32Array(n * 16).fill(0.5);
  cache.append(s, { k: [rows(2), rows(2)], v: [rows(2), rows(2)] });
  const bad: Array<[() => unknown, ErrorConstructor, RegExp]> = [
    [
      () => cache.append(s, { k: [new Uint8Array(16), rows(1)], v: [rows(1), rows(1)] }),
      TypeError,
      /k\[0\] must be a Float32Array or a Int8Array of codes \(kvDtype "int8"\): got Uint8Array/,
    ],
    [
      () => cache.append(s, { k: [rows(1), rows(1)], v: [rows(1), rows(1)], kScale: [0.1] }),
      RangeError,
      /kScale must be an array with one scale per layer \(2\): got 1 entries/,
    ],
    [
      () =>
        cache.append(s, {
          k: [rows(1), rows(1)],
          v: [rows(1), rows(1)],
          vScale: [1, new Float32Array(3).fill(1)],
        }),
      RangeError,
      /vScale\[1\] must have 2 elements \(one per token and KV head\): got 3/,
    ],
    [
      () => cache.append(s, { k: [rows(1), rows(1)], v: [rows(1), rows(1)], kScale: [-1, 1] }),
      RangeError,
      /kScale\[0\] must be a finite number > 0: got -1/,
    ],
    [
      () => cache.append(s, { k: [rows(1), rows(1)], v: [rows(1), rows(1)], kScale: [1, NaN] }),
      RangeError,
      /kScale\[1\] must be a finite number > 0: got NaN/,
    ],
    [
      () => cache.write(cache.extend([s], 0), 0, { k: rows(0), v: rows(0), vScale: "x" as never }),
      TypeError,
      /vScale must be a number or a Float32Array/,
    ],
    [
      () =>
        cache.append(s, {
          k: [Float32Array.of(NaN, ...rows(1).subarray(1)), rows(1)],
          v: [rows(1), rows(1)],
        }),
      RangeError,
      /k\[0\]\[0\] must not be NaN for kvDtype "int8"/,
    ],
  ];
  for (const [f, type, pattern] of bad) {
    assert.throws(f, (e: Error) => e instanceof type && pattern.test(e.message), String(pattern));
  }
  assert.equal(cache.length(s), 2, "no bad append grew the sequence");
  const f16 = createKVCache({
    numLayers: 1,
    numKVHeads: 1,
    headDim: 8,
    numPages: 2,
    kvDtype: "f16",
  });
  const t = f16.addSequence();
  assert.throws(
    () => f16.append(t, { k: [new Float32Array(8)], v: [new Float32Array(8)], kScale: [2] }),
    (e: Error) =>
      e instanceof RangeError && /kScale\[0\] applies to 8-bit caches only.*"f16"/.test(e.message),
  );
  assert.equal(f16.length(t), 0);
  // Paged CPU decode of an 8-bit cache needs its scale table.
  const plan = planForCache(cache, { seqs: [s], numHeads: 2 }, { grid: 2 });
  const { k, v } = cache.layerData(0);
  assert.throws(
    () => executePagedPlanOnCpu(plan, { q: new Float32Array(32), k, v }),
    (e: Error) => e instanceof TypeError && /scales must be a Float32Array/.test(e.message),
  );
  // Still usable.
  cache.append(s, { k: [rows(1), rows(1)], v: [rows(1), rows(1)], kScale: [0.25, 0.5] });
  const got = await cache.read(1, s);
  assert.equal(cache.length(s), 3);
  assert.equal(got.k[2 * 16], 1); // 0.5 / 0.5
});

Deno.test("8-bit caches: dynamic scales are dynamicKVScales' powers of two, per (token, KV head)", async () => {
  for (const kvDtype of KV8) {
    const cache = createKVCache({
      numLayers: 2,
      numKVHeads: 2,
      headDim: 8,
      pageSize: 4,
      numPages: 8,
      kvDtype,
    });
    const s = cache.addSequence();
    const rng = seededRng(3);
    const k = [randomFloats(rng, 3 * 16, 1000), randomFloats(rng, 3 * 16, 0.001)];
    const v = [randomFloats(rng, 3 * 16, 5), randomFloats(rng, 3 * 16, 70000)];
    cache.append(s, { k, v, kScale: ["dynamic", 0.5], vScale: ["dynamic", "dynamic"] });
    for (let layer = 0; layer < 2; layer++) {
      const got = await cache.read(layer, s);
      const kScale = layer === 0
        ? dynamicKVScales(k[0], kvDtype, { headDim: 8 })
        : new Float32Array(6).fill(0.5);
      const vScale = dynamicKVScales(v[layer], kvDtype, { headDim: 8 });
      assert.deepStrictEqual(got.kScale, kScale, `${kvDtype} layer ${layer} kScale`);
      assert.deepStrictEqual(got.vScale, vScale, `${kvDtype} layer ${layer} vScale`);
      assert.deepStrictEqual(
        Array.from(got.v),
        Array.from(encodeKV(v[layer], kvDtype, { scale: vScale })),
        `${kvDtype} layer ${layer} v codes`,
      );
    }
    assert.throws(
      () =>
        cache.write(cache.extend([s], 1), 0, {
          k: new (kvDtype === "int8" ? Int8Array : Uint8Array)(16),
          v: new Float32Array(16),
          kScale: "dynamic",
        }),
      (e: Error) =>
        e instanceof TypeError &&
        /kScale may be "dynamic" for Float32Array rows only/.test(e.message),
    );
  }
});

// ---------------------------------------------------------------------------------------------
// GPU: the append kernel's 8-bit conversion and paged attention over an 8-bit cache (d16, GQA
// 4/2: the 8-bit family of tests/kernel_set.ts).

// Dawn on a software adapter runs the append kernel only (its attention kernels compile for
// minutes there; they run on hardware GPUs).
await deviceTests((test) => {
  test(
    "GPU appends of f32 rows store the host's 8-bit codes and the layer's scales",
    async ({ device }) => {
      for (const kvDtype of KV8) {
        const cache = createKVCache({
          device,
          numLayers: 2,
          numKVHeads: 2,
          headDim: 16,
          pageSize: 4,
          numPages: 8,
          kvDtype,
        });
        const a = cache.addSequence();
        const b = cache.addSequence();
        const vals = randomFloats(seededRng(5), 7 * 32, 40);
        // Ties, saturation, subnormals, signed zero (and NaN for FP8) at scale 1/4.
        vals.set([0, -0, 0.125, 0.375, 1e6, -1e6, 2 ** -12, 3 * 2 ** -11, 112.5, -0.625], 0);
        if (kvDtype !== "int8") vals[10] = NaN;
        const slots = cache.extend([a, b], [3, 4]);
        const src = gpuBuffer(device, vals);
        const enc = device.createCommandEncoder();
        // Two layers with different scales in one command buffer.
        cache.encodeAppend(enc, { slots, layer: 1, k: src, v: src, kScale: 0.25, vScale: 4 });
        cache.encodeAppend(enc, { slots, layer: 0, k: src, v: src, kScale: 2, vScale: 0.5 });
        device.queue.submit([enc.finish()]);
        for (const [layer, ks, vs] of [[1, 0.25, 4], [0, 2, 0.5]]) {
          const ra = await cache.read(layer, a);
          const rb = await cache.read(layer, b);
          const want = (s: number) => Array.from(encodeKV(vals, kvDtype, { scale: s }));
          const label = `${kvDtype} layer ${layer}`;
          assert.deepStrictEqual([...ra.k, ...rb.k], want(ks), `${label} k`);
          assert.deepStrictEqual([...ra.v, ...rb.v], want(vs), `${label} v`);
          assert.deepStrictEqual([...ra.kScale!, ...rb.kScale!], new Array(14).fill(ks));
          assert.deepStrictEqual([...ra.vScale!, ...rb.vScale!], new Array(14).fill(vs));
        }
        assert.throws(
          () => cache.encodeAppend(enc, { slots, layer: 0, k: src, v: src, kScale: 0 }),
          (e: Error) =>
            e instanceof RangeError && /kScale must be a finite number > 0: got 0/.test(e.message),
        );
        assert.throws(
          () =>
            cache.encodeAppend(enc, {
              slots,
              layer: 0,
              k: src,
              v: src,
              vScale: new Float32Array(1) as never,
            }),
          (e: Error) => e instanceof TypeError && /vScale must be a number/.test(e.message),
        );
        src.destroy();
        cache.dispose();
      }
    },
    { dawnOnSoftware: true },
  );

  test("GPU appends with dynamic scales find the host's scales and codes", async ({ device }) => {
    for (const kvDtype of KV8) {
      const opts = { numLayers: 1, numKVHeads: 2, headDim: 16, pageSize: 4, numPages: 8, kvDtype };
      const cache = createKVCache({ device, ...opts });
      const host = createKVCache(opts);
      const a = cache.addSequence();
      const h = host.addSequence();
      const rng = seededRng(8);
      // Rows of very different ranges; an infinity, a NaN (FP8), an all-zero row, a tiny row.
      const vals = new Float32Array(5 * 32);
      for (let r = 0; r < 10; r++) vals.set(randomFloats(rng, 16, 10 ** (r - 5)), 16 * r);
      vals.fill(0, 16 * 3, 16 * 4);
      vals.fill(1e-40, 16 * 4, 16 * 5);
      vals[16 * 6 + 2] = Infinity;
      if (kvDtype !== "int8") vals[16 * 7 + 5] = NaN;
      const slots = cache.extend([a], 5);
      const src = gpuBuffer(device, vals);
      const enc = device.createCommandEncoder();
      cache.encodeAppend(enc, { slots, layer: 0, k: src, v: src, kScale: "dynamic", vScale: 0.25 });
      device.queue.submit([enc.finish()]);
      host.write(host.extend([h], 5), 0, { k: vals, v: vals, kScale: "dynamic", vScale: 0.25 });
      const got = await cache.read(0, a);
      const want = await host.read(0, h);
      assert.deepStrictEqual(got.kScale, want.kScale, `${kvDtype} kScale`);
      assert.deepStrictEqual(got.vScale, want.vScale, `${kvDtype} vScale`);
      assert.deepStrictEqual(Array.from(got.k), Array.from(want.k), `${kvDtype} k codes`);
      assert.deepStrictEqual(Array.from(got.v), Array.from(want.v), `${kvDtype} v codes`);
      src.destroy();
      cache.dispose();
    }
  }, { dawnOnSoftware: true });

  test("paged attention over an 8-bit cache matches the CPU's paged decode and the reference", async ({ device }) => {
    const kvDtype = "fp8e4m3";
    const cache = createKVCache({
      device,
      numLayers: 1,
      numKVHeads: 2,
      headDim: 16,
      pageSize: 8,
      numPages: 32,
      kvDtype,
    });
    const host = createKVCache({
      numLayers: 1,
      numKVHeads: 2,
      headDim: 16,
      pageSize: 8,
      numPages: 32,
      kvDtype,
    });
    const attention = await createAttentionEncoder(device, { grid: 6 });
    try {
      const held = new Map<number, Held>();
      const hostHeld = new Map<number, Held>();
      const seqs: number[] = [];
      for (const [n, seed] of [[40, 1], [9, 2], [70, 3]]) {
        const s = cache.addSequence();
        const t = host.addSequence();
        grow(cache, s, n, held, seed); // odd seeds: per-token scales
        grow(host, t, n, hostHeld, seed);
        seqs.push(s);
      }
      // A GPU append on top (per-tensor scale, power of two).
      const extra = randomFloats(seededRng(11), 3 * 32, 2);
      const slots = cache.extend([seqs[1]], 3);
      const hs = host.extend([seqs[1]], 3);
      const src = gpuBuffer(device, extra);
      const enc = device.createCommandEncoder();
      cache.encodeAppend(enc, { slots, layer: 0, k: src, v: src, kScale: 0.0625, vScale: 0.125 });
      device.queue.submit([enc.finish()]);
      host.write(hs, 0, { k: extra, v: extra, kScale: 0.0625, vScale: 0.125 });
      for (const strategy of ["lean", "single"] as const) {
        const plan = attention.plan(cache, { seqs, numHeads: 4, strategy });
        const hostPlan = planForCache(host, { seqs, numHeads: 4, strategy }, {
          grid: 6,
          tileTokens: plan.tiles.tileTokens,
        });
        const q = randomFloats(seededRng(7), 3 * 4 * 16, 2);
        const qb = gpuBuffer(device, q);
        const out = gpuBuffer(device, new Float32Array(q.length).fill(NaN));
        const lse = gpuBuffer(device, new Float32Array(12).fill(NaN));
        const e2 = device.createCommandEncoder();
        attention.encode(e2, { plan, layer: 0, q: qb, out, lse });
        device.queue.submit([e2.finish()]);
        const got = {
          out: await readF32(device, out, q.length),
          lse: await readF32(device, lse, 12),
        };
        const want = executePagedPlanOnCpu(hostPlan, { q, ...host.layerData(0) });
        for (let i = 0; i < q.length; i++) {
          assert.ok(
            Math.abs(got.out[i] - want.out[i]) <= 1e-4 * (1 + Math.abs(want.out[i])),
            `${strategy} out[${i}]: ${got.out[i]} vs ${want.out[i]}`,
          );
        }
        for (let i = 0; i < 12; i++) {
          assert.ok(Math.abs(got.lse[i] - want.lse[i]) <= 2e-4, `${strategy} lse[${i}]`);
        }
        // And the dense reference of the codes read back.
        const rows = await Promise.all(seqs.map((s) => cache.read(0, s)));
        const cat = <T extends KVArray>(f: (r: (typeof rows)[number]) => T) =>
          rows.map(f).reduce((x, y) => concat(x, y));
        assertMatchesReference(
          {
            q,
            k: cat((r) => r.k),
            v: cat((r) => r.v),
            kScale: cat((r) => r.kScale!),
            vScale: cat((r) => r.vScale!),
            seqLens: seqs.map((s) => cache.length(s)),
            numHeads: 4,
            numKVHeads: 2,
            headDim: 16,
            kvDtype,
          },
          got,
          strategy,
        );
        for (const b of [qb, out, lse]) b.destroy();
      }
      src.destroy();
    } finally {
      attention.dispose();
      cache.dispose();
    }
  });
});
