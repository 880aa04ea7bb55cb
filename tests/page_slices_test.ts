/**
 * Page slices (`KernelSpec.pageSlices`, session 36): where a paged cache's pages and the plan's
 * tiles hold whole slices of a step's token groups, a paged decode kernel reads one page-table
 * entry per slice and addresses its rows from the slice's first row plus the group's fixed
 * offset, instead of a page read and page arithmetic per token. Checked on the host: when
 * `kernelSpec` sets it, the spec keys and the generated addressing, and the invariant it rests
 * on (every piece of a paged plan begins at a multiple of the plan's tile); on the GPU backends:
 * a runner's NHD and HND pages whose unused rows are NaN (so a row read past a sequence's end
 * and not masked shows), at page sizes with slices and without, against the float64 reference
 * and bit for bit against each other.
 *
 * @module
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { createPlan, type KVDtype, STRATEGIES } from "../mod.ts";
import {
  createAttentionEncoder,
  createIndptrPageTable,
  createKVCache,
  type PagedPlan,
  planForCache,
} from "../runner.ts";
import { kernelSpec } from "../src/gpu/kernel_choice.ts";
import { kernelCaps } from "../src/gpu/gpu_runtime.ts";
import { decodeKernelWGSL } from "../src/kernels/decode_kernel.ts";
import { specKey } from "../src/kernels/spec_key.ts";
import { kernelLayout } from "../src/kernels/kernel_layout.ts";
import { PIECE, PIECE_STRIDE } from "../src/plan/schedule.ts";
import { indptrOptions, scatterPages } from "./combinations.ts";
import { pagedKV } from "./paged_helpers.ts";
import { bytesBuffer, deviceTest, gpuBuffer, readF32 } from "./gpu_device.ts";
import { assertMatchesReference, fcParams, makeInput, sameBits } from "./helpers.ts";

const caps = { subgroups: true, subgroupMinSize: 32 };

Deno.test("page slices: set where pages and tiles hold whole slices of the step's groups", () => {
  // GQA 32/8 d128 (4 rows per block, 16 token groups of 8 lanes) and MHA d128 (1 row); f16
  // takes slices when asked (bound by its reads, it is not faster with them), 8-bit by default
  // (4-row E4M3 at per-tensor scales takes token runs instead since session 39, and slices
  // without them).
  const cases = [[32, "f16"], [32, "int8"], [32, "fp8e4m3"], [8, "f16"], [8, "fp8e5m2"]] as const;
  for (const [numHeads, kvDtype] of cases) {
    const tuning = kvDtype === "f16"
      ? { pageSlices: true }
      : numHeads === 32 && kvDtype === "fp8e4m3"
      ? { tokenRuns: false }
      : {};
    const plan = createPlan(
      { seqLens: [4096], numHeads, numKVHeads: 8, headDim: 128, kvDtype },
      { grid: 8 },
    );
    const G = kernelLayout(kernelSpec(plan, caps)).groups;
    assert.equal(G, 16, `groups of ${numHeads}/8 ${kvDtype}`);
    for (const pageSize of [1, 2, 4, 8, 16, 32, 64, 128, 256]) {
      for (const layout of [undefined, "HND"] as const) {
        const what = `${numHeads}/8 ${kvDtype}, pages of ${pageSize} ${layout ?? "NHD"}`;
        const spec = kernelSpec({ ...plan, kv: pagedKV(pageSize, layout) }, caps, tuning, true);
        const sliced: boolean = pageSize % G === 0;
        assert.equal(spec.pageSlices, sliced ? pageSize / G : undefined, what);
        assert.equal(specKey("decode", spec).includes(`:pgs${pageSize / G}`), sliced, what);
        const wgsl = decodeKernelWGSL(spec);
        assert.equal(
          wgsl.includes("kv_slice_addr(npg0, (s0 + STEP) + 0u, slice_off)"),
          sliced,
          what,
        );
        // One slice per page: the step's first page and the next ones, no place in the page.
        assert.equal(
          wgsl.includes("npg1 = pages[min(kv_start + ((s0 + 2u * STEP) >> params.page_shift) + 1u"),
          pageSize === G,
          what,
        );
        // Without slices, every token reads its page a step ahead.
        assert.equal(
          wgsl.includes("npg0 = kv_page(kv_start, min((s0 + 2u * STEP) + 0u + g"),
          !sliced,
        );
      }
    }
    // Off by tuning (and by default for f16), without prefetch, and in dense kernels.
    const paged16 = { ...plan, kv: pagedKV(16) };
    assert.equal(kernelSpec(paged16, caps, { pageSlices: false }, true).pageSlices, undefined);
    const noPrefetch = { ...tuning, prefetch: false };
    assert.equal(kernelSpec(paged16, caps, noPrefetch, true).pageSlices, undefined);
    assert.equal(kernelSpec(plan, caps, tuning).pageSlices, undefined);
    if (kvDtype === "f16") assert.equal(kernelSpec(paged16, caps, {}, true).pageSlices, undefined);
  }
  // Slices sink the 4-row E4M3 kernel's loads to the end of its loop: it issues them early, and
  // so it does with token runs (its default at per-tensor scales), where pages hold whole runs.
  const e4m3 = createPlan(
    { seqLens: [4096], numHeads: 32, numKVHeads: 8, headDim: 128, kvDtype: "fp8e4m3" },
    { grid: 8 },
  );
  const strides = { tokenRuns: false };
  const e4m3At = (pageSize: number, tuning = {}) =>
    kernelSpec({ ...e4m3, kv: pagedKV(pageSize) }, caps, tuning, true, "layer");
  assert.equal(e4m3At(16, strides).earlyLoads, true);
  assert.equal(e4m3At(8, strides).earlyLoads, undefined);
  for (const pageSize of [4, 8, 16]) {
    const spec = e4m3At(pageSize);
    assert.equal(spec.tokenRuns && spec.alignedRuns && spec.earlyLoads, true, `${pageSize}`);
  }
  assert.equal(e4m3At(2).earlyLoads, undefined);
  // Dense, it takes them with its rows' base read ahead (tests/nan_steps_test.ts).
  assert.equal(kernelSpec(e4m3, caps).baseAhead, true);
  // Paged int8 and E4M3 (its NaN codes tested per step) at per-tensor scales leave their
  // page-table entries out of the early test; int8 at per-token scales keeps them in.
  const int8 = createPlan(
    { seqLens: [4096], numHeads: 32, numKVHeads: 8, headDim: 128, kvDtype: "int8" },
    { grid: 8 },
  );
  const earlyTest = (code: string) => code.split("\n").find((l) => l.includes("early ^=")) ?? "";
  for (
    const [plan, source, late] of [[int8, "layer", true], [int8, "token", false], [
      e4m3,
      "layer",
      true,
    ]] as const
  ) {
    const spec = kernelSpec({ ...plan, kv: pagedKV(16) }, caps, {}, true, source);
    const what = `${plan.problem.kvDtype} ${source}`;
    // E4M3's runs read one page per group and step (`npgA`), slices one per slice (`npg0`).
    const page = spec.tokenRuns ? "npgA" : "npg0";
    assert.equal(spec.earlyLoads, true, what);
    assert.equal(spec.earlyPages === false, late, what);
    assert.equal(specKey("decode", spec).includes(":eplate"), late, what);
    const test = earlyTest(decodeKernelWGSL(spec));
    assert.ok(test.includes("nk0_0"), what);
    assert.equal(test.includes(page), !late, what);
    const early = kernelSpec(
      { ...plan, kv: pagedKV(16) },
      caps,
      { earlyPages: true },
      true,
      source,
    );
    assert.ok(earlyTest(decodeKernelWGSL(early)).includes(page), what);
  }
  // Token runs (the r4 d64 class's default) read their pages by runs instead.
  const d64 = createPlan(
    { seqLens: [4096], numHeads: 32, numKVHeads: 8, headDim: 64, kvDtype: "f16" },
    { grid: 8 },
  );
  const runs = kernelSpec({ ...d64, kv: pagedKV(16) }, caps, {}, true);
  assert.equal(runs.tokenRuns, true);
  assert.equal(runs.pageSlices, undefined);
  const strided = kernelSpec(
    { ...d64, kv: pagedKV(16) },
    caps,
    { tokenRuns: false, pageSlices: true },
    true,
  );
  assert.equal(strided.pageSlices, 16 / kernelLayout(strided).groups);
});

/** Checks that every piece of a plan begins at a multiple of its tile (what slices rest on). */
function assertPiecesAligned(plan: PagedPlan, what: string): void {
  const { pieces } = plan.schedule;
  const T = plan.tiles.tileTokens;
  for (let f = 0; f < pieces.length; f += PIECE_STRIDE) {
    const begin = pieces[f + PIECE.tokenBegin];
    assert.equal(begin % T, 0, `${what}: a piece begins at token ${begin}, tiles of ${T}`);
  }
}

Deno.test("page slices: every piece of a paged plan begins at a multiple of its tile", () => {
  fc.assert(
    fc.property(
      fc.record({
        lens: fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 6 }),
        pageShift: fc.integer({ min: 0, max: 8 }),
        tileTokens: fc.constantFrom(16, 32, 64, 128, 256),
        grid: fc.integer({ min: 1, max: 40 }),
        strategy: fc.constantFrom(...STRATEGIES),
        batchInvariant: fc.boolean(),
        window: fc.option(fc.integer({ min: 1, max: 2000 }), { nil: undefined }),
        qLen: fc.integer({ min: 1, max: 4 }),
      }),
      (r) => {
        // A sequence holds at least its qLen tokens (the pages are counted for those).
        const lens = r.lens.map((n) => n > 0 ? Math.max(n, r.qLen) : 0);
        const cache = createKVCache({
          numLayers: 1,
          numKVHeads: 2,
          headDim: 8,
          pageSize: 1 << r.pageShift,
          numPages: lens.reduce((a, n) => a + Math.ceil(n / (1 << r.pageShift)) + 1, 0),
        });
        const seqs = lens.map((n) => {
          const s = cache.addSequence();
          if (n > 0) cache.extend([s], n);
          return s;
        });
        const plan = planForCache(
          cache,
          { seqs, numHeads: 4, qLen: r.qLen, slidingWindow: r.window, strategy: r.strategy },
          { grid: r.grid, tileTokens: r.tileTokens, batchInvariant: r.batchInvariant },
        );
        assertPiecesAligned(plan, JSON.stringify(r));
      },
    ),
    fcParams(200),
  );
});

// ---------------------------------------------------------------------------------------------
// GPU: MHA at d128 (the kernel set's F16_MHA class), paged.

const H = 4;
const D = 128;
const SEQ_LENS = [300, 9, 129, 40];

await deviceTest(
  "page slices: a runner's NaN-padded pages decode like the reference, the same bits with and without slices",
  async ({ device, adapter, exhaustive }) => {
    // f16 through an encoder that asks for slices; 8-bit takes them by default.
    const kernel = { pageSlices: true };
    const sliced = await createAttentionEncoder(device, { grid: 8, kernel });
    const plain = await createAttentionEncoder(device, { grid: 8 });
    // Split prefetch (the next step's K after this step's dot products) on hardware GPUs.
    const splitTuning = { prefetch: "split" as const };
    const split = await createAttentionEncoder(device, { grid: 8, kernel: splitTuning });
    const deviceCaps = kernelCaps(device, adapter.info);
    // 8-bit pages (per-token scales, NaN in unused rows; int8 with split prefetch too) on
    // hardware GPUs.
    const dtypes: KVDtype[] = exhaustive ? ["f16", "int8", "fp8e4m3"] : ["f16"];
    try {
      for (const kvDtype of dtypes) {
        const input = makeInput({
          seqLens: SEQ_LENS,
          numHeads: H,
          numKVHeads: H,
          headDim: D,
          kvDtype,
          ...(kvDtype === "f16" ? {} : { kvScales: "token" as const }),
          seed: 3,
        });
        const probe = createPlan(input, { grid: 8 });
        const G = kernelLayout(kernelSpec(probe, deviceCaps)).groups;
        // Pages of G and 2G tokens take slices; pages of 2 do not (G is at least 4 here).
        const results: { out: Float32Array; lse: Float32Array }[] = [];
        for (const layout of ["NHD", "HND"] as const) {
          const runs = [G, 2 * G, 2].map((pageSize) => ({ pageSize, splitRun: false }));
          if (kvDtype === "int8") runs.push({ pageSize: G, splitRun: true });
          for (const { pageSize, splitRun } of runs) {
            const pages = scatterPages(input, pageSize, layout, 5);
            const attention = splitRun ? split : kvDtype === "f16" ? sliced : plain;
            const plan = attention.plan(createIndptrPageTable(indptrOptions(input, pages)), {
              seqs: SEQ_LENS.map((_, i) => i),
              numHeads: H,
            });
            const source = kvDtype === "f16" ? undefined : "token" as const;
            const tuning = splitRun ? splitTuning : kvDtype === "f16" ? kernel : {};
            const spec = kernelSpec(plan, deviceCaps, tuning, true, source);
            assert.equal(
              spec.pageSlices,
              pageSize === 2 ? undefined : pageSize / G,
              `${kvDtype} ${pageSize}`,
            );
            const k = bytesBuffer(device, pages.k);
            const v = bytesBuffer(device, pages.v);
            const scales = pages.scales ? gpuBuffer(device, pages.scales) : undefined;
            const q = gpuBuffer(device, input.q);
            const rows = SEQ_LENS.length * H;
            const out = gpuBuffer(device, new Float32Array(input.q.length).fill(NaN));
            const lse = gpuBuffer(device, new Float32Array(rows).fill(NaN));
            const enc = device.createCommandEncoder();
            attention.encode(enc, {
              plan,
              k,
              v,
              ...(scales ? { kvScales: scales } : {}),
              q,
              out,
              lse,
            });
            device.queue.submit([enc.finish()]);
            const got = {
              out: await readF32(device, out, input.q.length),
              lse: await readF32(device, lse, rows),
            };
            for (const b of [k, v, q, out, lse, ...(scales ? [scales] : [])]) b.destroy();
            const what = `${kvDtype} ${layout} pages of ${pageSize}${splitRun ? ", split" : ""}`;
            assertMatchesReference(input, got, what);
            results.push(got);
          }
        }
        for (const r of results.slice(1)) {
          assert.ok(sameBits(r.out, results[0].out), `${kvDtype}: out differs between pages`);
          assert.ok(sameBits(r.lse, results[0].lse), `${kvDtype}: lse differs between pages`);
        }
      }
    } finally {
      sliced.dispose();
      plain.dispose();
      split.dispose();
    }
  },
);
