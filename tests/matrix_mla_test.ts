/**
 * The matrix-unit kernel's MLA layout (src/kernels/matrix_layout.ts): K rows above 256 dims (MLA's
 * 576) with V rows of their own length (512), in blocks of 16 rows and 16-token tiles whose
 * scores four subgroups take over a quarter of K's dims each, V's rows loaded at their own tile's
 * start. On the CPU: which plans take it (blocks cut for the matrix kernel, not the tiled
 * kernel's), its layout and its WGSL's order. On Dawn over lavapipe with the subgroup matrices
 * emulated (tests/matrix_emulation.ts): a smaller MLA shape (K 320, V 256: the same layout, fewer
 * matrices to compile) against float64, dense through a decoder and over a runner's HND pages
 * through the attention encoder. Hardware GPUs with matrix units take MLA's own 576/512 in
 * tests/matrix_kernel_test.ts.
 */

import assert from "node:assert/strict";
import { loadDawn } from "../dawn.ts";
import type { DecodeInput } from "../mod.ts";
import { createPlan, executePlanOnCpu, gridFor, resolveScale, tileConfig } from "../plan.ts";
import { kernelSpec } from "../src/gpu/kernel_choice.ts";
import { requestDevice } from "../src/gpu/gpu_runtime.ts";
import { gridClassKey } from "../src/kernels/kernel_table.ts";
import { matrixLayout } from "../src/kernels/matrix_layout.ts";
import { matrixKernelWGSL } from "../src/kernels/matrix_kernel.ts";
import { gpuTest } from "./backends.ts";
import { emulatedMatrixDevice } from "./matrix_emulation.ts";
import { scatterPages, shapeOf } from "./combinations.ts";
import { assertHalfGrade, assertPagesHalfGrade } from "./half_grade.ts";
import { assertMatchesReference, type CaseSpec, makeInput, risingKeysInput } from "./helpers.ts";

const CAPS = {
  subgroups: true,
  subgroupMinSize: 32,
  shaderF16: true,
  subgroupMatrix: true,
  workgroupBytes: 49152,
};

const mlaPlan = (rowsPerGroup: number, matrixUnits: boolean, headDim = 576, headDimV = 512) => ({
  problem: { headDim, headDimV, kvDtype: "f16" as const },
  tiles: tileConfig(
    { headDim, headDimV, rowsPerGroup, kvDtype: "f16" },
    { matrixBlocks: true, matrixUnits },
  ),
});

Deno.test("MLA's head dims take the matrix kernel where blocks are cut for it, else the tiled", () => {
  // 128 heads over one latent KV head: 8 blocks of 16 rows for the matrix kernel, 2 of 64 for
  // the tiled kernel; 16 heads: 16-row blocks either way, told apart by the tiles' flag.
  const matrix = mlaPlan(128, true);
  assert.deepEqual([matrix.tiles.rowsPerBlock, matrix.tiles.rowBlocks], [16, 8]);
  assert.equal(matrix.tiles.matrixUnits, true);
  assert.equal(kernelSpec(matrix, CAPS).matrix, true);
  const tiled = mlaPlan(128, false);
  assert.deepEqual([tiled.tiles.rowsPerBlock, tiled.tiles.rowBlocks], [64, 2]);
  assert.equal(kernelSpec(tiled, CAPS).matrix, undefined);
  assert.equal(kernelSpec(tiled, CAPS).tiled, true);
  const tiled16 = mlaPlan(16, false);
  assert.equal(tiled16.tiles.rowsPerBlock, 16);
  assert.equal(tiled16.tiles.matrixUnits, undefined);
  assert.equal(kernelSpec(tiled16, CAPS).matrix, undefined);
  assert.equal(kernelSpec(mlaPlan(16, true), CAPS).matrix, true);
  // Shapes the layout has no place for keep the tiled kernel's blocks: bf16, K not a multiple
  // of 64, V above 512 or above K.
  for (
    const [d, dv, dtype] of [
      [576, 512, "bf16"],
      [544, 512, "f16"],
      [640, 512, "f16"],
      [576, 576, "f16"],
      [320, 384, "f16"],
    ] as const
  ) {
    const t = tileConfig({ headDim: d, headDimV: dv, rowsPerGroup: 128, kvDtype: dtype }, {
      matrixBlocks: true,
      matrixUnits: true,
    });
    assert.equal(t.matrixUnits, undefined, `${d}/${dv} ${dtype}`);
  }
  // Its own grid class, apart from the tiled kernel's.
  assert.equal(gridClassKey(576, 16, "f16", true), "matrix r16 d576");
  assert.equal(gridClassKey(576, 16, "f16"), "tiled r16");
  const profile = {
    name: "gpu",
    grid: 500,
    source: "calibrated" as const,
    gridByRows: { 1: 500, 8: 300 },
    gridByClass: { "matrix r16 d576": 264, "tiled r16": 131 },
  };
  assert.equal(gridFor(profile, 16, 576, "f16", true), 264);
  assert.equal(gridFor(profile, 16, 576, "f16"), 131);
});

Deno.test("the matrix kernel's MLA layout: 16-token tiles, four parts of K, V loaded late", () => {
  const spec = kernelSpec(mlaPlan(128, true), CAPS);
  const l = matrixLayout(spec);
  assert.deepEqual(
    [l.RB, l.G, l.KP, l.T, l.DV, l.KS, l.CHUNKS, l.CHUNKS_V, l.CK, l.CKV, l.FW, l.lateV],
    [16, 4, 4, 16, 512, 584, 72, 64, 9, 8, 64, true],
  );
  // Two workgroups per multiprocessor on NVIDIA's driver (below about 27 KB each).
  assert.ok(l.bytes <= 27 * 1024, `${l.bytes} bytes`);
  for (const paged of [false, true]) {
    const s = kernelSpec(mlaPlan(128, true), CAPS, {}, paged);
    const wgsl = matrixKernelWGSL(s);
    let bytes = 0;
    for (const [, type, n] of wgsl.matchAll(/var<workgroup> \w+: array<(f16|f32|u32), (\d+)>/g)) {
      const size = Number(n) * (type === "f16" ? 2 : 4);
      assert.equal(size % 16, 0, `an array of ${n} ${type}`);
      bytes += size;
    }
    assert.equal(bytes, matrixLayout(s).bytes);
    // Nine query matrices per subgroup (its quarter of 576 dims), eight result matrices (its
    // eighth of 512 dims in blocks of 16), 64 f32 sums, 9 staging loads of K and 8 of V.
    assert.ok(wgsl.includes("var q8 = ") && !wgsl.includes("var q9 = "));
    assert.ok(wgsl.includes("var o7 = ") && !wgsl.includes("var o8 = "));
    assert.ok(wgsl.includes("var acc = array<f32, 64>();"));
    assert.ok(wgsl.includes("var kw8 = ") && !wgsl.includes("var kw9 = "));
    assert.ok(wgsl.includes("var vw7 = ") && !wgsl.includes("var vw8 = "));
    assert.ok(
      wgsl.includes("const DV: u32 = 512u;") && wgsl.includes("const CHUNKS_V: u32 = 64u;"),
    );
    assert.ok(wgsl.includes(`const SLOT: u32 = ${16 * 514}u;`));
    assert.ok(wgsl.includes("let kp = g / 1u;"));
    // Each tile: K's rows stored, then this tile's V rows requested before the barrier and the
    // score products; V's rows stored after them, then the next tile's K rows requested.
    const loop = wgsl.slice(wgsl.indexOf("for (var tile0"));
    const at = (s: string) => {
      const i = loop.indexOf(s);
      assert.ok(i >= 0, s);
      return i;
    };
    const vLoad = paged ? "vw0 = v_cache[va0];" : "vw0 = v_cache[kv_addr_v(";
    const kLoad = paged ? "kw0 = k_cache[tok_wg[idx / 72u]" : "kw0 = k_cache[kv_addr(";
    assert.ok(at("kv_wg[at + 7u] = h3.y;") < at(vLoad));
    assert.ok(at(vLoad) < at("workgroupBarrier();"));
    assert.ok(at("workgroupBarrier();") < at("subgroupMatrixMultiplyAccumulate(q0"));
    assert.ok(at("subgroupMatrixMultiplyAccumulate(q8") < at("bitcast<vec2<f16>>(vw0[0])"));
    assert.ok(at("bitcast<vec2<f16>>(vw0[0])") < at(kLoad));
    assert.equal(loop.split("vw0 = v_cache[").length, 2, "V's rows requested once a tile");
    if (paged) {
      // K's and V's addresses of a tile's tokens (their rows differ in length).
      assert.ok(wgsl.includes("var<workgroup> tok_wg: array<u32, 32>;"));
      assert.ok(wgsl.includes("tok_wg[16u + lid] = kv_addr_v_at(pg_page, pg_tok, kv_head);"));
      // Pages two tiles ahead: after the first barrier a tile writes the next tile's addresses
      // from the pages read a tile earlier, then reads the pages of the tile after that, all
      // before its products (one read per tile, hidden by a whole tile).
      const write = at("tok_wg[lid] = kv_addr_at(pg_page, pg_tok, kv_head);");
      const read = at("pg_tok = min((tile0 + 32u) + lid, tok_end - 1u);");
      assert.ok(at("workgroupBarrier();") < write && write < read);
      assert.ok(read < at("subgroupMatrixMultiplyAccumulate(q0"));
      assert.equal(loop.split("pg_page = kv_page(").length, 2, "one page read a tile");
      assert.ok(wgsl.includes("pg_tok = min((tok_begin + 16u) + lid, tok_end - 1u);"));
      // The next tile's V addresses into registers right after its K loads (after the second
      // barrier, which its addresses' stores precede): its V loads read no workgroup memory.
      assert.ok(at(kLoad) < at("va0 = tok_wg[16u + idx / 64u] + idx % 64u;"));
    }
  }
});

Deno.test("plans cut for the MLA layout's 16-row blocks execute on the CPU as the reference", () => {
  // 32 heads x qLen 2 over one latent KV head: four 16-row blocks, each its own segment, their
  // pieces split and merged by the lean schedule over a small grid (the tiles and partial states
  // the GPU kernel executes), with an empty request and a sequence shorter than a tile.
  for (const strategy of ["lean", "split", "single"] as const) {
    const input = makeInput({
      seqLens: [300, 0, 9],
      numHeads: 32,
      numKVHeads: 1,
      headDim: 576,
      headDimV: 512,
      qLen: 2,
      kvDtype: "f16",
      seed: 76,
    });
    const plan = createPlan(shapeOf(input), {
      grid: 7,
      strategy,
      matrixBlocks: true,
      matrixUnits: true,
    });
    assert.deepEqual([plan.tiles.rowsPerBlock, plan.tiles.rowBlocks], [16, 4]);
    assert.equal(plan.tiles.matrixUnits, true);
    assertMatchesReference(input, executePlanOnCpu(plan, input, resolveScale(input)), strategy);
  }
});

/**
 * 16 rows (8 heads over one latent KV head x qLen 2) of K rows of 320 and V rows of 256: the MLA
 * layout (16-token tiles, four parts of K's 20 dim blocks, V's 16 dim blocks four to a subgroup,
 * flushes in four passes of 64 dims), causal edges, a ragged batch with an empty request.
 */
const MLA_SMALL: CaseSpec = {
  seqLens: [150, 0, 37],
  numHeads: 8,
  numKVHeads: 1,
  headDim: 320,
  headDimV: 256,
  qLen: 2,
  kvDtype: "f16",
  seed: 71,
};
/** An input read as MLA's latent cache: V the first `headDimV` dims of K's rows, no `v`. */
function latent(input: DecodeInput): DecodeInput {
  const { v: _v, ...rest } = input;
  return { ...rest, vFromK: true };
}

gpuTest(
  "the matrix kernel's MLA layout with emulated subgroup matrices matches the reference",
  async (b) => {
    const adapter = await (await loadDawn()).requestAdapter();
    const raw = await requestDevice(adapter!);
    let emulated = 0;
    const device = emulatedMatrixDevice(raw, adapter!.info, () => emulated++);
    // A small grid: workgroups take several pieces, across sequences, some of them partial.
    const decoder = await b.open({ device, grid: 2, kernel: { matrixMath: true } });
    try {
      const cases: [string, DecodeInput][] = [
        ["lean", { ...makeInput({ ...MLA_SMALL, qAmplitude: 2 }), strategy: "lean" }],
        ["split", { ...makeInput({ ...MLA_SMALL, seed: 72 }), strategy: "split" }],
        ["scores rising", risingKeysInput(MLA_SMALL, 150, 73)],
      ];
      for (const [what, input] of cases) {
        const plan = decoder.plan(input);
        assert.ok(plan.tiles.matrixUnits === true && plan.tiles.rowsPerBlock === 16, what);
        assertHalfGrade(what, input, await decoder.decode(input));
      }
      // Over a runner's HND pages of 16 tokens, scattered (the paged kernel: K's and V's
      // addresses of a tile's tokens in workgroup memory).
      const input = makeInput({ ...MLA_SMALL, seed: 74 });
      const pages = scatterPages(input, 16, "HND", 75);
      await assertPagesHalfGrade(device, "HND pages of 16", input, pages, (tiles) => {
        assert.ok(tiles.matrixUnits === true, "paged: matrix blocks");
      });
      // The same pages read as MLA's latent cache, K's pages alone: V is the first 256 dims of each
      // K row, read from K's staged rows (no V loads or stores: the paged kernel has every change
      // of the dense one, so CI compiles only it; the H200 runs both at MLA's dims).
      await assertPagesHalfGrade(device, "HND pages of 16, vFromK", latent(input), pages, () => {});
      // The three matrix kernels (dense and paged, and paged with V in K's rows), emulated.
      assert.equal(emulated, 3);
    } finally {
      await decoder.dispose();
      raw.destroy();
    }
  },
  // (Dawn's own WGSL compiler: Deno's WebGPU lacks the subgroups the kernel's softmax uses.)
  { dawnOnSoftware: true, backends: ["dawn"] },
);
