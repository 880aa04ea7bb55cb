/**
 * Diagnostic of the lean grid's calibration (session 38): for kernel classes of several KV
 * dtypes, the probe's time at every probed grid size (the sweep `calibrateGrid` takes its grid
 * from), and the grid it picks, so a class whose calibrated grid runs decodes slower than its f16
 * class's grid can be looked at. Times are the least of two sweeps after a 300 ms warm-up.
 *
 * Usage: deno run -A --unstable-webgpu bench/calibration_sweep.ts [--classes=r1:128:fp8e5m2,...]
 * [--max=1200] [--out=FILE.json]
 *
 * @module
 */

import type { KVDtype } from "../src/core/problem.ts";
import { BufferPool } from "../src/gpu/buffer_pool.ts";
import { calibrationProbe } from "../src/gpu/calibration_probe.ts";
import { calibrateGrid } from "../src/gpu/device_profile.ts";
import { kernelCaps, requestDevice } from "../src/gpu/gpu_runtime.ts";
import { kernelSpec } from "../src/gpu/kernel_choice.ts";
import { PipelineCache } from "../src/gpu/pipeline_cache.ts";

const args = new Map(
  Deno.args.map((a) => {
    const [k, ...v] = a.replace(/^--/, "").split("=");
    return [k, v.join("=")] as [string, string];
  }),
);
const classes = (args.get("classes") ??
  "r1:128:f16,r1:128:fp8e5m2,r1:128:fp8e4m3,r1:128:int8,r4:128:f16,r4:128:int8,r4:128:fp8e4m3")
  .split(",").map((c) => {
    const [r, d, dtype] = c.split(":");
    return { rows: Number(r.slice(1)), headDim: Number(d), kvDtype: dtype as KVDtype };
  });
const maxSize = Number(args.get("max") ?? 1200);

const adapter = await navigator.gpu.requestAdapter();
if (!adapter) throw new Error("no WebGPU adapter");
const device = await requestDevice(adapter);
const caps = kernelCaps(device, adapter.info);
const pipelines = new PipelineCache(device);
const report: unknown[] = [];
for (const { rows, headDim, kvDtype } of classes) {
  const pool = new BufferPool(device);
  const { probe, key, classKey } = calibrationProbe(
    device,
    pool,
    pipelines,
    false,
    {},
    (plan) => kernelSpec(plan, caps, {}),
    rows,
    headDim,
    headDim,
    kvDtype,
  );
  let sweep: { sizes: readonly number[]; times: readonly number[] } | undefined;
  const grid = await calibrateGrid(device, probe, {
    warmupMs: 300,
    sweeps: 2,
    maxSize,
    onTimes: (sizes, times) => (sweep = { sizes, times }),
  });
  pool.destroy();
  console.log(`${classKey} (${key}): grid ${grid}`);
  if (sweep) {
    const base = Math.min(...sweep.times.slice(0, 4));
    const line = sweep.sizes.map((n, i) => `${n}:${(sweep!.times[i] / base).toFixed(2)}`);
    console.log(`  time over one workgroup's: ${line.join(" ")}`);
  }
  report.push({ classKey, key, grid, ...sweep });
}
const out = args.get("out");
if (out) await Deno.writeTextFile(out, JSON.stringify(report, null, 1));
device.destroy();
