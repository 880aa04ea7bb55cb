/**
 * V read from K's rows (`vFromK`: MLA's latent cache, whose V is the first `headDimV` dims of each
 * K row). Each case is checked against its twin: the same input with V given as its own array,
 * built here from K's rows (and K's scales as V's). On the CPU: dense plans and a runner's page
 * table (NHD and HND, pages 1-256), every dtype and strategy, bit for bit against the twin and
 * against the float64 reference; bad values refused naming the field, the decoder still usable.
 * On the GPU backends: the kernel set's MLA-like wide family (per-row kernel) and its MQA family
 * of 16-row blocks (tiled kernel) dense, and the wide family from a runner's HND pages through
 * the attention encoder with `k` alone.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  createDecoder,
  createPlan,
  type DecodeInput,
  type KVDtype,
  referenceAttention,
  STRATEGIES,
} from "../mod.ts";
import { executePlanOnCpu, resolveScale } from "../plan.ts";
import {
  createAttentionEncoder,
  createIndptrPageTable,
  executePagedPlanOnCpu,
  type PageLayout,
  planForCache,
} from "../runner.ts";
import {
  definition,
  indptrOptions,
  requestQLens,
  requestsArb,
  scatterPages,
  shapeOf,
} from "./combinations.ts";
import { backendTest } from "./backends.ts";
import {
  assertMatchesReference,
  type CaseSpec,
  fcParams,
  makeInput,
  relativeL2Error,
  sameBits,
} from "./helpers.ts";
import { bytesBuffer, deviceTest, gpuBuffer, readF32 } from "./gpu_device.ts";
import { assertInKernelSet, MLA_WIDE, SMALL_GQA, TILED_MQA } from "./kernel_set.ts";
import { kRowsPrefix } from "./mla_cache.ts";

/**
 * A `vFromK` input and its twin with V as its own array: each V row the first `headDimV` dims of
 * its K row (copied here, not by the library), and K's scales as V's.
 */
function latentPair(spec: CaseSpec): { input: DecodeInput; twin: DecodeInput } {
  const base = makeInput(spec);
  const { v: _v, vScale: _vs, ...rest } = base;
  const D = base.headDim;
  const DV = base.headDimV ?? D;
  const v = kRowsPrefix(base.k, D, DV);
  const twin: DecodeInput = {
    ...rest,
    v,
    ...(base.kScale === undefined ? {} : { vScale: base.kScale }),
  };
  return { input: { ...rest, vFromK: true }, twin };
}

/** Query heads, KV heads, K's and V's head dims: MLA's real dims, then smaller shapes. */
const SHAPES = [
  { numHeads: 16, numKVHeads: 1, headDim: 576, headDimV: 512 },
  { numHeads: 8, numKVHeads: 2, headDim: 64, headDimV: 32 },
  { numHeads: 4, numKVHeads: 1, headDim: 24, headDimV: 16 },
  { numHeads: 6, numKVHeads: 3, headDim: 24, headDimV: 24 },
];

Deno.test("vFromK: dense plans and a runner's pages equal the twin with V given, bit for bit, and the reference", () => {
  fc.assert(
    fc.property(
      fc.record({
        shape: fc.constantFrom(...SHAPES),
        // 0 tokens: an empty request (no pages, lastPageLen 0).
        seqs: requestsArb(3, 3),
        kvDtype: fc.constantFrom<KVDtype>("f32", "f16", "bf16", "int8", "fp8e4m3", "fp8e5m2"),
        kvScales: fc.constantFrom<"tensor" | "token">("tensor", "token"),
        pageShift: fc.integer({ min: 0, max: 8 }),
        layout: fc.constantFrom<PageLayout>("NHD", "HND"),
        strategy: fc.constantFrom(...STRATEGIES),
        grid: fc.constantFrom(1, 5, 16),
        seed: fc.integer({ min: 1, max: 1 << 20 }),
      }),
      (c) => {
        const qLens = requestQLens(c.seqs);
        const { input, twin } = latentPair({
          ...c.shape,
          seqLens: c.seqs.map((s) => s.len),
          qLens,
          kvDtype: c.kvDtype,
          kvScales: c.kvScales,
          seed: c.seed,
          qAmplitude: 2,
        });
        const label =
          `${c.shape.headDim}/${c.shape.headDimV} ${c.kvDtype} ${c.kvScales} ${c.layout} page ${
            1 << c.pageShift
          } ${c.strategy} lens ${c.seqs.map((s) => s.len)}`;
        const options = { grid: c.grid, tileTokens: 16, strategy: c.strategy };
        const plan = createPlan(input, options);
        assert.equal(plan.problem.vFromK, true, label);
        const got = executePlanOnCpu(plan, input, resolveScale(input));
        const want = executePlanOnCpu(createPlan(twin, options), twin, resolveScale(twin));
        assert.ok(sameBits(got.out, want.out), `${label}: dense out`);
        assert.ok(sameBits(got.lse, want.lse), `${label}: dense lse`);
        assertMatchesReference(twin, got, label);
        // The test's own definition reads V with K's stride.
        assert.ok(
          relativeL2Error(definition(input).out, referenceAttention(twin).out) < 1e-12,
          label,
        );
        // A runner's page table of K pages only (8-bit: the scale table's V column holds K's).
        const pages = scatterPages(twin, 1 << c.pageShift, c.layout, c.seed);
        const table = createIndptrPageTable({ ...indptrOptions(twin, pages), vFromK: true });
        assert.equal(table.vFromK, true);
        const paged = planForCache(
          table,
          { seqs: table.seqs, numHeads: input.numHeads, qLens, strategy: c.strategy },
          { grid: c.grid, tileTokens: 16 },
        );
        assert.equal(paged.problem.vFromK, true, label);
        const { v: _v, ...kOnly } = pages;
        const fromPages = executePagedPlanOnCpu(paged, { q: input.q, ...kOnly });
        assert.ok(sameBits(fromPages.out, want.out), `${label}: paged out`);
        assert.ok(sameBits(fromPages.lse, want.lse), `${label}: paged lse`);
      },
    ),
    fcParams(80),
  );
});

Deno.test("vFromK: bad values are refused naming the field, and the decoder stays usable", async () => {
  const { input, twin } = latentPair({
    ...SHAPES[2],
    seqLens: [9, 4],
    kvDtype: "int8",
    kvScales: "token",
    seed: 3,
  });
  const decoder = await createDecoder({ backend: "cpu" });
  try {
    const cases: Array<[Record<string, unknown>, typeof TypeError, RegExp]> = [
      [
        { v: twin.v },
        TypeError,
        /^v must be absent with vFromK \(V is the first headDimV dims of k's rows\): got Int8Array$/,
      ],
      [
        { vScale: twin.vScale },
        TypeError,
        /^vScale must be absent with vFromK .*: got Float32Array$/,
      ],
      [{ vFromK: "yes" }, TypeError, /^vFromK must be a boolean: got "yes"$/],
      [{ vFromK: 1 }, TypeError, /^vFromK must be a boolean: got 1$/],
      [
        { headDimV: 32 },
        RangeError,
        /^headDimV must be at most headDim \(24\) with vFromK .*: got 32$/,
      ],
      // Without vFromK, V is needed.
      [
        { vFromK: false },
        TypeError,
        /^v must be a Int8Array of codes \(kvDtype "int8"\): got undefined$/,
      ],
    ];
    for (const [change, Kind, re] of cases) {
      await assert.rejects(
        () => decoder.decode({ ...input, ...change } as DecodeInput),
        (e: unknown) => e instanceof Kind && re.test((e as Error).message),
        JSON.stringify(Object.keys(change)),
      );
    }
    assertMatchesReference(twin, await decoder.decode(input), "after the refusals");
  } finally {
    await decoder.dispose();
  }
  // A runner's table and the paged CPU path.
  const pages = scatterPages(twin, 4, "NHD", 3);
  assert.throws(
    () => createIndptrPageTable({ ...indptrOptions(twin, pages), vFromK: "no" as never }),
    (e: unknown) =>
      e instanceof TypeError && /^vFromK must be a boolean: got "no"$/.test((e as Error).message),
  );
  const table = createIndptrPageTable({ ...indptrOptions(twin, pages), vFromK: true });
  const plan = planForCache(table, { seqs: table.seqs, numHeads: input.numHeads }, { grid: 4 });
  assert.throws(
    () => executePagedPlanOnCpu(plan, { q: input.q, ...pages }),
    (e: unknown) =>
      e instanceof TypeError &&
      /^v must be absent for a plan with vFromK .*: got Int8Array$/.test((e as Error).message),
  );
  const { v: _v, ...kOnly } = pages;
  assertMatchesReference(
    twin,
    executePagedPlanOnCpu(plan, { q: input.q, ...kOnly }),
    "paged after",
  );
});

Deno.test("vFromK: plans and their reuse keep the flag; a V-sized K is refused", () => {
  const { input } = latentPair({ ...SHAPES[1], seqLens: [30], seed: 8 });
  const plan = createPlan(input, { grid: 4 });
  assert.equal(plan.problem.vFromK, true);
  assert.equal(createPlan(shapeOf(input), { grid: 4 }).problem.vFromK, true);
  // The K array is checked at K's length, as without the flag.
  const short = { ...input, k: input.k.subarray(0, input.k.length / 2) };
  const want = `k must have ${input.k.length} elements: got ${input.k.length / 2}`;
  assert.throws(
    () => referenceAttention(short),
    (e: unknown) => e instanceof RangeError && (e as Error).message === want,
  );
  const { vFromK: _f, ...plain } = shapeOf(input);
  assert.equal(createPlan(plain, { grid: 4 }).problem.vFromK, undefined);
});

// ---------------------------------------------------------------------------------------------
// GPU: the kernel set's MLA-like wide family (f32, 4/1 heads, K 272, V 264, no subgroups; the
// per-row kernel) and its MQA family (f16, 8/1 heads, qLen 2, K 288, V 64: 16-row blocks, the
// tiled kernel), V read from K's binding.

for (
  const [family, kernel, what] of [
    [MLA_WIDE, { subgroups: false }, "the per-row kernel (K 272, V 264)"],
    [TILED_MQA, {}, "the tiled kernel (16-row blocks, K 288, V 64)"],
    // V of K's length: V is K, its codes read with K's scales (per token: the table's V column).
    [{ ...SMALL_GQA, kvDtype: "int8", kvScales: "token" }, {}, "int8 with a scale per token"],
    [{ ...SMALL_GQA, kvDtype: "fp8e4m3" }, {}, "FP8 E4M3 with one scale"],
  ] as const
) {
  backendTest(
    `vFromK on the GPU: V read from K's rows by ${what}`,
    async (decoder, backend) => {
      for (const strategy of STRATEGIES) {
        const { input, twin } = latentPair({
          ...family,
          seqLens: [150, 0, 23],
          strategy,
          seed: 29,
        });
        if (backend !== "cpu") assertInKernelSet(shapeOf(input), { kernel });
        assertMatchesReference(twin, await decoder.decode(input), `${what} ${strategy}`);
      }
    },
    { decoder: { kernel } },
  );
}

await deviceTest(
  "vFromK on a runner's HND pages (K 272, V 264) through the attention encoder, k alone",
  async ({ device }) => {
    const { numHeads } = MLA_WIDE;
    const headDimV = MLA_WIDE.headDimV!;
    const kernel = { subgroups: false };
    const { input, twin } = latentPair({ ...MLA_WIDE, seqLens: [41, 0, 19], seed: 23 });
    assertInKernelSet(shapeOf(input), { kernel });
    const pages = scatterPages(twin, 8, "HND", 23);
    const table = createIndptrPageTable({ ...indptrOptions(twin, pages), vFromK: true });
    const attention = await createAttentionEncoder(device, { grid: 5, kernel });
    const k = bytesBuffer(device, pages.k);
    const v = bytesBuffer(device, pages.v);
    const q = gpuBuffer(device, input.q);
    const rows = input.seqLens.length * numHeads;
    const out = gpuBuffer(device, new Float32Array(rows * headDimV));
    const lse = gpuBuffer(device, new Float32Array(rows));
    try {
      const plan = attention.plan(table, { seqs: table.seqs, numHeads });
      assert.equal(plan.problem.vFromK, true);
      const enc = device.createCommandEncoder();
      assert.throws(
        () => attention.encode(enc, { plan, k, v, q, out, lse }),
        (e: unknown) =>
          e instanceof TypeError &&
          /^v must be absent for a plan with vFromK/.test((e as Error).message),
      );
      enc.finish(); // nothing was recorded
      for (const strategy of ["lean", "split"] as const) {
        device.queue.writeBuffer(out, 0, new Float32Array(rows * headDimV).fill(NaN));
        device.queue.writeBuffer(lse, 0, new Float32Array(rows).fill(NaN));
        const p = attention.plan(table, { seqs: table.seqs, numHeads, strategy });
        const e = device.createCommandEncoder();
        attention.encode(e, { plan: p, k, q, out, lse });
        device.queue.submit([e.finish()]);
        const got = {
          out: await readF32(device, out, rows * headDimV),
          lse: await readF32(device, lse, rows),
        };
        assertMatchesReference(twin, got, `HND ${strategy}`);
      }
    } finally {
      for (const b of [k, v, q, out, lse]) b.destroy();
      attention.dispose();
    }
  },
);
