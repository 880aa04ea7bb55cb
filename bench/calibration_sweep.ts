/**
 * Diagnostic of the lean grid's calibration (session 38): for kernel classes of several KV
 * dtypes, the probe's time at every probed grid size (the sweep `calibrateGrid` takes its grid
 * from), the grid its 1.5x rule picks and, for 8-bit classes after their f16 class, the grid by
 * the wave's step (`gridFromSweep` with `stepWithin`, what 8-bit classes take since session 38). Times are the
 * least of two sweeps after a 300 ms warm-up. Session 50: `--backend=dawn` and the matrix
 * kernel's classes (`m16:128:f16`, `m32`, `m64`: blocks of that many rows on Dawn's subgroup
 * matrices), with the grids of the tolerance rule at 1.25x (what they took until then) and at
 * 1.6x (since).
 *
 * Session 58: MLA's classes (`m16:576/512:f16`, head dims of K and V), each class swept
 * `--repeat` times, after `--idle` ms without GPU work (a long compile lets the clock fall) and a
 * warm-up of `--warmup` ms (the backend's classes after the first take 50), pieces of `--tokens`
 * tokens where asked (the probe's default otherwise), to see how often and why a class's grid
 * jumps (the MLA matrix class took 1010 workgroups once in session 57, 256-264 otherwise).
 *
 * Usage: deno run -A --unstable-webgpu bench/calibration_sweep.ts [--classes=r1:128:fp8e5m2,...]
 * [--max=1200] [--backend=webgpu|dawn] [--repeat=1] [--idle=0] [--warmup=300] [--tokens=N]
 * [--out=FILE.json]
 *
 * @module
 */

import type { KVDtype } from "../src/core/problem.ts";
import { BufferPool } from "../src/gpu/buffer_pool.ts";
import { calibrationProbe } from "../src/gpu/calibration_probe.ts";
import { calibrateGrid, gridFromSweep } from "../src/gpu/device_profile.ts";
import { acceptsSubgroupsDirective, kernelCaps, requestDevice } from "../src/gpu/gpu_runtime.ts";
import { loadDawn } from "../dawn.ts";
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
    const matrix = r.startsWith("m");
    const [headDim, headDimV] = d.split("/").map(Number);
    return {
      rows: Number(r.slice(1)),
      headDim,
      headDimV: headDimV ?? headDim,
      kvDtype: dtype as KVDtype,
      matrix,
    };
  });
const maxSize = Number(args.get("max") ?? 1200);
const repeat = Number(args.get("repeat") ?? 1);
const idleMs = Number(args.get("idle") ?? 0);
const warmupMs = Number(args.get("warmup") ?? 300);
const tokens = args.has("tokens") ? Number(args.get("tokens")) : undefined;

const gpu = args.get("backend") === "dawn" ? await loadDawn() : navigator.gpu;
const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) throw new Error("no WebGPU adapter");
const device = await requestDevice(adapter);
const caps = kernelCaps(device, adapter.info);
const pipelines = new PipelineCache(device, {
  enableDirective: await acceptsSubgroupsDirective(device),
});
const report: unknown[] = [];
for (
  const { rows, headDim, headDimV, kvDtype, matrix } of classes.flatMap((c) =>
    Array.from({ length: repeat }, () => c)
  )
) {
  if (idleMs > 0) await new Promise((resolve) => setTimeout(resolve, idleMs));
  const pool = new BufferPool(device);
  const { probe, key, classKey } = calibrationProbe(
    device,
    pool,
    pipelines,
    false,
    matrix ? { matrixUnits: true } : {},
    (plan) => kernelSpec(plan, caps, matrix ? { matrixMath: true } : {}),
    rows,
    headDim,
    headDimV,
    kvDtype,
    tokens,
  );
  let sweep: { sizes: readonly number[]; times: readonly number[] } | undefined;
  const grid = await calibrateGrid(device, probe, {
    warmupMs,
    sweeps: 2,
    maxSize,
    onTimes: (sizes, times) => (sweep = { sizes, times }),
  });
  pool.destroy();
  // 8-bit classes: the grid by the wave's step up to the f16 class's grid (kv_class_grids.ts).
  const f16Grid = (report as { classKey: string; grid?: number }[])
    .find((r) => r.classKey === classKey.split(" ").slice(0, 2).join(" "))?.grid;
  const step = sweep && f16Grid !== undefined && classKey.split(" ").length > 2
    ? gridFromSweep(sweep.sizes, sweep.times, 1.5, f16Grid)
    : undefined;
  if (sweep && matrix) {
    console.log(
      `  matrix class: 1.25x rule ${gridFromSweep(sweep.sizes, sweep.times, 1.25)}, 1.6x rule ${
        gridFromSweep(sweep.sizes, sweep.times, 1.6)
      }`,
    );
  }
  console.log(
    `${classKey} (${key}): grid ${grid}${step === undefined ? "" : `, by the wave's step ${step}`}`,
  );
  if (sweep) {
    const base = Math.min(...sweep.times.slice(0, 4));
    const line = sweep.sizes.map((n, i) => `${n}:${(sweep!.times[i] / base).toFixed(2)}`);
    console.log(`  one workgroup ${base.toFixed(4)} ms; time over it: ${line.join(" ")}`);
  }
  report.push({ classKey, key, grid, ...(step === undefined ? {} : { step }), ...sweep });
}
const out = args.get("out");
if (out) await Deno.writeTextFile(out, JSON.stringify(report, null, 1));
device.destroy();
