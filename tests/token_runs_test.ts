/**
 * Token runs (`KernelTuning.tokenRuns`, session 28): each token group of the decode kernel takes
 * `unroll` consecutive tokens per step instead of tokens `groups` apart, and a paged kernel whose
 * pages hold a group's step reads two page-table entries per group and step (the pages of its
 * first and last token) instead of one per token, or one where the pages and tiles are multiples
 * of the unroll (session 39: no run crosses a page). Checked on the host: the generated token order,
 * when `kernelSpec` sets `pageRuns` and the spec keys; on the GPU backends: the dense kernel
 * against the float64 reference, and the paged kernel over pages of 16 tokens (which hold a run)
 * and of 2 (which do not, so each token reads its page) against the dense kernel bit for bit,
 * after a fork.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createDecoder, createPlan, type Strategy } from "../mod.ts";
import { createAttentionEncoder, createKVCache } from "../runner.ts";
import { kernelSpec } from "../src/gpu/kernel_choice.ts";
import { decodeKernelWGSL } from "../src/kernels/decode_kernel.ts";
import { specKey } from "../src/kernels/spec_key.ts";
import { kernelLayout } from "../src/kernels/kernel_layout.ts";
import { deviceTest } from "./gpu_device.ts";
import { denseInput, encodeAndRead, grow, pagedKV } from "./paged_helpers.ts";
import { assertMatchesReference, randomFloats, sameBits, seededRng } from "./helpers.ts";

const H = 8;
const KVH = 2;
const D = 64;
const GRID = 8;

const plan = createPlan(
  { seqLens: [4096], numHeads: H, numKVHeads: KVH, headDim: D, kvDtype: "f16" },
  { grid: GRID },
);
const caps = { subgroups: true, subgroupMinSize: 32 };

Deno.test("token runs: groups take consecutive tokens, and pages holding a run are read once or twice per step", () => {
  const dense = kernelSpec(plan, caps, { tokenRuns: true });
  const U = kernelLayout(dense).unroll;
  assert.ok(U > 1, `unroll ${U}`);
  const code = decodeKernelWGSL(dense);
  assert.match(code, new RegExp(`let t1 = s0 \\+ g \\* ${U}u \\+ 1u;`));
  assert.ok(specKey("decode", dense).includes(":runs"));
  // The kernel table turns them on for this class (r4 d64); off, tokens are `groups` apart.
  assert.equal(kernelSpec(plan, caps).tokenRuns, true);
  const strided = kernelSpec(plan, caps, { tokenRuns: false });
  assert.ok(!specKey("decode", strided).includes(":runs"));
  assert.match(decodeKernelWGSL(strided), /let t1 = s0 \+ \d+u \+ g;/);
  for (const pageSize of [1, 2, 4, 8, 16, 256]) {
    const paged = kernelSpec({ ...plan, kv: pagedKV(pageSize) }, caps, { tokenRuns: true }, true);
    const runs = pageSize >= U;
    assert.equal(paged.pageRuns === true, runs, `page size ${pageSize}`);
    assert.equal(specKey("decode", paged).includes(":pgr"), runs);
    const wgsl = decodeKernelWGSL(paged);
    assert.equal(wgsl.includes("npgA = kv_page"), runs, `page size ${pageSize}`);
    assert.equal(wgsl.includes(`npg${U - 1} = kv_page`), !runs, `page size ${pageSize}`);
    // Pages and tiles that are multiples of the unroll hold whole runs: one entry per step.
    assert.equal(paged.alignedRuns === true, runs, `page size ${pageSize}`);
    assert.equal(specKey("decode", paged).includes(":pgr1"), runs);
    assert.ok(!wgsl.includes("npgB"), `page size ${pageSize}`);
    if (runs) {
      const two = kernelSpec({ ...plan, kv: pagedKV(pageSize) }, caps, {
        tokenRuns: true,
        alignedRuns: false,
      }, true);
      assert.equal(two.alignedRuns, undefined);
      assert.ok(
        specKey("decode", two).includes(":pgr") && !specKey("decode", two).includes(":pgr1"),
      );
      assert.ok(decodeKernelWGSL(two).includes("npgB = kv_page"), `page size ${pageSize}`);
    }
  }
  // An unroll that does not divide the pages: runs may cross a page, two entries per step.
  const u3 = kernelSpec({ ...plan, kv: pagedKV(16) }, caps, { tokenRuns: true, unroll: 3 }, true);
  assert.equal(kernelLayout(u3).unroll, 3);
  assert.equal(u3.pageRuns, true);
  assert.equal(u3.alignedRuns, undefined);
  assert.ok(decodeKernelWGSL(u3).includes("npgB = kv_page"));
  // Without token runs, or without prefetch, every token reads its page.
  const plain = kernelSpec({ ...plan, kv: pagedKV(16) }, caps, { tokenRuns: false }, true);
  assert.equal(plain.pageRuns, undefined);
  const noPrefetch = { tokenRuns: true, prefetch: false };
  assert.equal(
    kernelSpec({ ...plan, kv: pagedKV(16) }, caps, noPrefetch, true).pageRuns,
    undefined,
  );
});

await deviceTest(
  "token runs: dense matches the reference, paged (pages of 16 and 2) equals dense bit for bit",
  async ({ device, name }) => {
    const kernel = { tokenRuns: true };
    const decoder = await createDecoder({ backend: name, device, grid: GRID, kernel });
    const attention = await createAttentionEncoder(device, { grid: GRID, kernel });
    try {
      for (const pageSize of [16, 2]) {
        const cache = createKVCache({
          device,
          numLayers: 1,
          numKVHeads: KVH,
          headDim: D,
          pageSize,
          numPages: 512 / pageSize,
          kvDtype: "f16",
        });
        const dense = new Map<number, Float32Array[]>();
        const a = cache.addSequence();
        grow(cache, a, 150, dense, 1);
        const b = cache.fork(a);
        dense.set(b, dense.get(a)!.slice());
        grow(cache, b, 9, dense, 2);
        const c = cache.addSequence();
        grow(cache, c, 37, dense, 3);
        const seqs = [a, b, c];
        for (const strategy of ["lean", "split"] as Strategy[]) {
          const plan = attention.plan(cache, { seqs, numHeads: H, strategy });
          const q = randomFloats(seededRng(7), seqs.length * H * D);
          const got = await encodeAndRead(device, attention, plan, 0, q, seqs.length * H);
          const input = denseInput(cache, seqs, dense, 0, q, { numHeads: H, strategy });
          const want = await decoder.decode(input);
          const what = `pages of ${pageSize}, ${strategy}`;
          assertMatchesReference(input, want, `dense ${what}`);
          assertMatchesReference(input, got, `paged ${what}`);
          assert.ok(sameBits(got.out, want.out), `out ${what}: paged != dense`);
          assert.ok(sameBits(got.lse, want.lse), `lse ${what}: paged != dense`);
        }
        cache.dispose();
      }
    } finally {
      await decoder.dispose();
      attention.dispose();
    }
  },
);

/**
 * FP8 E4M3 at per-tensor scales, GQA 8/2 d64: 4 rows per block in two row sets of 4 lanes, 16
 * token groups, runs of 4 tokens (the r4 d64 class takes runs; r4 d128, the H200's cases, since
 * session 39 at per-tensor E4M3). With whole prefetch (the d128 class's; d64's is split) the
 * kernels are d128's: early loads, dense with its rows' base read ahead, paged with one
 * page-table read per group and step where pages hold whole runs.
 */
const E4M3_SHAPE = { numHeads: 8, numKVHeads: 2, headDim: 64, kvDtype: "fp8e4m3" } as const;
const E4M3_SCALES = { kScale: 0.05, vScale: 0.04 };
const WHOLE_PREFETCH = { prefetch: true };

Deno.test("token runs: 4-row E4M3 kernels at per-tensor scales take them, paged ones one page read per step", () => {
  const plan = createPlan({ ...E4M3_SHAPE, seqLens: [4096] }, { grid: GRID });
  const dense = kernelSpec(plan, caps, WHOLE_PREFETCH);
  assert.equal(dense.tokenRuns, true);
  assert.equal(dense.baseAhead && dense.earlyLoads, true);
  assert.equal(kernelLayout(dense).unroll, 4);
  for (const pageSize of [1, 2, 4, 16]) {
    const paged = kernelSpec(
      { ...plan, kv: pagedKV(pageSize) },
      caps,
      WHOLE_PREFETCH,
      true,
      "layer",
    );
    assert.equal(paged.tokenRuns, true, `pages of ${pageSize}`);
    assert.equal(paged.alignedRuns === true, pageSize >= 4, `pages of ${pageSize}`);
    assert.equal(paged.earlyLoads === true, pageSize >= 4, `pages of ${pageSize}`);
  }
  // At d128 too, with a scale per token too (paged: early loads, the entries in their test).
  const d128 = createPlan({ ...E4M3_SHAPE, headDim: 128, seqLens: [4096] }, { grid: GRID });
  assert.equal(kernelSpec(d128, caps).tokenRuns, true);
  const tok = kernelSpec(d128, caps, {}, false, "token");
  assert.equal(tok.tokenRuns && !tok.earlyLoads, true);
  const tokPaged = kernelSpec({ ...d128, kv: pagedKV(16) }, caps, {}, true, "token");
  assert.equal(tokPaged.alignedRuns && tokPaged.earlyLoads, true);
  assert.equal(tokPaged.earlyPages, undefined);
  // MLA's wide rows (K 576, V 512) keep tokens `groups` apart too.
  const mla = createPlan(
    { ...E4M3_SHAPE, numHeads: 4, numKVHeads: 1, headDim: 576, headDimV: 512, seqLens: [4096] },
    { grid: GRID },
  );
  assert.equal(mla.tiles.rowsPerBlock, 4);
  assert.equal(kernelSpec(mla, caps).tokenRuns, undefined);
});

await deviceTest(
  "token runs: E4M3 paged (per-tensor scales over pages of 16 and 1, per-token over 16) equals dense bit for bit and matches the reference",
  async ({ device, name }) => {
    const kernel = WHOLE_PREFETCH;
    const decoder = await createDecoder({ backend: name, device, grid: GRID, kernel });
    const attention = await createAttentionEncoder(device, { grid: GRID, kernel });
    try {
      // Per-tensor scales over pages of 16 and 1; a scale per token (the cache's default)
      // over pages of 16.
      const runs = [[16, true], [1, true], [16, false]] as const;
      for (const [pageSize, tensor] of runs) {
        const cache = createKVCache({
          device,
          numLayers: 1,
          numKVHeads: E4M3_SHAPE.numKVHeads,
          headDim: E4M3_SHAPE.headDim,
          pageSize,
          numPages: 384 / pageSize,
          kvDtype: "fp8e4m3",
          ...(tensor ? { kvScales: "tensor" as const, ...E4M3_SCALES } : {}),
        });
        try {
          const unused = new Map<number, Float32Array[]>();
          const a = cache.addSequence();
          grow(cache, a, 150, unused, 4);
          const b = cache.fork(a);
          grow(cache, b, 9, unused, 5);
          const c = cache.addSequence();
          grow(cache, c, 37, unused, 6);
          const seqs = [a, b, c];
          // The dense input: the codes the cache stores, at its scales.
          const rows = await Promise.all(seqs.map((s) => cache.read(0, s)));
          const join = (parts: Uint8Array[]) => {
            const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
            parts.reduce((at, p) => (all.set(p, at), at + p.length), 0);
            return all;
          };
          for (const strategy of ["lean", "split"] as Strategy[]) {
            const plan = attention.plan(cache, {
              seqs,
              numHeads: E4M3_SHAPE.numHeads,
              strategy,
            });
            const q = randomFloats(seededRng(8), seqs.length * E4M3_SHAPE.numHeads * 64);
            const got = await encodeAndRead(device, attention, plan, 0, q, seqs.length * 8);
            const join32 = (parts: (Float32Array | undefined)[]) =>
              new Float32Array(parts.flatMap((p) => [...p!]));
            const input = {
              ...E4M3_SHAPE,
              ...(tensor ? E4M3_SCALES : {
                kScale: join32(rows.map((r) => r.kScale)),
                vScale: join32(rows.map((r) => r.vScale)),
              }),
              q,
              k: join(rows.map((r) => r.k as Uint8Array)),
              v: join(rows.map((r) => r.v as Uint8Array)),
              seqLens: seqs.map((s) => cache.length(s)),
              strategy,
            };
            const want = await decoder.decode(input);
            const what = `${
              tensor ? "per-tensor" : "per-token"
            }, pages of ${pageSize}, ${strategy}`;
            assertMatchesReference(input, want, `dense ${what}`);
            assertMatchesReference(input, got, `paged ${what}`);
            assert.ok(sameBits(got.out, want.out), `out ${what}: paged != dense`);
            assert.ok(sameBits(got.lse, want.lse), `lse ${what}: paged != dense`);
          }
        } finally {
          cache.dispose();
        }
      }
    } finally {
      await decoder.dispose();
      attention.dispose();
    }
  },
);
