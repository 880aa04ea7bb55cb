/**
 * Whether two strategies give one problem the same GPU program: compares `lean`'s and `split`'s
 * schedule tables (runs, piece and reduce records) for the benchmark cases named, on the grid of
 * their kernel class. Where they are identical, the two strategies run the same kernels over the
 * same records, so one measurement serves both (bench/results/h200_session6: after this
 * session's last planner change, the b64 cases' lean plans became split's).
 *
 * Usage: deno run -A bench/same_schedule.ts [--grids=JSON] CASE...
 */

import { createPlan, tileConfig } from "../plan.ts";
import { kernelTableKey } from "../src/kernels/kernel_table.ts";
import { loadCases } from "./bench_cases.ts";

/** The H200's calibrated grids by kernel class (bench/results/h200_session6/final). */
const H200_GRIDS: Record<string, number> = {
  "r1 d128": 502,
  "r4 d128": 264,
  "r8 d128": 264,
  "r1 d64": 848,
  "r4 d64": 375,
  "r4 d256": 264,
};
const gridsArg = Deno.args.find((a) => a.startsWith("--grids="));
const grids = gridsArg ? JSON.parse(gridsArg.slice(8)) as Record<string, number> : H200_GRIDS;
const names = Deno.args.filter((a) => !a.startsWith("--"));
const same = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  a.length === b.length && Array.from(a).every((x, i) => x === b[i]);
for (const c of await loadCases()) {
  if (!names.includes(c.name)) continue;
  const kvDtype = c.kvDtype ?? "f16";
  const rows = tileConfig({
    headDim: c.headDim,
    rowsPerGroup: (c.numHeads / c.numKVHeads) * c.qLen,
    kvDtype,
  }).rowsPerBlock;
  const grid = grids[kernelTableKey(c.headDim, rows)];
  const shape = { ...c, kvDtype };
  // The 2 GiB binding limit of the H200 run: the same KV windows as the benchmark's plans.
  const options = { grid, maxBindingBytes: 2147483644 };
  const lean = createPlan(shape, { ...options, strategy: "lean" });
  const split = createPlan(shape, { ...options, strategy: "split" });
  const identical = same(lean.partition.runStarts, split.partition.runStarts) &&
    same(lean.schedule.pieces, split.schedule.pieces) &&
    same(lean.schedule.reduce, split.schedule.reduce);
  console.log(
    `${c.name}: grid ${grid}, lean ${lean.schedule.workgroups} workgroups, split ` +
      `${split.schedule.workgroups}: ${identical ? "identical schedules" : "different schedules"}`,
  );
}
