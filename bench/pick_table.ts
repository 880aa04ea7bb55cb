/**
 * Picks kernel choices from a sweep of bench/tune.ts: for each class of `KERNEL_TABLE` that the
 * sweep's cases fall in, the fastest configuration with explicit lanes and unroll, or the
 * configuration named `table` (the built-in choice), summed over the class's cases. Prints the
 * choices beside the built-in table and writes them as JSON for `bench/gpu_bench.ts --table=FILE`.
 *
 * Usage: deno run -A bench/pick_table.ts TUNE.json OUT.json
 */

import { tileConfig } from "../plan.ts";
import { KERNEL_TABLE, type KernelChoice, kernelTableKey } from "../src/kernels/kernel_table.ts";
import { loadCases } from "./bench_cases.ts";
import { KV_DTYPE_INFO } from "../src/core/dtypes.ts";

interface TuneResult {
  case: string;
  config: {
    name: string;
    lanes?: number | string;
    unroll?: number | string;
    prefetch?: boolean | "split";
    rowSets?: number;
    queryShared?: boolean;
    workgroupSize?: number;
    tileTokens?: number;
  };
  lanes?: number;
  unroll?: number;
  ms: number;
}

const [input, output] = Deno.args;
const sweep = JSON.parse(await Deno.readTextFile(input)) as { results: TuneResult[] };
const cases = new Map((await loadCases()).map((c) => [c.name, c]));

/** A case's class: its block shape's, with " 8-bit" for 8-bit KV (their own table entries). */
function classOf(name: string): string {
  const c = cases.get(name)!;
  const rowsPerBlock = tileConfig({
    headDim: c.headDim,
    rowsPerGroup: (c.numHeads / c.numKVHeads) * c.qLen,
    kvDtype: "f16",
  }).rowsPerBlock;
  const key = kernelTableKey(c.headDim, rowsPerBlock);
  return KV_DTYPE_INFO[c.kvDtype ?? "f16"].scaled ? `${key} 8-bit` : key;
}

/** The built-in choice of a class: its own entry, or (an 8-bit class without one) its shape's. */
const builtInChoice = (cls: string): KernelChoice =>
  KERNEL_TABLE[cls] ?? KERNEL_TABLE[cls.replace(/ 8-bit$/, "")];

// Total time per (class, configuration) over the class's cases.
const totals = new Map<string, Map<string, { ms: number; n: number; choice: KernelChoice }>>();
for (const r of sweep.results) {
  const cls = classOf(r.case);
  // The configuration named "table" is the built-in choice of each class, so a class keeps it
  // unless an explicit configuration beats it.
  const builtIn = r.config.name === "table" && Object.keys(r.config).length === 1;
  if (!builtIn && (typeof r.config.lanes !== "number" || typeof r.config.unroll !== "number")) {
    continue;
  }
  // Workgroup size and tile are plan options, not table entries.
  if (r.config.workgroupSize !== undefined || r.config.tileTokens !== undefined) continue;
  const byConfig = totals.get(cls) ?? new Map();
  totals.set(cls, byConfig);
  const entry = byConfig.get(r.config.name) ?? {
    ms: 0,
    n: 0,
    // Options a configuration leaves out take the built-in choice of the class (as the sweep's
    // kernels did), written out so that `--table` does not inherit them from a later table.
    choice: builtIn ? builtInChoice(cls) : {
      lanes: r.lanes!,
      unroll: r.unroll!,
      prefetch: r.config.prefetch ?? builtInChoice(cls).prefetch ?? true,
      rowSets: r.config.rowSets ?? builtInChoice(cls).rowSets ?? 1,
      queryShared: r.config.queryShared ?? builtInChoice(cls).queryShared ?? false,
    },
  };
  entry.ms += r.ms;
  entry.n++;
  byConfig.set(r.config.name, entry);
}
const picked: Record<string, KernelChoice> = {};
for (const [cls, byConfig] of totals) {
  const cases = Math.max(...[...byConfig.values()].map((e) => e.n));
  const complete = [...byConfig.entries()].filter(([, e]) => e.n === cases);
  const [name, best] = complete.reduce((a, b) => (b[1].ms < a[1].ms ? b : a));
  if (name === "table" && !KERNEL_TABLE[cls]) {
    // An 8-bit class without an entry of its own takes its shape's entry with twice the unroll
    // (src/gpu/kernel_choice.ts); written out, that entry would be taken as it stands.
    console.log(`${cls}: table (keeps the built-in choice, no entry written)`);
    continue;
  }
  picked[cls] = best.choice;
  console.log(
    `${cls}: ${name} ${JSON.stringify(best.choice)} (${(best.ms / cases).toFixed(4)} ms mean; ` +
      `built-in ${JSON.stringify(builtInChoice(cls))})`,
  );
}
await Deno.writeTextFile(output, JSON.stringify(picked, null, 1));
