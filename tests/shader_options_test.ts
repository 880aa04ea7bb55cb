/**
 * The generated WGSL of particular kernel options, checked without a GPU: 16-byte K/V loads with
 * halves unpacked from u32, scores as chains of multiply-adds (`fmaDots`), lane counts that do not
 * divide a row, the unmasked fast path (`fastSteps`) and row sets. Properties of the WGSL of any
 * spec: tests/shaders_test.ts.
 */

import assert from "node:assert/strict";
import { decodeKernelWGSL } from "../src/kernels/decode_kernel.ts";
import type { KernelSpec } from "../src/kernels/kernel_spec.ts";
import { specKey } from "../src/kernels/spec_key.ts";
import { kernelLayout } from "../src/kernels/kernel_layout.ts";
import { kvLoadWGSL } from "../src/kernels/kv_load.ts";

Deno.test("KV is read 16 bytes at a time and halves are unpacked from u32", () => {
  assert.match(kvLoadWGSL("f32"), /fn unpack_kv\(w: vec4<f32>\)/);
  for (const dtype of ["f16", "bf16"] as const) {
    const wgsl = decodeKernelWGSL({
      headDim: 128,
      kvDtype: dtype,
      tileTokens: 64,
      rowsPerBlock: 4,
      workgroupSize: 64,
    });
    assert.match(wgsl, /var<storage, read> k_cache: array<vec4<u32>>/);
    assert.match(wgsl, /var<storage, read> v_cache: array<vec4<u32>>/);
  }
  assert.match(kvLoadWGSL("f16"), /unpack2x16float/);
  assert.match(kvLoadWGSL("bf16"), /w << 16u/);
  assert.match(kvLoadWGSL("bf16"), /w & 0xffff0000u/);
  const f32 = decodeKernelWGSL({
    headDim: 64,
    kvDtype: "f32",
    tileTokens: 64,
    rowsPerBlock: 1,
    workgroupSize: 64,
  });
  assert.match(f32, /var<storage, read> k_cache: array<vec4<f32>>/);
});

Deno.test("fmaDots: each score is a chain of scalar multiply-adds", () => {
  const base: KernelSpec = {
    headDim: 128,
    kvDtype: "f16",
    tileTokens: 64,
    rowsPerBlock: 4,
    workgroupSize: 128,
    lanes: 8,
    unroll: 2,
    subgroups: true,
  };
  const plain = decodeKernelWGSL(base);
  const chained = decodeKernelWGSL({ ...base, fmaDots: true });
  assert.match(plain, /var d0_0 = dot\(kf0_0\[0\], qv\[0\]\) \+ dot\(/);
  const line = chained.split("\n").find((l) => l.includes("var d0_0 ="))!;
  assert.doesNotMatch(line, /dot\(/);
  // 128 dims over 8 lanes: 16 products per lane, one multiply and 15 multiply-adds.
  assert.equal(line.match(/fma\(/g)?.length, 15);
  assert.match(line, /kf0_0\[0\]\.x \* qv\[0\]\.x\)/);
  assert.notEqual(specKey("decode", base), specKey("decode", { ...base, fmaDots: true }));
  // A 136-dim row on one lane (8-bit KV in 8-byte chunks): 136 products in runs of 16 per
  // statement, in order, since Dawn's parser refuses calls nested 136 deep (session 29).
  const long = decodeKernelWGSL({
    ...base,
    headDim: 136,
    kvDtype: "fp8e4m3",
    lanes: 1,
    unroll: 1,
    fmaDots: true,
  }).split("\n").filter((l) => /^\s*(var )?d0_0 = /.test(l));
  assert.equal(long.length, 9);
  assert.equal(long.join("").match(/fma\(/g)?.length, 135);
  assert.match(long[1], /^\s*d0_0 = fma\(kf0_3\[1\]\.w, qv\[7\]\.w, .*, d0_0\)+;$/);
  // Query rows in workgroup memory: each shared vector's products join the score by fma.
  const shared = decodeKernelWGSL({ ...base, queryShared: true, fmaDots: true });
  assert.doesNotMatch(shared, /dot\(kf/);
  assert.match(
    shared,
    /d0_0 = fma\(kf0_0\[0\]\.w, qq\.w, fma\(kf0_0\[0\]\.z, qq\.z, fma\(kf0_0\[0\]\.y, qq\.y, fma\(kf0_0\[0\]\.x, qq\.x, d0_0\)\)\)\);/,
  );
});

Deno.test("a lane count that is not a power of two is rejected; one that does not divide the row pads", () => {
  const spec = {
    headDim: 24,
    kvDtype: "f16",
    tileTokens: 32,
    rowsPerBlock: 1,
    workgroupSize: 64,
  } as const;
  assert.throws(() => decodeKernelWGSL({ ...spec, lanes: 3 }), RangeError);
  // 3 chunks over 2 lanes: the second round holds one chunk; lane 1 re-reads it, query zero.
  const wgsl = decodeKernelWGSL({ ...spec, lanes: 2 });
  assert.ok(wgsl.includes("let kpad = min(lane + 2u, CHUNKS - 1u) - lane;"));
  assert.ok(wgsl.includes("if (lane + 2u < CHUNKS_V) {"));
});

Deno.test("fast steps: an unmasked path beside the masked one unless fastSteps is false", () => {
  const base: KernelSpec = {
    headDim: 64,
    kvDtype: "f16",
    tileTokens: 64,
    rowsPerBlock: 4,
    workgroupSize: 64,
    subgroups: true,
  };
  const fast = decodeKernelWGSL(base);
  const masked = decodeKernelWGSL({ ...base, fastSteps: false });
  assert.ok(fast.includes("if (s0 + STEP <= lim_all)"), "fast kernel tests whole steps");
  assert.ok(fast.includes("poisoned(l[0])"), "fast kernel checks the sums once per piece");
  assert.ok(!masked.includes("lim_all"), "masked kernel has one path");
  // Both paths keep the masked path's per-score NaN tracking.
  for (const wgsl of [fast, masked]) assert.ok(wgsl.includes("poisoned(d0_0)"));
  assert.notEqual(specKey("decode", base), specKey("decode", { ...base, fastSteps: false }));
});

Deno.test("row sets split a block's rows among lane groups that read the same K/V", () => {
  const base: KernelSpec = {
    headDim: 64,
    kvDtype: "f16",
    tileTokens: 64,
    rowsPerBlock: 4,
    workgroupSize: 128,
    lanes: 8,
    subgroups: true,
  };
  const one = kernelLayout(base);
  const two = kernelLayout({ ...base, rowSets: 2 });
  assert.equal(one.groups, 16);
  assert.equal(one.rowsPerThread, 4);
  assert.equal(two.groups, 8, "half the token groups: two lane groups per token");
  assert.equal(two.rowsPerThread, 2);
  // 6 rows: 4 row sets do not divide them, 2 do (3 rows each).
  assert.equal(kernelLayout({ ...base, rowsPerBlock: 6, rowSets: 4 }).rowSets, 2);
  assert.equal(kernelLayout({ ...base, rowsPerBlock: 1, rowSets: 2 }).rowSets, 1);
  assert.throws(() => kernelLayout({ ...base, rowSets: 3 }), RangeError);
  const wgsl = decodeKernelWGSL({ ...base, rowSets: 2 });
  assert.ok(wgsl.includes("let rs0 = (lg % 2u) * 2u;"), "each row set starts at its own row");
  assert.ok(wgsl.includes("var qv = array<vec4<f32>, 4>();"), "a thread holds 2 rows x 2 vec4");
  assert.ok(!decodeKernelWGSL(base).includes("rs0"), "one row set: the kernel of before");
  assert.ok(specKey("decode", { ...base, rowSets: 2 }).endsWith(":rs2"));
  assert.equal(specKey("decode", { ...base, rowSets: 1 }), specKey("decode", base));
});
