/**
 * Row scatter (`KernelTuning.rowScatter`, session 29) and V unpacked one token at a time
 * (`vPerToken`) on the host: where row scatter applies, the spec keys, the shuffles of the
 * generated reduction, the kernel table's choice, and where V is unpacked. The GPU backends check
 * both against the float64 reference and the default kernel's bits (tests/kernel_options_test.ts,
 * whose shapes this file checks do scatter).
 *
 * @module
 */

import assert from "node:assert/strict";
import { createPlan } from "../mod.ts";
import { kernelSpec } from "../src/gpu/kernel_choice.ts";
import { decodeKernelWGSL } from "../src/kernels/decode_kernel.ts";
import { type KernelSpec, rowScatter } from "../src/kernels/kernel_spec.ts";
import { specKey } from "../src/kernels/spec_key.ts";

const base: KernelSpec = {
  headDim: 128,
  kvDtype: "f16",
  tileTokens: 64,
  rowsPerBlock: 4,
  workgroupSize: 128,
  lanes: 8,
  unroll: 4,
  subgroups: true,
  prefetch: true,
  fmaDots: true,
};

Deno.test("row scatter applies to 2-lane-or-more rows per thread with shuffles and no logits hooks", () => {
  const on = { ...base, rowScatter: true };
  assert.equal(rowScatter(on), true);
  assert.equal(rowScatter(base), false, "asked for only");
  assert.equal(rowScatter({ ...on, rowsPerBlock: 1 }), false, "one row");
  assert.equal(rowScatter({ ...on, subgroups: false }), false, "no shuffles");
  assert.equal(rowScatter({ ...on, rowsPerBlock: 8, lanes: 4 }), false, "more rows than lanes");
  assert.equal(rowScatter({ ...on, rowsPerBlock: 8, rowSets: 2 }), true, "4 rows per thread");
  assert.equal(rowScatter({ ...on, variant: { softCap: true } }), false, "soft-cap");
  assert.equal(rowScatter({ ...on, variant: { alibi: true } }), false, "ALiBi");
  assert.equal(
    rowScatter({ ...on, variant: { window: true, sinks: true } }),
    true,
    "window, sinks",
  );
  // The key changes exactly when the kernel does.
  assert.notEqual(specKey("decode", on), specKey("decode", base));
  assert.equal(
    specKey("decode", { ...on, rowsPerBlock: 1 }),
    specKey("decode", { ...base, rowsPerBlock: 1 }),
  );
  assert.notEqual(specKey("decode", { ...base, vPerToken: true }), specKey("decode", base));
});

Deno.test("row scatter: each token's lane sums take 3 exchanges and one butterfly level instead of 12", () => {
  const plain = decodeKernelWGSL(base);
  const scattered = decodeKernelWGSL({ ...base, rowScatter: true });
  assert.equal(plain.match(/d\d_\d \+= subgroupShuffleXor/g)?.length, 4 * 4 * 3);
  assert.equal(scattered.match(/d\d_\d \+= subgroupShuffleXor/g), null);
  // 4 rows over 8 lanes: 2 + 1 exchanges of halves, then the row's 2 copies add; no selects,
  // since slot k of a lane holds row k ^ rho (its query rows load so).
  assert.equal(
    scattered.match(/let x\d_\d_\d = [dx][\d_]+ \+ subgroupShuffleXor\(/g)?.length,
    4 * 3,
  );
  assert.doesNotMatch(scattered, /hb\d/);
  // Each of the 4 slots' rows, in its query load's address and its missing-row test.
  assert.equal(scattered.match(/\(\du \^ rho\)/g)?.length, 4 * 2);
  assert.equal(scattered.match(/own\d \+= subgroupShuffleXor\(own\d, 1u\)/g)?.length, 4);
  // Each of the other 3 rows' weights per token and rescale per step, in both paths.
  assert.equal(scattered.match(/let w\d_[123] = subgroupShuffleXor/g)?.length, 2 * 4 * 3);
  assert.equal(scattered.match(/let a[123] = subgroupShuffleXor\(alo/g)?.length, 2 * 3);
  assert.match(scattered, /rowScatter/);
});

Deno.test("V per token: each path unpacks a token's V inside its update", () => {
  const count = (spec: KernelSpec) =>
    decodeKernelWGSL(spec).match(/= unpack_kv\(v\d_\d\)/g)?.length;
  // 4 tokens x 2 chunks per lane: before the split, or inside both paths.
  assert.equal(count(base), 8);
  assert.equal(count({ ...base, vPerToken: true }), 16);
  assert.equal(count({ ...base, vPerToken: true, rowScatter: true }), 16);
});

Deno.test("the kernel table scatters the multi-row classes it tunes; the GPU tests' shapes scatter", () => {
  const caps = { subgroups: true, subgroupMinSize: 32 };
  for (const headDim of [64, 128, 256]) {
    const gqa = createPlan(
      { seqLens: [4096], numHeads: 32, numKVHeads: 8, headDim, kvDtype: "f16" },
      { grid: 8 },
    );
    assert.equal(rowScatter(kernelSpec(gqa, caps)), true, `GQA 32/8 d${headDim}`);
    const off = kernelSpec(gqa, caps, { rowScatter: false });
    assert.equal(rowScatter(off), false, `GQA 32/8 d${headDim}, turned off`);
  }
  const q4 = createPlan(
    { seqLens: [4096], numHeads: 32, numKVHeads: 8, headDim: 128, kvDtype: "f16", qLen: 4 },
    { grid: 8 },
  );
  assert.equal(rowScatter(kernelSpec(q4, caps)), true, "16 rows, qLen 4");
  const mha = createPlan(
    { seqLens: [4096], numHeads: 8, numKVHeads: 8, headDim: 128, kvDtype: "f16" },
    { grid: 8 },
  );
  assert.equal(rowScatter(kernelSpec(mha, caps)), false, "MHA: one row");
  // tests/kernel_options_test.ts's shapes (GQA 8/2 d32: f16 with qLen 1, 4 rows per block;
  // int8 with qLens 2 and 1, 8 rows, in four row sets) on a device of 8-lane subgroups, as
  // lavapipe's; fewer row sets leave more rows per thread than a d32 int8 row's 2 lanes.
  const small = { subgroups: true, subgroupMinSize: 8 };
  const shape = (kvDtype: "f16" | "int8", qLen: number) =>
    createPlan(
      { seqLens: [150, 40], numHeads: 8, numKVHeads: 2, headDim: 32, kvDtype, qLen },
      { grid: 8 },
    );
  assert.equal(rowScatter(kernelSpec(shape("f16", 1), small, { rowScatter: true })), true);
  const int8 = shape("int8", 2);
  assert.equal(rowScatter(kernelSpec(int8, small, { rowScatter: true })), false);
  assert.equal(rowScatter(kernelSpec(int8, small, { rowScatter: true, rowSets: 2 })), false);
  assert.equal(rowScatter(kernelSpec(int8, small, { rowScatter: true, rowSets: 4 })), true);
});

Deno.test("row scatter keeps its shuffles in uniform control flow (Tint enforces WGSL's rules)", () => {
  const spec = {
    ...base,
    rowsPerBlock: 8,
    rowSets: 2,
    rowScatter: true,
    variant: { window: true },
  };
  const wgsl = decodeKernelWGSL(spec);
  // The own row's visibility has no short-circuit before the weights' shuffles.
  const vo = wgsl.split("\n").filter((l) => /let vo\d = /.test(l));
  assert.equal(vo.length, 4);
  for (const line of vo) assert.doesNotMatch(line, /&&/);
  // With row sets, the unmasked steps' limits come from every row of the block, not the thread's.
  const limits = wgsl.split("\n").filter((l) => /^\s*lim_all = /.test(l));
  assert.equal(limits.length, 8);
  for (const line of limits) assert.doesNotMatch(line, /lim\[/);
  // The thread's 4 rows set the window start, then the block's 8 set it again from 0.
  assert.equal(wgsl.split("\n").filter((l) => /^\s*lo_all = select/.test(l)).length, 4 + 8);
  // Without row sets the thread's rows are the block's.
  const one = decodeKernelWGSL({ ...spec, rowsPerBlock: 4, rowSets: 1 });
  assert.equal(
    one.split("\n").filter((l) => /^\s*lim_all = select\(lim_all, min\(lim_all, lim\[/.test(l))
      .length,
    4,
  );
});
