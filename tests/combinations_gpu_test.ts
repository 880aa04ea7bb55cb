/**
 * Issue 16's features where they meet, on the GPU backends (and the CPU): the kernel set's
 * families (tests/kernel_set.ts) with what their classes leave to runtime values; batch
 * invariance; the storage-buffer limit of default-limits devices; the runner's encoder over a
 * runner page table with empty requests; warmup of 8-bit per-token kernels.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { createDecoder, type KernelTuning, STRATEGIES } from "../mod.ts";
import { createAttentionEncoder, createIndptrPageTable } from "../runner.ts";
import { backendTest, propertyParams } from "./backends.ts";
import { bytesBuffer, deviceTest, gpuBuffer, readF32, STORAGE } from "./gpu_device.ts";
import {
  guardKernelSet,
  type KernelFamily,
  KV8_FAMILIES,
  MLA_WIDE,
  RAGGED_GQA,
  VARIANTS_GQA_Q2,
  VARIANTS_KV8,
} from "./kernel_set.ts";
import {
  bindingBytes,
  comboInput,
  describeCombo,
  familyCaseArb,
  GPU_TILE,
  scatterPages,
  sequenceAlone,
  shapeOf,
} from "./combinations.ts";
import { assertMatchesReference, makeInput, sameBits } from "./helpers.ts";

// GPU backends (and the CPU) on the kernel set's families (tests/kernel_set.ts): each family's
// kernel class is fixed, and what varies is what the class leaves to runtime values (lengths,
// ragged query lengths up to the family's, empty requests, variant values, scales, strategies),
// once on a plain decoder and once batch-invariant over KV windows of 3 tiles.

/**
 * Registers a family's property test twice: on a plain decoder, and on a batch-invariant one
 * whose KV bindings hold 3 tiles (windows cut every case of more than 192 tokens).
 */
function familyTest(
  name: string,
  family: KernelFamily,
  variants: boolean,
  gpuRuns: number,
  kernel?: KernelTuning,
): void {
  const windowBytes = bindingBytes({ ...family, seqLens: [], seed: 0 }, 3 * GPU_TILE);
  for (const invariant of [false, true]) {
    backendTest(
      `${name}${invariant ? " (batch-invariant, KV windows)" : ""}`,
      async (decoder, backend, context) => {
        await fc.assert(
          fc.asyncProperty(familyCaseArb(family, variants), async (c) => {
            const input = comboInput(c);
            const label = `${describeCombo(c)}${invariant ? " invariant+windows" : ""}`;
            assertMatchesReference(input, await decoder.decode(input), label);
          }),
          propertyParams(backend, 3 * gpuRuns, gpuRuns, context),
        );
      },
      {
        decoder: {
          grid: 7,
          tileTokens: GPU_TILE,
          ...(invariant ? { batchInvariant: true, maxBindingBytes: windowBytes } : {}),
          ...(kernel ? { kernel } : {}),
        },
      },
    );
  }
}

familyTest(
  "every variant with ragged qLens 1 and 2 and empty requests (variants' family)",
  VARIANTS_GQA_Q2,
  true,
  6,
);
familyTest(
  "every variant over FP8 K/V with ragged qLens, empty requests and both scale modes",
  VARIANTS_KV8,
  true,
  6,
);
familyTest("ragged qLens with empty requests (ragged family)", RAGGED_GQA, false, 4);
for (const family of KV8_FAMILIES) {
  familyTest(
    `8-bit ${family.kvDtype} d${family.headDim} with empty requests, per-tensor and per-token scales`,
    family,
    false,
    4,
  );
}
familyTest("MLA-wide rows with empty requests", MLA_WIDE, false, 3, { subgroups: false });

// Storage buffers: the plain kernels bind 7; the page list, the variants' per-head table (ALiBi
// slopes, sinks) and the 8-bit scale table one more each. A device at WebGPU's default limit of
// 8 (a runner's device requested without limits) must get a RangeError saying so, not a
// pipeline that fails validation and leaves the outputs unwritten.
await deviceTest(
  "a default-limits device: variants and 8-bit paged need more storage buffers",
  async (g) => {
    const adapter = await (g.keepAlive[0] as GPU).requestAdapter();
    g.keepAlive.push(adapter);
    const device = await adapter!.requestDevice(); // WebGPU's default limits
    try {
      assert.equal(device.limits.maxStorageBuffersPerShaderStage, 8);
      // The runner's encoder: paged kernels with sinks (9), with int8 too (10).
      const attention = await createAttentionEncoder(device, { grid: 7 });
      for (const [kvDtype, need] of [["f32", 9], ["int8", 10]] as const) {
        const input = {
          ...makeInput({ ...VARIANTS_GQA_Q2, kvDtype, seqLens: [40, 0], seed: 1 }),
          sinks: Float32Array.of(1, 2, 3, 4),
        };
        const pages = scatterPages(input, 16, "HND", 1);
        const plan = attention.planPages(shapeOf(input), pages);
        const buffer = (bytes: number) =>
          device.createBuffer({ size: Math.max(256, bytes), usage: STORAGE });
        const used = [buffer(pages.k.byteLength), buffer(pages.v.byteLength), buffer(4096)];
        const [k, v, scratch] = used;
        assert.throws(
          () =>
            attention.encode(device.createCommandEncoder(), {
              plan,
              k,
              v,
              ...(kvDtype === "int8" ? { kvScales: scratch } : {}),
              q: scratch,
              out: buffer(4096),
            }),
          (e: Error) =>
            e instanceof RangeError &&
            e.message.includes(
              `paged attention with ALiBi slopes or sinks needs ${need} storage buffers per shader stage: the device allows 8`,
            ),
        );
      }
      attention.dispose();
      // The decoder on that device: dense kernels with the per-head table and per-token
      // 8-bit scales (9); the decoder stays usable (the variants' family, 8 buffers, after).
      const decoder = await createDecoder({ backend: g.name, device, grid: 7, tileTokens: 64 });
      try {
        const kv8 = {
          ...makeInput({ ...KV8_FAMILIES[0], kvScales: "token", seqLens: [50], seed: 2 }),
          sinks: Float32Array.of(0, 1, 2, 3),
        };
        // Unguarded: its class is outside the set, but the call is refused before any compile.
        await assert.rejects(
          () => decoder.decode(kv8),
          (e: Error) =>
            e instanceof RangeError &&
            /ALiBi slopes \/ sinks table, the 8-bit scale table needs 9 storage buffers per shader stage: the device allows 8/
              .test(e.message),
        );
        assert.equal(decoder.stats().buffersLive, 0, "the failed call's buffers are released");
        const input = {
          ...makeInput({ ...VARIANTS_GQA_Q2, qLens: [2, 1], seqLens: [90, 0], seed: 3 }),
          slidingWindow: 30,
          logitsSoftCap: 10,
          alibiSlopes: Float32Array.of(0.1, 0.2, 0.3, 0.4),
          sinks: Float32Array.of(0, 1, 2, 3),
        };
        assertMatchesReference(
          input,
          await guardKernelSet(decoder, { tileTokens: 64 }).decode(input),
          "after the refused call",
        );
      } finally {
        await decoder.dispose();
      }
    } finally {
      // Idle first: nothing of this device's work may still run when it goes.
      await device.queue.onSubmittedWorkDone();
      device.destroy();
    }
  },
);

// The runner's encoder over a runner page table with empty requests (no pages, lastPageLen 0):
// the runner-format tests' paged class (f16 KV, 8/2 heads, d64, HND pages; tests/kernel_set.ts).
await deviceTest(
  "a runner page table with empty requests through the encoder, every strategy",
  async ({ device }) => {
    const attention = await createAttentionEncoder(device, { grid: 8 });
    const seqLens = [0, 150, 0, 9];
    const input = makeInput({
      seqLens,
      numHeads: 8,
      numKVHeads: 2,
      headDim: 64,
      kvDtype: "f16",
      seed: 12,
    });
    const pages = scatterPages(input, 16, "HND", 12);
    const indptr = [0];
    for (const t of pages.pageTables) indptr.push(indptr[indptr.length - 1] + t.length);
    const table = createIndptrPageTable({
      indptr,
      indices: pages.pageTables.flat(),
      lastPageLen: seqLens.map((n) => (n === 0 ? 0 : ((n - 1) % 16) + 1)),
      pageSize: 16,
      numPages: pages.numPages,
      numKVHeads: 2,
      headDim: 64,
      kvDtype: "f16",
      layout: "HND",
    });
    const k = bytesBuffer(device, pages.k);
    const v = bytesBuffer(device, pages.v);
    const q = gpuBuffer(device, input.q);
    const rows = seqLens.length * 8;
    try {
      for (const strategy of STRATEGIES) {
        const out = gpuBuffer(device, new Float32Array(rows * 64).fill(NaN));
        const lse = gpuBuffer(device, new Float32Array(rows).fill(NaN));
        const plan = attention.plan(table, { seqs: table.seqs, numHeads: 8, strategy });
        const enc = device.createCommandEncoder();
        attention.encode(enc, { plan, k, v, q, out, lse });
        device.queue.submit([enc.finish()]);
        const got = {
          out: await readF32(device, out, rows * 64),
          lse: await readF32(device, lse, rows),
        };
        assertMatchesReference(input, got, strategy);
        out.destroy();
        lse.destroy();
      }
    } finally {
      for (const b of [k, v, q]) b.destroy();
      attention.dispose();
    }
  },
);

backendTest(
  "warmup with an 8-bit input compiles the kernels of its scale mode (per-tensor or per-token)",
  async (decoder, backend) => {
    for (const kvScales of ["tensor", "token"] as const) {
      const input = makeInput({
        ...KV8_FAMILIES[1],
        kvScales,
        qLens: [1, 1],
        seqLens: [120, 0],
        strategy: "lean",
        seed: 5,
      });
      await decoder.warmup(input, { strategies: ["lean"] });
      const before = decoder.stats().pipelinesCreated;
      assertMatchesReference(input, await decoder.decode(input), kvScales);
      // The first decode after warmup compiles nothing (the CPU compiles nothing at all).
      assert.equal(decoder.stats().pipelinesCreated, before, `${backend} ${kvScales}`);
    }
  },
  { decoder: { grid: 7, tileTokens: GPU_TILE } },
);

for (const family of [VARIANTS_GQA_Q2, VARIANTS_KV8]) {
  backendTest(
    `batch-invariant decoding with every variant, ${family.kvDtype} K/V: the first sequence alone and in its batch, bit for bit`,
    async (decoder, backend, context) => {
      await fc.assert(
        fc.asyncProperty(familyCaseArb(family, true), async (c) => {
          // The first sequence has the family's qLen: alone, its kernel is the batch's (the
          // GPU's guarantee holds among batches of the same largest qLens entry).
          const input = comboInput(c);
          const batch = await decoder.decode(input);
          const { alone } = sequenceAlone(input, 0);
          const one = await decoder.decode(alone);
          const DV = input.headDimV ?? input.headDim;
          const n = one.lse.length;
          const label = describeCombo(c);
          assert.ok(sameBits(batch.lse.subarray(0, n), one.lse), `${label}: lse`);
          assert.ok(sameBits(batch.out.subarray(0, n * DV), one.out), `${label}: out`);
        }),
        propertyParams(backend, 30, 4, context),
      );
    },
    { decoder: { grid: 7, tileTokens: GPU_TILE, batchInvariant: true } },
  );
}
