/**
 * The matrix-unit kernel (src/kernels/matrix_kernel.ts) where the device has no matrix units:
 * Dawn on lavapipe (CI) with Dawn's subgroup matrices emulated in plain WGSL
 * (tests/matrix_emulation.ts), against the float64 reference. Everything but the matrix units'
 * own arithmetic runs as on the GPU: the staging, the softmax and its lazy rescaling (scores that
 * rise tile after tile), each tile's scores in two parts of the dims and flushes through the score
 * region in five passes (head dim 160, whose ten dim blocks four subgroups share unevenly), masked
 * tiles token by token (causal edges of qLen 4, windows), the variant hooks, ragged
 * batches with an empty request, and workgroups whose pieces cross sequences (small grids). The
 * emulation found a kernel bug (a piece's f32 sums declared without an initializer kept the last
 * piece's on lavapipe). One layout only (16 rows: each kernel and its merge take a minute or two
 * to compile there): dense f16 through a decoder, and FP8 E4M3 codes with per-token scales
 * (staged as their values) over a runner's NHD pages of 4 tokens through the attention encoder
 * (each tile's token addresses and rows read from the page table into workgroup memory);
 * hardware GPUs with matrix units take tests/matrix_kernel_test.ts instead, every block size and
 * 8-bit format.
 */

import assert from "node:assert/strict";
import { loadDawn } from "../dawn.ts";
import type { DecodeInput } from "../mod.ts";
import { requestDevice } from "../src/gpu/gpu_runtime.ts";
import { gpuTest } from "./backends.ts";
import { emulatedMatrixDevice } from "./matrix_emulation.ts";
import { scatterPages } from "./combinations.ts";
import { assertHalfGrade, assertPagesHalfGrade } from "./half_grade.ts";
import { type CaseSpec, makeInput, risingKeysInput } from "./helpers.ts";

/**
 * 16 rows (GQA 4 x qLen 4) at head dim 160: causal edges, a ragged batch, an empty request; 32-token
 * tiles whose scores two subgroups take in two parts of the dims each (the layout of head dims
 * above 128), its ten dim blocks over four subgroups, and flushes in five passes of 32 dims (a
 * subgroup's blocks in some passes, not in others).
 */
const ROWS16: CaseSpec = {
  seqLens: [300, 77, 0],
  numHeads: 8,
  numKVHeads: 2,
  headDim: 160,
  qLen: 4,
  kvDtype: "f16",
  seed: 51,
};
gpuTest(
  "the matrix kernel with emulated subgroup matrices matches the reference",
  async (b) => {
    const adapter = await (await loadDawn()).requestAdapter();
    const raw = await requestDevice(adapter!);
    let emulated = 0;
    const device = emulatedMatrixDevice(raw, adapter!.info, () => emulated++);
    // One kernel for every case (each kernel and its merge take a minute or two to compile on
    // lavapipe): the window, soft-cap and ALiBi hooks compiled in, narrow or wide by the values.
    // (Not sinks: they change the merge kernel; the hardware test takes them.)
    const H = 8;
    const hooks = (input: DecodeInput, window: number, cap: number, slope: number) => ({
      ...input,
      slidingWindow: window,
      logitsSoftCap: cap,
      alibiSlopes: Float32Array.from({ length: H }, (_, h) => slope * 2 ** (-(h + 1) / 2)),
    });
    const ragged = (seed: number) => makeInput({ ...ROWS16, seed, qAmplitude: 2 });
    const cases: [string, DecodeInput][] = [
      // Wide: every tile but the causal edges whole, on the matrix units.
      ["16 rows, lean", hooks({ ...ragged(51), strategy: "lean" }, 1e6, 1e4, 0)],
      ["16 rows, split", hooks({ ...ragged(51), strategy: "split" }, 1e6, 1e4, 0)],
      ["16 rows, scores rising", hooks(risingKeysInput(ROWS16, 300, 53), 1e6, 1e4, 0)],
      // Narrow: window edges in every piece, capped logits, ALiBi.
      ["every variant", hooks(ragged(54), 40, 20, 1)],
      // GQA's 4 rows at qLen 1 (`matrixMinRows: 4`): one block of 16, rows 4-15 masked (the same
      // kernel: a block's rows are a uniform).
      ["4 rows in a block of 16", hooks(makeInput({ ...ROWS16, qLen: 1, seed: 57 }), 1e6, 1e4, 0)],
    ];
    // A small grid: workgroups take several pieces, across sequences, some of them partial.
    const decoder = await b.open({
      device,
      grid: 2,
      kernel: { matrixMath: true, matrixMinRows: 4 },
    });
    try {
      assert.equal(decoder.profile.matrixUnits, true, "the matrix kernel's device");
      for (const [what, input] of cases) {
        assert.ok(decoder.plan(input).tiles.rowsPerBlock >= 16, `${what}: matrix blocks`);
        assertHalfGrade(what, input, await decoder.decode(input));
      }
      // FP8 E4M3 codes with per-token scales over a runner's NHD pages of 4 tokens, scattered
      // (the second kernel: paged, its tiles' token addresses and rows in workgroup memory).
      const input8 = hooks(
        makeInput({ ...ROWS16, kvDtype: "fp8e4m3", kvScales: "token", seed: 55 }),
        40,
        20,
        1,
      );
      const pages = scatterPages(input8, 4, "NHD", 56);
      await assertPagesHalfGrade(
        device,
        "FP8 E4M3, per-token scales, NHD pages of 4",
        input8,
        pages,
        (tiles) => assert.ok(tiles.rowsPerBlock >= 16, "paged E4M3: matrix blocks"),
      );
      // The two matrix kernels (dense f16, paged FP8 E4M3 with per-token scales), emulated.
      assert.equal(emulated, 2);
    } finally {
      await decoder.dispose();
      raw.destroy();
    }
  },
  // (Dawn's own WGSL compiler: Deno's WebGPU lacks the subgroups the kernel's softmax uses.)
  { dawnOnSoftware: true, backends: ["dawn"] },
);
