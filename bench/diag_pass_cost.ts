/**
 * Diagnostic of issue 13 (session 22): why a lean pass timed alone between its timestamps takes
 * longer than the same pass among back-to-back ones (GQA 32/8 32k: 0.068 against 0.050 ms, where
 * PyTorch's lone call costs 1-3 us more than its calls back to back). For a few shapes, after
 * 400 ms of warm passes in the same submission, timed passes of N recordings each (N = 1 to 32:
 * the time per recording falls as a + b / N if a pass pays a fixed cost a once), and variants at
 * N = 1 and 16: an empty dispatch first in each timed pass (does the first dispatch of a pass pay
 * for starting?), and the decode dispatch alone (the merge skipped; outputs not read).
 *
 * Usage: deno run -A --unstable-webgpu bench/diag_pass_cost.ts [--only=SUBSTRING|...] [--out=FILE]
 */

import { createWebGPUBackend } from "../src/gpu/open_backend.ts";
import type { WebGPUBackend } from "../src/gpu/webgpu_backend.ts";
import { requestDevice } from "../src/gpu/gpu_runtime.ts";
import { median, timeWarm } from "../src/gpu/gpu_timing.ts";
import { gridFor } from "../src/plan/backend.ts";
import { planProblem } from "../src/plan/plan.ts";
import { tileConfig } from "../src/plan/tiles.ts";
import { resolveScale, validateInput } from "../src/core/problem.ts";
import { diagCases, installDispatchFilter } from "./diag_lib.ts";
import type { BenchCase } from "./bench_cases.ts";

const flag = (name: string) => Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
const only = flag("only")?.split("|");
const out = flag("out");
const filter = installDispatchFilter();

const shape = (name: string, ctx: number, heads: number, kvHeads: number): BenchCase => ({
  name,
  group: "diag",
  seqLens: [ctx * 1024],
  numHeads: heads,
  numKVHeads: kvHeads,
  headDim: 128,
  qLen: 1,
  kvDtype: "f16",
});
const cases = [
  shape("gqa32/8 32k", 32, 32, 8),
  shape("gqa32/8 128k", 128, 32, 8),
  shape("b1 h32 32k", 32, 32, 32),
  shape("b1 h32 128k", 128, 32, 32),
];

const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) throw new Error("no WebGPU adapter");
const device = await requestDevice(adapter);
const backend = await createWebGPUBackend({ device, flavor: "webgpu" }) as WebGPUBackend;
const empty = device.createComputePipeline({
  layout: "auto",
  compute: {
    module: device.createShaderModule({ code: "@compute @workgroup_size(64) fn main() {}" }),
    entryPoint: "main",
  },
});

const counts = [1, 2, 4, 8, 16, 32];
const variants = ["empty first", "decode only"];
console.log(
  `ms per recording, timed passes of N recordings (median of 25 after 400 ms warm); ${
    variants.join(", ")
  } at N = 1 / 16`,
);
console.log(
  `${"case".padEnd(14)}${counts.map((n) => `N=${n}`.padStart(9)).join("")}${
    variants.map((v) => v.padStart(20)).join("")
  }   fixed us  per-rec us`,
);
const rows = [];
for (const { c, input, kvSets } of diagCases(cases, only)) {
  const problem = validateInput(input);
  const grid = gridFor(backend.profile, tileConfig(problem, {}).rowsPerBlock, problem.headDim);
  const plan = planProblem(problem, { strategy: "lean", grid });
  const bound = Array.from(
    { length: kvSets },
    (_, i) => backend.bind(plan, input, resolveScale(input), i),
  );
  let next = 0;
  const recordOne = (pass: GPUComputePassEncoder) => backend.record(pass, bound[next++ % kvSets]);
  const timeN = async (n: number, first?: (pass: GPUComputePassEncoder) => void) => {
    const t = await timeWarm(device, (pass) => {
      first?.(pass);
      for (let k = 0; k < n; k++) recordOne(pass);
    }, { runs: 25, warmupMs: 400, warmRecord: recordOne });
    return median(t.samplesMs) / n;
  };
  const perN: number[] = [];
  for (const n of counts) perN.push(await timeN(n));
  const emptyFirst = (pass: GPUComputePassEncoder) => {
    pass.setPipeline(empty);
    pass.dispatchWorkgroups(1);
  };
  const variantMs: [number, number][] = [[await timeN(1, emptyFirst), await timeN(16, emptyFirst)]];
  filter.skip = "merge";
  variantMs.push([await timeN(1), await timeN(16)]);
  filter.skip = undefined;
  // Least squares of t(N) * N = a + b * N over the counts: a is the pass's fixed cost.
  const xs = counts, ys = counts.map((n, i) => perN[i] * n);
  const mx = xs.reduce((s, x) => s + x, 0) / xs.length;
  const my = ys.reduce((s, y) => s + y, 0) / ys.length;
  const b = xs.reduce((s, x, i) => s + (x - mx) * (ys[i] - my), 0) /
    xs.reduce((s, x) => s + (x - mx) ** 2, 0);
  const a = my - b * mx;
  console.log(
    `${c.name.padEnd(14)}${perN.map((x) => x.toFixed(4).padStart(9)).join("")}${
      variantMs.map(([x, y]) => `${x.toFixed(4)} / ${y.toFixed(4)}`.padStart(20)).join("")
    }${(a * 1e3).toFixed(1).padStart(11)}${(b * 1e3).toFixed(1).padStart(12)}`,
  );
  rows.push({
    name: c.name,
    counts,
    perRecordingMs: perN,
    variants,
    variantMs,
    fixedMs: a,
    perMs: b,
  });
}
if (out) {
  await Deno.writeTextFile(out, JSON.stringify({ adapter: backend.profile.name, rows }, null, 1));
}
await backend.dispose();
