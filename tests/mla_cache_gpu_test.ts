/**
 * MLA through the library's own paged cache on the GPU backends: the append kernel (one pipeline
 * per dtype) copies K and V rows of different lengths (f32, f16, int8; V shorter or longer than
 * K), forks copy them on write, and a cache filled by it decodes through the attention encoder
 * in the kernel set's MLA-like wide family (the real 576/512 dims run on the CPU,
 * tests/mla_cache_test.ts).
 */

import assert from "node:assert/strict";
import { dynamicKVScales, encodeKV, type KVArray } from "../mod.ts";
import { createAttentionEncoder, createKVCache } from "../runner.ts";
import { assertMatchesReference, randomFloats, seededRng } from "./helpers.ts";
import { MLA_WIDE } from "./kernel_set.ts";
import { deviceTests, gpuBuffer, readF32 } from "./gpu_device.ts";
import { assertStored, type BatchSpec, f32Bits, layerInputs, seqRows } from "./mla_cache.ts";

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
