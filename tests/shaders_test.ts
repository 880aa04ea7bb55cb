/**
 * Generated WGSL, checked without a GPU: specialisation constants, bindings, 16-byte loads, no
 * `shader-f16`, workgroup memory within WebGPU's limits, and cache keys that tell specs apart.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeKernelWGSL, decodeWorkgroupBytes } from "../src/kernels/decode_kernel.ts";
import {
  KERNEL_TABLE,
  kernelChoice,
  kernelLayout,
  type KernelSpec,
  sharedLayoutEntries,
  specKey,
} from "../src/kernels/kernel_spec.ts";
import { kernelLayoutEntries } from "../src/kernels/abi.ts";
import { kvLoadWGSL } from "../src/kernels/kv_load.ts";
import { mergeKernelWGSL } from "../src/kernels/merge_kernel.ts";
import { KV_DTYPES } from "../mod.ts";
import { tileConfig } from "../plan.ts";
import { fcParams } from "./helpers.ts";
import { kernelSpec } from "../src/gpu/kernel_choice.ts";

/** Specs the planner can produce, with tile options the decoder accepts. */
const specArb: fc.Arbitrary<KernelSpec> = fc.record({
  headDim: fc.integer({ min: 1, max: 32 }).map((n) => 8 * n),
  kvDtype: fc.constantFrom(...KV_DTYPES),
  rowsPerGroup: fc.integer({ min: 1, max: 256 }),
  tileTokens: fc.constantFrom(16, 32, 64, 128, 256),
  workgroupSize: fc.constantFrom(16, 32, 64, 128, 256),
  maxLanes: fc.constantFrom(1, 2, 4, 8, 16, 32),
  subgroups: fc.boolean(),
  prefetch: fc.boolean(),
  fastSteps: fc.boolean(),
  paged: fc.boolean(),
  unroll: fc.option(fc.integer({ min: 1, max: 8 }), { nil: undefined }),
  rowSets: fc.constantFrom(1, 2, 4),
  queryShared: fc.boolean(),
}).map((r) => {
  const t = tileConfig(r, r);
  const chunks = r.headDim / (r.kvDtype === "f32" ? 4 : 8);
  let lanes = 1;
  while (lanes * 2 <= Math.min(r.maxLanes, r.workgroupSize) && chunks % (lanes * 2) === 0) {
    lanes *= 2;
  }
  const spec: KernelSpec = {
    headDim: r.headDim,
    kvDtype: r.kvDtype,
    tileTokens: t.tileTokens,
    rowsPerBlock: t.rowsPerBlock,
    workgroupSize: t.workgroupSize,
    lanes,
    unroll: r.unroll,
    subgroups: r.subgroups,
    prefetch: r.prefetch,
    fastSteps: r.fastSteps,
    paged: r.paged,
    queryShared: r.queryShared || undefined,
  };
  // The row sets the layout resolves to (fewer where they do not divide the rows), so that
  // equal kernels have equal specs.
  const rowSets = kernelLayout({ ...spec, rowSets: r.rowSets }).rowSets;
  return rowSets > 1 ? { ...spec, rowSets } : spec;
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
      const l = kernelLayout(spec);
      assert.equal(constant(wgsl, "CHUNKS"), l.chunks);
      assert.equal(constant(wgsl, "LANES"), l.lanes);
      assert.equal(constant(wgsl, "GROUPS"), l.groups);
      assert.equal(constant(wgsl, "STEP"), l.groups * l.unroll);
      assert.equal(l.groups * l.lanes * l.rowSets, spec.workgroupSize, "every thread has a lane");
      assert.equal(l.rowsPerThread * l.rowSets, spec.rowsPerBlock, "row sets split the rows");
      assert.equal(l.chunksPerLane * l.lanes, l.chunks, "lanes split a row's chunks exactly");
      assert.ok(l.step <= Math.max(l.groups, spec.tileTokens), "a step is not longer than a tile");
      // Every lane loads each of its chunks once per token of the step.
      const loads = (wgsl.match(/k_cache\[/g) ?? []).length;
      assert.equal(loads, l.unroll * l.chunksPerLane * (spec.prefetch ? 2 : 1));
    }),
    fcParams(300),
  );
});

Deno.test("kernels need no shader-f16, use subgroups only when asked, bind at most 8 storage buffers", () => {
  fc.assert(
    fc.property(specArb, fc.boolean(), (spec, enableDirective) => {
      const l = kernelLayout(spec);
      for (const source of [decodeKernelWGSL(spec, { enableDirective }), mergeKernelWGSL(spec)]) {
        const wgsl = source.replace(/\/\/.*$/gm, "");
        assert.doesNotMatch(wgsl, /\bf16\b/, "no f16 type (shader-f16 is not required)");
        const shuffles = /subgroupShuffleXor/.test(wgsl);
        assert.equal(shuffles, l.subgroups && l.lanes > 1 && source.includes("decode kernel"));
        assert.equal(
          /\benable subgroups;/.test(wgsl),
          enableDirective && l.subgroups && source.includes("decode kernel"),
        );
        const storage = wgsl.match(/var<storage/g)?.length ?? 0;
        assert.ok(storage >= 3 && storage <= 8, `${storage} storage bindings`);
        // Every kernel binds by the ABI's one numbering (src/kernels/abi.ts): exactly the bindings
        // of its explicit layout, in order.
        const bindings = [...wgsl.matchAll(/@binding\((\d+)\)/g)].map((m) => Number(m[1]));
        const kind = source.includes("decode kernel") ? "decode" : "merge";
        assert.deepStrictEqual(
          bindings,
          kernelLayoutEntries(kind, { paged: l.paged, shared: spec.sharedLayout ?? false })
            .map((e) => e.binding),
          "bindings are the layout's",
        );
        assert.equal(
          /var<storage, read> pages/.test(wgsl),
          l.paged && source.includes("decode kernel"),
        );
      }
    }),
    fcParams(200),
  );
});

Deno.test("shared-layout kernels declare each binding with the shared layout's buffer type", () => {
  const declared: Record<string, string> = {
    "uniform": "uniform",
    "storage, read": "read-only-storage",
    "storage, read_write": "storage",
  };
  fc.assert(
    fc.property(specArb, (base) => {
      const spec = { ...base, sharedLayout: true };
      const entries = sharedLayoutEntries(spec);
      const used = new Set<number>();
      for (const source of [decodeKernelWGSL(spec), mergeKernelWGSL(spec)]) {
        const vars = [...source.matchAll(/@binding\((\d+)\) var<([^>]+)>/g)];
        assert.ok(vars.length >= 5);
        for (const [, n, kind] of vars) {
          assert.equal(declared[kind], entries[Number(n)], `binding ${n} is var<${kind}>`);
          used.add(Number(n));
        }
      }
      assert.deepStrictEqual([...used].sort((a, b) => a - b), entries.map((_, i) => i));
      assert.notEqual(specKey("merge", spec), specKey("merge", base), "its own pipelines");
    }),
    fcParams(100),
  );
});

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

Deno.test("decode workgroup memory is what the kernel declares, and bounded", () => {
  fc.assert(
    fc.property(specArb, (spec) => {
      const bytes = decodeWorkgroupBytes(spec);
      const wgsl = decodeKernelWGSL(spec);
      let declared = 0;
      for (const m of wgsl.matchAll(/var<workgroup> \w+: array<(vec4<f32>|f32), (\d+)>/g)) {
        declared += Number(m[2]) * (m[1] === "f32" ? 4 : 16);
      }
      assert.ok(
        Math.abs(declared - bytes) <= 8 * 256,
        "decodeWorkgroupBytes matches the declarations",
      );
      // Within WebGPU's default 16 KiB of workgroup memory (lavapipe has 32 KiB).
      assert.ok(declared <= 16 * 1024 + 64, `${declared} bytes`);
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

Deno.test("a lane count that does not divide the row is rejected", () => {
  assert.throws(
    () =>
      decodeKernelWGSL({
        headDim: 24,
        kvDtype: "f16",
        tileTokens: 32,
        rowsPerBlock: 1,
        workgroupSize: 64,
        lanes: 2,
      }),
    RangeError,
  );
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

Deno.test("the kernel table has a choice for every class, lanes a power of two up to 16", () => {
  for (const rows of [1, 2, 3, 4, 5, 8, 16]) {
    for (const headDim of [8, 64, 80, 128, 200, 256]) {
      const c = kernelChoice(headDim, rows);
      assert.ok(c, `class of ${rows} rows, d${headDim}`);
      assert.ok(c.lanes >= 1 && c.lanes <= 16 && (c.lanes & (c.lanes - 1)) === 0);
      assert.ok(Number.isInteger(c.unroll) && c.unroll >= 1);
    }
  }
  assert.equal(Object.keys(KERNEL_TABLE).length, 12);
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

Deno.test("shared query rows are read from workgroup memory, not registers", () => {
  const base: KernelSpec = {
    headDim: 64,
    kvDtype: "f16",
    tileTokens: 64,
    rowsPerBlock: 4,
    workgroupSize: 128,
    lanes: 8,
  };
  const shared = decodeKernelWGSL({ ...base, queryShared: true });
  assert.ok(!shared.includes("var qv"), "no query registers");
  assert.ok(shared.includes("dot(kf0_0[0], acc["), "dots read the rows from acc");
  assert.equal(
    decodeWorkgroupBytes({ ...base, queryShared: true }),
    decodeWorkgroupBytes(base),
    "the rows reuse the merge's block",
  );
  assert.ok(specKey("decode", { ...base, queryShared: true }).endsWith(":qs"));
});

Deno.test("a device-wide lane count meets shorter rows with the most lanes dividing them", () => {
  const plan = (headDim: number) => ({
    problem: { headDim, kvDtype: "f16" as const },
    tiles: tileConfig({ headDim, rowsPerGroup: 4, kvDtype: "f16" }),
  });
  assert.equal(kernelSpec(plan(128), undefined, { lanes: 16 }).lanes, 16);
  assert.equal(kernelSpec(plan(64), undefined, { lanes: 16 }).lanes, 8);
  assert.equal(kernelSpec(plan(24), undefined, { lanes: 16 }).lanes, 1);
  // Row sets come from the tuning, else from the table.
  assert.equal(kernelSpec(plan(64), undefined, { rowSets: 1 }).rowSets, undefined);
  assert.equal(kernelSpec(plan(64)).rowSets, kernelChoice(64, 4).rowSets);
});
