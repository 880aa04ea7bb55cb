/**
 * The attention-variant hooks (`src/core/variant.ts`, `src/kernels/variant_wgsl.ts`): the causal
 * variant's host twin and its WGSL agree, the kernel takes its mask from the hook, the plain
 * variant leaves sources and pipeline keys as they were, and each variant flag adds its own code.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { CAUSAL, VARIANTS } from "../src/core/variant.ts";
import { decodeKernelWGSL } from "../src/kernels/decode_kernel.ts";
import { specKey } from "../src/kernels/spec_key.ts";
import { kernelParams } from "../src/kernels/kernel_params.ts";
import { BINDING, kernelLayoutEntries, PARAMS_RECORD } from "../src/kernels/abi.ts";
import {
  HEAD_TABLE_STRIDE,
  headTable,
  needsHeadTable,
  VARIANT_WGSL,
} from "../src/kernels/variant_wgsl.ts";
import { mergeKernelWGSL } from "../src/kernels/merge_kernel.ts";
import type { VariantFlags } from "../plan.ts";
import { fcParams } from "./helpers.ts";

/** Evaluates the WGSL limit expression of a variant on numbers (it is integer arithmetic). */
function evalVisible(seqLen: number, qLen: number, pos: number): number {
  const expr = VARIANT_WGSL.causal.visible("S", "Q", "P").replace(/(\d+)u\b/g, "$1");
  return new Function("S", "Q", "P", `return ${expr};`)(seqLen, qLen, pos);
}

Deno.test("the causal hook's TypeScript twin and WGSL give the same visible tokens", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 8 }).chain((qLen) =>
        fc.tuple(
          fc.constant(qLen),
          fc.integer({ min: qLen, max: 100_000 }),
          fc.integer({ min: 0, max: qLen - 1 }),
        )
      ),
      ([qLen, seqLen, pos]) => {
        const visible = CAUSAL.visibleTokens(seqLen, qLen, pos);
        assert.equal(visible, seqLen - qLen + pos + 1);
        assert.ok(visible >= 1 && visible <= seqLen);
        assert.equal(evalVisible(seqLen, qLen, pos), visible);
      },
    ),
    fcParams(200),
  );
  assert.equal(CAUSAL.logit, undefined, "plain scaling: no logit transform");
  assert.deepEqual(Object.keys(VARIANTS), Object.keys(VARIANT_WGSL), "a WGSL twin per variant");
});

Deno.test("the decode kernel's mask comes from the variant hook; causal keeps the keys", () => {
  const spec = {
    headDim: 64,
    kvDtype: "f16",
    tileTokens: 64,
    rowsPerBlock: 2,
    workgroupSize: 64,
  } as const;
  const wgsl = decodeKernelWGSL(spec);
  for (const r of [0, 1]) {
    const limit = VARIANT_WGSL.causal.visible(
      "seq_len",
      "q_len",
      `(r0 + ${r}u) % q_len`,
    );
    assert.ok(wgsl.includes(`lim[${r}] = select(0u, min(${limit}, tok_end), ${r}u < n_rows);`));
  }
  const off = { window: false, softCap: false, alibi: false, sinks: false };
  assert.equal(decodeKernelWGSL({ ...spec, variant: off }), wgsl);
  assert.equal(decodeKernelWGSL({ ...spec, variant: {} }), wgsl);
  assert.equal(specKey("decode", { ...spec, variant: off }), specKey("decode", spec));
});

Deno.test("each variant flag adds its code and its key; flags that are off add nothing", () => {
  const spec = {
    headDim: 64,
    kvDtype: "f16",
    tileTokens: 64,
    rowsPerBlock: 2,
    workgroupSize: 64,
  } as const;
  const plain = { decode: decodeKernelWGSL(spec), merge: mergeKernelWGSL(spec) };
  const code: Record<keyof VariantFlags, { decode: string[]; merge: string[] }> = {
    window: { decode: ["params.window", "lo_all", ">= lo["], merge: [] },
    softCap: { decode: ["fn soft_cap", "= soft_cap(d0_0)"], merge: [] },
    alibi: { decode: ["@binding(9) var<storage, read> heads", "slope[0] * f32("], merge: [] },
    sinks: {
      decode: ["@binding(9) var<storage, read> heads", "fin_l[r]"],
      merge: ["@binding(9) var<storage, read> heads", "total_of(dd) * c_fin / l_fin"],
    },
  };
  const keys = new Set<string>();
  for (const flag of Object.keys(code) as (keyof VariantFlags)[]) {
    const variant = { [flag]: true };
    const decode = decodeKernelWGSL({ ...spec, variant });
    const merge = mergeKernelWGSL({ ...spec, variant });
    for (const piece of code[flag].decode) assert.ok(decode.includes(piece), `${flag}: ${piece}`);
    for (const piece of code[flag].merge) assert.ok(merge.includes(piece), `${flag}: ${piece}`);
    if (code[flag].merge.length === 0) assert.equal(merge, plain.merge, `${flag}: merge unchanged`);
    for (const other of Object.keys(code) as (keyof VariantFlags)[]) {
      if (other === flag) continue;
      for (const piece of code[other].decode) {
        if (code[flag].decode.includes(piece)) continue;
        assert.ok(!decode.includes(piece), `${flag} must not add ${other}'s ${piece}`);
      }
    }
    keys.add(specKey("decode", { ...spec, variant }));
    assert.equal(
      needsHeadTable("decode", variant),
      flag === "alibi" || flag === "sinks",
      `${flag}: head table`,
    );
  }
  keys.add(specKey("decode", spec));
  assert.equal(keys.size, 5, "a pipeline key per flag, apart from the plain one");
});

Deno.test("the head table holds slopes and sinks in log2 units, one pair per head", () => {
  const slopes = Float32Array.of(0.5, 0.25, 0.125);
  const sinks = Float32Array.of(-1, 0, 2);
  const t = headTable({ alibiSlopes: slopes, sinks }, 3);
  assert.equal(t.length, 3 * HEAD_TABLE_STRIDE);
  for (let h = 0; h < 3; h++) {
    assert.equal(t[HEAD_TABLE_STRIDE * h], Math.fround(slopes[h] * Math.LOG2E));
    assert.equal(t[HEAD_TABLE_STRIDE * h + 1], Math.fround(sinks[h] * Math.LOG2E));
  }
  assert.deepEqual(Array.from(headTable(undefined, 1)), [0, 0, 0, 0]);
});

Deno.test("the head table's binding joins a layout only when asked; window and soft-cap are params", () => {
  for (const paged of [false, true]) {
    const without = kernelLayoutEntries({ paged });
    const withHeads = kernelLayoutEntries({ paged, heads: true });
    assert.ok(!without.some((e) => e.name === "heads"));
    assert.deepEqual(withHeads.slice(0, -1), without);
    assert.deepEqual(withHeads.at(-1), {
      binding: BINDING.heads,
      name: "heads",
      type: "read-only-storage",
    });
  }
  const words = kernelParams({
    numHeads: 2,
    qLen: 1,
    groupSize: 1,
    rowsPerGroup: 1,
    numKVHeads: 2,
    headDim: 8,
    kvDtype: "f32",
    pieceBase: 0,
    reduceBase: 0,
    count: 1,
    scale: 1,
    variant: { slidingWindow: 77, logitsSoftCap: 2 },
  });
  assert.equal(words[PARAMS_RECORD.offsets.window], 77);
  const softCap = new Float32Array(words.buffer)[PARAMS_RECORD.offsets.softCap];
  assert.equal(softCap, Math.fround(2 * Math.LOG2E));
});
