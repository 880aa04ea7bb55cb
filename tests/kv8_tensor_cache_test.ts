/**
 * 8-bit paged caches created with per-tensor scales (`kvScales: "tensor"`, one K and one V scale
 * per layer, as FP8 KV caches with calibrated scales keep them): every write quantised with the
 * layer's scales, writes naming other scales refused, the CPU's paged decode equal to the dense
 * per-tensor decode, and the GPU's per-tensor paged kernels (`kvScales: "layer"`) against the
 * float64 reference.
 */

import assert from "node:assert/strict";
import { createPlan, encodeKV, type KVDtype } from "../mod.ts";
import { executePlanOnCpu } from "../plan.ts";
import {
  createAttentionEncoder,
  createKVCache,
  executePagedPlanOnCpu,
  planForCache,
} from "../runner.ts";
import { deviceTest, gpuBuffer, readF32 } from "./gpu_device.ts";
import { assertMatchesReference, randomFloats, sameBits, seededRng } from "./helpers.ts";

const KV8: readonly KVDtype[] = ["int8", "fp8e4m3", "fp8e5m2"];
const SHAPE = { numLayers: 2, numKVHeads: 2, headDim: 16, pageSize: 8, numPages: 16 };
const SCALES = { kvScales: "tensor" as const, kScale: [0.5, 0.25], vScale: 2 };
const codes = (kvDtype: KVDtype, n: number) =>
  kvDtype === "int8" ? new Int8Array(n).fill(3) : new Uint8Array(n).fill(0x38);

Deno.test("per-tensor 8-bit caches quantise every write with the layer's scales", async () => {
  for (const kvDtype of KV8) {
    const cache = createKVCache({ ...SHAPE, kvDtype, ...SCALES });
    assert.equal(cache.kvScales, "tensor");
    assert.deepStrictEqual(cache.layerScales(0), { kScale: 0.5, vScale: 2 });
    assert.deepStrictEqual(cache.layerScales(1), { kScale: 0.25, vScale: 2 });
    assert.equal(createKVCache({ ...SHAPE, kvDtype }).layerScales(0), undefined);
    const seq = cache.addSequence();
    const rng = seededRng(3);
    const k = [randomFloats(rng, 3 * 32, 20), randomFloats(rng, 3 * 32, 20)];
    const v = [randomFloats(rng, 3 * 32, 20), randomFloats(rng, 3 * 32, 20)];
    // No scales given: the layer's; the layer's own number is accepted too.
    cache.append(seq, { k, v, kScale: [undefined as never, 0.25] });
    cache.write(cache.extend([seq], 1), 1, { k: codes(kvDtype, 32), v: codes(kvDtype, 32) });
    for (const layer of [0, 1]) {
      const rows = await cache.read(layer, seq);
      const ks = layer === 0 ? 0.5 : 0.25;
      const wantK = Array.from(encodeKV(k[layer], kvDtype, { scale: ks }));
      const wantV = Array.from(encodeKV(v[layer], kvDtype, { scale: 2 }));
      assert.deepStrictEqual(Array.from(rows.k).slice(0, 96), wantK, `${kvDtype} ${layer} k`);
      assert.deepStrictEqual(Array.from(rows.v).slice(0, 96), wantV, `${kvDtype} ${layer} v`);
      assert.deepStrictEqual(Array.from(rows.kScale!), new Array(8).fill(ks));
      assert.deepStrictEqual(Array.from(rows.vScale!), new Array(8).fill(2));
    }
    assert.deepStrictEqual(
      Array.from((await cache.read(1, seq)).k).slice(96),
      Array.from(codes(kvDtype, 32)),
    );
  }
});

Deno.test("per-tensor 8-bit caches: bad options and writes with other scales throw naming the field, and change nothing", () => {
  const bad = (options: Record<string, unknown>, type: typeof TypeError, re: RegExp) =>
    assert.throws(
      () => createKVCache({ ...SHAPE, kvDtype: "int8", ...options } as never),
      (e: Error) => e instanceof type && re.test(e.message),
      JSON.stringify(options),
    );
  bad({ kvScales: "layer" }, RangeError, /kvScales must be "token" or "tensor": got "layer"/);
  bad({ kvScales: 1 }, TypeError, /kvScales must be "token" or "tensor": got number/);
  bad({ kvScales: "tensor", kvDtype: "f16" }, RangeError, /8-bit caches only: got kvDtype "f16"/);
  bad({ kScale: 0.5 }, RangeError, /kScale applies to caches created with kvScales "tensor"/);
  bad(
    { kvScales: "tensor", kScale: [1] },
    RangeError,
    /kScale must have one scale per layer \(2\)/,
  );
  bad({ kvScales: "tensor", vScale: 0 }, RangeError, /vScale must be a finite number > 0: got 0/);
  bad({ kvScales: "tensor", kScale: [1, NaN] }, RangeError, /kScale\[1\] must be a finite/);
  bad({ kvScales: "tensor", kScale: "1" }, TypeError, /kScale must be a number or an array/);

  const cache = createKVCache({ ...SHAPE, kvDtype: "fp8e4m3", ...SCALES });
  const seq = cache.addSequence();
  const rows = { k: new Float32Array(32), v: new Float32Array(32) };
  const refused = (write: () => unknown, re: RegExp) => {
    assert.throws(write, (e: Error) => e instanceof RangeError && re.test(e.message));
    assert.equal(cache.length(seq), 0);
  };
  refused(
    () => cache.append(seq, { k: [rows.k, rows.k], v: [rows.v, rows.v], kScale: [0.5, 0.5] }),
    /kScale\[1\] must be left out or be layer 1's per-tensor scale \(0\.25\).*got 0\.5/,
  );
  refused(
    () => cache.append(seq, { k: [rows.k, rows.k], v: [rows.v, rows.v], vScale: [2, "dynamic"] }),
    /vScale\[1\] must be left out or be layer 1's per-tensor scale \(2\).*got "dynamic"/,
  );
  refused(
    () =>
      cache.append(seq, {
        ...rows,
        k: [rows.k, rows.k],
        v: [rows.v, rows.v],
        kScale: [new Float32Array(1), 0.25] as never,
      }),
    /kScale\[0\] must be left out or be layer 0's per-tensor scale \(0\.5\).*got Float32Array/,
  );
  const slots = cache.extend([seq], 1);
  assert.throws(
    () => cache.write(slots, 0, { ...rows, vScale: 3 }),
    (e: Error) =>
      e instanceof RangeError && /vScale must be left out or be layer 0's/.test(e.message),
  );
  assert.throws(
    () => cache.write(slots, 0, { ...rows, kScale: "0.5" as never }),
    (e: Error) => e instanceof TypeError && /kScale must be a number: got string/.test(e.message),
  );
  // Still usable.
  cache.write(slots, 0, { ...rows, kScale: 0.5 });
  assert.equal(cache.length(seq), 1);
});

Deno.test("per-tensor 8-bit paged CPU decode equals the dense per-tensor decode, bit for bit", () => {
  for (const kvDtype of KV8) {
    const cache = createKVCache({
      ...SHAPE,
      numLayers: 1,
      numPages: 32,
      kvDtype,
      ...SCALES,
      kScale: 0.125,
    });
    const rng = seededRng(21);
    const lens = [37, 5, 60];
    const seqs = lens.map(() => cache.addSequence());
    const k: Float32Array[] = [];
    const v: Float32Array[] = [];
    for (const [i, n] of lens.entries()) {
      k.push(randomFloats(rng, n * 32, 4));
      v.push(randomFloats(rng, n * 32, 4));
      cache.append(seqs[i], { k: [k[i]], v: [v[i]] });
    }
    const plan = planForCache(cache, { seqs, numHeads: 4, qLen: 2 }, { grid: 5, tileTokens: 16 });
    const q = randomFloats(rng, 3 * 2 * 4 * 16);
    const paged = executePagedPlanOnCpu(plan, { q, ...cache.layerData(0) });
    const cat = (parts: Float32Array[], scale: number) =>
      parts.map((p) => encodeKV(p, kvDtype, { scale })).reduce((a, b) => {
        const out = new (a.constructor as new (n: number) => typeof a)(a.length + b.length);
        out.set(a as never);
        out.set(b as never, a.length);
        return out;
      });
    const input = {
      q,
      k: cat(k, 0.125),
      v: cat(v, 2),
      kScale: 0.125,
      vScale: 2,
      seqLens: lens,
      numHeads: 4,
      numKVHeads: 2,
      headDim: 16,
      qLen: 2,
      kvDtype,
    };
    const want = executePlanOnCpu(createPlan(input, { grid: 5, tileTokens: 16 }), input, 0.25);
    assert.ok(sameBits(paged.out, want.out) && sameBits(paged.lse, want.lse), kvDtype);
  }
});

// GPU: the per-tensor paged kernels (the layer's pair read from the scale table's first entry)
// and GPU appends with the layer's scales, on the 8-bit family's shape (d16, GQA 4/2), and on
// hardware GPUs also at GQA 8/2 d128 in pages of 16 (the 4-row kernels with page slices).
await deviceTest(
  "paged attention over per-tensor 8-bit caches matches the reference",
  async ({ device, exhaustive }) => {
    const shapes = [
      { shape: SHAPE, numHeads: 4 },
      ...(exhaustive ? [{ shape: { ...SHAPE, headDim: 128, pageSize: 16 }, numHeads: 8 }] : []),
    ];
    for (const { shape, numHeads } of shapes) {
      for (const kvDtype of ["int8", "fp8e4m3"] as const) {
        const row = shape.numKVHeads * shape.headDim;
        const what = `${kvDtype} d${shape.headDim}`;
        // Codes up to about 100 (K) and 120 (V) at layer 1's scales.
        const scales = { kvScales: "tensor" as const, kScale: [0.5, 0.04], vScale: 0.035 };
        const cache = createKVCache({ ...shape, numPages: 32, device, kvDtype, ...scales });
        const attention = await createAttentionEncoder(device, { grid: 6 });
        const rng = seededRng(kvDtype === "int8" ? 31 : 32);
        const buffers: GPUBuffer[] = [];
        const buffer = (data: Float32Array) => {
          const b = gpuBuffer(device, data);
          buffers.push(b);
          return b;
        };
        try {
          const seqs = [41, 9, 70].map(() => cache.addSequence());
          const slots = cache.extend(seqs, [41, 9, 70]);
          const layer = 1;
          const src = buffer(randomFloats(rng, 120 * row, 4));
          const enc = device.createCommandEncoder();
          // The layer's scales: left out, or given as they are; any other is refused.
          cache.encodeAppend(enc, { slots, layer, k: src, v: src, kScale: 0.04 });
          assert.throws(
            () => cache.encodeAppend(enc, { slots, layer, k: src, v: src, vScale: "dynamic" }),
            (e: Error) =>
              e instanceof RangeError &&
              /vScale must be left out or be layer 1's/.test(e.message),
          );
          device.queue.submit([enc.finish()]);
          const plan = attention.plan(cache, { seqs, numHeads, strategy: "lean" });
          const q = randomFloats(rng, 3 * numHeads * shape.headDim, 0.5);
          const out = buffer(new Float32Array(q.length).fill(NaN));
          const lse = buffer(new Float32Array(3 * numHeads).fill(NaN));
          const e2 = device.createCommandEncoder();
          attention.encode(e2, { plan, layer, q: buffer(q), out, lse });
          device.queue.submit([e2.finish()]);
          const got = {
            out: await readF32(device, out, q.length),
            lse: await readF32(device, lse, 3 * numHeads),
          };
          const rows = await Promise.all(seqs.map((s) => cache.read(layer, s)));
          const join = <T extends Int8Array | Uint8Array>(parts: T[]) => {
            const all = new (parts[0].constructor as new (n: number) => T)(
              parts.reduce((n, p) => n + p.length, 0),
            );
            let at = 0;
            for (const p of parts) {
              all.set(p as never, at);
              at += p.length;
            }
            return all;
          };
          assertMatchesReference(
            {
              q,
              k: join(rows.map((r) => r.k as Int8Array | Uint8Array)),
              v: join(rows.map((r) => r.v as Int8Array | Uint8Array)),
              kScale: 0.04,
              vScale: 0.035,
              seqLens: [41, 9, 70],
              numHeads,
              numKVHeads: shape.numKVHeads,
              headDim: shape.headDim,
              kvDtype,
            },
            got,
            what,
          );
        } finally {
          for (const b of buffers) b.destroy();
          attention.dispose();
          cache.dispose();
        }
      }
    }
  },
);
