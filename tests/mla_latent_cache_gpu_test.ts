/**
 * The library's paged cache with `vFromK` (MLA's latent cache) on the GPU, against a host cache
 * given the same rows: the append kernel writes K's rows only (f32, f16; int8 with K's scales in
 * both columns, none given for V), and the cache decodes through the attention encoder with V
 * bound to K, close to the CPU's decode and the float64 reference.
 */

import assert from "node:assert/strict";
import {
  createAttentionEncoder,
  createKVCache,
  executePagedPlanOnCpu,
  planForCache,
} from "../runner.ts";
import { assertMatchesReference, randomFloats, relativeL2Error, seededRng } from "./helpers.ts";
import { deviceTests, gpuBuffer, readF32 } from "./gpu_device.ts";
import { bits, D, denseInput, DV, NUM_HEADS, PAGE, throwsWith } from "./mla_latent_cache.ts";

await deviceTests((test) => {
  test(
    "a vFromK GPU cache: the append kernel writes K only, and the attention encoder reads V from K (f32, f16)",
    async ({ device }) => {
      const H = 2;
      const attention = await createAttentionEncoder(device, { grid: 5 });
      const made: GPUBuffer[] = [];
      try {
        for (const kvDtype of ["f32", "f16"] as const) {
          const options = {
            numLayers: 1,
            numKVHeads: H,
            headDim: D,
            headDimV: DV,
            vFromK: true as const,
            kvDtype,
            pageSize: PAGE,
            numPages: 16,
          };
          const cache = createKVCache({ ...options, device });
          const host = createKVCache(options);
          const buffers = cache.layerBuffers(0);
          assert.equal(buffers.v, buffers.k, "V bound to K");
          const rng = seededRng(kvDtype === "f32" ? 1 : 2);
          // GPU appends from f32 buffers (K only), the host cache the same rows.
          const gpuAppend = (seq: number, n: number) => {
            const k = randomFloats(rng, n * H * D, 1.5);
            const kb = gpuBuffer(device, k);
            made.push(kb);
            const slots = cache.extend([seq], n);
            const enc = device.createCommandEncoder();
            cache.encodeAppend(enc, { slots, layer: 0, k: kb });
            device.queue.submit([enc.finish()]);
            host.append(seq, { k: [k] });
          };
          const hostAppend = (seq: number, n: number) => {
            const k = randomFloats(rng, n * H * D, 1.5);
            cache.append(seq, { k: [k] });
            host.append(seq, { k: [k] });
          };
          const a = cache.addSequence();
          host.addSequence();
          gpuAppend(a, 6);
          const f = cache.fork(a);
          host.fork(a);
          gpuAppend(a, 3); // copy-on-write on the GPU
          hostAppend(f, 2);
          const c = cache.addSequence();
          host.addSequence();
          gpuAppend(c, 5);
          const e = cache.addSequence();
          host.addSequence();
          const seqs = [a, f, c, e];
          // encodeAppend takes no v.
          const slots = cache.extend([e], 0);
          const kb = gpuBuffer(device, H * D * 4);
          made.push(kb);
          throwsWith(
            () =>
              cache.encodeAppend(device.createCommandEncoder(), { slots, layer: 0, k: kb, v: kb }),
            TypeError,
            /^v must be absent with vFromK .*: got object$/,
          );
          for (const s of seqs) {
            const got = await cache.read(0, s);
            const want = await host.read(0, s);
            assert.deepStrictEqual(bits(got.k), bits(want.k), `${kvDtype} k ${s}`);
            assert.deepStrictEqual(bits(got.v), bits(want.v), `${kvDtype} v ${s}`);
          }
          const q = randomFloats(rng, seqs.length * NUM_HEADS * D);
          const rows = seqs.length * NUM_HEADS;
          const qb = gpuBuffer(device, q);
          const out = gpuBuffer(device, new Float32Array(rows * DV).fill(NaN));
          const lse = gpuBuffer(device, new Float32Array(rows).fill(NaN));
          made.push(qb, out, lse);
          const plan = attention.plan(cache, { seqs, numHeads: NUM_HEADS });
          assert.equal(plan.problem.vFromK, true);
          const enc = device.createCommandEncoder();
          attention.encode(enc, { plan, layer: 0, q: qb, out, lse });
          device.queue.submit([enc.finish()]);
          const got = {
            out: await readF32(device, out, rows * DV),
            lse: await readF32(device, lse, rows),
          };
          const cpu = executePagedPlanOnCpu(
            planForCache(host, { seqs, numHeads: NUM_HEADS }, { grid: 5 }),
            { q, ...host.layerData(0) },
          );
          const err = relativeL2Error(got.out, cpu.out);
          assert.ok(err < 2e-5, `${kvDtype}: relative error ${err} against the CPU`);
          assertMatchesReference(await denseInput(host, 0, seqs, q), got, kvDtype);
          cache.dispose();
        }
      } finally {
        for (const b of made) b.destroy();
        attention.dispose();
      }
    },
  );

  test(
    "a vFromK int8 GPU cache: the append kernel stores K's scale as V's too",
    async ({ device }) => {
      const H = 2;
      const options = {
        numLayers: 1,
        numKVHeads: H,
        headDim: D,
        headDimV: DV,
        vFromK: true as const,
        kvDtype: "int8" as const,
        pageSize: PAGE,
        numPages: 8,
      };
      const cache = createKVCache({ ...options, device });
      const host = createKVCache(options);
      const rng = seededRng(5);
      const made: GPUBuffer[] = [];
      try {
        const a = cache.addSequence();
        host.addSequence();
        for (const [n, kScale] of [[3, "dynamic"], [4, 2 ** -6]] as const) {
          const k = randomFloats(rng, n * H * D, 1.5);
          const kb = gpuBuffer(device, k);
          made.push(kb);
          const slots = cache.extend([a], n);
          throwsWith(
            () =>
              cache.encodeAppend(device.createCommandEncoder(), {
                slots,
                layer: 0,
                k: kb,
                kScale,
                vScale: kScale,
              }),
            TypeError,
            /^vScale must be absent with vFromK/,
          );
          const enc = device.createCommandEncoder();
          cache.encodeAppend(enc, { slots, layer: 0, k: kb, kScale });
          device.queue.submit([enc.finish()]);
          host.append(a, { k: [k], kScale: [kScale] });
        }
        const got = await cache.read(0, a);
        const want = await host.read(0, a);
        assert.deepStrictEqual(bits(got.k), bits(want.k));
        assert.deepStrictEqual(bits(got.v), bits(want.v));
        assert.deepStrictEqual(got.kScale, want.kScale);
        assert.deepStrictEqual(got.vScale, got.kScale);
        assert.deepStrictEqual(
          Array.from(got.kScale!.subarray(3 * H)),
          new Array(4 * H).fill(2 ** -6),
        );
      } finally {
        for (const b of made) b.destroy();
        cache.dispose();
      }
    },
    { dawnOnSoftware: true },
  );
});
