/**
 * Lean grids of 8-bit kernel classes (session 38, src/gpu/kv_class_grids.ts): an 8-bit kernel
 * may keep more registers than its class's f16 kernel, so its class is calibrated apart, with
 * its own kernel, the first time a decode, warm-up or timing needs it. Checked on the host: the
 * class keys and `gridFor`'s choice, which problems need a calibration, and that the decoder
 * lets its backend calibrate before it plans (a CPU backend with a stub calibration); on the
 * software adapter: a calibration of an E4M3 class, shared by concurrent calls.
 *
 * @module
 */

import assert from "node:assert/strict";
import { referenceAttention } from "../mod.ts";
import type { Backend, DeviceProfile } from "../src/plan/backend.ts";
import { gridFor } from "../src/plan/backend.ts";
import { DecoderImpl } from "../src/decoder.ts";
import { createCpuBackend } from "../src/cpu/cpu_backend.ts";
import { gridClassKey } from "../src/kernels/kernel_table.ts";
import { kvClassCalibrator, missingKVClass } from "../src/gpu/kv_class_grids.ts";
import { gridFromSweep, sizeBeforeStep } from "../src/gpu/device_profile.ts";
import { validateShape } from "../src/core/problem.ts";
import { deviceTest } from "./gpu_device.ts";
import { makeInput, relativeL2Error } from "./helpers.ts";

const CALIBRATED: DeviceProfile = {
  name: "gpu",
  grid: 502,
  source: "calibrated",
  gridByRows: { 1: 502, 2: 502, 4: 264, 8: 264 },
  gridByClass: { "r1 d128": 502, "r4 d128": 264, "r1 d64": 755, "tiled r64": 131 },
};

Deno.test("kv class grids: 8-bit classes are keyed apart and chosen first", () => {
  assert.equal(gridClassKey(128, 1, "fp8e4m3"), "r1 d128 fp8e4m3");
  assert.equal(gridClassKey(128, 4, "int8"), "r4 d128 int8");
  for (const kvDtype of ["f16", "bf16", "f32"] as const) {
    assert.equal(gridClassKey(128, 1, kvDtype), "r1 d128");
  }
  // The tiled kernel's classes have no dtype of their own.
  assert.equal(gridClassKey(576, 64, "int8"), "tiled r64");
  const profile = {
    ...CALIBRATED,
    gridByClass: { ...CALIBRATED.gridByClass, "r1 d128 int8": 256 },
  };
  assert.equal(gridFor(profile, 1, 128, "int8"), 256);
  // Without a grid of its own, the class's; other dtypes never see it.
  assert.equal(gridFor(profile, 1, 128, "fp8e4m3"), 502);
  assert.equal(gridFor(profile, 1, 128, "f16"), 502);
  assert.equal(gridFor(profile, 4, 128, "int8"), 264);
});

Deno.test("kv class grids: the wave's step picks the H200's best grids of its probe sweeps", () => {
  // The probe's time over one workgroup's at sizes 117-598 on the H200 (session 38,
  // bench/results/h200_session24/sweep/sweep.txt): 132 multiprocessors; 1-row d128 E5M2 and
  // int8 kernels fit four workgroups on each, E4M3 (236 registers) and the 4-row ones two.
  const sizes = [
    117,
    124,
    131,
    139,
    147,
    249,
    264,
    280,
    297,
    375,
    398,
    422,
    474,
    502,
    532,
    564,
    598,
  ];
  const sweeps = {
    e5m2: [
      1.05,
      1.04,
      1.06,
      1.21,
      1.2,
      1.22,
      1.25,
      1.42,
      1.42,
      1.41,
      1.58,
      1.6,
      1.6,
      1.61,
      2.07,
      2.34,
      2.39,
    ],
    int8: [
      1.07,
      1.07,
      1.07,
      1.26,
      1.24,
      1.25,
      1.25,
      1.34,
      1.34,
      1.39,
      1.62,
      1.66,
      1.65,
      1.63,
      2.05,
      2.28,
      2.3,
    ],
    e4m3: [
      1.03,
      1.03,
      1.03,
      1.35,
      1.35,
      1.37,
      1.36,
      1.89,
      1.89,
      1.9,
      2.31,
      2.32,
      2.32,
      2.33,
      2.8,
      2.82,
      2.82,
    ],
    r4int8: [
      1.04,
      1.03,
      1.04,
      1.28,
      1.29,
      1.29,
      1.3,
      1.87,
      1.87,
      1.91,
      2.24,
      2.25,
      2.26,
      2.27,
      2.72,
      2.76,
      2.76,
    ],
  };
  assert.equal(sizeBeforeStep(sizes, sweeps.e5m2, 502), 502);
  assert.equal(sizeBeforeStep(sizes, sweeps.int8, 502), 502);
  assert.equal(sizeBeforeStep(sizes, sweeps.e4m3, 502), 264);
  assert.equal(sizeBeforeStep(sizes, sweeps.r4int8, 264), 264);
  // Never beyond the f16 class's grid: the steps past it are not looked at.
  assert.equal(sizeBeforeStep(sizes, sweeps.e5m2, 375), 131);
  // The calibration's grid: the step's size, never below the 1.5x rule's (which stops E5M2 and
  // int8 at 375), never above the f16 class's grid.
  assert.equal(gridFromSweep(sizes, sweeps.e5m2, 1.5), 375);
  assert.equal(gridFromSweep(sizes, sweeps.e5m2, 1.5, 502), 502);
  assert.equal(gridFromSweep(sizes, sweeps.int8, 1.5, 502), 502);
  assert.equal(gridFromSweep(sizes, sweeps.e4m3, 1.5, 502), 264);
  assert.equal(gridFromSweep(sizes, sweeps.r4int8, 1.5, 264), 264);
  assert.equal(gridFromSweep(sizes, sweeps.e5m2, 1.5, 375), 375);
  // A kernel that fits more workgroups than its f16 class's grid: its largest step up to that
  // grid is where workgroups begin to share a multiprocessor (1-row E5M2 at 2 tokens per step
  // took 131 by the step alone on the H200, session 38; this sweep is one shaped like it, not a
  // measured one); the 1.5x rule's size keeps it at the f16 grid.
  const light = [
    1.0,
    1.0,
    1.0,
    1.15,
    1.15,
    1.17,
    1.18,
    1.2,
    1.21,
    1.23,
    1.26,
    1.27,
    1.29,
    1.31,
    1.4,
    1.45,
    1.48,
  ];
  assert.equal(sizeBeforeStep(sizes, light, 502), 131);
  assert.equal(gridFromSweep(sizes, light, 1.5, 502), 502);
});

Deno.test("kv class grids: only a calibrated profile's missing 8-bit classes need one", () => {
  const problem = (
    headDim: number,
    numHeads: number,
    kvDtype: "int8" | "fp8e4m3" | "f16",
    headDimV = headDim,
  ) =>
    validateShape({
      seqLens: [100],
      numHeads,
      numKVHeads: 1,
      headDim,
      headDimV,
      kvDtype,
    });
  assert.equal(missingKVClass(CALIBRATED, problem(128, 1, "fp8e4m3"), {}), "r1 d128 fp8e4m3");
  assert.equal(missingKVClass(CALIBRATED, problem(128, 4, "int8"), {}), "r4 d128 int8");
  assert.equal(missingKVClass(CALIBRATED, problem(64, 1, "int8"), {}), "r1 d64 int8");
  // f16, a class already calibrated, MLA (V rows of their own length, the tiled kernel's
  // blocks or not), a profile from the table or from the caller's grid: none.
  assert.equal(missingKVClass(CALIBRATED, problem(128, 1, "f16"), {}), undefined);
  const has = { ...CALIBRATED, gridByClass: { "r1 d128 fp8e4m3": 256 } };
  assert.equal(missingKVClass(has, problem(128, 1, "fp8e4m3"), {}), undefined);
  assert.equal(missingKVClass(CALIBRATED, problem(576, 16, "int8", 512), {}), undefined);
  const tiled = { ...CALIBRATED, matrixBlocks: true };
  assert.equal(missingKVClass(tiled, problem(576, 64, "int8", 512), {}), undefined);
  // MQA at d576 (K and V rows alike) takes the decode kernel's 4-row blocks: a class of its own.
  assert.equal(missingKVClass(tiled, problem(576, 64, "int8"), {}), "r4 d576 int8");
  for (const source of ["table", "option", "builtin"] as const) {
    const other = { ...CALIBRATED, source };
    assert.equal(missingKVClass(other, problem(128, 1, "int8"), {}), undefined, source);
  }
  assert.equal(
    missingKVClass({ name: "gpu", grid: 8, source: "calibrated" }, problem(128, 1, "int8"), {}),
    undefined,
  );
});

Deno.test("kv class grids: the decoder lets its backend calibrate before it plans", async () => {
  // The CPU backend under a calibrated-looking profile whose int8 class calibrates to 3.
  const cpu = createCpuBackend(16);
  let profile: DeviceProfile = { ...CALIBRATED, gridByClass: { "r1 d64": 16 } };
  const calls: string[] = [];
  const prepared: number[] = [];
  const backend: Backend = {
    name: "cpu",
    get profile() {
      return profile;
    },
    run: (plan, input, scale) => cpu.run(plan, input, scale),
    time: (plan, input, scale, options) => cpu.time(plan, input, scale, options),
    stats: () => cpu.stats(),
    prepare: (plan) => void prepared.push(plan.grid),
    dispose: () => cpu.dispose(),
    calibrate(problem) {
      const key = missingKVClass(profile, problem, {});
      calls.push(key ?? "none");
      if (key === undefined) return undefined;
      return new Promise((resolve) => setTimeout(resolve, 5)).then(() => {
        profile = { ...profile, gridByClass: { ...profile.gridByClass, [key]: 3 } };
      });
    },
  };
  const decoder = new DecoderImpl(backend, {}, false);
  try {
    const input = makeInput({
      seqLens: [300, 40],
      numHeads: 2,
      numKVHeads: 2,
      headDim: 64,
      kvDtype: "int8",
      seed: 5,
    });
    // A plan before any decode takes the class's grid; the decode calibrates, then plans. The
    // call takes its input at call time: arrays changed while it calibrates change nothing.
    assert.equal(decoder.plan(input).grid, 16);
    const want = referenceAttention(input).out;
    const kept = { q: input.q.slice(), k: input.k.slice(), v: input.v!.slice() };
    const call = decoder.decode(input);
    input.q.fill(0.25);
    input.k.fill(-3);
    input.v!.fill(7);
    const { out } = await call;
    assert.deepEqual(calls, ["r1 d64 int8"]);
    assert.equal(decoder.plan(input).grid, 3);
    const error = relativeL2Error(out, want);
    assert.ok(error < 1e-5, `relative L2 error ${error}`);
    input.q.set(kept.q);
    input.k.set(kept.k as Int8Array);
    input.v!.set(kept.v as Int8Array);
    // Warm-ups and timings ask too (a no-op once the class has its grid), f16 finds none.
    await decoder.warmup(input);
    await decoder.timeKernels(input, { runs: 1, warmup: 0 });
    await decoder.decode(
      makeInput({
        seqLens: [50],
        numHeads: 1,
        numKVHeads: 1,
        headDim: 64,
        kvDtype: "f16",
        seed: 6,
      }),
    );
    assert.deepEqual(calls, ["r1 d64 int8", "none", "none", "none"]);
    assert.deepEqual(prepared, [3, 3, 3]);
    // A warm-up of a class not calibrated yet prepares its plans at the class's new grid.
    const e4m3 = { ...input, kvDtype: "fp8e4m3" as const };
    assert.equal(decoder.plan(e4m3).grid, 16);
    await decoder.warmup(e4m3);
    assert.deepEqual(calls.slice(4), ["r1 d64 fp8e4m3"]);
    assert.deepEqual(prepared.slice(3), [3, 3, 3]);
  } finally {
    await decoder.dispose();
  }
  // dispose() waits for a call that is still calibrating, and for its run after it.
  profile = { ...CALIBRATED, gridByClass: { "r1 d64": 16 } };
  const second = new DecoderImpl(backend, {}, false);
  const input = makeInput({
    seqLens: [90],
    numHeads: 1,
    numKVHeads: 1,
    headDim: 64,
    kvDtype: "int8",
    seed: 7,
  });
  const call = second.decode(input);
  await second.dispose();
  const error = relativeL2Error((await call).out, referenceAttention(input).out);
  assert.ok(error < 1e-5, `relative L2 error ${error} after dispose`);
});

await deviceTest(
  "kv class grids: an E4M3 class calibrates once with its own kernel",
  async (gpu) => {
    const { device } = gpu;
    const { PipelineCache } = await import("../src/gpu/pipeline_cache.ts");
    const { kernelCaps } = await import("../src/gpu/gpu_runtime.ts");
    const keys: string[] = [];
    const heard: string[] = [];
    const pipelines = new PipelineCache(device, {}, (key) => keys.push(key));
    const calibrate = kvClassCalibrator({
      device,
      description: `${gpu.adapter.info.description} (kv class test)`,
      pipelines,
      caps: kernelCaps(device, gpu.adapter.info),
      tuning: {},
      tileOptions: {},
      software: true,
      onProgress: (p) => heard.push(`${p.stage}: ${p.message}`),
    });
    const problem = validateShape({
      seqLens: [100],
      numHeads: 2,
      numKVHeads: 2,
      headDim: 32,
      kvDtype: "fp8e4m3",
    });
    const profile = { ...CALIBRATED, gridByClass: { "r1 d64": 7 } };
    const [a, b] = await Promise.all([calibrate(profile, problem), calibrate(profile, problem)]);
    assert.ok(a !== undefined && b !== undefined);
    assert.equal(a.key, "r1 d64 fp8e4m3");
    assert.ok(Number.isInteger(a.grid) && a.grid >= 1 && a.grid <= 64, `grid ${a.grid}`);
    assert.deepEqual(b, a);
    assert.deepEqual(heard, ["calibrate: calibrating the lean grid of the r1 d64 fp8e4m3 class"]);
    // One decode kernel compiled for both calls: the class's E4M3 kernel at head dim 64.
    assert.equal(pipelines.created, 1);
    assert.ok(keys[0].includes(":fp8e4m3:") && keys[0].startsWith("decode:d64:"), keys[0]);
    // A class that has its grid needs none.
    const done = { ...profile, gridByClass: { ...profile.gridByClass, [a.key]: a.grid } };
    assert.equal(await calibrate(done, problem), undefined);
  },
  { names: ["webgpu"] },
);
