/**
 * The tiled decode kernel (src/kernels/tiled_kernel.ts): MLA-sized row groups (16 or more rows
 * over head dims above 256) in blocks of 16, 32 or 64 rows. On the CPU: the plan's blocks, the
 * kernel's choice, blocking and key, the device check. On the GPU backends: the kernel set's
 * tiled family (8 heads x qLen 2 over one KV head, K 288, V 64: 16-row blocks, token groups added
 * through workgroup memory) against the float64 reference with every strategy, ragged query
 * lengths and an empty request, every variant flag at once, FP8 K/V with per-token scales, NaN and
 * infinities (a masked token's V never reaches the rows that do not see it), and a
 * runner's HND pages through the attention encoder with f16 queries and outputs. MLA's real dims
 * (64-row blocks) run in tests/mla_test.ts on hardware GPUs.
 */

import assert from "node:assert/strict";
import { decodeKV, encodeKV, type KVDtype, referenceAttention, STRATEGIES } from "../mod.ts";
import { matrixBlocksFit, tileConfig } from "../plan.ts";
import { createAttentionEncoder, createIndptrPageTable } from "../runner.ts";
import { kernelSpec } from "../src/gpu/kernel_choice.ts";
import { specKey } from "../src/kernels/spec_key.ts";
import { tiledKernelWGSL } from "../src/kernels/tiled_kernel.ts";
import {
  TILED_THREADS,
  tiledFitsDevice,
  tiledLayout,
  tiledWorkgroupBytes,
} from "../src/kernels/tiled_layout.ts";
import { gridClassKey } from "../src/kernels/kernel_table.ts";
import { backendTest } from "./backends.ts";
import { indptrOptions, scatterPages, shapeOf } from "./combinations.ts";
import { assertMatchesReference, describeSpec, makeInput } from "./helpers.ts";
import { deviceTest, gpuBuffer, readF32, STORAGE } from "./gpu_device.ts";
import { assertInKernelSet, TILED_MQA } from "./kernel_set.ts";

const MLA: { headDim: number; headDimV: number; kvDtype: KVDtype } = {
  headDim: 576,
  headDimV: 512,
  kvDtype: "f16",
};

Deno.test("matrix blocks: 16, 32 or 64 rows for 16 or more rows over head dims above 256", () => {
  const blocks = (rowsPerGroup: number, dims = MLA, matrixBlocks = true) => {
    const t = tileConfig({ ...dims, rowsPerGroup }, { matrixBlocks });
    return [t.rowsPerBlock, t.rowBlocks];
  };
  assert.deepEqual(blocks(16), [16, 1]);
  assert.deepEqual(blocks(17), [32, 1]);
  assert.deepEqual(blocks(48), [64, 1]);
  assert.deepEqual(blocks(64), [64, 1]);
  assert.deepEqual(blocks(100), [64, 2], "balanced blocks of a power of two");
  assert.deepEqual(blocks(128), [64, 2]);
  assert.deepEqual(blocks(130), [64, 3]);
  // Fewer rows, other head dims, or the option off: the decode kernel's blocks (at most 4 rows).
  assert.deepEqual(blocks(8), [4, 2]);
  assert.deepEqual(blocks(128, MLA, false), [4, 32]);
  assert.deepEqual(blocks(128, { headDim: 128, headDimV: 128, kvDtype: "f16" }), [8, 16]);
  assert.deepEqual(blocks(64, { headDim: 272, headDimV: 264, kvDtype: "f32" }), [4, 16]);
  assert.ok(matrixBlocksFit(576, 512, "int8") && matrixBlocksFit(288, 16, "f32"));
  for (const [d, dv] of [[256, 256], [280, 512], [576, 576], [576, 1024], [576, 8]]) {
    assert.ok(!matrixBlocksFit(d, dv, "f16"), `${d}/${dv}`);
  }
});

Deno.test("the tiled kernel's choice, blocking, key and workgroup memory", () => {
  const plan = (rowsPerGroup: number) => ({
    problem: MLA,
    tiles: tileConfig({ ...MLA, rowsPerGroup }, { matrixBlocks: true }),
  });
  const big = { subgroups: true, subgroupMinSize: 32, workgroupBytes: 49152 };
  const small = { ...big, workgroupBytes: 32768 };
  const spec = kernelSpec(plan(128), big);
  assert.equal(spec.tiled, true);
  assert.equal(spec.workgroupSize, TILED_THREADS);
  assert.equal(spec.matrixChunk, undefined, "32 dims per step where they fit");
  assert.equal(kernelSpec(plan(128), small).matrixChunk, 16, "16 where 32 do not fit");
  assert.ok(tiledWorkgroupBytes(kernelSpec(plan(128), small)) <= 32768);
  assert.equal(kernelSpec(plan(8), big).tiled, undefined, "4-row blocks: the decode kernel");
  // Each block size's layout: 4 rows x MA_T tokens per thread fill the tile, no token groups at
  // V of 512 dims (each thread 8 dims of MB_R rows).
  for (const [rows, ts, maT, mbR] of [[16, 128, 2, 4], [32, 128, 4, 8], [64, 64, 4, 16]]) {
    const l = tiledLayout(kernelSpec(plan(rows), big));
    assert.deepEqual([l.RB, l.TS, l.MA_T, l.MB_R, l.TG], [rows, ts, maT, mbR, 1]);
    assert.equal((l.RB / 4) * (l.TS / l.MA_T), TILED_THREADS);
    assert.equal((l.RB / l.MB_R) * l.NCV * l.TG, TILED_THREADS);
  }
  const key = specKey("decode", spec);
  assert.ok(key.includes(":tiled32") && key.includes("d576/512"), key);
  assert.notEqual(key, specKey("decode", { ...spec, matrixChunk: 16 }));
  assert.notEqual(key, specKey("decode", { ...spec, paged: true }));
  assert.notEqual(key, specKey("decode", { ...spec, variant: { sinks: true } }));
  assert.notEqual(key, specKey("decode", { ...spec, kvScales: "token" }));
  // The source declares what tiledWorkgroupBytes counts, and reads each binding it needs.
  const wgsl = tiledKernelWGSL(spec);
  const declared = Number(/var<workgroup> smem: array<vec4<f32>, (\d+)>/.exec(wgsl)?.[1]);
  assert.equal(declared * 16, tiledWorkgroupBytes(spec));
  assert.ok(!wgsl.includes("kv_scales") && !wgsl.includes("heads["));
  const token = tiledKernelWGSL({ ...spec, kvDtype: "fp8e4m3", kvScales: "token" });
  assert.ok(token.includes("kv_scales[") && token.includes("* 256.0"), "E4M3's fold");
  // A paged cache with per-tensor scales: the layer's pair from the table's first entry.
  assert.notEqual(key, specKey("decode", { ...spec, kvScales: "layer" }));
  const layer = tiledKernelWGSL({ ...spec, kvDtype: "fp8e4m3", kvScales: "layer" });
  assert.ok(layer.includes("kv_scales[0].x") && layer.includes("kv_scales[0].y"), "layer scales");
  assert.ok(!layer.includes("params.k_scale") && !layer.includes("kv_row(kv_start"));
  const variants = tiledKernelWGSL({
    ...spec,
    variant: { window: true, softCap: true, alibi: true, sinks: true },
  });
  for (const part of ["soft_cap(s)", "slope *", "t >= lo", "fin_l"]) {
    assert.ok(variants.includes(part), part);
  }
  assert.ok(tiledFitsDevice(32768) && !tiledFitsDevice(16384));
  assert.equal(gridClassKey(576, 64), "tiled r64");
  assert.equal(gridClassKey(576, 4), "r4 d576");
});

backendTest(
  "the tiled kernel matches the reference: every strategy, ragged, an empty request",
  async (decoder, backend) => {
    for (const strategy of STRATEGIES) {
      const spec = {
        ...TILED_MQA,
        seqLens: [300, 0, 41, 129],
        qLens: [2, 1, 1, 2],
        strategy,
        seed: 51,
      };
      const input = makeInput(spec);
      // GPU backends cut one 16-row matrix block; the CPU keeps the decode kernel's blocks.
      assert.equal(decoder.plan(input).tiles.rowsPerBlock, backend === "cpu" ? 4 : 16);
      assertMatchesReference(input, await decoder.decode(input), describeSpec(spec));
    }
  },
);

backendTest(
  "the tiled kernel with every variant flag, and over FP8 K/V with per-token scales",
  async (decoder) => {
    const spec = { ...TILED_MQA, seqLens: [260, 0, 37], qLens: [2, 1, 2], seed: 52 };
    const heads = TILED_MQA.numHeads;
    const variant = {
      slidingWindow: 100,
      logitsSoftCap: 4,
      alibiSlopes: Float32Array.from({ length: heads }, (_, h) => 0.02 * (h + 1)),
      sinks: Float32Array.from({ length: heads }, (_, h) => 0.4 * h - 1.5),
    };
    const input = { ...makeInput(spec), ...variant };
    assertMatchesReference(input, await decoder.decode(input), "every variant");
    const kv8 = { ...spec, kvDtype: "fp8e4m3" as const, kvScales: "token" as const, seed: 53 };
    const input8 = makeInput(kv8);
    assertMatchesReference(input8, await decoder.decode(input8), describeSpec(kv8));
  },
);

backendTest(
  "the tiled kernel propagates NaN and infinities like the reference",
  async (decoder) => {
    const { numKVHeads, headDim } = TILED_MQA;
    const DV = TILED_MQA.headDimV!;
    const half = (x: number) => x === Infinity ? 0x7c00 : 0x7e00; // f16 bits of +inf, NaN
    // V of sequence 0's newest token, which its query position 0 does not see; K of an early
    // token (every row of sequence 0 sees a NaN score); one query row's element.
    const pokes = [
      { field: "v", index: (99 * numKVHeads) * DV + 1, value: Infinity },
      { field: "v", index: (99 * numKVHeads) * DV + 2, value: NaN },
      { field: "k", index: (5 * numKVHeads) * headDim + 7, value: NaN },
      { field: "q", index: 3, value: NaN },
    ] as const;
    for (const [n, poke] of pokes.entries()) {
      const input = makeInput({ ...TILED_MQA, seqLens: [100, 37], seed: 60 + n });
      if (poke.field === "q") input.q[poke.index] = poke.value;
      else (input[poke.field] as Uint16Array)[poke.index] = half(poke.value);
      const want = referenceAttention(input);
      const got = await decoder.decode(input);
      const label = `${poke.field}[${poke.index}] = ${poke.value}`;
      let finite = 0;
      for (
        const [part, a, b] of [["out", got.out, want.out], ["lse", got.lse, want.lse]] as const
      ) {
        for (let i = 0; i < b.length; i++) {
          if (Number.isNaN(b[i])) {
            assert.ok(Number.isNaN(a[i]), `${label}: ${part}[${i}] is ${a[i]}, not NaN`);
          } else if (!Number.isFinite(b[i])) {
            assert.ok(!Number.isFinite(a[i]), `${label}: ${part}[${i}] is ${a[i]}, not ${b[i]}`);
          } else {
            assert.ok(
              Math.abs(a[i] - b[i]) <= 1e-4 * (1 + Math.abs(b[i])),
              `${label}: ${part}[${i}]`,
            );
            finite++;
          }
        }
      }
      assert.ok(finite > 0, `${label}: some outputs stay finite`);
    }
  },
);

await deviceTest(
  "the tiled kernel on a runner's HND pages, f16 queries and outputs",
  async ({ device }) => {
    const { numHeads } = TILED_MQA;
    const DV = TILED_MQA.headDimV!;
    const input = makeInput({ ...TILED_MQA, seqLens: [90, 0, 211], qLen: 2, seed: 54 });
    assertInKernelSet(shapeOf(input), {});
    const qHalf = encodeKV(input.q, "f16") as Uint16Array<ArrayBuffer>;
    const rounded = { ...input, q: decodeKV(qHalf, "f16") };
    const pages = scatterPages(input, 16, "HND", 54);
    const table = createIndptrPageTable(indptrOptions(input, pages));
    const attention = await createAttentionEncoder(device, {
      grid: 7,
      qDtype: "f16",
      outDtype: "f16",
    });
    const bytes = (data: ArrayBufferView) => {
      const b = device.createBuffer({ size: Math.ceil(data.byteLength / 4) * 4, usage: STORAGE });
      device.queue.writeBuffer(b, 0, data as Uint8Array<ArrayBuffer>);
      return b;
    };
    const rows = 2 * input.seqLens.length * numHeads;
    const k = bytes(pages.k), v = bytes(pages.v), q = bytes(qHalf);
    const out = gpuBuffer(device, rows * DV * 2);
    const lse = gpuBuffer(device, rows * 4);
    try {
      const want = referenceAttention(rounded);
      for (const strategy of ["lean", "split"] as const) {
        // Poison: every output half and LSE NaN until written.
        device.queue.writeBuffer(out, 0, new Uint16Array(rows * DV).fill(0x7e00));
        device.queue.writeBuffer(lse, 0, new Float32Array(rows).fill(NaN));
        const step = { seqs: table.seqs, numHeads, qLens: [2, 2, 2], strategy };
        const plan = attention.plan(table, step);
        assert.equal(plan.tiles.rowsPerBlock, 16);
        const enc = device.createCommandEncoder();
        attention.encode(enc, { plan, k, v, q, out, lse });
        device.queue.submit([enc.finish()]);
        const got16 = new Uint16Array((await readF32(device, out, rows * DV / 2)).buffer);
        const got = { out: decodeKV(got16, "f16"), lse: await readF32(device, lse, rows) };
        const wantHalf = encodeKV(Float32Array.from(want.out), "f16") as Uint16Array;
        for (let i = 0; i < rows * DV; i++) {
          // The f16 of the f32 result: within one step of the f16 of the float64 one.
          assert.ok(
            Math.abs(got16[i] - wantHalf[i]) <= 1,
            `${strategy} out[${i}]: ${got.out[i]} vs ${want.out[i]}`,
          );
        }
        for (let i = 0; i < rows; i++) {
          // An empty request's rows: -Infinity, as the reference.
          const close = got.lse[i] === want.lse[i] || Math.abs(got.lse[i] - want.lse[i]) < 1e-4;
          assert.ok(close, `${strategy} lse[${i}]: ${got.lse[i]} vs ${want.lse[i]}`);
        }
      }
    } finally {
      for (const b of [k, v, q, out, lse]) b.destroy();
      attention.dispose();
    }
  },
);
