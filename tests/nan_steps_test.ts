/**
 * One NaN-code test per step for FP8 E4M3 (`KernelSpec.nanSteps`, session 37): the decode kernel
 * unpacks a step's E4M3 chunks without their per-word NaN tests, then tests all its K chunks at
 * once and all its V chunks, and makes the NaN codes NaN in a branch taken only then; with it,
 * the dense kernels at per-tensor scales (4-row, and 1-row since session 38) read their rows' base
 * a step ahead (`baseAhead`) and take early loads. Checked on the host: where `kernelSpec` sets
 * them, their keys and WGSL; on the GPU backends, over the
 * kernel-option tests' GQA 8/2 d32 shape (with whole prefetch) and its MHA twin: random E4M3 caches
 * with NaN codes in K and V at live tokens, at per-tensor and per-token scales, against the
 * float64 reference (which rows are NaN, and the rest's values) and bit for bit against the
 * kernels without these options (`nanSteps: false`); and V rows holding every code, each output
 * element equal to the reference's.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createPlan, type DecodeInput, encodeKV, referenceAttention } from "../mod.ts";
import { kernelSpec } from "../src/gpu/kernel_choice.ts";
import { decodeKernelWGSL } from "../src/kernels/decode_kernel.ts";
import { specKey } from "../src/kernels/spec_key.ts";
import { pagedKV } from "./paged_helpers.ts";
import { gpuTest } from "./backends.ts";
import { KERNEL_OPTION_SHAPES } from "./kernel_set.ts";
import { type CaseSpec, makeInput, relativeL2Error, sameBits } from "./helpers.ts";

const caps = { subgroups: true, subgroupMinSize: 32 };

Deno.test("nanSteps: E4M3 4-row kernels and 1-row ones test each step once", () => {
  const planOf = (numHeads: number) =>
    createPlan(
      { seqLens: [4096], numHeads, numKVHeads: 8, headDim: 128, kvDtype: "fp8e4m3" },
      { grid: 8 },
    );
  const paged = (numHeads: number) => ({ ...planOf(numHeads), kv: pagedKV(16) });
  const gqa = planOf(32);
  const mha = planOf(8);
  // Blocks of 5-8 rows too (session 58): GQA 64/8 and 40/8.
  assert.equal(kernelSpec(planOf(64), caps).nanSteps, true);
  assert.equal(kernelSpec(planOf(40), caps, {}, false, "token").nanSteps, true);
  assert.equal(kernelSpec(planOf(64), caps, { nanSteps: false }).nanSteps, undefined);
  // Defaults: on for 4-row blocks dense or paged, for 1-row paged ones and 1-row dense ones at
  // per-tensor scales; off for 1-row dense ones with a scale per token.
  assert.equal(kernelSpec(gqa, caps).nanSteps, true);
  assert.equal(kernelSpec(gqa, caps, {}, false, "token").nanSteps, true);
  assert.equal(kernelSpec(paged(32), caps, {}, true, "layer").nanSteps, true);
  assert.equal(kernelSpec(paged(8), caps, {}, true, "layer").nanSteps, true);
  assert.equal(kernelSpec(mha, caps).nanSteps, true);
  assert.equal(kernelSpec(mha, caps, {}, false, "token").nanSteps, undefined);
  assert.equal(kernelSpec(gqa, caps, { nanSteps: false }).nanSteps, undefined);
  assert.equal(kernelSpec(mha, caps, {}, false, "token").nanSteps, undefined);
  assert.equal(kernelSpec(mha, caps, { nanSteps: true }, false, "token").nanSteps, true);
  // 4-row ones take token runs (session 39), dense and paged alike.
  assert.equal(kernelSpec(gqa, caps).tokenRuns, true);
  assert.equal(kernelSpec(paged(32), caps, {}, true, "layer").tokenRuns, true);
  assert.equal(kernelSpec(gqa, caps, {}, false, "token").tokenRuns, true);
  assert.equal(kernelSpec(mha, caps).tokenRuns, undefined);
  // Only E4M3 has NaN codes to test (E5M2's are f16's own, int8 has none).
  for (const kvDtype of ["int8", "fp8e5m2", "f16"] as const) {
    const plan = createPlan(
      { seqLens: [4096], numHeads: 32, numKVHeads: 8, headDim: 128, kvDtype },
      { grid: 8 },
    );
    assert.equal(kernelSpec(plan, caps, { nanSteps: true }).nanSteps, undefined, kvDtype);
  }
  // Early loads with it at per-tensor scales: paged, the 4-row kernel's page-table entries out of
  // the early test; dense, with their rows' base read a step ahead; with a scale per token,
  // paged 4-row kernels (token runs) only.
  type Loads = { earlyLoads?: boolean; earlyPages?: boolean; baseAhead?: boolean };
  const early = (spec: Loads) => [
    spec.earlyLoads ?? false,
    spec.earlyPages ?? true,
    spec.baseAhead ?? false,
  ];
  assert.deepEqual(early(kernelSpec(gqa, caps)), [true, true, true]);
  assert.deepEqual(early(kernelSpec(gqa, caps, {}, false, "token")), [false, true, false]);
  assert.deepEqual(early(kernelSpec(paged(32), caps, {}, true, "layer")), [true, false, false]);
  // (Paged with a scale per token, runs take early loads, their page-table entries in the test.)
  assert.deepEqual(early(kernelSpec(paged(32), caps, {}, true, "token")), [true, true, false]);
  assert.deepEqual(early(kernelSpec(paged(8), caps, {}, true, "layer")), [true, true, false]);
  assert.deepEqual(early(kernelSpec(mha, caps)), [true, true, true]);
  assert.deepEqual(early(kernelSpec(mha, caps, {}, false, "token")), [false, true, false]);
  // Without early loads no base ahead; without the per-step test, session 36's defaults: early
  // loads for 4-row paged kernels with slices and for per-token scales.
  assert.deepEqual(early(kernelSpec(gqa, caps, { earlyLoads: false })), [false, true, false]);
  const off = { nanSteps: false };
  assert.deepEqual(early(kernelSpec(gqa, caps, off)), [false, true, false]);
  assert.deepEqual(early(kernelSpec(paged(32), caps, off, true, "layer")), [true, true, false]);
  assert.deepEqual(early(kernelSpec(gqa, caps, off, false, "token")), [true, true, false]);

  // The key, and the step's two tests in the WGSL instead of a test in every word's unpacking.
  const spec = kernelSpec(gqa, caps);
  const plain = kernelSpec(gqa, caps, off);
  assert.ok(specKey("decode", spec).includes(":nans"));
  assert.ok(!specKey("decode", plain).includes(":nans"));
  const wgsl = decodeKernelWGSL(spec);
  const tests = wgsl.match(/if \(\(\(nan_bytes\(/g) ?? [];
  assert.equal(tests.length, 2, "one test for K's chunks, one for V's");
  assert.ok(wgsl.includes("var kf0_0 = unpack_kv_raw(k0_0);"));
  assert.ok(wgsl.includes("var vf0_0 = unpack_kv_raw(v0_0);"));
  assert.ok(!wgsl.includes("= unpack_kv(k0_0)") && !wgsl.includes("= unpack_kv(v0_0)"));
  assert.ok(decodeKernelWGSL(plain).includes("let kf0_0 = unpack_kv(k0_0);"));
  // The base read ahead: the next step's rows from `nkb`, read again for the step after.
  assert.ok(specKey("decode", spec).includes(":bah"));
  assert.ok(
    wgsl.includes("nkb = sched[f + PIECE_KV_START + (((s0 + STEP) + STEP) >> 31u)];") ||
      wgsl.includes("nkb = sched[f + PIECE_KV_START + ((s0 + 2u * STEP) >> 31u)];"),
  );
  // (4-row kernels at per-tensor scales take token runs: token u of group g is g * U + u.)
  assert.ok(wgsl.includes("let nrow0 = kv_addr(nkb, min((s0 + STEP) + g * 4u + 0u"));
  assert.ok(!decodeKernelWGSL(plain).includes("nkb"));
});

/** Writes E4M3 NaN codes (0x7f, 0xff) into some live elements of K and V. */
function withNaNCodes(input: DecodeInput, at: { k: number[]; v: number[] }): DecodeInput {
  const k = Uint8Array.from(input.k as Uint8Array);
  const v = Uint8Array.from(input.v as Uint8Array);
  at.k.forEach((i, n) => (k[i] = n % 2 ? 0xff : 0x7f));
  at.v.forEach((i, n) => (v[i] = n % 2 ? 0x7f : 0xff));
  return { ...input, k, v };
}

/**
 * The cases of the bits test: GQA 8/2 d32 (4-row blocks) with whole prefetch (the class takes
 * split prefetch by default), so the per-tensor kernel reads its base ahead with early loads,
 * against the per-word test; MHA 2/2 d32 (1 row: by default at per-tensor scales the per-step
 * test, its base read ahead and early loads) and GQA 16/2 d32 (8 rows in two row sets) against
 * the per-word test.
 */
const BITS_CASES = [
  { kvScales: "tensor", numHeads: 8, tuning: { prefetch: true }, plain: { nanSteps: false } },
  { kvScales: "token", numHeads: 8, tuning: { prefetch: true }, plain: { nanSteps: false } },
  { kvScales: "tensor", numHeads: 2, tuning: {}, plain: { nanSteps: false } },
  // 8-row blocks (GQA 16/2), by default since session 58.
  { kvScales: "tensor", numHeads: 16, tuning: {}, plain: { nanSteps: false } },
] as const;

gpuTest(
  "nanSteps: E4M3 NaN codes tested once per step give the per-word test's bits",
  async (b) => {
    for (const { kvScales, numHeads, tuning, plain } of BITS_CASES) {
      const spec: CaseSpec = {
        ...KERNEL_OPTION_SHAPES[0],
        numHeads,
        kvDtype: "fp8e4m3",
        kvScales,
        seed: 71,
      };
      // Elements of (token, KV head, dim): sequence 0 has tokens 0-149, sequence 1 150-189.
      const el = (t: number, h: number, d: number) => (t * 2 + h) * 32 + d;
      const input = withNaNCodes(makeInput(spec), {
        k: [el(3, 0, 5), el(170, 1, 31)],
        v: [el(100, 1, 0), el(149, 0, 17), el(189, 1, 8)],
      });
      const ref = referenceAttention(input);
      const stepped = await b.open({ kernel: tuning });
      const reference = await b.open({ kernel: { ...tuning, ...plain } });
      try {
        for (const strategy of ["lean", "split"] as const) {
          const what = `${numHeads}/2 ${kvScales} ${strategy}`;
          const got = await stepped.decode({ ...input, strategy });
          const want = await reference.decode({ ...input, strategy });
          assert.ok(sameBits(got.out, want.out) && sameBits(got.lse, want.lse), `bits, ${what}`);
          let nans = 0;
          for (let i = 0; i < got.out.length; i++) {
            assert.equal(Number.isNaN(got.out[i]), Number.isNaN(ref.out[i]), `out[${i}], ${what}`);
            if (Number.isNaN(got.out[i])) nans++;
          }
          assert.ok(nans > 0, `some rows read a NaN code, ${what}`);
          // The rest against float64: NaN outputs zeroed on both sides.
          const finite = (a: ArrayLike<number>) => Array.from(a, (x) => (Number.isNaN(x) ? 0 : x));
          const error = relativeL2Error(finite(got.out), finite(ref.out));
          assert.ok(error < 1e-5, `relative L2 error ${error}, ${what}`);
        }
      } finally {
        await stepped.dispose();
        await reference.dispose();
      }
    }
  },
);

gpuTest("nanSteps: every E4M3 code in V reaches the output exactly", async (b) => {
  // One token per sequence: its weight is 1, so each output row is its V row times the scale.
  // 8 sequences x 2 KV heads x 32 dims = 512 elements: every code twice.
  const decoder = await b.open();
  try {
    const v = Uint8Array.from({ length: 512 }, (_, i) => (i * 7) & 0xff);
    const input: DecodeInput = {
      q: new Float32Array(8 * 8 * 32).fill(0.5),
      k: encodeKV(new Float32Array(512).fill(0.25), "fp8e4m3"),
      v,
      kScale: 1,
      vScale: 0.5,
      seqLens: [1, 1, 1, 1, 1, 1, 1, 1],
      numHeads: 8,
      numKVHeads: 2,
      headDim: 32,
      kvDtype: "fp8e4m3",
    };
    const want = referenceAttention(input).out;
    const { out } = await decoder.decode(input);
    for (let i = 0; i < out.length; i++) {
      const same = Object.is(out[i], Math.fround(want[i])) ||
        (Number.isNaN(out[i]) && Number.isNaN(want[i]));
      assert.ok(same, `output ${i}: ${out[i]}, want ${want[i]}`);
    }
  } finally {
    await decoder.dispose();
  }
});
