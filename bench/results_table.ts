/**
 * The benchmark's text table and summaries, shared by bench/gpu_bench.ts (as it runs) and
 * bench/merge_results.ts (for merged result files): one row per case and strategy, lean's
 * speedups over split and single (the paper's comparison), and the targets of issue 13.
 *
 * @module
 */

/** One result row of a benchmark JSON file. */
export type Row = Record<string, unknown>;

/** The table's header lines. */
export const HEADER: string = [
  "case                  strategy      wgs median ms  spread stream ms  spread  of ceil   roof ms   bound of roof  stream x torch  x triton",
  "-".repeat(136),
].join("\n");

/**
 * A row's time for comparisons with the anchors: per pass back to back ("stream"), as the
 * anchors are timed, where the row has it; else the pass timed alone.
 */
export function anchorComparableMs(r: Row): number {
  return (typeof r.streamMs === "number" ? r.streamMs : r.medianMs) as number;
}

/** A row of the table (`first`: the first row of its case, which shows the case's name). */
export function formatRow(r: Row, first: boolean): string {
  const name = (first ? r.name as string : "").padEnd(22);
  if (r.skipped || r.failed) {
    return `${name}${String(r.strategy ?? "").padEnd(11)}${r.skipped ? "skipped" : "failed"}: ${
      r.skipped ?? r.failed
    }`;
  }
  const f = (x: unknown, d = 4) => (typeof x === "number" ? x.toFixed(d) : "-");
  const ratio = (other: unknown) =>
    typeof other === "number" ? `${(anchorComparableMs(r) / other).toFixed(2)}x` : "-";
  const spread = (mid: unknown, lo: unknown, hi: unknown) =>
    typeof hi === "number" ? `±${(50 * (hi - (lo as number)) / (mid as number)).toFixed(1)}%` : "-";
  const pct = (x: unknown) => (typeof x === "number" ? `${(100 * x).toFixed(1)}%` : "-");
  return `${name}${(r.strategy as string).padEnd(11)}${String(r.workgroups ?? "").padStart(6)}${
    f(r.medianMs).padStart(10)
  }${spread(r.medianMs, r.p10Ms, r.p90Ms).padStart(8)}${f(r.streamMs).padStart(10)}${
    spread(r.streamMs, r.streamP10Ms, r.streamP90Ms).padStart(8)
  }${pct(r.fractionOfCeiling).padStart(9)}${f(r.rooflineMs).padStart(10)}${
    String(r.bound ?? "-").padStart(8)
  }${pct(r.fractionOfRoofline).padStart(8)}${pct(r.fractionOfRooflineStream).padStart(8)}${
    ratio(r.torchMs).padStart(8)
  }${ratio(r.tritonMs).padStart(10)}`;
}

/** The line saying how the table's times were taken. */
export function methodLine(warmupMs: number, runs: number, streamMs: number): string {
  const stream = streamMs > 0
    ? `; then ${runs} samples of passes back to back, each ~${streamMs} ms ("stream", per pass; as the anchors are timed); x torch and x triton: stream over theirs`
    : "";
  return `each strategy: >= ${warmupMs} ms of back-to-back passes, then ${runs} timed passes in the same submission; median, ±half the 10-90% spread${stream}`;
}

/** All rows, each case's first row naming it. */
export function formatTable(rows: Row[]): string {
  return rows.map((r, i) => formatRow(r, i === 0 || rows[i - 1].name !== r.name)).join("\n");
}

/** Lean's speedups over a strategy: geometric mean and maximum over the cases that have both. */
export function speedups(
  rows: Row[],
  other: string,
): { geomean: number; max: number; of: string; cases: number } {
  const ratios: [number, string][] = [];
  for (const lean of rows.filter((r) => r.strategy === "lean" && r.medianMs)) {
    const o = rows.find((r) => r.name === lean.name && r.strategy === other && r.medianMs);
    if (o) ratios.push([(o.medianMs as number) / (lean.medianMs as number), lean.name as string]);
  }
  const geomean = Math.exp(ratios.reduce((s, [x]) => s + Math.log(x), 0) / ratios.length);
  const [max, of] = ratios.reduce((a, b) => (b[0] > a[0] ? b : a), [0, ""]);
  return { geomean, max, of, cases: ratios.length };
}

/** The paper comparison line: lean over single and over split. */
export function paperLine(rows: Row[]): string {
  const single = speedups(rows, "single");
  const split = speedups(rows, "split");
  return `lean over single: geometric mean ${single.geomean.toFixed(2)}x, max ${
    single.max.toFixed(2)
  }x (${single.of}); over split: geometric mean ${split.geomean.toFixed(2)}x, max ${
    split.max.toFixed(2)
  }x (${split.of}); ${single.cases} cases`;
}

/**
 * The targets of issue 13 for every case whose sequences all hold at least 16k tokens: lean at
 * >= 90% of its roofline (95% for MHA), and at most PyTorch's time. Judged on the stream times
 * where the rows have them (the anchors' method), with the lone pass's fraction beside.
 */
export function targetLines(rows: Row[], lensOf: (name: string) => number[]): string[] {
  const lines: string[] = [];
  for (const r of rows.filter((r) => r.strategy === "lean" && r.medianMs)) {
    if (Math.min(...lensOf(r.name as string)) < 16384) continue;
    const goal = r.numHeads === r.numKVHeads ? 0.95 : 0.9;
    const alone = r.fractionOfRoofline as number;
    const roof = (r.fractionOfRooflineStream ?? alone) as number;
    const torch = typeof r.torchMs === "number" ? anchorComparableMs(r) / r.torchMs : NaN;
    const how = r.fractionOfRooflineStream === undefined
      ? "alone"
      : `stream; alone ${(100 * alone).toFixed(1)}%`;
    lines.push(
      `${(r.name as string).padEnd(22)}${
        (100 * roof).toFixed(1).padStart(6)
      }% of roofline (${how}; ${r.bound}, goal ${100 * goal}%) ${
        roof >= goal ? "met   " : "missed"
      }  ${
        Number.isNaN(torch) ? "-" : `${torch.toFixed(2)}x PyTorch: ${torch <= 1 ? "met" : "missed"}`
      }`,
    );
  }
  return lines;
}
