/**
 * The library's paged cache with `vFromK` (MLA's latent cache: V is the first `headDimV` dims of
 * each K row, and the cache stores no V). Each latent cache is checked against its twin: an
 * ordinary cache given, with the same appends, V rows copied here from K's rows (and K's scales
 * as V's). On the CPU: appends, writes, a fork extended by copy-on-write, every dtype and both
 * scale modes of the 8-bit ones, decodes bit for bit equal to the twin's and close to the
 * float64 reference; memory without V; bad values refused naming the field, the cache still
 * usable. On the GPU: the append kernel writes K's rows only (f32, f16; int8 with K's scales in
 * both columns), and the cache decodes through the attention encoder with V bound to K.
 */

import assert from "node:assert/strict";
import {
  type DecodeInput,
  dynamicKVScales,
  encodeKV,
  type KVArray,
  type KVDtype,
  referenceAttention,
} from "../mod.ts";
import {
  createAttentionEncoder,
  createKVCache,
  executePagedPlanOnCpu,
  type KVCache,
  planForCache,
} from "../runner.ts";
import { assertMatchesReference, randomFloats, relativeL2Error, seededRng } from "./helpers.ts";
import { deviceTests, gpuBuffer, readF32 } from "./gpu_device.ts";
import { kRowsPrefix as prefix } from "./mla_cache.ts";

const D = 24;
const DV = 16;
const NUM_HEADS = 4;
const NUM_LAYERS = 2;
const PAGE = 4;

/** An array's bits: f32 values as their u32 patterns (NaNs and -0 compare), others as they are. */
const bits = (a: KVArray): number[] =>
  Array.from(a instanceof Float32Array ? new Uint32Array(a.buffer, a.byteOffset, a.length) : a);

const is8bit = (d: KVDtype) => d === "int8" || d.startsWith("fp8");

/** One host case: dtype, KV heads and (8-bit) scale mode. */
interface HostCase {
  kvDtype: KVDtype;
  numKVHeads: number;
  kvScales?: "token" | "tensor";
}

/** Per-tensor scales of the 8-bit caches created with `kvScales: "tensor"`, one per layer. */
const TENSOR_SCALES = [2 ** -5, 0.03];

/** A latent cache and its twin (V stored, filled here with K's rows' prefixes). */
function cachePair(c: HostCase, numPages = 32) {
  const common = {
    numLayers: NUM_LAYERS,
    numKVHeads: c.numKVHeads,
    headDim: D,
    headDimV: DV,
    kvDtype: c.kvDtype,
    pageSize: PAGE,
    numPages,
    ...(c.kvScales === "tensor" ? { kvScales: "tensor" as const, kScale: TENSOR_SCALES } : {}),
  };
  const latent = createKVCache({ ...common, vFromK: true });
  const twin = createKVCache({
    ...common,
    ...(c.kvScales === "tensor" ? { vScale: TENSOR_SCALES } : {}),
  });
  return { latent, twin };
}

/** One layer's new rows for the latent cache (K only) and for its twin (V copied from K). */
interface PairRows {
  latent: { k: KVArray; kScale?: Float32Array | "dynamic" };
  twin: { k: KVArray; v: KVArray; kScale?: Float32Array; vScale?: Float32Array };
}

/**
 * One layer's `n` new rows, given one way of several (`how`): f32 values (8-bit per-token: with
 * scales of their own), the dtype's host arrays (bits, codes), or (8-bit, per-token) dynamic
 * scales, the twin getting the same scales as numbers.
 */
function pairRows(
  c: HostCase,
  rng: () => number,
  n: number,
  layer: number,
  how: "values" | "encoded" | "dynamic",
): PairRows {
  const k = randomFloats(rng, n * c.numKVHeads * D, 1.5);
  const plain = (kk: KVArray): PairRows => ({
    latent: { k: kk },
    twin: { k: kk, v: prefix(kk, D, DV) },
  });
  if (!is8bit(c.kvDtype)) return plain(how === "encoded" ? encodeKV(k, c.kvDtype) : k);
  if (c.kvScales === "tensor") {
    const scale = TENSOR_SCALES[layer];
    return plain(how === "encoded" ? encodeKV(k, c.kvDtype, { scale }) : k);
  }
  const scale = how === "dynamic"
    ? dynamicKVScales(k, c.kvDtype, { headDim: D })
    : Float32Array.from({ length: n * c.numKVHeads }, () => 2 ** -6 * (0.5 + rng()));
  const kk = how === "encoded" ? encodeKV(k, c.kvDtype, { scale }) : k;
  return {
    latent: { k: kk, kScale: how === "dynamic" ? "dynamic" : scale },
    twin: { k: kk, v: prefix(kk, D, DV), kScale: scale, vScale: scale },
  };
}

/** A latent cache and its twin. */
interface CachePair {
  latent: KVCache;
  twin: KVCache;
}

/** Appends `n` tokens to `seq` of both caches (every layer; `how` as `pairRows`). */
function appendBoth(
  pair: CachePair,
  c: HostCase,
  rng: () => number,
  seq: number,
  n: number,
  how: "values" | "encoded" | "dynamic",
): void {
  const layers = Array.from({ length: NUM_LAYERS }, (_, l) => pairRows(c, rng, n, l, how));
  const scaled = layers[0].latent.kScale !== undefined;
  pair.latent.append(seq, {
    k: layers.map((x) => x.latent.k),
    ...(scaled ? { kScale: layers.map((x) => x.latent.kScale!) } : {}),
  });
  pair.twin.append(seq, {
    k: layers.map((x) => x.twin.k),
    v: layers.map((x) => x.twin.v),
    ...(scaled
      ? { kScale: layers.map((x) => x.twin.kScale!), vScale: layers.map((x) => x.twin.vScale!) }
      : {}),
  });
}

/** Extends sequences of both caches and writes the new rows of every layer (`write`). */
function writeBoth(
  pair: CachePair,
  c: HostCase,
  rng: () => number,
  seqs: number[],
  counts: number[],
): void {
  const slots = pair.latent.extend(seqs, counts);
  const twinSlots = pair.twin.extend(seqs, counts);
  assert.deepStrictEqual(slots.rows, twinSlots.rows);
  const n = counts.reduce((a, b) => a + b, 0);
  for (let l = 0; l < NUM_LAYERS; l++) {
    const rows = pairRows(c, rng, n, l, "values");
    pair.latent.write(slots, l, rows.latent);
    pair.twin.write(twinSlots, l, rows.twin);
  }
}

/** Builds the same sequences in both caches: appends, a fork copied on write, writes, a free. */
function buildSequences(pair: CachePair, c: HostCase, seed: number): number[] {
  const rng = seededRng(seed);
  const { latent, twin } = pair;
  const both = <T>(f: (cache: KVCache) => T): T => {
    const a = f(latent);
    assert.deepStrictEqual(f(twin), a);
    return a;
  };
  const append = (seq: number, n: number, how: "values" | "encoded" | "dynamic") =>
    appendBoth(pair, c, rng, seq, n, how);
  const a = both((x) => x.addSequence());
  const empty = both((x) => x.addSequence());
  const c0 = both((x) => x.addSequence());
  append(a, 6, "values");
  const f = both((x) => x.fork(a));
  append(f, 3, "encoded"); // copies a's half-filled second page first
  assert.notEqual(latent.pageTable(a)[1], latent.pageTable(f)[1]);
  assert.equal(latent.pageTable(a)[0], latent.pageTable(f)[0]);
  append(a, 2, "dynamic");
  append(c0, 5, "encoded");
  writeBoth(pair, c, rng, [a, c0], [1, 2]);
  const g = both((x) => x.fork(c0));
  both((x) => x.free(c0));
  append(g, 1, "dynamic");
  return [a, empty, f, g];
}

/** The dense `vFromK` input of a cache's sequences (read back from it) with queries `q`. */
async function denseInput(
  cache: KVCache,
  layer: number,
  seqs: number[],
  q: Float32Array,
): Promise<DecodeInput> {
  const rows = await Promise.all(seqs.map((s) => cache.read(layer, s)));
  const Ctor = rows[0].k.constructor as new (n: number) => KVArray;
  const k = new Ctor(rows.reduce((n, r) => n + r.k.length, 0));
  let at = 0;
  for (const r of rows) {
    (k as Uint8Array).set(r.k as Uint8Array, at);
    at += r.k.length;
  }
  const kScale = rows[0].kScale
    ? Float32Array.from(rows.flatMap((r) => [...r.kScale!]))
    : undefined;
  return {
    q,
    k,
    ...(kScale ? { kScale } : {}),
    seqLens: seqs.map((s) => cache.length(s)),
    numHeads: NUM_HEADS,
    numKVHeads: cache.numKVHeads,
    headDim: D,
    headDimV: DV,
    vFromK: true,
    kvDtype: cache.kvDtype,
  };
}

const HOST_CASES: HostCase[] = (["f32", "f16", "bf16", "int8", "fp8e4m3"] as const).flatMap(
  (kvDtype) =>
    [1, 2].flatMap((numKVHeads) =>
      is8bit(kvDtype)
        ? (["token", "tensor"] as const).map((kvScales) => ({ kvDtype, numKVHeads, kvScales }))
        : [{ kvDtype, numKVHeads }]
    ),
);

Deno.test("a vFromK cache decodes on the CPU bit for bit as its twin with V stored (every dtype, forks, writes)", async () => {
  for (const [i, c] of HOST_CASES.entries()) {
    const label = JSON.stringify(c);
    const pair = cachePair(c);
    const seqs = buildSequences(pair, c, 100 + i);
    const { latent, twin } = pair;
    assert.equal(latent.vFromK, true);
    assert.equal("vFromK" in twin, false, `${label}: absent when false`);
    const q = randomFloats(seededRng(7 + i), seqs.length * NUM_HEADS * D);
    for (let l = 0; l < NUM_LAYERS; l++) {
      const data = latent.layerData(l);
      assert.equal(data.v, undefined, `${label}: no V storage`);
      assert.equal(data.scales !== undefined, is8bit(c.kvDtype));
      for (const strategy of ["lean", "split"] as const) {
        const plan = planForCache(latent, { seqs, numHeads: NUM_HEADS }, { grid: 3, strategy });
        assert.equal(plan.problem.vFromK, true);
        const got = executePagedPlanOnCpu(plan, { q, ...data });
        const want = executePagedPlanOnCpu(
          planForCache(twin, { seqs, numHeads: NUM_HEADS }, { grid: 3, strategy }),
          { q, ...twin.layerData(l) },
        );
        const at = `${label} layer ${l} ${strategy}`;
        assert.deepStrictEqual(bits(got.out), bits(want.out), `${at}: out`);
        assert.deepStrictEqual(bits(got.lse), bits(want.lse), `${at}: lse`);
        if (strategy === "lean") {
          const input = await denseInput(latent, l, seqs, q);
          const ref = referenceAttention(input);
          const err = relativeL2Error(got.out, ref.out);
          assert.ok(err < 2e-5, `${at}: relative error ${err} against the reference`);
          for (let r = 0; r < ref.lse.length; r++) {
            if (ref.lse[r] === -Infinity) assert.equal(got.lse[r], -Infinity, `${at}: row ${r}`);
            else assert.ok(Math.abs(got.lse[r] - ref.lse[r]) < 2e-4, `${at}: lse row ${r}`);
          }
        }
      }
    }
  }
});

Deno.test("read() of a vFromK cache gives V as K's rows' prefix, and K's scales as V's", async () => {
  for (const [i, c] of HOST_CASES.entries()) {
    const pair = cachePair(c);
    const seqs = buildSequences(pair, c, 300 + i);
    for (let l = 0; l < NUM_LAYERS; l++) {
      for (const s of seqs) {
        const got = await pair.latent.read(l, s);
        const want = await pair.twin.read(l, s);
        const at = `${JSON.stringify(c)} layer ${l} seq ${s}`;
        assert.equal(got.v.constructor, got.k.constructor, `${at}: V in K's dtype`);
        assert.equal(got.v.length, pair.latent.length(s) * c.numKVHeads * DV);
        assert.deepStrictEqual(bits(got.v), bits(prefix(got.k, D, DV)), `${at}: v`);
        assert.deepStrictEqual(bits(got.k), bits(want.k), `${at}: k`);
        assert.deepStrictEqual(bits(got.v), bits(want.v), `${at}: v of the twin`);
        assert.deepStrictEqual(got.kScale, want.kScale, `${at}: kScale`);
        assert.deepStrictEqual(got.vScale, got.kScale, `${at}: vScale`);
      }
    }
  }
});

Deno.test("memory() of a vFromK cache counts K (and scales) only", () => {
  for (
    const [kvDtype, bytes] of [["f32", 4], ["f16", 2], ["int8", 1], ["fp8e4m3", 1]] as const
  ) {
    const H = 2;
    const { latent, twin } = cachePair({ kvDtype, numKVHeads: H }, 8);
    const scaleBytes = is8bit(kvDtype) ? 2 * H * 4 : 0;
    const perPage = NUM_LAYERS * PAGE * (H * D * bytes + scaleBytes);
    const m = latent.memory();
    assert.equal(m.bytesPerPage, perPage, kvDtype);
    assert.equal(m.bytesAllocated, 8 * perPage, kvDtype);
    assert.equal(twin.memory().bytesPerPage, perPage + NUM_LAYERS * PAGE * H * DV * bytes);
    // rowBytesV stays V's row size (the rows read out of K's).
    assert.equal(latent.rowBytesV, H * DV * bytes);
    assert.equal(latent.rowElementsV, H * DV);
    assert.equal(latent.layerData(0).k.length, 8 * PAGE * H * D);
    const a = latent.addSequence();
    latent.extend([a], 5);
    assert.equal(latent.memory().bytesUsed, 2 * perPage);
  }
  // MLA's real dims: 576-dim rows of f16, no 512-dim V beside them.
  const mla = createKVCache({
    numLayers: 1,
    numKVHeads: 1,
    headDim: 576,
    headDimV: 512,
    vFromK: true,
    kvDtype: "f16",
    pageSize: 16,
    numPages: 2,
  });
  assert.equal(mla.memory().bytesPerPage, 16 * 1152);
});

/** An assertion that `f` throws `Class` with a message matching `re`. */
function throwsWith(f: () => unknown, Class: ErrorConstructor, re: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof Class, `${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    assert.match((e as Error).message, re);
    return true;
  });
}

Deno.test("bad vFromK options and V given to a vFromK cache throw naming the field, and change nothing", async () => {
  const base = { numLayers: 2, numKVHeads: 2, headDim: D, headDimV: DV, pageSize: PAGE };
  for (const bad of ["yes", 1]) {
    throwsWith(
      () => createKVCache({ ...base, numPages: 4, vFromK: bad as unknown as boolean }),
      TypeError,
      new RegExp(`^vFromK must be a boolean: got ${bad === "yes" ? '"yes"' : String(bad)}$`),
    );
  }
  throwsWith(
    () => createKVCache({ ...base, headDimV: 32, numPages: 4, vFromK: true }),
    RangeError,
    /^headDimV must be at most headDim \(24\) with vFromK .*: got 32$/,
  );
  // Without vFromK, V rows may be longer than K's.
  assert.equal(createKVCache({ ...base, headDimV: 32, numPages: 4, vFromK: false }).headDimV, 32);
  throwsWith(
    () =>
      createKVCache({
        ...base,
        numPages: 4,
        vFromK: true,
        kvDtype: "fp8e4m3",
        kvScales: "tensor",
        kScale: 0.5,
        vScale: 0.5,
      }),
    TypeError,
    /^vScale must be absent with vFromK \(V's scale is K's\): got 0\.5$/,
  );
  const cache = createKVCache({ ...base, numPages: 4, vFromK: true, kvDtype: "int8" });
  const seq = cache.addSequence();
  const k = () => new Float32Array(2 * D).fill(1);
  throwsWith(
    () => cache.append(seq, { k: [k(), k()], v: [new Float32Array(32), new Float32Array(32)] }),
    TypeError,
    /^v must be absent with vFromK \(V is the first headDimV dims of k's rows\): got Array$/,
  );
  throwsWith(
    () => cache.append(seq, { k: [k(), k()], vScale: [0.5, 0.5] }),
    TypeError,
    /^vScale must be absent with vFromK \(V's scale is K's\): got Array$/,
  );
  throwsWith(
    () => cache.append(seq, { k: [k()] }),
    RangeError,
    /^k must hold one array per layer \(2\): got 1$/,
  );
  assert.equal(cache.length(seq), 0);
  assert.equal(cache.memory().pagesUsed, 0);
  const slots = cache.extend([seq], 1);
  throwsWith(
    () => cache.write(slots, 0, { k: k(), v: new Float32Array(32) }),
    TypeError,
    /^v must be absent with vFromK .*: got Float32Array$/,
  );
  throwsWith(
    () => cache.write(slots, 0, { k: k(), kScale: 0.5, vScale: 0.5 }),
    TypeError,
    /^vScale must be absent with vFromK .*: got 0\.5$/,
  );
  const q = new Float32Array(NUM_HEADS * D);
  // Still usable: the rows, with K's scale in both columns.
  cache.write(slots, 0, { k: k(), kScale: 0.5 });
  cache.write(slots, 1, { k: k(), kScale: 0.25 });
  cache.append(seq, { k: [k(), k()], kScale: [0.125, "dynamic"] });
  assert.equal(cache.length(seq), 2);
  const got = await cache.read(1, seq);
  assert.deepStrictEqual(Array.from(got.kScale!), [0.25, 0.25, 2 ** -6, 2 ** -6]);
  assert.deepStrictEqual(got.vScale, got.kScale);
  assert.equal(got.k[0], 4); // 1 / 0.25
  assert.equal(got.k[2 * D], 64); // 1 / 2 ** -6
  assert.deepStrictEqual(bits(got.v), bits(prefix(got.k, D, DV)));
  const table = cache.layerData(0).scales!;
  const row = slots.rows[0];
  assert.deepStrictEqual(Array.from(table.subarray(row * 4, row * 4 + 4)), [0.5, 0.5, 0.5, 0.5]);
  const out = executePagedPlanOnCpu(
    planForCache(cache, { seqs: [seq], numHeads: NUM_HEADS }, { grid: 2 }),
    { q, ...cache.layerData(0) },
  ).out;
  assert.ok(out.every(Number.isFinite));
});

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
