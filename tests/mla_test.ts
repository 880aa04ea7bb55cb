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
import { tileConfig } from "../src/plan/tiles.ts";
import { kernelSpec } from "../src/gpu/kernel_choice.ts";
import { kernelLayout } from "../src/kernels/kernel_spec.ts";
import { decodeKernelWGSL } from "../src/kernels/decode_kernel.ts";
import { mergeKernelWGSL } from "../src/kernels/merge_kernel.ts";
import { backendTest } from "./backends.ts";
import { assertMatchesReference, describeSpec, makeInput } from "./helpers.ts";
import { MLA_WIDE } from "./kernel_set.ts";

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
  assert.ok(wgsl.includes("lane + 64u < CHUNKS) * params.scale_log2;"));
  assert.ok(!wgsl.includes("vpad"), "V's 64 chunks divide over 32 lanes");
  assert.ok(wgsl.includes("let kv_row_v = params.kv_row / CHUNKS * CHUNKS_V;"));
  const merge = mergeKernelWGSL(spec);
  assert.ok(merge.includes("var acc = array<f32, 2>();"));
  assert.ok(merge.includes("if (lid + 256u < D) {"));
  assert.ok(!merge.includes("var<workgroup> part"));
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
