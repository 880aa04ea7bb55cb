/**
 * The matrix-unit decode kernel (src/kernels/matrix_kernel.ts, opt-in `kernel: { matrixMath:
 * true }`) on the GPU backends: where the device offers Dawn's f16 subgroup matrices (an NVIDIA
 * GPU through Dawn), every block size (16, 32 and 64 rows, masked rows past a group's), head dims
 * 32 to 256 (above 128: 32-token tiles whose scores take two parts of the dims), MLA's K rows of
 * 576 with V rows of 512 (16-token tiles, four parts of K's dims, paged too; and V read as the
 * first 512 dims of K's rows, `vFromK`), ragged query
 * lengths, an empty request, every variant flag at once, paged K/V, and a non-finite V that some
 * rows must not see, against the float64 reference within f16 tolerance and with bits different
 * from the default kernels'; elsewhere (lavapipe, Deno's WebGPU) the option must leave the
 * default kernels' bits. tests/matrix_layout_test.ts checks its blocking, choice and WGSL on the
 * CPU.
 */

import assert from "node:assert/strict";
import { loadDawn } from "../dawn.ts";
import { type DecodeInput, referenceAttention, type Strategy } from "../mod.ts";
import { createAttentionEncoder, createIndptrPageTable } from "../runner.ts";
import { matrixUnitsOn } from "../src/gpu/kernel_choice.ts";
import { kernelCaps, requestDevice } from "../src/gpu/gpu_runtime.ts";
import { type BackendUnderTest, gpuTest } from "./backends.ts";
import { KERNEL_OPTION_SHAPES } from "./kernel_set.ts";
import { indptrOptions, scatterPages } from "./combinations.ts";
import { readF32, STORAGE } from "./gpu_device.ts";
import {
  type CaseSpec,
  makeInput,
  maxAbsError,
  relativeL2Error,
  risingKeysInput,
  sameBits,
} from "./helpers.ts";

/** Whether a GPU backend's device runs the matrix kernel. */
async function hasMatrixUnits(backend: string): Promise<boolean> {
  const gpu = backend === "dawn" ? await loadDawn() : navigator.gpu;
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) return false;
  const device = await requestDevice(adapter);
  try {
    return matrixUnitsOn(kernelCaps(device, adapter.info));
  } finally {
    device.destroy();
  }
}

/** Output and LSE tolerance of f16 operands (queries and weights rounded to f16). */
const HALF_TOLERANCE = 2e-3;
const STRATEGIES_UNDER_TEST: Strategy[] = ["lean", "split"];

/** Shapes of 16 or more rows per KV head: each block size, masked rows, ragged query lengths. */
const MATRIX_SHAPES: readonly CaseSpec[] = [
  // MQA, 64 rows: one block of 64.
  { seqLens: [700, 1500, 33], numHeads: 64, numKVHeads: 1, headDim: 128, kvDtype: "f16", seed: 41 },
  // GQA 4 x qLen 4: 16 rows, causal edges in the last tile.
  {
    seqLens: [1000, 17, 0],
    numHeads: 8,
    numKVHeads: 2,
    headDim: 128,
    qLen: 4,
    kvDtype: "f16",
    seed: 42,
  },
  // 8 heads per KV head x qLen 3 (24 rows in a 32-row block), d64, ragged query lengths.
  {
    seqLens: [300, 64, 5],
    qLens: [3, 2, 1],
    numHeads: 16,
    numKVHeads: 2,
    headDim: 64,
    kvDtype: "f16",
    seed: 43,
  },
  // GQA 4 x qLen 4 at d96 (16 rows; 6 dim blocks dealt over 4 subgroups).
  {
    seqLens: [130, 70],
    numHeads: 16,
    numKVHeads: 4,
    headDim: 96,
    qLen: 4,
    kvDtype: "f16",
    seed: 48,
  },
  // MQA h128/1 at d32: two blocks of 64.
  { seqLens: [257], numHeads: 128, numKVHeads: 1, headDim: 32, kvDtype: "f16", seed: 44 },
  // GQA 8 x qLen 2 at d256 (16 rows, as Qwen3-Next's 16/2 heads with two tokens a step):
  // 32-token tiles whose scores take two parts of the dims; causal edges, an empty request.
  {
    seqLens: [600, 45, 0],
    numHeads: 16,
    numKVHeads: 2,
    headDim: 256,
    qLen: 2,
    kvDtype: "f16",
    seed: 52,
  },
  // GQA 4 x qLen 4 at d160: 10 dim blocks over 4 subgroups, flushes in five passes.
  {
    seqLens: [140, 66],
    numHeads: 8,
    numKVHeads: 2,
    headDim: 160,
    qLen: 4,
    kvDtype: "f16",
    seed: 53,
  },
  // MLA as DeepSeek-V2-Lite's 16 heads over one latent KV head (K 576, V 512): one 16-row block,
  // 16-token tiles, an empty request and a sequence shorter than a tile.
  {
    seqLens: [900, 7, 0],
    numHeads: 16,
    numKVHeads: 1,
    headDim: 576,
    headDimV: 512,
    kvDtype: "f16",
    seed: 54,
  },
  // MLA with 128 heads (DeepSeek-V3's) and qLen 2: 16 blocks of 16 rows, causal edges.
  {
    seqLens: [333, 64],
    numHeads: 128,
    numKVHeads: 1,
    headDim: 576,
    headDimV: 512,
    qLen: 2,
    kvDtype: "f16",
    seed: 55,
  },
];

/** The reference's errors of a result, with the empty rows' -Infinity LSE compared as 0. */
function errors(input: DecodeInput, got: { out: Float32Array; lse: Float32Array }) {
  const ref = referenceAttention(input);
  const finite = (a: ArrayLike<number>) => Array.from(a, (x) => (x === -Infinity ? 0 : x));
  return {
    out: relativeL2Error(got.out, ref.out),
    lse: maxAbsError(finite(got.lse), finite(ref.lse)),
    /** The largest |LSE| of the reference (at least 1). */
    lseSize: Math.max(1, ...finite(ref.lse).map(Math.abs)),
  };
}

async function matrixMatchesReference(b: BackendUnderTest): Promise<void> {
  const matrix = await b.open({ kernel: { matrixMath: true } });
  const plain = await b.open();
  try {
    assert.equal(matrix.profile.matrixUnits, true);
    const H = 16;
    const variants = {
      slidingWindow: 40,
      logitsSoftCap: 20,
      alibiSlopes: Float32Array.from({ length: H }, (_, h) => 2 ** (-(h + 1) / 2)),
      sinks: Float32Array.from({ length: H }, (_, h) => 0.5 - h / 8),
    };
    const cases: [string, DecodeInput][] = MATRIX_SHAPES.flatMap((spec, i) =>
      STRATEGIES_UNDER_TEST.map((strategy): [string, DecodeInput] => [
        `shape ${i} ${strategy}`,
        { ...makeInput({ ...spec, qAmplitude: 2 }), strategy },
      ])
    );
    cases.push(["every variant", { ...makeInput({ ...MATRIX_SHAPES[2], seed: 45 }), ...variants }]);
    // MLA's latent cache: V is the first 512 dims of each K row, read from K's binding.
    for (const i of [7, 8]) {
      const { v: _v, ...latent } = makeInput({ ...MATRIX_SHAPES[i], qAmplitude: 2, seed: 58 + i });
      cases.push([`shape ${i} MLA latent (vFromK)`, { ...latent, vFromK: true }]);
    }
    cases.push([
      "every variant, MLA",
      { ...makeInput({ ...MATRIX_SHAPES[7], seed: 56 }), ...variants },
    ]);
    // GQA 4 x qLen 4 over 1000 tokens, rescaled tile after tile, on plain tiles and the causal edge.
    cases.push([
      "scores that rise along the sequence",
      risingKeysInput(MATRIX_SHAPES[1], 1000, 49),
    ]);
    cases.push([
      "scores that rise along the sequence, d256",
      risingKeysInput(MATRIX_SHAPES[5], 600, 50),
    ]);
    cases.push([
      "scores that rise along the sequence, MLA",
      risingKeysInput(MATRIX_SHAPES[7], 900, 57),
    ]);
    // A non-finite V in the last token: the rows of earlier query positions do not see it.
    const poisoned = makeInput({ ...MATRIX_SHAPES[1], seqLens: [200], seed: 46 });
    const v = poisoned.v as Uint16Array;
    v.fill(0x7c00, v.length - 128 * 2, v.length); // +inf halves, both KV heads' last rows
    cases.push(["non-finite V unseen", poisoned]);
    // 8-bit codes, staged as their values in f16: per-tensor and per-token scales.
    const eightBit = [
      [0, "int8", "tensor"],
      [1, "fp8e4m3", "token"],
      [2, "fp8e5m2", "tensor"],
      [5, "fp8e4m3", "token"],
    ];
    for (const [i, kvDtype, kvScales] of eightBit as [number, "int8", "tensor"][]) {
      const input = makeInput({
        ...MATRIX_SHAPES[i],
        kvDtype,
        kvScales,
        qAmplitude: 2,
        seed: 60 + i,
      });
      cases.push([`shape ${i} ${kvDtype} ${kvScales}`, input]);
    }
    // E4M3's NaN code in the last token's V: as the f16 case, unseen by earlier positions.
    const poisoned8 = makeInput({
      ...MATRIX_SHAPES[1],
      seqLens: [200],
      kvDtype: "fp8e4m3",
      kvScales: "token",
      seed: 63,
    });
    const v8 = poisoned8.v as Uint8Array;
    v8.fill(0x7f, v8.length - 128 * 2, v8.length);
    cases.push(["non-finite V unseen (E4M3)", poisoned8]);
    for (const [what, input] of cases) {
      const got = await matrix.decode(input);
      const e = errors(input, got);
      if (what.startsWith("non-finite V unseen")) {
        // Query position p sees the last token only at p = 3: rows of positions 0-2 stay finite.
        for (let p = 0; p < 3; p++) {
          const rows = got.out.subarray(p * 8 * 128, (p + 1) * 8 * 128);
          assert.ok(rows.every(Number.isFinite), `${what}: position ${p} finite`);
        }
        continue;
      }
      assert.ok(e.out < HALF_TOLERANCE, `out ${what}: relative L2 error ${e.out}`);
      // f16 queries carry a relative error, so large scores (the rising case's LSE reaches 37)
      // move the LSE in proportion: there the bound is 5e-4 of its size (f16's 2^-11).
      const lseScale = what.startsWith("scores that rise along the sequence") ? e.lseSize / 4 : 1;
      assert.ok(e.lse < HALF_TOLERANCE * lseScale, `lse ${what}: max abs error ${e.lse}`);
      const f32 = await plain.decode(input);
      assert.ok(!sameBits(got.out, f32.out), `${what}: the matrix kernel ran`);
    }
    await runnerPagesMatch(b.name, MATRIX_SHAPES[0], 64);
    await runnerPagesMatch(b.name, MATRIX_SHAPES[8], 16);
    await runnerPagesMatch(b.name, MATRIX_SHAPES[7], 16, true);
    await fewRowsMatch(b);
  } finally {
    await matrix.dispose();
    await plain.dispose();
  }
}

/**
 * A runner's HND pages (16 tokens each) through the attention encoder, outputs poisoned: the
 * plan's blocks of `rowsPerBlock` rows are cut for the matrix kernel. `latent`: V is read from
 * K's pages (`vFromK`, MLA's latent cache), the encoder given `k` alone.
 */
async function runnerPagesMatch(
  backend: string,
  spec: CaseSpec,
  rowsPerBlock: number,
  latent = false,
): Promise<void> {
  const gpu = backend === "dawn" ? await loadDawn() : navigator.gpu;
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  const device = await requestDevice(adapter!);
  try {
    const made = makeInput({ ...spec, qAmplitude: 2, seed: 47 });
    const { numHeads } = made;
    const D = made.headDimV ?? made.headDim;
    const pages = scatterPages(made, 16, "HND", 48);
    const { v: _v, ...kOnly } = made;
    const input: DecodeInput = latent ? { ...kOnly, vFromK: true } : made;
    const table = createIndptrPageTable({
      ...indptrOptions(made, pages),
      ...(latent ? { vFromK: true } : {}),
    });
    const attention = await createAttentionEncoder(device, {
      grid: 40,
      kernel: { matrixMath: true },
    });
    const rows = input.seqLens.length * numHeads * (input.qLen ?? 1);
    const buffer = (data: ArrayBufferView) => {
      const b = device.createBuffer({ size: Math.ceil(data.byteLength / 4) * 4, usage: STORAGE });
      device.queue.writeBuffer(b, 0, data as Uint8Array<ArrayBuffer>);
      return b;
    };
    const k = buffer(pages.k), v = buffer(pages.v), q = buffer(input.q);
    const out = buffer(new Float32Array(rows * D).fill(NaN));
    const lse = buffer(new Float32Array(rows).fill(NaN));
    try {
      const plan = attention.plan(table, {
        seqs: table.seqs,
        numHeads,
        qLen: input.qLen,
        strategy: "lean",
      });
      const info = (device.adapterInfo ?? {}) as unknown as Record<string, unknown>;
      const fields = ["subgroupMinSize", "subgroupMaxSize", "subgroupMatrixConfigs"]
        .map((f) => `${f} ${JSON.stringify(info[f])}`).join(", ");
      assert.equal(
        plan.tiles.rowsPerBlock,
        rowsPerBlock,
        `the runner's plan takes matrix blocks (${fields})`,
      );
      assert.equal(plan.tiles.matrixUnits, true);
      const enc = device.createCommandEncoder();
      attention.encode(enc, { plan, k, ...(latent ? {} : { v }), q, out, lse });
      device.queue.submit([enc.finish()]);
      const e = errors(input, {
        out: await readF32(device, out, rows * D),
        lse: await readF32(device, lse, rows),
      });
      assert.ok(e.out < HALF_TOLERANCE, `out paged: relative L2 error ${e.out}`);
      assert.ok(e.lse < HALF_TOLERANCE, `lse paged: max abs error ${e.lse}`);
    } finally {
      for (const b of [k, v, q, out, lse]) b.destroy();
      attention.dispose();
    }
  } finally {
    device.destroy();
  }
}

/** GQA's 8 rows at qLen 1 (a 64/8 group): one 16-row block, rows 8-15 masked. */
const GQA8: CaseSpec = {
  seqLens: [700, 33, 0, 260],
  numHeads: 16,
  numKVHeads: 2,
  headDim: 128,
  kvDtype: "f16",
  seed: 94,
};

/**
 * KV groups of fewer than 16 rows in one 16-row block (`matrixMinRows`, default 7 over f16):
 * GQA's 8 rows by default, 4 rows where asked, every strategy, and over a runner's pages.
 */
async function fewRowsMatch(b: BackendUnderTest): Promise<void> {
  const four = await b.open({ kernel: { matrixMath: true, matrixMinRows: 4 } });
  const matrix = await b.open({ kernel: { matrixMath: true } });
  try {
    const cases: [string, DecodeInput, typeof matrix][] = [
      ...STRATEGIES_UNDER_TEST.map((strategy): [string, DecodeInput, typeof matrix] => [
        `8 rows ${strategy}`,
        { ...makeInput({ ...GQA8, qAmplitude: 2 }), strategy },
        matrix,
      ]),
      ["8 rows, scores rising", risingKeysInput(GQA8, 700, 95), matrix],
      ["4 rows (matrixMinRows 4)", makeInput({ ...GQA8, numHeads: 8, seed: 96 }), four],
    ];
    for (const [what, input, decoder] of cases) {
      const tiles = decoder.plan(input).tiles;
      assert.ok(tiles.matrixUnits === true && tiles.rowsPerBlock === 16, what);
      const e = errors(input, await decoder.decode(input));
      assert.ok(e.out < HALF_TOLERANCE, `out ${what}: relative L2 error ${e.out}`);
      const lseScale = what.includes("rising") ? e.lseSize / 4 : 1;
      assert.ok(e.lse < HALF_TOLERANCE * lseScale, `lse ${what}: max abs error ${e.lse}`);
    }
    // 6 rows stay on the default kernels unless asked.
    const six = makeInput({ ...GQA8, numHeads: 12, seed: 97 });
    assert.equal(matrix.plan(six).tiles.matrixUnits, undefined);
  } finally {
    await four.dispose();
    await matrix.dispose();
  }
  await runnerPagesMatch(b.name, GQA8, 16);
}

gpuTest(
  "the matrix kernel matches the reference where the device has f16 subgroup matrices, and falls back to the default kernels' bits elsewhere",
  async (b) => {
    if (await hasMatrixUnits(b.name)) return await matrixMatchesReference(b);
    const matrix = await b.open({ kernel: { matrixMath: true } });
    const plain = await b.open();
    try {
      assert.equal(matrix.profile.matrixUnits ?? false, false);
      const input = makeInput(KERNEL_OPTION_SHAPES[0]);
      const got = await matrix.decode(input);
      const f32 = await plain.decode(input);
      assert.ok(sameBits(got.out, f32.out) && sameBits(got.lse, f32.lse));
    } finally {
      await matrix.dispose();
      await plain.dispose();
    }
  },
);
