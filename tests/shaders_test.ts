/**
 * Generated WGSL, checked without a GPU: specialisation constants, bindings, 16-byte loads, no
 * `shader-f16`, workgroup memory within WebGPU's limits, and cache keys that tell specs apart.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeKernelWGSL, decodeWorkgroupBytes, valueLayout } from "../shaders/decode_kernel.ts";
import { type KernelSpec, specKey } from "../shaders/kernel_spec.ts";
import { kvLoadWGSL } from "../shaders/kv_load.ts";
import { mergeKernelWGSL } from "../shaders/merge_kernel.ts";
import { KV_DTYPES, tileConfig } from "../mod.ts";
import { fcParams } from "./helpers.ts";

/** Specs the planner can produce, with tile options the decoder accepts. */
const specArb: fc.Arbitrary<KernelSpec> = fc.record({
  headDim: fc.integer({ min: 1, max: 32 }).map((n) => 8 * n),
  kvDtype: fc.constantFrom(...KV_DTYPES),
  rowsPerGroup: fc.integer({ min: 1, max: 256 }),
  tileTokens: fc.constantFrom(16, 32, 64, 128, 256),
  workgroupSize: fc.constantFrom(16, 32, 64, 128, 256),
}).filter((r) => r.workgroupSize <= r.tileTokens).map((r) => {
  const t = tileConfig(r, r);
  return {
    headDim: r.headDim,
    kvDtype: r.kvDtype,
    tileTokens: t.tileTokens,
    rowsPerBlock: t.rowsPerBlock,
    workgroupSize: t.workgroupSize,
  };
});

function constant(wgsl: string, name: string): number {
  const m = wgsl.match(new RegExp(`const ${name}: u32 = (\\d+)u;`));
  assert.ok(m, `constant ${name} is declared`);
  return Number(m[1]);
}

Deno.test("decode kernel bakes its spec into constants and the workgroup size", () => {
  fc.assert(
    fc.property(specArb, (spec) => {
      const wgsl = decodeKernelWGSL(spec);
      assert.equal(constant(wgsl, "D"), spec.headDim);
      assert.equal(constant(wgsl, "T"), spec.tileTokens);
      assert.equal(constant(wgsl, "RP"), spec.rowsPerBlock);
      assert.equal(constant(wgsl, "SLOT"), spec.rowsPerBlock * (spec.headDim + 2));
      assert.ok(wgsl.includes(`@workgroup_size(${spec.workgroupSize})`));
      const { chunks, groups } = valueLayout(spec);
      assert.equal(constant(wgsl, "CHUNKS"), chunks);
      assert.equal(constant(wgsl, "GROUPS"), groups);
      assert.ok(groups * Math.min(chunks, spec.workgroupSize) <= spec.workgroupSize);
    }),
    fcParams(300),
  );
});

Deno.test("kernels need no optional WGSL feature and bind at most 7 storage buffers", () => {
  fc.assert(
    fc.property(specArb, (spec) => {
      for (const source of [decodeKernelWGSL(spec), mergeKernelWGSL(spec)]) {
        const wgsl = source.replace(/\/\/.*$/gm, "");
        assert.doesNotMatch(wgsl, /\benable\b/, "no enable directive");
        assert.doesNotMatch(wgsl, /\bf16\b/, "no f16 type (shader-f16 is not required)");
        assert.doesNotMatch(wgsl, /subgroup/, "no subgroup builtins on the default path");
        const storage = wgsl.match(/var<storage/g)?.length ?? 0;
        assert.ok(storage >= 3 && storage <= 7, `${storage} storage bindings`);
        const bindings = [...wgsl.matchAll(/@binding\((\d+)\)/g)].map((m) => Number(m[1]));
        assert.deepStrictEqual(bindings, bindings.map((_, i) => i), "bindings are 0..n-1");
      }
    }),
    fcParams(200),
  );
});

Deno.test("KV is read 16 bytes at a time and halves are unpacked from u32", () => {
  assert.match(kvLoadWGSL("f32"), /k_cache\[i\]/);
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

Deno.test("decode workgroup memory is what the kernel declares, and bounded", () => {
  fc.assert(
    fc.property(specArb, (spec) => {
      const bytes = decodeWorkgroupBytes(spec);
      const wgsl = decodeKernelWGSL(spec);
      let declared = 0;
      for (const m of wgsl.matchAll(/var<workgroup> \w+: array<(vec4<f32>|f32), (\d+)>/g)) {
        declared += Number(m[2]) * (m[1] === "f32" ? 4 : 16);
      }
      assert.equal(declared, bytes, "decodeWorkgroupBytes matches the declarations");
      // Within the 32 KiB of lavapipe at the default tile, and 48 KiB (common GPUs) at any tile.
      assert.ok(bytes <= 48 * 1024, `${bytes} bytes`);
      if (spec.tileTokens <= 64) assert.ok(bytes <= 32 * 1024, `${bytes} bytes at T=64`);
    }),
    fcParams(300),
  );
});

Deno.test("spec keys differ exactly when specs differ", () => {
  fc.assert(
    fc.property(specArb, specArb, (a, b) => {
      const same = JSON.stringify(a) === JSON.stringify(b);
      assert.equal(specKey("decode", a) === specKey("decode", b), same);
      assert.notEqual(specKey("decode", a), specKey("merge", a));
    }),
    fcParams(300),
  );
});

Deno.test("a workgroup wider than its tile is rejected", () => {
  assert.throws(
    () =>
      decodeKernelWGSL({
        headDim: 64,
        kvDtype: "f32",
        tileTokens: 32,
        rowsPerBlock: 1,
        workgroupSize: 64,
      }),
    RangeError,
  );
});
