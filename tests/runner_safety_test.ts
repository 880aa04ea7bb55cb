/**
 * Runner API safety on a GPU: runner buffers are never retained, several plans and extends share
 * a command buffer, bad buffers and foreign plans throw before anything is recorded, a lost
 * device raises `DeviceLostError`, and encoders are async-disposable. Runs on every WebGPU
 * implementation that opens here (ignored elsewhere), with the paged tests' kernel shape (f16,
 * head dim 64, 8 query and 2 KV heads, qLen 1), so no new kernel is compiled.
 */

import assert from "node:assert/strict";
import { DeviceLostError, encodeKV, referenceAttention } from "../mod.ts";
import { createAttentionEncoder, createKVCache, type KVCache, planForCache } from "../runner.ts";
import { collectGarbage } from "./gc.ts";
import { type DeviceTestFn, deviceTests, gpuBuffer, readF32, secondDevice } from "./gpu_device.ts";
import {
  assertNoPoison,
  OUT_TOLERANCE,
  randomFloats,
  relativeL2Error,
  seededRng,
} from "./helpers.ts";
import { F32_GQA } from "./kernel_set.ts";

/** The kernel set's GQA 8/2 d64 shape, over the runner's caches. */
const { numHeads: H, numKVHeads: KVH, headDim: D } = F32_GQA;
const GRID = 8;
const ROW = KVH * D;

function cacheOn(device: GPUDevice, numPages = 64, numLayers = 1): KVCache {
  return createKVCache({
    device,
    numLayers,
    numKVHeads: KVH,
    headDim: D,
    pageSize: 16,
    numPages,
    kvDtype: "f16",
  });
}

/** Appends `n` random tokens to `seq` in every layer and keeps them (f32) in `dense`. */
function grow(
  cache: KVCache,
  seq: number,
  n: number,
  dense: Map<number, { k: number[]; v: number[] }>,
  seed: number,
): void {
  const rng = seededRng(seed);
  const k = randomFloats(rng, n * ROW);
  const v = randomFloats(rng, n * ROW);
  cache.append(seq, {
    k: Array(cache.numLayers).fill(k),
    v: Array(cache.numLayers).fill(v),
  });
  const have = dense.get(seq) ?? { k: [], v: [] };
  have.k.push(...k);
  have.v.push(...v);
  dense.set(seq, have);
}

/** The float64 reference of a batch of cache sequences, from the dense copies. */
function expected(
  seqs: number[],
  dense: Map<number, { k: number[]; v: number[] }>,
  q: Float32Array,
): Float64Array {
  const cat = (key: "k" | "v") =>
    encodeKV(new Float32Array(seqs.flatMap((s) => dense.get(s)![key])), "f16");
  return referenceAttention({
    q,
    k: cat("k"),
    v: cat("v"),
    seqLens: seqs.map((s) => dense.get(s)!.k.length / ROW),
    numHeads: H,
    numKVHeads: KVH,
    headDim: D,
    kvDtype: "f16",
  }).out;
}

await deviceTests((register) => {
  // Wherever the device opens, Dawn on a software adapter too.
  const test = (title: string, fn: DeviceTestFn) => register(title, fn, { dawnOnSoftware: true });

  test("fresh q/out and K/V buffers every step are not retained by the encoder or the cache", async ({ device }) => {
    const cache = cacheOn(device);
    const attention = await createAttentionEncoder(device, { grid: GRID });
    try {
      const dense = new Map<number, { k: number[]; v: number[] }>();
      const seqs = [cache.addSequence(), cache.addSequence()];
      seqs.forEach((s, i) => grow(cache, s, 40 + 90 * i, dense, i));
      const rng = seededRng(3);
      const refs: WeakRef<GPUBuffer>[] = [];
      const MiB = 2 ** 20;
      // In a function of its own: a loop's last buffers stay reachable from its frame.
      const run = async (steps: number, bytes: number) => {
        for (let step = 0; step < steps; step++) {
          const slots = cache.extend(seqs, 1);
          const plan = attention.plan(cache, { seqs, numHeads: H });
          // New buffers every step, dropped (not destroyed) afterwards; q and the appended K/V
          // larger than needed, so that holding them shows in the process's memory.
          const q = gpuBuffer(device, bytes);
          device.queue.writeBuffer(q, 0, randomFloats(rng, 2 * H * D) as Float32Array<ArrayBuffer>);
          const out = gpuBuffer(device, 4 * 2 * H * D);
          const kv = gpuBuffer(device, bytes);
          device.queue.writeBuffer(kv, 0, randomFloats(rng, 2 * ROW) as Float32Array<ArrayBuffer>);
          const enc = device.createCommandEncoder();
          cache.encodeAppend(enc, { slots, layer: 0, k: kv, v: kv });
          attention.encode(enc, { plan, layer: 0, q, out });
          device.queue.submit([enc.finish()]);
          refs.push(new WeakRef(q), new WeakRef(out), new WeakRef(kv));
          if (step % 4 === 3) await device.queue.onSubmittedWorkDone();
        }
        await device.queue.onSubmittedWorkDone();
      };
      // Memory after a collection stays flat. (The runtime keeps a step's buffers or two by
      // itself; 33 MiB buffers are mapped and unmapped whole, so the process's size shows them.)
      await run(8, 33 * MiB);
      await collectGarbage();
      const rss = Deno.memoryUsage().rss;
      const steps = 8;
      await run(steps, 33 * MiB);
      assert.ok(attention.stats().bindGroupsCreated >= 16, "a bind group per new q/out pair");
      await collectGarbage();
      const grown = (Deno.memoryUsage().rss - rss) / MiB;
      assert.ok(
        grown < 40,
        `the process grew by ${grown.toFixed(1)} MiB over ${steps} steps of new 33 MiB q and K/V`,
      );
      const alive = refs.filter((r) => r.deref() !== undefined).length;
      assert.equal(alive, 0, `${alive} of ${refs.length} runner buffers still alive after GC`);
      // The groups went with their buffers.
      assert.ok(attention.stats().bindGroupsLive <= 2, `${attention.stats().bindGroupsLive} live`);
      assert.ok(cache.stats().bindGroupsLive <= 2, `${cache.stats().bindGroupsLive} live`);
    } finally {
      attention.dispose();
      cache.dispose();
    }
  });

  test("several plans and extends in one command buffer do not corrupt each other", async ({ device }) => {
    const cache = cacheOn(device, 128);
    const attention = await createAttentionEncoder(device, { grid: GRID });
    try {
      const dense = new Map<number, { k: number[]; v: number[] }>();
      const all = [cache.addSequence(), cache.addSequence(), cache.addSequence()];
      all.forEach((s, i) => grow(cache, s, [300, 129, 5][i], dense, 10 + i));
      // Two extends whose rows are appended on the GPU in the same command buffer.
      const rng = seededRng(20);
      const enc = device.createCommandEncoder();
      for (const s of all) {
        const slots = cache.extend([s], 2);
        const rows = randomFloats(rng, 2 * ROW);
        const src = gpuBuffer(device, rows);
        cache.encodeAppend(enc, { slots, layer: 0, k: src, v: src });
        dense.get(s)!.k.push(...rows);
        dense.get(s)!.v.push(...rows);
      }
      // Six plans over different batches (a draft and a target model, layers' batches...), the
      // last three into one open compute pass.
      const batches = [[all[0], all[1]], [all[2]], [all[1], all[2], all[0]], [all[0]], [
        all[2],
        all[1],
      ], [all[1]]];
      const plans = batches.map((seqs, i) =>
        attention.plan(cache, { seqs, numHeads: H, strategy: i % 2 ? "single" : "lean" })
      );
      const qs = batches.map((seqs) => randomFloats(rng, seqs.length * H * D));
      const outs = qs.map((q) => gpuBuffer(device, new Float32Array(q.length).fill(NaN)));
      const qBufs = qs.map((q) => gpuBuffer(device, q));
      for (let i = 0; i < 3; i++) {
        attention.encode(enc, { plan: plans[i], layer: 0, q: qBufs[i], out: outs[i] });
      }
      const pass = enc.beginComputePass();
      for (let i = 3; i < 6; i++) {
        attention.encode(pass, { plan: plans[i], layer: 0, q: qBufs[i], out: outs[i] });
      }
      pass.end();
      device.pushErrorScope("validation");
      device.queue.submit([enc.finish()]);
      assert.equal((await device.popErrorScope())?.message, undefined);
      for (let i = 0; i < plans.length; i++) {
        const got = await readF32(device, outs[i], qs[i].length);
        const want = expected(batches[i], dense, qs[i]);
        assertNoPoison(`plan ${i} out`, got, want.length);
        const err = relativeL2Error(got, want);
        assert.ok(err < OUT_TOLERANCE, `plan ${i}: relative L2 error ${err}`);
      }
    } finally {
      attention.dispose();
      cache.dispose();
    }
  });

  test("regions of command buffers dropped unsubmitted come back with discardUpload", async ({ device }) => {
    const cache = cacheOn(device, 16);
    const attention = await createAttentionEncoder(device, { grid: GRID });
    try {
      const dense = new Map<number, { k: number[]; v: number[] }>();
      const a = cache.addSequence();
      grow(cache, a, 40, dense, 40);
      const qData = randomFloats(seededRng(41), H * D);
      const q = gpuBuffer(device, qData);
      const out = gpuBuffer(device, 4 * H * D);
      const kv = gpuBuffer(device, randomFloats(seededRng(42), ROW));
      // A step abandoned after recording: its command buffer is never submitted.
      const slots = cache.extend([a], 1);
      const plan = attention.plan(cache, { seqs: [a], numHeads: H });
      const dropped = device.createCommandEncoder();
      cache.encodeAppend(dropped, { slots, layer: 0, k: kv, v: kv });
      attention.encode(dropped, { plan, layer: 0, q, out });
      dropped.finish();
      assert.equal(attention.stats().tableRegionsBusy, 1);
      attention.discardUpload(plan);
      cache.discardUpload(slots);
      assert.equal(attention.stats().tableRegionsBusy, 0);
      // The step again, submitted this time: the plan and slots upload again.
      const enc = device.createCommandEncoder();
      cache.encodeAppend(enc, { slots, layer: 0, k: kv, v: kv });
      attention.encode(enc, { plan, layer: 0, q, out });
      device.queue.submit([enc.finish()]);
      const row = await readF32(device, kv, ROW);
      dense.get(a)!.k.push(...row);
      dense.get(a)!.v.push(...row);
      const err = relativeL2Error(await readF32(device, out, H * D), expected([a], dense, qData));
      assert.ok(err < OUT_TOLERANCE, `relative L2 error ${err}`);
    } finally {
      attention.dispose();
      cache.dispose();
    }
  });

  test("bad buffers and foreign plans throw before recording; the command buffer stays valid", async (g) => {
    const device = g.device;
    const cache = cacheOn(device, 8);
    const attention = await createAttentionEncoder(device, { grid: GRID });
    const other = await secondDevice(g);
    try {
      const dense = new Map<number, { k: number[]; v: number[] }>();
      const a = cache.addSequence();
      grow(cache, a, 20, dense, 30);
      const plan = attention.plan(cache, { seqs: [a], numHeads: H });
      const qData = randomFloats(seededRng(31), H * D);
      const q = gpuBuffer(device, qData);
      const out = gpuBuffer(device, 4 * H * D);
      const enc = device.createCommandEncoder();
      const uniform = device.createBuffer({ size: 4 * H * D, usage: 0x40 | 0x8 });
      assert.throws(() => attention.encode(enc, { plan, layer: 0, q: uniform, out }), {
        name: "TypeError",
        message: "q must be a GPUBuffer with STORAGE usage: got usage 0x48",
      });
      assert.throws(() => attention.encode(enc, { plan, layer: 0, q, out: uniform }), {
        name: "TypeError",
        message: /^out must be a GPUBuffer with STORAGE usage/,
      });
      assert.throws(() => attention.encode(enc, { plan, layer: 0, q, out: q }), {
        name: "RangeError",
        message: "out must not be the same buffer as q",
      });
      assert.throws(() => attention.encode(enc, { plan, layer: 0, q, out, lse: out }), {
        name: "RangeError",
        message: "lse must not be the same buffer as out",
      });
      const { k } = cache.layerBuffers(0);
      assert.throws(() => attention.encode(enc, { plan, layer: 0, q, out: k }), {
        name: "RangeError",
        message: "out must not be the K/V storage the plan reads",
      });
      // A plan made for a cache on another device.
      const foreign = cacheOn(other, 8);
      const f = foreign.addSequence();
      foreign.extend([f], 3);
      const foreignPlan = planForCache(foreign, { seqs: [f], numHeads: H }, { grid: GRID });
      assert.throws(() => attention.encode(enc, { plan: foreignPlan, layer: 0, q, out }), {
        name: "TypeError",
        message: "plan must be made from a KVCache on this encoder's device",
      });
      // encodeAppend: the same checks for the runner's K/V.
      const slots = cache.extend([a], 1);
      assert.throws(() => cache.encodeAppend(enc, { slots, layer: 0, k: uniform, v: q }), {
        name: "TypeError",
        message: "k must be a GPUBuffer with STORAGE usage: got usage 0x48",
      });
      assert.throws(() => cache.encodeAppend(enc, { slots, layer: 0, k: q, v: k }), {
        name: "RangeError",
        message: "v must not be one of this cache's own K/V buffers",
      });
      // Stale slots on the GPU path too.
      cache.free(a);
      assert.throws(
        () => cache.encodeAppend(enc, { slots, layer: 0, k: q, v: q }),
        /^RangeError: slots are stale: sequence 0 was freed/,
      );
      // None of it reached the command buffer: the runner's own work still runs.
      const b = cache.addSequence();
      grow(cache, b, 33, dense, 32);
      const good = attention.plan(cache, { seqs: [b], numHeads: H });
      attention.encode(enc, { plan: good, layer: 0, q, out });
      device.pushErrorScope("validation");
      device.queue.submit([enc.finish()]);
      assert.equal((await device.popErrorScope())?.message, undefined);
      const got = await readF32(device, out, H * D);
      const err = relativeL2Error(got, expected([b], dense, qData));
      assert.ok(err < OUT_TOLERANCE, `relative L2 error ${err}`);
      foreign.dispose();
    } finally {
      attention.dispose();
      cache.dispose();
      other.destroy();
    }
  });

  test("after device loss the encoder and the cache raise DeviceLostError", async (g) => {
    const device = await secondDevice(g);
    const cache = cacheOn(device, 8);
    const attention = await createAttentionEncoder(device, { grid: GRID });
    const a = cache.addSequence();
    cache.append(a, { k: [new Float32Array(3 * ROW)], v: [new Float32Array(3 * ROW)] });
    const plan = attention.plan(cache, { seqs: [a], numHeads: H });
    const q = gpuBuffer(device, 4 * H * D);
    const out = gpuBuffer(device, 4 * H * D);
    const reading = cache.read(0, a);
    device.destroy();
    await device.lost;
    const lost = (e: Error) =>
      e instanceof DeviceLostError &&
      /^The GPU device was lost \(reason: destroyed.*\): create a new device/.test(e.message);
    await assert.rejects(() => reading.then(() => cache.read(0, a)), lost);
    await assert.rejects(() => cache.read(0, a), lost);
    assert.throws(() => attention.plan(cache, { seqs: [a], numHeads: H }), lost);
    assert.throws(
      () => attention.encode(device.createCommandEncoder(), { plan, layer: 0, q, out }),
      lost,
    );
    assert.throws(
      () => cache.append(a, { k: [new Float32Array(ROW)], v: [new Float32Array(ROW)] }),
      lost,
    );
    assert.throws(() => cache.extend([a], 1), lost);
    assert.equal(cache.length(a), 3, "nothing changed");
    // Host bookkeeping still works, so a runner can clean up.
    cache.free(a);
    attention.dispose();
    cache.dispose();
  });

  test("AttentionEncoder is async-disposable", async ({ device }) => {
    let escaped: { plan: () => unknown } | undefined;
    {
      await using attention = await createAttentionEncoder(device, { grid: GRID });
      const cache = cacheOn(device, 4);
      escaped = { plan: () => attention.plan(cache, { seqs: [], numHeads: H }) };
      cache.dispose();
    }
    assert.throws(() => escaped!.plan(), /AttentionEncoder is disposed/);
  });

  test("the runner safety tests release their device", async ({ device }) => {
    await device.queue.onSubmittedWorkDone();
    device.destroy();
    await device.lost;
  });
});
