/**
 * The paged KV cache with 8-bit dtypes on the host: codes and their per-(row, KV head) scales
 * stored beside the pages, appended from floats (quantised with a scale, or dynamic scales) or
 * written as codes, kept through forks and copy-on-write, read back, and decoded on the CPU like
 * the dense tokens; bad rows and scales. The GPU's appends and attention over these caches:
 * tests/kv8_cache_gpu_test.ts.
 */

import assert from "node:assert/strict";
import { decodeKV, dynamicKVScales, encodeKV, type KVArray } from "../mod.ts";
import { createKVCache, executePagedPlanOnCpu, planForCache } from "../runner.ts";
import { randomFloats, seededRng } from "./helpers.ts";
import { concat, growKV8, type Held, KV8 } from "./kv8_cache.ts";
import { assertPagedCpuEqualsDense, forkedBatch } from "./paged_helpers.ts";

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
    // b shares a's partially filled last page, then copies it, scales included.
    const [a, b] = forkedBatch(cache, held, growKV8, [6, 3, 5], [1, 2, 3]);
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
    const [a, b, c] = forkedBatch(cache, held, growKV8, [37, 20, 3, 4], [1, 2, 4, 5]);
    const seqs = [b, a, c];
    assertPagedCpuEqualsDense(cache, seqs, 2, (layer) => {
      const cat = <T extends KVArray>(f: (h: Held) => T) =>
        seqs.map((s) => f(held.get(s)!)).reduce((x, y) => concat(x, y));
      return {
        k: cat((h) => h.k[layer]),
        v: cat((h) => h.v[layer]),
        kScale: cat((h) => h.kScale[layer]),
        vScale: cat((h) => h.vScale[layer]),
      };
    }, kvDtype);
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
