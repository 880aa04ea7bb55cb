/**
 * Whether `timeKernels` alone stalls a Dawn decoder under Deno (session 44: the reliability test
 * "timeKernels while decodes are in flight" stopped in its fourth timing call through Dawn on the
 * H200 under `deno test`, in five runs out of five, collecting garbage after each decode or not).
 * A plain script, no test harness: one Dawn decoder at a fixed grid times the test's 940-token
 * GQA input `--calls` times one after another, first with the default 400 ms warm-up (tens of
 * thousands of recordings in one submission for so small a decode), then with none, stamping each
 * call's wall time and the GPU's warm-up time and per-run time.
 *
 * Run (on a machine with a GPU, under a time limit: a stalled call never returns):
 *   timeout 60 deno run -A --unstable-webgpu bench/dawn_timing_stall.ts [--calls=8] [--grid=264]
 *
 * @module
 */

import "../dawn.ts";
import { createDecoder } from "../mod.ts";
import { makeInput } from "../tests/helpers.ts";
import { F32_GQA } from "../tests/kernel_set.ts";

const flag = (name: string, fallback: number): number => {
  const arg = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.slice(name.length + 3)) : fallback;
};
const CALLS = flag("calls", 8);
const GRID = flag("grid", 264);

const t0 = performance.now();
const stamp = (text: string) =>
  console.log(`[${((performance.now() - t0) / 1e3).toFixed(3)} s] ${text}`);

const decoder = await createDecoder({ backend: "dawn", grid: GRID });
stamp(`dawn decoder on ${decoder.profile.name}, grid ${decoder.profile.grid}`);
const input = makeInput({ ...F32_GQA, seqLens: [900, 40], seed: 700 });
await decoder.decode(input);
for (const warmupMs of [400, 0]) {
  for (let i = 0; i < CALLS; i++) {
    const start = performance.now();
    const t = await decoder.timeKernels(input, { runs: 1, warmup: 0, warmupMs });
    stamp(
      `warmupMs ${warmupMs} call ${i}: ${(performance.now() - start).toFixed(0)} ms wall, ` +
        `warm ${t.warmMs.toFixed(1)} ms at ${t.lastWarmMs.toFixed(4)} ms per run ` +
        `(about ${Math.round(t.warmMs / t.lastWarmMs)} runs), timed ${t.medianMs.toFixed(4)} ms`,
    );
  }
}
await decoder.dispose();
stamp("done");
