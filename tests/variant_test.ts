/**
 * The attention-variant hooks (`src/core/variant.ts`, `src/kernels/variant_wgsl.ts`): the causal
 * variant's host twin and its WGSL agree, the kernel takes its mask from the hook, and the
 * default variant leaves pipeline keys as they were.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { CAUSAL, VARIANTS } from "../src/core/variant.ts";
import { decodeKernelWGSL } from "../src/kernels/decode_kernel.ts";
import { specKey } from "../src/kernels/kernel_spec.ts";
import { VARIANT_WGSL } from "../src/kernels/variant_wgsl.ts";
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
  assert.equal(decodeKernelWGSL({ ...spec, variant: "causal" }), wgsl);
  assert.equal(specKey("decode", { ...spec, variant: "causal" }), specKey("decode", spec));
});
