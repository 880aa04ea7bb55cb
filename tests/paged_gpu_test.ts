/**
 * Paged attention on the GPU through the runner API (`createAttentionEncoder`, `KVCache`
 * appends): GPU appends store the host's bits, paged attention equals the dense GPU kernel bit for
 * bit after forks, speculative verification (qLen 4) and ragged batches with an empty request
 * match the reference, 1,000 steady decode steps create no GPU objects after warm-up, and misuse
 * is a clear error. The same plans on the CPU: tests/paged_plans_test.ts. The tests run on every
 * WebGPU implementation that opens here (Deno's, Dawn's) and are registered as ignored where none
 * does.
 */

import assert from "node:assert/strict";
import {
  createDecoder,
  type DecodeInput,
  encodeKV,
  type KVDtype,
  referenceAttention,
  type Strategy,
} from "../mod.ts";
import {
  type AttentionEncoder,
  createAttentionEncoder,
  createKVCache,
  type KVCache,
} from "../runner.ts";
import { deviceTests, gpuBuffer, readF32 } from "./gpu_device.ts";
import { denseInput, encodeAndRead, forkedBatch, grow } from "./paged_helpers.ts";
import {
  assertMatchesReference,
  assertNoPoison,
  OUT_TOLERANCE,
  randomFloats,
  relativeL2Error,
  sameBits,
  seededRng,
} from "./helpers.ts";
import { F32_GQA } from "./kernel_set.ts";

/** The GPU tests' one attention shape, the kernel set's GQA 8/2 d64 (one specialisation per dtype and qLen). */
const { numHeads: H, numKVHeads: KVH, headDim: D } = F32_GQA;
const GRID = 8;

/**
 * Runs `fn` on an f16 cache of the GPU tests' shape (16-token pages) and an attention encoder of
 * their grid, disposing both afterwards, whatever the outcome.
 */
async function withCacheAndEncoder(
  device: GPUDevice,
  size: { numLayers: number; numPages: number },
  fn: (cache: KVCache, attention: AttentionEncoder) => void | Promise<void>,
): Promise<void> {
  const cache = createKVCache({
    device,
    ...size,
    numKVHeads: KVH,
    headDim: D,
    pageSize: 16,
    kvDtype: "f16",
  });
  const attention = await createAttentionEncoder(device, { grid: GRID });
  try {
    await fn(cache, attention);
  } finally {
    attention.dispose();
    cache.dispose();
  }
}

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
      const size = { numLayers: 2, numPages: 64 };
      await withCacheAndEncoder(device, size, async (cache, attention) => {
        const decoder = await createDecoder({ backend: name, device, grid: GRID });
        const dense = new Map<number, Float32Array[]>();
        try {
          const seqs = forkedBatch(cache, dense, grow, [300, 9, 1, 129], [1, 2, 3, 4]);
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
        }
      });
    },
    { dawnOnSoftware: true },
  );

  test("speculative verification: qLen 4 over the paged cache, without an lse buffer", async ({ device }) => {
    await withCacheAndEncoder(device, { numLayers: 1, numPages: 32 }, async (cache, attention) => {
      const dense = new Map<number, Float32Array[]>();
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
    });
  });

  test("a ragged batch over the paged cache: qLens 4, 1 and an empty request", async ({ device }) => {
    // FlashInfer's qo_indptr: one sequence verifies 4 drafts, one decodes, one holds no tokens
    // (its rows must come back out 0, lse -Infinity over the NaN-filled buffers). Rows per block
    // follow the largest qLen (4): the kernel of the qLen 4 test, no new compile.
    await withCacheAndEncoder(device, { numLayers: 1, numPages: 32 }, async (cache, attention) => {
      const dense = new Map<number, Float32Array[]>();
      const seqs = [cache.addSequence(), cache.addSequence(), cache.addSequence()];
      grow(cache, seqs[0], 70, dense, 11);
      grow(cache, seqs[2], 33, dense, 12);
      const qLens = [4, 1, 1];
      for (const strategy of ["lean", "split", "single"] as Strategy[]) {
        const plan = attention.plan(cache, { seqs, numHeads: H, qLens, strategy });
        const q = randomFloats(seededRng(13), 6 * H * D);
        const got = await encodeAndRead(device, attention, plan, 0, q, 6 * H);
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
      }
      // A step of the empty request alone: no tiles at all, its rows still written.
      const plan = attention.plan(cache, { seqs: [seqs[1]], numHeads: H, qLens: [2] });
      const q = randomFloats(seededRng(14), 2 * H * D);
      const { out, lse } = await encodeAndRead(device, attention, plan, 0, q, 2 * H);
      assert.ok(out.every((x) => Object.is(x, 0)));
      assert.ok(lse.every((x) => x === -Infinity));
    });
  });

  test("1,000 decode steps: no pipelines after warm-up, upload rings bounded (no growth per step)", async ({ device }) => {
    // A runner that waits for the GPU every 25 steps: the ring of table regions grows to cover
    // the steps in flight during the first windows, then nothing is created.
    await withCacheAndEncoder(device, { numLayers: 2, numPages: 256 }, async (cache, attention) => {
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
    });
  });

  test("stale plans, foreign caches and small buffers are clear errors", async ({ device }) => {
    await withCacheAndEncoder(device, { numLayers: 1, numPages: 4 }, (cache, attention) => {
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
    });
  }, { dawnOnSoftware: true });

  // Release the device when this file's tests are done, not at exit: a Dawn device left running
  // while later files run was seen to crash the test process (SIGSEGV) on lavapipe.
  test("the paged tests release their device", async ({ device }) => {
    await device.queue.onSubmittedWorkDone();
    device.destroy();
    await device.lost;
  }, { dawnOnSoftware: true });
});

/** The CPU backend's decode of `input`, by a decoder of its own. */
async function createDecoderCpu(input: DecodeInput) {
  const d = await createDecoder({ backend: "cpu" });
  try {
    return await d.decode(input);
  } finally {
    await d.dispose();
  }
}
