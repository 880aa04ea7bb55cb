/**
 * Merges benchmark result files of one backend (a run cut by its time limit, and a second run
 * of the cases it missed) into one JSON file and its text table. Later files replace earlier
 * rows of the same case and strategy. Rows a run printed but had not yet saved when its time
 * limit cut it can be taken from its log (`--log=LOG,BACKEND,RUN.json`: the log's section of
 * that backend, with the read ceiling of that run). Every row's roofline is recomputed with the
 * FMA ceiling of `--fma-from` (its in-run FMA kernel), each row keeping its own run's read
 * ceiling (a merged file given as an input keeps each row's own); the anchors' times are read
 * again from `--anchor` and `--triton`.
 *
 * Usage: deno run -A bench/merge_results.ts --out=OUT.json --text=OUT.txt --fma-from=RUN.json
 *        [--anchor=TORCH.json] [--triton=TRITON.json] [--log=LOG,BACKEND,RUN.json]... IN.json...
 */

import { type BenchCase, loadCases } from "./bench_cases.ts";
import { caseKVBytes, decodeFlops, roofline } from "./gpu_ceilings.ts";
import {
  formatTable,
  HEADER,
  methodLine,
  paperLine,
  type Row,
  speedups,
  targetLines,
} from "./results_table.ts";

interface RunFile {
  backend: string;
  adapter: string;
  profile: unknown;
  ceilings: { readBytesPerSecond: number; flopsPerSecond: number; emptyPassMs: number };
  warmupMs: number;
  runs: number;
  /** Milliseconds per back-to-back sample (absent before session 22). */
  streamMs?: number;
  results: Row[];
}

const flags = Deno.args.filter((a) => a.startsWith("--"));
const inputs = Deno.args.filter((a) => !a.startsWith("--"));
const flag = (name: string) =>
  flags.filter((f) => f.startsWith(`--${name}=`)).map((f) => f.slice(name.length + 3));
const read = async (path: string) => JSON.parse(await Deno.readTextFile(path));
const cases = new Map<string, BenchCase>((await loadCases()).map((c) => [c.name, c]));
const fmaRun = (await read(flag("fma-from")[0])) as RunFile;
const flops = fmaRun.ceilings.flopsPerSecond;
type Times = Record<string, number | null>;
/** An anchor file's times: back to back (`ms`) and one call alone (`aloneMs`, since session 22). */
const anchorTimes = async (path: string | undefined) => {
  const file = path ? (await read(path)) as { ms?: Times; aloneMs?: Times } : {};
  return { ms: file.ms ?? {}, aloneMs: file.aloneMs ?? {} };
};
const torch = await anchorTimes(flag("anchor")[0]);
const triton = await anchorTimes(flag("triton")[0]);

/** Recomputes the derived fields of a row from its median and its run's read ceiling. */
function derive(r: Row, readCeiling: number, source: string): Row {
  const c = cases.get(r.name as string);
  if (!c || typeof r.medianMs !== "number") return { ...r, source };
  const kvBytes = caseKVBytes(c);
  const caseFlops = decodeFlops(c);
  const roof = roofline(kvBytes, caseFlops, {
    readBytesPerSecond: readCeiling,
    flopsPerSecond: flops,
    emptyPassMs: 0,
  });
  return {
    ...r,
    group: c.group,
    seqLens: c.seqLens.length > 8 ? `${c.seqLens.length} seqs` : c.seqLens,
    numHeads: c.numHeads,
    numKVHeads: c.numKVHeads,
    headDim: c.headDim,
    qLen: c.qLen,
    kvBytes,
    flops: caseFlops,
    readCeiling,
    fractionOfCeiling: kvBytes / readCeiling / (r.medianMs / 1e3),
    rooflineMs: roof.ms,
    bound: roof.bound,
    fractionOfRoofline: roof.ms / r.medianMs,
    ...(typeof r.streamMs === "number" ? { fractionOfRooflineStream: roof.ms / r.streamMs } : {}),
    torchMs: torch.ms[c.name] ?? null,
    tritonMs: triton.ms[c.name] ?? null,
    torchAloneMs: torch.aloneMs[c.name] ?? null,
    tritonAloneMs: triton.aloneMs[c.name] ?? null,
    source,
  };
}

/** Rows of one backend's section of a session log (median and spread as printed). */
function rowsFromLog(text: string, backend: string): Row[] {
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l.startsWith(`backend ${backend}:`));
  if (start < 0) return [];
  const rows: Row[] = [];
  let name = "";
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith("backend ") || line.startsWith("[")) break;
    const m = line.match(
      /^(.{22})(\S+)\s+(\d+)\s+([\d.]+)\s+±([\d.]+)%(?:\s+([\d.]+)\s+±([\d.]+)%)?/,
    );
    if (!m) continue;
    if (m[1].trim()) name = m[1].trim();
    const medianMs = Number(m[4]);
    const half = (Number(m[5]) / 100) * medianMs;
    // Tables since session 22 print the stream time and its spread next.
    const streamMs = m[6] === undefined ? undefined : Number(m[6]);
    const streamHalf = streamMs === undefined ? 0 : (Number(m[7]) / 100) * streamMs;
    rows.push({
      name,
      strategy: m[2],
      workgroups: Number(m[3]),
      medianMs,
      p10Ms: medianMs - half,
      p90Ms: medianMs + half,
      ...(streamMs === undefined ? {} : {
        streamMs,
        streamP10Ms: streamMs - streamHalf,
        streamP90Ms: streamMs + streamHalf,
      }),
      fromLog: true,
    });
  }
  return rows;
}

const merged = new Map<string, Row>();
const sources: string[] = [];
let first: RunFile | undefined;
for (const spec of flag("log")) {
  const [log, backend, run] = spec.split(",");
  const ceiling = ((await read(run)) as RunFile).ceilings.readBytesPerSecond;
  for (const r of rowsFromLog(await Deno.readTextFile(log), backend)) {
    merged.set(`${r.name}|${r.strategy}`, derive(r, ceiling, `${log} (printed)`));
  }
  sources.push(`${log} (${backend} rows printed before the time limit)`);
}
for (const path of inputs) {
  const run = (await read(path)) as RunFile;
  first ??= run;
  for (const r of run.results) {
    if (!r.strategy) continue;
    // A merged file's rows keep the read ceiling and source of the run that measured them.
    const ceiling = typeof r.readCeiling === "number"
      ? r.readCeiling
      : run.ceilings.readBytesPerSecond;
    const source = typeof r.source === "string" ? r.source : path;
    merged.set(`${r.name}|${r.strategy}`, derive(r, ceiling, source));
  }
  const earlier = (run as RunFile & { sources?: string[] }).sources;
  sources.push(...(earlier ?? [path]));
}
const order = ["lean", "split", "single", "lean-paged"];
const names = [...cases.keys()];
const results = [...merged.values()].sort((a, b) =>
  names.indexOf(a.name as string) - names.indexOf(b.name as string) ||
  order.indexOf(a.strategy as string) - order.indexOf(b.strategy as string)
);
const missing = names.filter((n) => !results.some((r) => r.name === n && r.strategy === "lean"));
const out = {
  backend: first!.backend,
  adapter: first!.adapter,
  profile: first!.profile,
  ceiling: first!.ceilings.readBytesPerSecond,
  ceilings: { ...first!.ceilings, flopsPerSecond: flops, flopsFrom: flag("fma-from")[0] },
  warmupMs: first!.warmupMs,
  runs: first!.runs,
  streamMs: first!.streamMs ?? 0,
  sources,
  notMeasured: missing,
  results,
};
await Deno.writeTextFile(flag("out")[0], JSON.stringify(out, null, 1));
const single = speedups(results, "single");
const text = [
  `backend ${out.backend}: ${out.adapter}; merged from ${sources.join(", ")}`,
  `ceilings (plain WGSL kernels, warm): read ${(out.ceiling / 1e12).toFixed(2)} TB/s, FMA ${
    (flops / 1e12).toFixed(1)
  } TFLOP/s (${flag("fma-from")[0]}), empty pass ${(out.ceilings.emptyPassMs * 1e3).toFixed(1)} us`,
  methodLine(out.warmupMs, out.runs, out.streamMs),
  "",
  HEADER,
  formatTable(results),
  "",
  single.cases ? paperLine(results) : "",
  "",
  "targets (cases whose sequences all hold >= 16k tokens):",
  ...targetLines(results, (n) => cases.get(n)?.seqLens ?? [0]),
  ...(missing.length ? ["", `not measured: ${missing.join(", ")}`] : []),
  "",
].join("\n");
await Deno.writeTextFile(flag("text")[0], text);
console.log(text);
