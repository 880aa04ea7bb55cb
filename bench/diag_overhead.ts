/**
 * Diagnostic of issue 13 (session 19): where the fixed cost of the multi-row (GQA) kernels comes
 * from. Times lean on GQA 32/8 and MHA 32/32 (d128, f16 KV, one sequence) over contexts of 2k to
 * 512k, with variations: the whole program; the decode dispatch alone (the merge skipped, by
 * wrapping the pass encoder: for this diagnostic only, its outputs are not read); the lean grid
 * forced to one and to four workgroups per multiprocessor; 64-thread workgroups. Prints median
 * and last-warm-pass times per case and variant.
 *
 * `--grids=N,...` replaces the variations with lean at those grids (all resident: below the
 * calibrated grid), `--only=SUBSTRING|...` keeps the cases whose names contain one.
 *
 * Usage: deno run -A --unstable-webgpu bench/diag_overhead.ts [--grids=...] [--only=...]
 *        [--out=FILE.json]
 */

import type { DecoderOptions } from "../mod.ts";
import { diagCases, installDispatchFilter, timeLeanCell } from "./diag_lib.ts";
import { requestDevice } from "../src/gpu/gpu_runtime.ts";
import type { BenchCase } from "./bench_cases.ts";

const flag = (name: string) => Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
const out = flag("out");
const grids = flag("grids")?.split(",").map(Number);
const only = flag("only")?.split("|");
const filter = installDispatchFilter();

const kib = (n: number) => n * 1024;
const cases: BenchCase[] = [];
for (const ctx of [2, 8, 32, 128, 512]) {
  cases.push({
    name: `gqa32/8 ${ctx}k`,
    group: "diag",
    seqLens: [kib(ctx)],
    numHeads: 32,
    numKVHeads: 8,
    headDim: 128,
    qLen: 1,
    kvDtype: "f16",
  });
}
for (const ctx of [2, 8, 32, 128]) {
  cases.push({
    name: `b1 h32 ${ctx}k`,
    group: "diag",
    seqLens: [kib(ctx)],
    numHeads: 32,
    numKVHeads: 32,
    headDim: 128,
    qLen: 1,
    kvDtype: "f16",
  });
}
cases.push({
  name: "b16 16k",
  group: "diag",
  seqLens: Array(16).fill(kib(16)),
  numHeads: 32,
  numKVHeads: 8,
  headDim: 128,
  qLen: 1,
  kvDtype: "f16",
});
type Variant = { name: string; options: Partial<DecoderOptions>; noMerge?: boolean };
const variants: Variant[] = grids
  ? grids.map((g) => ({ name: `grid ${g}`, options: { grid: g } }))
  : [
    { name: "lean", options: {} },
    { name: "no merge", options: {}, noMerge: true },
    { name: "grid 132", options: { grid: 132 } },
    { name: "grid 528", options: { grid: 528 } },
    { name: "W64", options: { workgroupSize: 64 } },
    { name: "W256", options: { workgroupSize: 256 } },
  ];
// The benchmark's device: the adapter's limits and features (subgroups, timestamps).
// Held for the whole run: Deno's WebGPU panics ("Adapter does not exist") once a collected
// adapter's device is used.
const adapter = (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" }))!;
const device = await requestDevice(adapter);
const results: unknown[] = [];
console.log(`${"case".padEnd(16)} ${variants.map((v) => v.name.padStart(18)).join("")}`);
for (const { c, input, kvBytes, kvSets } of diagCases(cases, only)) {
  const cells: string[] = [];
  for (const v of variants) {
    const cell = await timeLeanCell(
      device,
      input,
      kvSets,
      v.options,
      filter,
      v.noMerge ? "merge" : undefined,
    );
    cells.push(cell.text);
    if (cell.row) results.push({ case: c.name, variant: v.name, ...cell.row, kvBytes });
  }
  console.log(`${c.name.padEnd(16)} ${cells.join("")}`);
}
if (out) await Deno.writeTextFile(out, JSON.stringify({ results }, null, 1));
