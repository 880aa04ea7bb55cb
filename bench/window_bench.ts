/**
 * What a sliding window costs: decode kernel time of a 128k-token context with `slidingWindow`
 * 4096 against a plain 4k context and a plain 128k one (one sequence, 32 query / 8 KV heads x
 * 128, f16 KV, lean), on a warm GPU (see the README's Performance section on warming up). The
 * issue's target: the windowed 128k case within 1.2x of the 4k case. Prints one JSON line per
 * case and a summary line.
 *
 * ```sh
 * deno run -A bench/window_bench.ts [--backend webgpu|dawn] [--runs 20] [--divide 1]
 * ```
 *
 * @module
 */

import "../dawn.ts";
import { createDecoder, type DecodeInput } from "../mod.ts";

function arg(name: string, fallback: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && Deno.args[i + 1] !== undefined ? Deno.args[i + 1] : fallback;
}

const backend = arg("backend", "webgpu") as "webgpu" | "dawn";
const runs = Number(arg("runs", "20"));
/** Divides contexts and window (a quick run on a software adapter). */
const divide = Number(arg("divide", "1"));
const shape = { numHeads: 32, numKVHeads: 8, headDim: 128, kvDtype: "f16" as const };
const cases = [
  { name: "4k plain", context: 4096 / divide },
  { name: "128k window 4096", context: 131072 / divide, slidingWindow: 4096 / divide },
  { name: "128k plain", context: 131072 / divide },
];

const decoder = await createDecoder({ backend });
const results: Record<string, number> = {};
try {
  for (const c of cases) {
    // The kernels read the same bytes whatever they hold: zero-filled K and V.
    const kv = new Uint16Array(c.context * shape.numKVHeads * shape.headDim);
    const input: DecodeInput = {
      ...shape,
      q: new Float32Array(shape.numHeads * shape.headDim).fill(0.01),
      k: kv,
      v: kv,
      seqLens: [c.context],
      ...(c.slidingWindow ? { slidingWindow: c.slidingWindow } : {}),
    };
    const plan = decoder.plan(input);
    const t = await decoder.timeKernels(input, { runs, warmup: 3, kvSets: 1, warmupMs: 400 });
    results[c.name] = t.medianMs;
    console.log(JSON.stringify({
      case: c.name,
      backend,
      device: decoder.profile.name,
      medianMs: t.medianMs,
      tiles: plan.numTiles,
      workgroups: plan.schedule.workgroups,
    }));
  }
  console.log(JSON.stringify({
    windowedOver4k: results["128k window 4096"] / results["4k plain"],
    plainOverWindowed: results["128k plain"] / results["128k window 4096"],
    target: "windowedOver4k <= 1.2",
  }));
} finally {
  await decoder.dispose();
}
