/**
 * The library's paged cache with `vFromK` (MLA's latent cache: V is the first `headDimV` dims of
 * each K row, and the cache stores no V). Each latent cache is checked against its twin: an
 * ordinary cache given, with the same appends, V rows copied here from K's rows (and K's scales
 * as V's). On the CPU: appends, writes, a fork extended by copy-on-write, every dtype and both
 * scale modes of the 8-bit ones, decodes bit for bit equal to the twin's and close to the
 * float64 reference; memory without V; bad values refused naming the field, the cache still
 * usable. On the GPU (tests/mla_latent_cache_gpu_test.ts): the append kernel writes K's rows only
 * (f32, f16; int8 with K's scales in both columns), and the cache decodes through the attention
 * encoder with V bound to K.
 */

import assert from "node:assert/strict";
import { referenceAttention } from "../mod.ts";
import { createKVCache, executePagedPlanOnCpu, planForCache } from "../runner.ts";
import { randomFloats, relativeL2Error, seededRng } from "./helpers.ts";
import { kRowsPrefix as prefix } from "./mla_cache.ts";
import {
  bits,
  buildSequences,
  cachePair,
  D,
  denseInput,
  DV,
  HOST_CASES,
  is8bit,
  NUM_HEADS,
  NUM_LAYERS,
  PAGE,
  throwsWith,
} from "./mla_latent_cache.ts";

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
