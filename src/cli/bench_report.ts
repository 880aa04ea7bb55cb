/**
 * What `lean-attention bench` reports: one row per context and strategy, the report's JSON shape
 * and its text table.
 *
 * @module
 */

import type { BackendName } from "../plan/backend.ts";
import type { KVDtype, Strategy } from "../core/problem.ts";
import { type VariantShape, variantText } from "./variant_flags.ts";

/**
 * One measured case of the sweep.
 *
 * @example
 * ```ts
 * import type { BenchRow } from "@lean/attention/cli";
 * const row: BenchRow = { context: 4096, strategy: "lean", workgroups: 132, medianMs: 0.05, kvGBps: 1342 };
 * ```
 */
export interface BenchRow {
  /** Context length of every sequence. */
  context: number;
  /** The strategy. */
  strategy: Strategy;
  /** Workgroups of the decode dispatch. */
  workgroups: number;
  /** Median kernel time in milliseconds (each call timed alone). */
  medianMs: number;
  /** K and V bytes read per call over the median time, in GB/s. */
  kvGBps: number;
  /**
   * GPU backends: median milliseconds per call with calls back to back (as a model's layers run;
   * see `KernelTimingRequest.streamMs`).
   */
  streamMs?: number;
}

/**
 * The JSON `bench --json` prints.
 *
 * @example
 * ```ts
 * import type { BenchReport } from "@lean/attention/cli";
 * const report: BenchReport = {
 *   version: "0.1.0", backend: "cpu", reason: "requested", device: "cpu", grid: 16,
 *   shape: { batch: 1, numHeads: 32, numKVHeads: 8, headDim: 128, qLen: 1 },
 *   matrixUnits: false, runs: 3, rows: [],
 * };
 * ```
 */
export interface BenchReport {
  /** The package version that measured. */
  version: string;
  /** The backend that ran. */
  backend: BackendName;
  /** Why that backend. */
  reason: string;
  /** Present where the timings say nothing about GPUs (CPU backend, software adapter). */
  note?: string;
  /** Adapter or CPU description. */
  device: string;
  /** Lean grid. */
  grid: number;
  /** Shape shared by all cases (`kvDtype` absent: f16). */
  shape: {
    batch: number;
    numHeads: number;
    numKVHeads: number;
    headDim: number;
    /** V's head dim, where it differs from K's. */
    headDimV?: number;
    /** V read from K's rows (MLA's latent cache). */
    vFromK?: boolean;
    qLen: number;
    kvDtype?: KVDtype;
  } & VariantShape;
  /**
   * Whether the matrix-unit kernel ran (asked for with `--matrix-math` and offered by the
   * device; it takes KV groups of 16 or more query rows).
   */
  matrixUnits: boolean;
  /** Timed runs per case. */
  runs: number;
  /** One row per context and strategy. */
  rows: BenchRow[];
}

/**
 * Formats a report as a text table with one line per context and the lean speedups.
 *
 * @example
 * ```ts
 * import { formatBenchTable } from "@lean/attention/cli";
 * const table = formatBenchTable({
 *   version: "0.1.0", backend: "cpu", reason: "requested", device: "cpu", grid: 16,
 *   shape: { batch: 1, numHeads: 32, numKVHeads: 8, headDim: 128, qLen: 1 },
 *   matrixUnits: false, runs: 3,
 *   rows: [
 *     { context: 1024, strategy: "lean", workgroups: 16, medianMs: 2, kvGBps: 2, streamMs: 1.5 },
 *     { context: 1024, strategy: "single", workgroups: 8, medianMs: 4, kvGBps: 1, streamMs: 3.5 },
 *   ],
 * });
 * console.log(table.includes("2.00x"), table.includes("lean b2b ms")); // true true
 * ```
 */
export function formatBenchTable(report: BenchReport): string {
  const strategies = [...new Set(report.rows.map((r) => r.strategy))];
  const contexts = [...new Set(report.rows.map((r) => r.context))];
  const stream = report.rows.some((r) => r.streamMs !== undefined);
  const header = [
    "context".padStart(8),
    ...strategies.map((s) => `${s} ms`.padStart(11)),
    ...(stream ? strategies.map((s) => `${s} b2b ms`.padStart(15)) : []),
    ...strategies.map((s) => `${s} GB/s`.padStart(12)),
    ...strategies.filter((s) => s !== "lean").map((s) => `lean/${s}`.padStart(12)),
  ];
  const lines = [
    `backend ${report.backend} (${report.reason}); ${report.device}, grid ${report.grid}`,
    ...(report.note ? [`note: ${report.note}`] : []),
    `${report.shape.batch} x context, ${report.shape.numHeads}/${report.shape.numKVHeads} heads, ` +
    `head dim ${report.shape.headDim}${
      report.shape.headDimV === undefined ? "" : `/${report.shape.headDimV}`
    }${report.shape.vFromK ? " (V from K)" : ""}, qLen ${report.shape.qLen}, ${
      report.shape.kvDtype ?? "f16"
    } KV${variantText(report.shape)}${
      report.matrixUnits ? ", matrix units" : ""
    }; median of ${report.runs} kernel timings${
      stream ? ` (ms: each call alone; b2b ms: per call, calls back to back)` : ""
    }`,
    "",
    header.join(" "),
    "-".repeat(header.join(" ").length),
  ];
  for (const context of contexts) {
    const row = (s: Strategy) => report.rows.find((r) => r.context === context && r.strategy === s);
    const lean = row("lean");
    lines.push(
      [
        String(context).padStart(8),
        ...strategies.map((s) => (row(s)?.medianMs.toFixed(3) ?? "-").padStart(11)),
        ...(stream
          ? strategies.map((s) => (row(s)?.streamMs?.toFixed(3) ?? "-").padStart(15))
          : []),
        ...strategies.map((s) => (row(s)?.kvGBps.toFixed(2) ?? "-").padStart(12)),
        ...strategies.filter((s) => s !== "lean").map((s) => {
          const other = row(s);
          return (lean && other ? `${(other.medianMs / lean.medianMs).toFixed(2)}x` : "-")
            .padStart(12);
        }),
      ].join(" "),
    );
  }
  return lines.join("\n");
}
