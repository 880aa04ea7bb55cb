/**
 * Page quads (`KernelSpec.pageQuads`, session 38): a paged kernel with one page slice per page
 * and four or more slices per step reads a step's page-table entries as aligned `vec4<u32>`
 * words, with no clamp to the piece's last page; the program lays each sequence's page list out
 * from a multiple of four words, padded with its last page (src/gpu/program_pages.ts). Checked
 * on the host: where `kernelSpec` sets it, its key and WGSL, and the program's page list and
 * piece offsets for random batches; on the GPU backends: a runner's NaN-padded pages of ragged
 * sequences (lists of 1 to 10 pages, so most are padded), against the float64 reference and bit
 * for bit against the same kernel reading its entries one at a time.
 *
 * @module
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { createPlan, type KVDtype } from "../mod.ts";
import {
  createAttentionEncoder,
  createIndptrPageTable,
  createPagedPlan,
  type KernelTuning,
} from "../runner.ts";
import { kernelSpec } from "../src/gpu/kernel_choice.ts";
import { kernelCaps } from "../src/gpu/gpu_runtime.ts";
import { programLayout, writeProgramTables } from "../src/gpu/attention_program.ts";
import { programPageOffsets, writeProgramPages } from "../src/gpu/program_pages.ts";
import { decodeKernelWGSL } from "../src/kernels/decode_kernel.ts";
import { kernelLayout, pageQuads } from "../src/kernels/kernel_layout.ts";
import { specKey } from "../src/kernels/spec_key.ts";
import { PIECE, PIECE_STRIDE } from "../src/plan/schedule.ts";
import { indptrOptions, scatterPages } from "./combinations.ts";
import { pagedKV } from "./paged_helpers.ts";
import { bytesBuffer, gpuBuffer, type GpuUnderTest, openGpu, readF32 } from "./gpu_device.ts";
import { softwareSkip } from "./kernel_set.ts";
import { assertMatchesReference, fcParams, makeInput, sameBits } from "./helpers.ts";

const caps = { subgroups: true, subgroupMinSize: 32 };

Deno.test("pageQuads: set where a step spans four one-slice pages, with its key and WGSL", () => {
  for (const kvDtype of ["fp8e4m3", "int8", "f16"] as const) {
    const plan = createPlan(
      { seqLens: [4096], numHeads: 32, numKVHeads: 8, headDim: 128, kvDtype },
      { grid: 8 },
    );
    const tuning: KernelTuning = { pageQuads: true, pageSlices: true };
    const source = kvDtype === "f16" ? undefined : "layer" as const;
    for (const pageSize of [8, 16, 32]) {
      const what = `${kvDtype}, pages of ${pageSize}`;
      const spec = kernelSpec({ ...plan, kv: pagedKV(pageSize) }, caps, tuning, true, source);
      const l = kernelLayout(spec);
      // GQA 32/8 d128: 16 groups of 8 lanes, 4 tokens each per step: one slice per page at 16.
      assert.equal(l.groups * l.unroll, 64, what);
      const on = pageSize === 16;
      assert.equal(pageQuads(spec), on, what);
      assert.equal(specKey("decode", spec).includes(":pgq"), on, what);
      const wgsl = decodeKernelWGSL(spec);
      assert.equal(wgsl.includes("pages: array<vec4<u32>>"), on, what);
      assert.equal(
        wgsl.includes("npq0 = pages[((kv_start + ((s0 + 2u * STEP) >> params.page_shift)) >> 2u)"),
        on,
        what,
      );
      // The step's rows from the quad's four entries; no entry clamped to the piece's last page.
      assert.equal(wgsl.includes("kv_slice_addr(npq0.w, (s0 + STEP) + 48u, slice_off)"), on, what);
      assert.equal(wgsl.includes("page_last"), pageSize === 32, what);
    }
    // Off by default, in dense kernels, with two tokens per group and step, or without prefetch.
    const paged16 = { ...plan, kv: pagedKV(16) };
    assert.equal(pageQuads(kernelSpec(paged16, caps, { pageSlices: true }, true, source)), false);
    assert.equal(pageQuads(kernelSpec(plan, caps, tuning)), false);
    assert.equal(
      pageQuads(kernelSpec(paged16, caps, { ...tuning, unroll: 2 }, true, source)),
      false,
    );
    assert.equal(
      pageQuads(kernelSpec(paged16, caps, { ...tuning, prefetch: false }, true, source)),
      false,
    );
  }
});

Deno.test("pageQuads: the program's page list is aligned, padded with each last page", () => {
  fc.assert(
    fc.property(
      fc.record({
        lens: fc.array(fc.integer({ min: 0, max: 700 }), { minLength: 1, maxLength: 7 }),
        pageShift: fc.integer({ min: 0, max: 6 }),
        grid: fc.integer({ min: 1, max: 24 }),
        seed: fc.integer({ min: 1, max: 1000 }),
      }),
      (r) => {
        const pageSize = 1 << r.pageShift;
        const counts = r.lens.map((n) => Math.ceil(n / pageSize));
        const numPages = counts.reduce((a, n) => a + n, 0) + 3;
        let x = r.seed;
        const pageTables = counts.map((n) =>
          Array.from({ length: n }, () => (x = (x * 1103515245 + 12345) >>> 0) % numPages)
        );
        const plan = createPagedPlan(
          { seqLens: r.lens, numHeads: 2, numKVHeads: 1, headDim: 8 },
          { pageSize, numPages, pageTables },
          { grid: r.grid },
        );
        const kv = plan.kv;
        const offsets = programPageOffsets(kv);
        const list = new Uint32Array(offsets[counts.length]).fill(0xdeadbeef);
        writeProgramPages(list, 0, kv, offsets);
        for (const [s, table] of pageTables.entries()) {
          assert.equal(offsets[s] % 4, 0);
          assert.equal(offsets[s + 1] - offsets[s], Math.ceil(table.length / 4) * 4);
          for (let j = offsets[s]; j < offsets[s + 1]; j++) {
            const want = table[Math.min(j - offsets[s], table.length - 1)];
            assert.equal(list[j], want, `sequence ${s} entry ${j - offsets[s]}`);
          }
        }
        // The program's tables: every piece's kvStart is its sequence's offset in that list.
        const layout = programLayout(plan, 256);
        const staging = new Uint32Array(layout.bytes / 4);
        writeProgramTables(staging, plan, layout, 1);
        const at = layout.pagesOffset / 4;
        assert.deepEqual(staging.subarray(at, at + list.length), list);
        const sched = layout.schedOffset / 4;
        for (const [i, w] of plan.schedule.windows.entries()) {
          const sec = layout.sections[i];
          const first = sched + sec.offset / 4 + sec.pieceBase;
          const pieces = plan.schedule.pieceOffsets[w.workgroupEnd] -
            plan.schedule.pieceOffsets[w.workgroupBegin];
          for (let o = 0; o < pieces * PIECE_STRIDE; o += PIECE_STRIDE) {
            const seq = staging[first + o + PIECE.seq];
            assert.equal(staging[first + o + PIECE.kvStart], offsets[seq]);
          }
        }
      },
    ),
    fcParams(100),
  );
});

// ---------------------------------------------------------------------------------------------
// GPU: GQA 8/2 d32 (the kernel-option tests' class) with four tokens per group and step in
// 128-token tiles, so pages of one group's slice take quads; ragged sequences, NaN-padded pages.

const SEQ_LENS = [300, 9, 129, 40, 257];

for (const name of ["webgpu", "dawn"] as const) {
  const gpu = await openGpu(name);
  if (typeof gpu === "string") console.log(`skipping page-quad GPU tests on "${name}": ${gpu}`);
  const ok = typeof gpu !== "string";
  const title =
    `pageQuads: a runner's NaN-padded pages decode like the reference, the same bits with and without quads [${name}]`;
  const skip = ok ? softwareSkip(gpu, {}) : undefined;
  if (skip) console.log(`ignoring "${title}" on this software adapter: ${skip}`);
  Deno.test({
    name: title,
    ignore: !ok || skip !== undefined,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const { device, adapter } = gpu as GpuUnderTest;
      const base: KernelTuning = {
        pageSlices: true,
        tokenRuns: false,
        unroll: 4,
        prefetch: true,
      };
      const quads = await createAttentionEncoder(device, {
        grid: 6,
        tileTokens: 128,
        kernel: { ...base, pageQuads: true },
      });
      const single = await createAttentionEncoder(device, {
        grid: 6,
        tileTokens: 128,
        kernel: base,
      });
      const deviceCaps = kernelCaps(device, adapter.info);
      try {
        for (const kvDtype of ["f16", "fp8e4m3"] as KVDtype[]) {
          const input = makeInput({
            seqLens: SEQ_LENS,
            numHeads: 8,
            numKVHeads: 2,
            headDim: 32,
            kvDtype,
            ...(kvDtype === "f16" ? {} : { kvScales: "token" as const }),
            seed: 41,
          });
          const probe = createPagedPlan(input, scatterPages(input, 16, "NHD", 1), { grid: 6 });
          const source = kvDtype === "f16" ? undefined : "token" as const;
          const G = kernelLayout(kernelSpec(probe, deviceCaps, base, true, source)).groups;
          for (const layout of ["NHD", "HND"] as const) {
            const pages = scatterPages(input, G, layout, 7);
            const got: { out: Float32Array; lse: Float32Array }[] = [];
            for (const attention of [quads, single]) {
              const plan = attention.plan(createIndptrPageTable(indptrOptions(input, pages)), {
                seqs: SEQ_LENS.map((_, i) => i),
                numHeads: 8,
              });
              const tuning = attention === quads ? { ...base, pageQuads: true } : base;
              const spec = kernelSpec(plan, deviceCaps, tuning, true, source);
              assert.equal(pageQuads(spec), attention === quads, `${kvDtype} ${layout} quads`);
              const k = bytesBuffer(device, pages.k);
              const v = bytesBuffer(device, pages.v);
              const scales = pages.scales ? gpuBuffer(device, pages.scales) : undefined;
              const q = gpuBuffer(device, input.q);
              const rows = SEQ_LENS.length * 8;
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
              const result = {
                out: await readF32(device, out, input.q.length),
                lse: await readF32(device, lse, rows),
              };
              for (const b of [k, v, q, out, lse, ...(scales ? [scales] : [])]) b.destroy();
              assertMatchesReference(input, result, `${kvDtype} ${layout} pages of ${G}`);
              got.push(result);
            }
            const what = `${kvDtype} ${layout}`;
            assert.ok(sameBits(got[0].out, got[1].out), `${what}: out differs with quads`);
            assert.ok(sameBits(got[0].lse, got[1].lse), `${what}: lse differs with quads`);
          }
        }
      } finally {
        quads.dispose();
        single.dispose();
      }
    },
  });
}
