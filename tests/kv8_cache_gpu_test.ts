/**
 * The paged KV cache with 8-bit dtypes on the GPU: the append kernel's 8-bit conversion of f32
 * rows (at the layer's scales, or dynamic ones) stores the host's codes and scales, and paged
 * attention over an 8-bit cache matches the CPU's paged decode and the reference (d16, GQA 4/2:
 * the 8-bit family of tests/kernel_set.ts). The same caches on the host: tests/kv8_cache_test.ts.
 */

import assert from "node:assert/strict";
import { encodeKV, type KVArray } from "../mod.ts";
import {
  createAttentionEncoder,
  createKVCache,
  executePagedPlanOnCpu,
  planForCache,
} from "../runner.ts";
import { deviceTests, gpuBuffer, readF32 } from "./gpu_device.ts";
import { assertMatchesReference, randomFloats, seededRng } from "./helpers.ts";
import { concat, growKV8, type Held, KV8 } from "./kv8_cache.ts";

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
    const kvDtype = "fp8e4m3" as const;
    const opts = { numLayers: 1, numKVHeads: 2, headDim: 16, pageSize: 8, numPages: 32, kvDtype };
    const cache = createKVCache({ device, ...opts });
    const host = createKVCache(opts);
    const attention = await createAttentionEncoder(device, { grid: 6 });
    try {
      const held = new Map<number, Held>();
      const hostHeld = new Map<number, Held>();
      const seqs: number[] = [];
      for (const [n, seed] of [[40, 1], [9, 2], [70, 3]]) {
        const s = cache.addSequence();
        const t = host.addSequence();
        growKV8(cache, s, n, held, seed); // odd seeds: per-token scales
        growKV8(host, t, n, hostHeld, seed);
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
