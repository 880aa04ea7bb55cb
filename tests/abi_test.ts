/**
 * The kernel ABI (`src/kernels/abi.ts`), checked without a GPU: the host offsets, the packers and the
 * WGSL the kernels are generated with all come from the one field list of each record, every
 * kernel declares exactly the bindings of its explicit layout, and the planner's tables read back
 * field by field through the ABI's offsets.
 */

import assert from "node:assert/strict";
import { KV_DTYPE_INFO } from "../src/core/dtypes.ts";
import fc from "fast-check";
import {
  APPEND_BINDING,
  APPEND_PARAMS_RECORD,
  appendLayoutEntries,
  BINDING,
  kernelBindingsWGSL,
  kernelLayoutEntries,
  PARAMS_RECORD,
  PIECE_RECORD,
  recordOffsetsWGSL,
  recordStructWGSL,
  REDUCE_RECORD,
  wgslName,
} from "../src/kernels/abi.ts";
import { appendKernelWGSL } from "../src/kernels/append_kernel.ts";
import { decodeKernelWGSL } from "../src/kernels/decode_kernel.ts";
import { kernelParams, PARAMS_WGSL, PARAMS_WORDS } from "../src/kernels/kernel_params.ts";
import { mergeKernelWGSL } from "../src/kernels/merge_kernel.ts";
import { createPlan, KV_DTYPES } from "../mod.ts";
import { PIECE, PIECE_STRIDE, REDUCE, REDUCE_STRIDE } from "../plan.ts";
import { fcParams } from "./helpers.ts";

const SPACE: Record<string, string> = {
  "uniform": "uniform",
  "storage, read": "read-only-storage",
  "storage, read_write": "storage",
};

/** `binding -> buffer type` of every `@binding` a WGSL source declares. */
function declared(wgsl: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const [, n, space] of wgsl.matchAll(/@group\(0\) @binding\((\d+)\) var<([^>]+)>/g)) {
    assert.ok(!out.has(Number(n)), `binding ${n} declared twice`);
    out.set(Number(n), SPACE[space]);
  }
  return out;
}

Deno.test("record offsets, strides and WGSL names come from the field lists", () => {
  assert.deepStrictEqual(PIECE, {
    seq: 0,
    kvHead: 1,
    rowBlock: 2,
    tokenBegin: 3,
    tokenEnd: 4,
    slot: 5,
    kvStart: 6,
    seqLen: 7,
    qStart: 8,
    qLen: 9,
  });
  assert.equal(PIECE_STRIDE, 10);
  assert.deepStrictEqual(REDUCE, {
    seq: 0,
    kvHead: 1,
    rowBlock: 2,
    firstSlot: 3,
    numSlots: 4,
    qStart: 5,
    qLen: 6,
  });
  assert.equal(REDUCE_STRIDE, 8, "reduce records are padded to 8 words");
  assert.equal(PARAMS_WORDS, PARAMS_RECORD.fields.length);
  assert.equal(wgslName("scaleLog2"), "scale_log2");
  assert.equal(wgslName("kvStart"), "kv_start");
  const offsets = recordOffsetsWGSL(PIECE_RECORD);
  for (const [name, i] of Object.entries(PIECE)) {
    assert.ok(
      offsets.includes(`const PIECE_${wgslName(name).toUpperCase()}: u32 = ${i}u;`),
      name,
    );
  }
  assert.ok(offsets.includes("const PIECE_STRIDE: u32 = 10u;"));
  assert.ok(recordOffsetsWGSL(REDUCE_RECORD).includes("const REDUCE_STRIDE: u32 = 8u;"));
});

Deno.test("the Params struct lists the ABI's fields in order with their types", () => {
  const body = PARAMS_WGSL.slice(PARAMS_WGSL.indexOf("{") + 1, PARAMS_WGSL.indexOf("}"));
  const members = body.split(",").map((m) => m.trim()).filter((m) => m.length > 0);
  assert.deepStrictEqual(
    members,
    PARAMS_RECORD.fields.map((f) => `${wgslName(f.name)}: ${f.type ?? "u32"}`),
  );
  const append = recordStructWGSL(APPEND_PARAMS_RECORD);
  assert.ok(append.includes("struct AppendParams {"));
  assert.ok(append.includes("src_row: u32,"));
});

Deno.test("kernelParams packs each field at its ABI offset", () => {
  fc.assert(
    fc.property(
      fc.record({
        numHeads: fc.integer({ min: 1, max: 64 }),
        qLen: fc.integer({ min: 1, max: 8 }),
        numKVHeads: fc.integer({ min: 1, max: 8 }),
        headDim: fc.integer({ min: 1, max: 32 }).map((n) => 8 * n),
        kvDtype: fc.constantFrom(...KV_DTYPES),
        pieceBase: fc.nat(1 << 20),
        reduceBase: fc.nat(1 << 20),
        count: fc.nat(1 << 20),
        mergeCount: fc.option(fc.nat(1 << 20), { nil: undefined }),
        pageShift: fc.option(fc.integer({ min: 0, max: 12 }), { nil: undefined }),
        scale: fc.double({ min: 0.01, max: 2, noNaN: true }),
      }),
      (p) => {
        const words = kernelParams({ ...p, groupSize: 2, rowsPerGroup: 2 * p.qLen });
        const o = PARAMS_RECORD.offsets;
        const bytes = KV_DTYPE_INFO[p.kvDtype].bytes;
        // 8-bit rows of head dims that are not multiples of 16 are read in 8-byte chunks.
        const load = (p.headDim * bytes) % 16 === 0 ? 16 : 8;
        assert.equal(words.length, PARAMS_WORDS);
        assert.equal(words[o.numHeads], p.numHeads);
        assert.equal(words[o.qLen], p.qLen);
        assert.equal(words[o.groupSize], 2);
        assert.equal(words[o.rowsPerGroup], 2 * p.qLen);
        assert.equal(words[o.kvRow], (p.numKVHeads * p.headDim * bytes) / load);
        assert.equal(words[o.pieceBase], p.pieceBase);
        assert.equal(words[o.reduceBase], p.reduceBase);
        assert.equal(words[o.lseBase], 0);
        assert.equal(words[o.count], p.count);
        assert.equal(words[o.pageShift], p.pageShift ?? 0);
        assert.equal(words[o.mergeCount], p.mergeCount ?? p.count);
        const floats = new Float32Array(words.buffer);
        assert.equal(floats[o.scaleLog2], Math.fround(p.scale * Math.LOG2E));
        assert.equal(floats[o.kScale], 1);
        assert.equal(floats[o.vScale], 1);
      },
    ),
    fcParams(200),
  );
});

Deno.test("every kernel declares exactly the bindings of its explicit layout", () => {
  for (const kvDtype of KV_DTYPES) {
    for (const paged of [false, true]) {
      const spec = {
        headDim: 64,
        kvDtype,
        tileTokens: 64,
        rowsPerBlock: 4,
        workgroupSize: 64,
        paged,
      };
      const layout = new Map(kernelLayoutEntries({ paged }).map((e) => [e.binding, e.type]));
      assert.deepStrictEqual(declared(decodeKernelWGSL(spec)), layout);
      // The merge kernel shares the decode kernel's layout: it may leave bindings unused, never
      // add its own or declare one with another type.
      const merge = declared(mergeKernelWGSL(spec));
      for (const [n, type] of merge) assert.equal(layout.get(n), type, `merge @${n}`);
    }
    assert.deepStrictEqual(
      declared(appendKernelWGSL(kvDtype)),
      new Map(appendLayoutEntries(KV_DTYPE_INFO[kvDtype].scaled).map((e) => [e.binding, e.type])),
    );
  }
  for (const e of kernelLayoutEntries({ paged: true })) {
    assert.equal(BINDING[e.name], e.binding);
  }
  for (const e of appendLayoutEntries(true)) assert.equal(APPEND_BINDING[e.name], e.binding);
});

Deno.test("the kernels' binding declarations come from their layout entries", () => {
  const entries = kernelLayoutEntries({ paged: true, heads: true, kvScales: true });
  const types = {
    q: "array<f32>",
    k: "array<vec4<u32>>",
    v: "array<vec4<u32>>",
    out: "array<u32>",
  };
  const all = kernelBindingsWGSL(entries, types);
  assert.deepStrictEqual(declared(all), new Map(entries.map((e) => [e.binding, e.type])));
  for (
    const line of [
      "@binding(0) var<uniform> params: Params;",
      "@binding(2) var<storage, read> q: array<f32>;",
      "@binding(3) var<storage, read> k_cache: array<vec4<u32>>;",
      "@binding(5) var<storage, read_write> out: array<u32>;",
      "@binding(7) var<storage, read_write> lse_out: array<f32>;",
      "@binding(10) var<storage, read> kv_scales: array<vec2<f32>>;",
    ]
  ) assert.ok(all.includes(line), line);
  // A binding of the kernel's own type without one is not declared (the merge kernel's q, K, V).
  const merge = declared(kernelBindingsWGSL(entries, { out: "array<f32>" }));
  assert.deepStrictEqual(
    [...merge.keys()],
    entries.map((e) => e.binding).filter((n) =>
      !([BINDING.q, BINDING.k, BINDING.v] as number[]).includes(n)
    ),
  );
});

Deno.test("the kernels read every record field through its named offset", () => {
  const decode = decodeKernelWGSL({
    headDim: 64,
    kvDtype: "f16",
    tileTokens: 64,
    rowsPerBlock: 2,
    workgroupSize: 64,
  });
  assert.ok(decode.includes(recordOffsetsWGSL(PIECE_RECORD)));
  assert.ok(decode.includes("let f = params.piece_base + pc * PIECE_STRIDE;"));
  for (const f of PIECE_RECORD.fields) {
    assert.ok(decode.includes(`sched[f + PIECE_${wgslName(f.name).toUpperCase()}]`), f.name);
  }
  assert.doesNotMatch(decode, /sched\[f \+ \d+u\]/, "no literal record offsets");
  const merge = mergeKernelWGSL({
    headDim: 64,
    kvDtype: "f16",
    tileTokens: 64,
    rowsPerBlock: 2,
    workgroupSize: 64,
  });
  assert.ok(merge.includes(recordOffsetsWGSL(REDUCE_RECORD)));
  assert.ok(merge.includes("let f = params.reduce_base + e * REDUCE_STRIDE;"));
  for (const f of REDUCE_RECORD.fields) {
    assert.ok(merge.includes(`sched[f + REDUCE_${wgslName(f.name).toUpperCase()}]`), f.name);
  }
  assert.doesNotMatch(merge, /sched\[f \+ \d+u\]/, "no literal record offsets");
  for (const src of [decode, merge]) {
    const params = src.slice(
      src.indexOf("struct Params"),
      src.indexOf("}", src.indexOf("struct Params")) + 1,
    );
    assert.equal(params.trim(), PARAMS_WGSL.trim());
  }
});

Deno.test("planned tables hold consistent records at the ABI's offsets", () => {
  for (const maxBindingBytes of [undefined, 2 * 64 * 512]) {
    const plan = createPlan(
      { seqLens: [300, 17, 900], numHeads: 4, numKVHeads: 2, headDim: 64 },
      { grid: 6, maxBindingBytes },
    );
    const s = plan.schedule;
    assert.equal(s.pieces.length % PIECE_STRIDE, 0);
    assert.equal(s.reduce.length % REDUCE_STRIDE, 0);
    let partial = 0;
    for (let f = 0; f < s.pieces.length; f += PIECE_STRIDE) {
      assert.ok(s.pieces[f + PIECE.seq] < 3);
      assert.ok(s.pieces[f + PIECE.kvHead] < 2);
      assert.ok(s.pieces[f + PIECE.tokenBegin] < s.pieces[f + PIECE.tokenEnd]);
      assert.ok(s.pieces[f + PIECE.tokenEnd] <= s.pieces[f + PIECE.seqLen]);
      if (s.pieces[f + PIECE.slot] !== 0xffffffff) partial++;
    }
    let slots = 0;
    for (let r = 0; r < s.reduce.length; r += REDUCE_STRIDE) {
      assert.equal(s.reduce[r + REDUCE.firstSlot], slots);
      slots += s.reduce[r + REDUCE.numSlots];
      for (let pad = REDUCE_RECORD.fields.length; pad < REDUCE_STRIDE; pad++) {
        assert.equal(s.reduce[r + pad], 0, "padding words are zero");
      }
    }
    assert.equal(slots, partial);
    assert.equal(slots, s.partialSlots);
  }
});
