/**
 * MLA decode (DeepSeek-V2/V3, Kimi K2): K rows of 576 dims, V rows of 512 (`headDimV`), one
 * latent KV head shared by many query heads, against the float64 reference; its kernel class
 * (32 lanes per token, padded lane rounds, 4-row blocks, the merge of rows longer than its
 * workgroup) checked as generated WGSL, and on the GPU backends with the kernel set's wide
 * family (the real dims on hardware GPUs only).
 */

import assert from "node:assert/strict";
import { createPlan, referenceAttention, STRATEGIES } from "../mod.ts";
import { executePlanOnCpu } from "../plan.ts";
import { createAttentionEncoder, createPagedPlan, executePagedPlanOnCpu } from "../runner.ts";
import { tileConfig } from "../src/plan/tiles.ts";
import { kernelSpec } from "../src/gpu/kernel_choice.ts";
import { kernelLayout } from "../src/kernels/kernel_layout.ts";
import { decodeKernelWGSL } from "../src/kernels/decode_kernel.ts";
import { mergeKernelWGSL } from "../src/kernels/merge_kernel.ts";
import { backendTest } from "./backends.ts";
import { assertMatchesReference, describeSpec, makeInput } from "./helpers.ts";
import { MLA_WIDE } from "./kernel_set.ts";
import { deviceTest, gpuBuffer, readF32 } from "./gpu_device.ts";

Deno.test("MLA-shaped decode: 16 query heads over one latent KV head, K 576 and V 512", () => {
  // One sequence of the real dims, on the CPU, against the reference.
  const spec = {
    seqLens: [70, 0, 33],
    qLens: [1, 1, 2],
    numHeads: 16,
    numKVHeads: 1,
    headDim: 576,
    headDimV: 512,
    kvDtype: "bf16" as const,
    seed: 17,
  };
  const input = makeInput(spec);
  const plan = createPlan(input, { grid: 8 });
  const got = executePlanOnCpu(plan, input, 1 / Math.sqrt(576));
  assert.equal(got.out.length, 4 * 16 * 512);
  assertMatchesReference(input, got, describeSpec(spec));
  const ref = referenceAttention(input);
  assert.equal(ref.out.length, got.out.length);
});

backendTest(
  "MLA-like wide rows (K 272, V 264, padded 32-lane rounds) with an empty request",
  async (decoder) => {
    for (const strategy of STRATEGIES) {
      const spec = { ...MLA_WIDE, seqLens: [200, 0, 17], strategy, seed: 41 };
      const input = makeInput(spec);
      assertMatchesReference(input, await decoder.decode(input), describeSpec(spec));
    }
  },
  { decoder: { kernel: { subgroups: false } } },
);

backendTest(
  "MLA decode at its real dims: 16 query heads over one latent KV head, K 576 and V 512",
  async (decoder) => {
    for (const kvDtype of ["bf16", "f16"] as const) {
      for (const strategy of STRATEGIES) {
        const spec = {
          seqLens: [300, 0, 41],
          qLens: [1, 2, 3],
          numHeads: 16,
          numKVHeads: 1,
          headDim: 576,
          headDimV: 512,
          kvDtype,
          strategy,
          seed: 43,
        };
        const input = makeInput(spec);
        assertMatchesReference(input, await decoder.decode(input), describeSpec(spec));
      }
    }
  },
  { exhaustive: true },
);

Deno.test("MLA's kernel class: 32 lanes, padded K rounds, 4-row blocks, a merge looping over 512 dims", () => {
  const tiles = tileConfig({ headDim: 576, headDimV: 512, rowsPerGroup: 128, kvDtype: "bf16" });
  assert.deepStrictEqual([tiles.rowsPerBlock, tiles.rowBlocks], [4, 32]);
  const caps = { subgroups: true, subgroupMinSize: 32 };
  const spec = kernelSpec(
    { problem: { headDim: 576, headDimV: 512, kvDtype: "bf16" }, tiles },
    caps,
  );
  const layout = kernelLayout(spec);
  assert.deepStrictEqual(
    [layout.lanes, layout.chunks, layout.chunksPerLane, layout.chunksV, layout.chunksPerLaneV],
    [32, 72, 3, 64, 2],
  );
  const wgsl = decodeKernelWGSL(spec);
  // Lanes 8..31 of the third K round re-read chunk 71 and hold a zero query there.
  assert.ok(wgsl.includes("let kpad = min(lane + 64u, CHUNKS - 1u) - lane;"));
  assert.ok(wgsl.includes("lane + 64u < CHUNKS) * params.scale_log2, live);"));
  assert.ok(!wgsl.includes("vpad"), "V's 64 chunks divide over 32 lanes");
  assert.ok(wgsl.includes("fn kv_addr_v(base: u32, t: u32, kv_head: u32) -> u32 {"));
  const merge = mergeKernelWGSL(spec);
  assert.ok(merge.includes("var acc = array<f32, 2>();"));
  assert.ok(merge.includes("if (lid + 256u < D) {"));
  // Each thread's dims go through workgroup memory once, for the shared output path.
  assert.ok(merge.includes("var<workgroup> part: array<f32, 512>;"));
  // A padded V round guards its output writes.
  const wide = kernelSpec({
    problem: { headDim: 272, headDimV: 264, kvDtype: "f32" },
    tiles: tileConfig({ headDim: 272, headDimV: 264, rowsPerGroup: 4, kvDtype: "f32" }),
  });
  const w = decodeKernelWGSL(wide);
  assert.ok(w.includes("let vpad = min(lane + 64u, CHUNKS_V - 1u) - lane;"));
  assert.ok(w.includes("if (lane + 64u < CHUNKS_V) {"));
  assert.equal(kernelLayout(wide).lanes, 32);
});

/** Scatters dense `[token][kvHead][dim]` rows of ragged sequences into pages of `pageSize` rows. */
function toPages(
  dense: Float32Array,
  seqLens: number[],
  rowElems: number,
  pageSize: number,
  tables: number[][],
  numPages: number,
): Float32Array {
  const storage = new Float32Array(numPages * pageSize * rowElems).fill(NaN);
  let t0 = 0;
  seqLens.forEach((len, s) => {
    for (let t = 0; t < len; t++) {
      const row = tables[s][Math.floor(t / pageSize)] * pageSize + (t % pageSize);
      storage.set(dense.subarray((t0 + t) * rowElems, (t0 + t + 1) * rowElems), row * rowElems);
    }
    t0 += len;
  });
  return storage;
}

/** An MLA-like batch and its page tables: pages handed out in reverse, unused pages NaN. */
function pagedCase(headDim: number, headDimV: number, numHeads: number) {
  const seqLens = [45, 0, 20];
  const qLens = [2, 1, 1];
  const input = makeInput({ seqLens, qLens, numHeads, numKVHeads: 1, headDim, headDimV, seed: 51 });
  const pageSize = 8;
  const numPages = 12;
  const tables = [[11, 9, 7, 5, 3, 1], [], [10, 8, 6]];
  const k = toPages(input.k as Float32Array, seqLens, headDim, pageSize, tables, numPages);
  const v = toPages(input.v as Float32Array, seqLens, headDimV, pageSize, tables, numPages);
  const shape = { seqLens, qLens, numHeads, numKVHeads: 1, headDim, headDimV };
  return { input, shape, k, v, tables: { pageSize, numPages, pageTables: tables } };
}

Deno.test("paged plans with V rows of their own head dim (explicit page tables, CPU)", () => {
  const c = pagedCase(576, 512, 8);
  const plan = createPagedPlan(c.shape, c.tables, { grid: 5 });
  const got = executePagedPlanOnCpu(plan, { q: c.input.q, k: c.k, v: c.v });
  assertMatchesReference(c.input, got, "paged 576/512");
  // Bitwise the dense plan's result (same schedule, rows read through the pages).
  const dense = executePlanOnCpu(createPlan(c.shape, { grid: 5 }), c.input, 1 / Math.sqrt(576));
  assert.deepStrictEqual(got.out, dense.out);
  assert.deepStrictEqual(got.lse, dense.lse);
  // V storage sized for K's rows is refused, naming the field.
  assert.throws(
    () => executePagedPlanOnCpu(plan, { q: c.input.q, k: c.k, v: c.k.subarray(0, 12 * 8 * 500) }),
    (e: unknown) =>
      e instanceof RangeError && /^v must hold 12 pages of 8 rows of 512/.test(e.message),
  );
});

await deviceTest(
  "paged MLA-like wide rows through the attention encoder (caller's K/V buffers)",
  async ({ device }) => {
    // MLA_WIDE's class without subgroups, paged: one more compile on a software adapter.
    const attention = await createAttentionEncoder(device, {
      grid: 5,
      kernel: { subgroups: false },
    });
    const c = pagedCase(MLA_WIDE.headDim, MLA_WIDE.headDimV!, MLA_WIDE.numHeads);
    const buffers = [c.input.q, c.k, c.v].map((a) => gpuBuffer(device, a));
    const rows = 4 * MLA_WIDE.numHeads;
    const out = gpuBuffer(device, new Float32Array(rows * MLA_WIDE.headDimV!).fill(NaN));
    const lse = gpuBuffer(device, new Float32Array(rows).fill(NaN));
    try {
      for (const strategy of STRATEGIES) {
        const plan = attention.planPages(c.shape, c.tables, { strategy });
        const enc = device.createCommandEncoder();
        const [q, k, v] = buffers;
        attention.encode(enc, { plan, q, k, v, out, lse });
        device.queue.submit([enc.finish()]);
        const got = {
          out: await readF32(device, out, rows * MLA_WIDE.headDimV!),
          lse: await readF32(device, lse, rows),
        };
        assertMatchesReference(c.input, got, `paged ${strategy}`);
      }
    } finally {
      for (const b of [...buffers, out, lse]) b.destroy();
      attention.dispose();
    }
  },
);
