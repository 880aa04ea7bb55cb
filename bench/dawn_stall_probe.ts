/**
 * Where a Dawn decoder under Deno stops making progress (bench/notes.md, sessions 30-31: the
 * kernel options test through Dawn on the H200 stalled for minutes at a different test in each
 * run, with or without a garbage collection after each decode). This walks the test's steps one
 * by one (open a decoder of a kernel tuning, decode each shape with lean and split, dispose;
 * request an adapter as the packed f16 test does), stamps each step's start and end, and while a
 * step waits reports every 5 s. A step that waits `--nudge-s` seconds gets one nudge (a garbage
 * collection, then an empty submission on the stalled decoder's device where there is one), so
 * the log says whether the wait ends right after it.
 *
 * Run (on a machine with a GPU): deno run -A --unstable-webgpu --v8-flags=--expose-gc
 *   bench/dawn_stall_probe.ts [--rounds=3] [--nudge-s=20]
 *
 * @module
 */

import "../dawn.ts";
import { loadDawn } from "../dawn.ts";
import { createDecoder, type DecodeInput, type KernelTuning, type Strategy } from "../mod.ts";
import { assertMatchesReference, makeInput } from "../tests/helpers.ts";
import { KERNEL_OPTION_SHAPES as SHAPES } from "../tests/kernel_set.ts";

const flag = (name: string, fallback: number): number => {
  const arg = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.slice(name.length + 3)) : fallback;
};
const ROUNDS = flag("rounds", 3);
const NUDGE_S = flag("nudge-s", 20);

const STRATEGIES: Strategy[] = ["lean", "split"];

/** The test's tunings, in its order. */
const TUNINGS: KernelTuning[] = [
  { prefetch: "split", queryShared: true },
  { fmaDots: false },
  { halfMath: true },
  {},
  { rowScatter: true },
  { rowScatter: true, vPerToken: true, fastSteps: false },
];

const start = performance.now();
const now = () => ((performance.now() - start) / 1000).toFixed(2).padStart(7);
const gc = (globalThis as { gc?: () => void }).gc;

/** Runs one step, stamped, with a 5 s progress line and one nudge after `NUDGE_S` s. */
async function step<T>(label: string, work: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  console.log(`${now()} s  start ${label}`);
  let nudged = false;
  const timer = setInterval(() => {
    const waited = (performance.now() - t0) / 1000;
    console.log(`${now()} s  still in ${label} (${waited.toFixed(0)} s)`);
    if (!nudged && waited >= NUDGE_S) {
      nudged = true;
      console.log(`${now()} s  nudge: gc ${gc ? "yes" : "unavailable"}`);
      gc?.();
    }
  }, 5000);
  try {
    const result = await work();
    const ms = performance.now() - t0;
    console.log(`${now()} s  end   ${label} (${ms.toFixed(0)} ms)${nudged ? " AFTER NUDGE" : ""}`);
    return result;
  } finally {
    clearInterval(timer);
  }
}

for (let round = 1; round <= ROUNDS; round++) {
  for (const kernel of TUNINGS) {
    const name = `r${round} ${JSON.stringify(kernel)}`;
    if (kernel.halfMath) {
      await step(`${name} requestAdapter`, async () => {
        const adapter = await (await loadDawn()).requestAdapter({
          powerPreference: "high-performance",
        });
        return adapter?.features.has("shader-f16");
      });
    }
    const decoder = await step(`${name} open`, () => createDecoder({ backend: "dawn", kernel }));
    for (const spec of SHAPES) {
      for (const strategy of STRATEGIES) {
        const input: DecodeInput = { ...makeInput(spec), strategy };
        const out = await step(`${name} ${spec.kvDtype} ${strategy}`, () => decoder.decode(input));
        // halfMath changes the result within its f16 tolerance; the others must match.
        if (!kernel.halfMath) assertMatchesReference(input, out, `${spec.kvDtype} ${strategy}`);
      }
    }
    await step(`${name} dispose`, () => decoder.dispose());
  }
}
console.log(`${now()} s  all steps done`);
