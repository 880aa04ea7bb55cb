/**
 * The kernel a device runs, checked without a GPU: the kernel table's choice for every class (and
 * an 8-bit class's own entry), and what `kernelSpec` makes of a plan, the device's capabilities and
 * a tuning: lanes that divide shorter rows, early loads by default, and shuffles across the groups
 * of a subgroup. The generated WGSL: tests/shaders_test.ts, tests/shader_options_test.ts.
 */

import assert from "node:assert/strict";
import { decodeKernelWGSL } from "../src/kernels/decode_kernel.ts";
import { decodeWorkgroupBytes } from "../src/kernels/decode_output.ts";
import { earlyLoads } from "../src/kernels/kernel_spec.ts";
import { specKey } from "../src/kernels/spec_key.ts";
import { KERNEL_TABLE, kernelChoice, kernelChoiceKey } from "../src/kernels/kernel_table.ts";
import { tileConfig } from "../plan.ts";
import { kernelSpec } from "../src/gpu/kernel_choice.ts";

Deno.test("the kernel table has a choice for every class, lanes a power of two up to 16 (32 above d256)", () => {
  for (const rows of [1, 2, 3, 4, 5, 8, 16]) {
    for (const headDim of [8, 64, 80, 128, 200, 256, 264, 576]) {
      const c = kernelChoice(headDim, rows);
      assert.ok(c, `class of ${rows} rows, d${headDim}`);
      const most = headDim > 256 ? 32 : 16;
      assert.ok(c.lanes >= 1 && c.lanes <= most && (c.lanes & (c.lanes - 1)) === 0);
      assert.equal(c.padded ?? false, headDim > 256, "only MLA's class pads lane rounds");
      assert.ok(Number.isInteger(c.unroll) && c.unroll >= 1);
    }
  }
  assert.equal(Object.keys(KERNEL_TABLE).length, 16);
});

Deno.test("8-bit KV takes its class's 8-bit table entry where a table has one, else the class's", () => {
  const table = {
    "r1 d128": { lanes: 8, unroll: 2 },
    "r1 d128 8-bit": { lanes: 8, unroll: 4 },
    "r4 d128": { lanes: 8, unroll: 4 },
  };
  for (const kvDtype of ["int8", "fp8e4m3", "fp8e5m2"] as const) {
    assert.equal(kernelChoiceKey(table, 128, 1, kvDtype), "r1 d128 8-bit");
    assert.equal(kernelChoiceKey(table, 128, 4, kvDtype), "r4 d128", "no 8-bit entry: the class's");
  }
  for (const kvDtype of ["f32", "f16", "bf16", undefined] as const) {
    assert.equal(kernelChoiceKey(table, 128, 1, kvDtype), "r1 d128");
  }
  // The built-in table has no 8-bit entries yet: 8-bit kernels take their class's choice.
  assert.equal(kernelChoice(128, 1, "fp8e5m2"), kernelChoice(128, 1));
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

Deno.test("8-bit kernels take twice f16's unroll, but f16's own where a thread holds 97-128 floats of rows", () => {
  const caps = { subgroups: true, subgroupMinSize: 32 };
  const unroll = (
    kvDtype: "f16" | "int8" | "fp8e4m3",
    headDim: number,
    rows: number,
    padRows?: boolean,
  ) =>
    kernelSpec(
      {
        problem: { headDim, kvDtype },
        tiles: tileConfig({ headDim, rowsPerGroup: rows, kvDtype }, { padRows }),
      },
      caps,
    ).unroll ?? 0;
  // 8 rows at d128: two row sets of 4 rows x 32 dims of K and V per lane = 128 floats; at d64
  // (since session 60) two row sets of 4 rows x 32 dims at 4 lanes: 128 floats too.
  for (const kvDtype of ["f16", "int8", "fp8e4m3"] as const) {
    assert.equal(unroll(kvDtype, 128, 8), 4);
    assert.equal(unroll(kvDtype, 64, 8), 4);
  }
  // 6 rows (96 floats), 7 kept as 7 (one row set: 224) and 5 (160) at d128, and the other
  // classes: twice. (7 rows run as 8 by default: `padRows`.)
  for (const rows of [5, 6]) {
    assert.equal(unroll("int8", 128, rows), 2 * unroll("f16", 128, rows));
  }
  assert.equal(unroll("int8", 128, 7, false), 2 * unroll("f16", 128, 7, false));
  assert.equal(unroll("int8", 128, 7), 4);
  for (const rows of [1, 2]) {
    assert.equal(unroll("fp8e4m3", 64, rows), 2 * unroll("f16", 64, rows));
  }
  assert.equal(unroll("int8", 128, 1), 2 * unroll("f16", 128, 1));
  // (4 rows at d128, 128 floats, ran 4 before too: a 64-token tile holds 16 groups x 4 tokens.)
  assert.equal(unroll("int8", 128, 4), 4);
  // A tuning's unroll stands.
  const plan = {
    problem: { headDim: 128, kvDtype: "int8" as const },
    tiles: tileConfig({ headDim: 128, rowsPerGroup: 8, kvDtype: "int8" }),
  };
  assert.equal(kernelSpec(plan, caps, { unroll: 8 }).unroll, 8);
});

Deno.test("early loads are the default for 4-row int8 with integer keys, 4-row int8 with per-token scales, 4-row E4M3 at per-tensor scales, and packed f16 keys", () => {
  const plan = (kvDtype: "int8" | "f16" | "fp8e4m3", rowsPerGroup: number) => ({
    problem: { headDim: 128, kvDtype },
    tiles: tileConfig({ headDim: 128, rowsPerGroup, kvDtype }),
  });
  const caps = { subgroups: true, subgroupMinSize: 32 };
  const int8 = kernelSpec(plan("int8", 4), caps);
  assert.equal(int8.earlyLoads, true);
  assert.ok(earlyLoads(int8));
  assert.match(decodeKernelWGSL(int8), /early \^= /);
  assert.equal(kernelSpec(plan("int8", 4), caps, {}, false, "tensor").earlyLoads, true);
  // With per-token scales (dense, or paged as the cache keeps them), int8, and E4M3 with a NaN
  // test per word (with one per step it is faster without them, tests/nan_steps_test.ts), the
  // next step's scale pairs and page-table entries with them.
  for (const kvDtype of ["int8", "fp8e4m3"] as const) {
    const tuning = kvDtype === "int8" ? {} : { nanSteps: false };
    for (const paged of [false, true]) {
      const token = kernelSpec(plan(kvDtype, 4), caps, tuning, paged, "token");
      assert.equal(token.kvScales, "token");
      assert.equal(token.earlyLoads, true, `${kvDtype} paged ${paged}`);
      const wgsl = decodeKernelWGSL(token);
      assert.match(wgsl, /early \^= [^;]*bitcast<u32>\(nsc0\.x\)/);
      assert.equal(/early \^= [^;]* \^ npg0/.test(wgsl), paged);
      const off = kernelSpec(
        plan(kvDtype, 4),
        caps,
        { ...tuning, earlyLoads: false },
        paged,
        "token",
      );
      assert.doesNotMatch(decodeKernelWGSL(off), /early \^= /);
    }
  }
  // E4M3 at per-tensor scales: with its NaN codes tested per step and its rows' base read ahead
  // (dense) or slices (paged); not with a test per word (its loads at the loop's top already).
  assert.equal(kernelSpec(plan("fp8e4m3", 4), caps, {}, false, "tensor").earlyLoads, true);
  const perWord = { nanSteps: false };
  assert.equal(
    kernelSpec(plan("fp8e4m3", 4), caps, perWord, false, "tensor").earlyLoads,
    undefined,
  );
  assert.equal(kernelSpec(plan("fp8e4m3", 4), caps, {}, false, "token").earlyLoads, undefined);
  assert.equal(kernelSpec(plan("int8", 4), caps, { earlyLoads: false }).earlyLoads, undefined);
  assert.equal(kernelSpec(plan("int8", 4), caps, { intDots: false }).earlyLoads, undefined);
  assert.equal(kernelSpec(plan("int8", 1), caps).earlyLoads, undefined);
  assert.equal(kernelSpec(plan("int8", 1), caps, {}, true, "token").earlyLoads, undefined);
  assert.equal(kernelSpec(plan("f16", 4), caps).earlyLoads, undefined);
  assert.equal(kernelSpec(plan("f16", 4), caps, { earlyLoads: true }).earlyLoads, true);
  // Packed f16 keys (where the device has shader-f16) on 4- and 8-row blocks.
  const f16caps = { ...caps, shaderF16: true };
  for (const rows of [4, 8]) {
    const half = kernelSpec(plan("f16", rows), f16caps, { halfMath: true });
    assert.equal(half.earlyLoads, true, `${rows} rows`);
    assert.match(decodeKernelWGSL(half), /early \^= pack2x16float/);
  }
  assert.equal(kernelSpec(plan("f16", 1), f16caps, { halfMath: true }).earlyLoads, undefined);
  assert.equal(kernelSpec(plan("f16", 4), caps, { halfMath: true }).earlyLoads, undefined);
});

Deno.test("the groups of a subgroup add their states with shuffles first, as many as the smallest subgroup holds", () => {
  const tiles = tileConfig({ headDim: 128, rowsPerGroup: 4, kvDtype: "f16" });
  const problem = { headDim: 128, kvDtype: "f16" as const };
  const at = (subgroupMinSize: number, tuning = {}) =>
    kernelSpec({ problem, tiles }, { subgroups: true, subgroupMinSize }, tuning);
  // 8 lanes: four groups in a 32-lane subgroup, two in 16, none in 8 (or without subgroups).
  assert.equal(at(32).shuffleGroups, 4);
  assert.equal(at(16).shuffleGroups, 2);
  assert.equal(at(8).shuffleGroups, undefined);
  assert.equal(kernelSpec({ problem, tiles }).shuffleGroups, undefined);
  assert.equal(at(32, { shuffleGroups: 1 }).shuffleGroups, undefined, "tuning turns it off");
  assert.equal(at(32, { shuffleGroups: 2 }).shuffleGroups, 2, "tuning caps it");
  const four = at(32);
  const wgsl = decodeKernelWGSL(four);
  // Shuffles 8 and 16 lanes apart (one and two groups), for the maxima and the states.
  assert.ok(wgsl.includes("mg[0] = max(mg[0], subgroupShuffleXor(mg[0], 16u));"));
  assert.ok(wgsl.includes("o[15] += subgroupShuffleXor(o[15], 16u);"));
  assert.ok(wgsl.includes("if (g % 4u == 0u) {"), "only every fourth group posts");
  // A quarter of the groups post: all four rows in one round, each a chain of four additions.
  assert.ok(wgsl.includes("for (var gg = 1u; gg < 4u; gg++) { s += red[gg * 128u + e]; }"));
  assert.notEqual(specKey("decode", four), specKey("decode", at(32, { shuffleGroups: 1 })));
  assert.ok(decodeWorkgroupBytes(four) <= 16384, "within WebGPU's default workgroup memory");
  // Row sets: groups are lanes x row sets apart (16 threads), so a 32-lane subgroup holds two.
  const rowSets = at(32, { rowSets: 2 });
  assert.equal(rowSets.shuffleGroups, 2);
  assert.ok(decodeKernelWGSL(rowSets).includes("subgroupShuffleXor(o[7], 16u)"));
});
