/**
 * `lean-attention demo`: the main job. Picks the best backend, runs a realistic ragged decode
 * batch with every strategy, and prints the plan summary, the timings and the error of each
 * strategy against the float64 reference. Exits 1 when a strategy is out of tolerance.
 *
 * @module
 */

import { median } from "../gpu/gpu_timing.ts";
import { describePlan } from "../plan/plan.ts";
import { type DecodeInput, STRATEGIES, type Strategy } from "../core/problem.ts";
import { referenceAttention } from "../core/reference.ts";
import { maxAbsError, relativeL2 } from "./accuracy.ts";
import { formatUsage, MATRIX_MATH_FLAG, parseFlags, Q_LEN_FLAG } from "./args.ts";
import { type BackendChoice, timingNote } from "./backend_choice.ts";
import { demoBatch } from "./demo_batch.ts";
import type { CliIO } from "./io.ts";
import { openWithSpinner } from "./spinner.ts";
import { VERSION } from "../core/version.ts";
import { VARIANT_FLAGS, variantFields, variantShape, variantText } from "./variant_flags.ts";

/**
 * Flags of `demo`.
 *
 * @example
 * ```ts
 * import { DEMO_FLAGS, parseFlags } from "@lean/attention/cli";
 * console.log(parseFlags(["--runs=2"], DEMO_FLAGS).flags.runs); // 2
 * ```
 */
export const DEMO_FLAGS = {
  backend: {
    kind: "choice",
    choices: ["auto", "cpu", "webgpu", "dawn"],
    help: "backend (default auto: a hardware GPU if there is one, else cpu)",
  },
  runs: { kind: "integer", min: 1, max: 1000, help: "timed runs per strategy (default 5)" },
  "seq-lens": {
    kind: "integers",
    min: 1,
    max: 1 << 20,
    maxCount: 256,
    help: "context lengths of the batch (default 37,512,1000,4096,130,2048,777,3000)",
  },
  "q-len": Q_LEN_FLAG,
  "matrix-math": MATRIX_MATH_FLAG,
  ...VARIANT_FLAGS,
  grid: { kind: "integer", min: 1, max: 65536, help: "lean grid (default: the device's)" },
  json: { kind: "boolean", help: "print the results as JSON" },
} as const;

/**
 * Usage text of `demo`.
 *
 * @example
 * ```ts
 * import { DEMO_USAGE } from "@lean/attention/cli";
 * console.log(DEMO_USAGE.split("\n")[0]); // usage: lean-attention demo [flags]
 * ```
 */
export const DEMO_USAGE: string = formatUsage(
  "lean-attention demo",
  "Runs a ragged GQA decode batch (8 sequences unless --seq-lens; a model's attention variant with\n" +
    "--sliding-window, --soft-cap, --sinks, --alibi) with every strategy on the best backend, times\n" +
    "it and checks it against a float64 reference.",
  DEMO_FLAGS,
);

/**
 * Tolerances against the float64 reference; `demo` exits 1 above them.
 *
 * @example
 * ```ts
 * import { DEMO_TOLERANCE } from "@lean/attention/cli";
 * console.log(DEMO_TOLERANCE.relativeL2); // 0.001
 * ```
 */
export const DEMO_TOLERANCE = { relativeL2: 1e-3, lse: 1e-3 } as const;

/**
 * One strategy's result in `demo` (`demo --json` prints these).
 *
 * @example
 * ```ts
 * import type { DemoRow } from "@lean/attention/cli";
 * const row: DemoRow = {
 *   strategy: "lean", workgroups: 16, partials: 26, medianMs: 210, minMs: 205, maxMs: 230,
 *   relativeL2: 3e-8, lseError: 6e-7, ok: true,
 * };
 * ```
 */
export interface DemoRow {
  /** The strategy. */
  strategy: Strategy;
  /** Workgroups of the decode dispatch. */
  workgroups: number;
  /** Partial states merged. */
  partials: number;
  /** Median wall time of a decode call (upload, kernels, readback) in milliseconds. */
  medianMs: number;
  /** Fastest call in milliseconds. */
  minMs: number;
  /** Slowest call in milliseconds. */
  maxMs: number;
  /** Relative L2 error of `out` against the float64 reference. */
  relativeL2: number;
  /** Largest absolute error of `lse`. */
  lseError: number;
  /** Whether both errors are within {@linkcode DEMO_TOLERANCE}. */
  ok: boolean;
}

const fmtMs = (ms: number) => (ms < 10 ? ms.toFixed(2) : ms.toFixed(1));
const fmtErr = (e: number) => e.toExponential(2);

async function runStrategy(
  decoder: BackendChoice["decoder"],
  input: DecodeInput,
  strategy: Strategy,
  runs: number,
  reference: { out: Float64Array; lse: Float64Array },
): Promise<DemoRow> {
  const plan = decoder.plan(input, { strategy });
  const call = { ...input, strategy };
  const first = await decoder.decode(call); // warm-up: pipelines, buffers, JIT
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await decoder.decode(call);
    times.push(performance.now() - t0);
  }
  const rel = relativeL2(first.out, reference.out);
  const lseError = maxAbsError(first.lse, reference.lse);
  return {
    strategy,
    workgroups: plan.schedule.workgroups,
    partials: plan.schedule.partialSlots,
    medianMs: median(times),
    minMs: Math.min(...times),
    maxMs: Math.max(...times),
    relativeL2: rel,
    lseError,
    ok: rel <= DEMO_TOLERANCE.relativeL2 && lseError <= DEMO_TOLERANCE.lse,
  };
}

/**
 * Runs `demo` with its flags; returns the exit code (0 ok, 1 out of tolerance). Throws
 * `UsageError` for bad flags.
 *
 * @example
 * ```ts
 * import { captureIO, demoCommand } from "@lean/attention/cli";
 * const io = captureIO();
 * const code = await demoCommand(["--backend=cpu", "--runs=1"], io);
 * console.log(code, io.stdout.includes("rel L2")); // 0 true
 * ```
 */
export async function demoCommand(argv: readonly string[], io: CliIO): Promise<number> {
  const { flags, help } = parseFlags(argv, DEMO_FLAGS);
  if (help) {
    io.out(`${DEMO_USAGE}\n`);
    return 0;
  }
  const runs = flags.runs ?? 5;
  const requested = (flags.backend ?? "auto") as "auto" | "cpu" | "webgpu" | "dawn";
  // On a terminal a spinner says what the first seconds go into (adapter, calibration, kernels).
  const { decoder, reason, spinner } = await openWithSpinner(
    io,
    requested,
    flags.grid,
    flags["matrix-math"] ? { matrixMath: true } : undefined,
  );
  try {
    const qLen = flags["q-len"] ?? 1;
    const batch = demoBatch({ seqLens: flags["seq-lens"], qLen });
    const input = { ...batch, ...variantFields(flags, batch.numHeads) };
    const matrixUnits = decoder.profile.matrixUnits === true;
    const lens = Array.from(input.seqLens);
    const tokens = lens.reduce((a, b) => a + b, 0);
    // K and V bytes the kernels read: with a window, each sequence's window only.
    const window = flags["sliding-window"];
    const read = window === undefined
      ? tokens
      : lens.reduce((a, n) => a + Math.min(n, window + qLen - 1), 0);
    const kvBytes = 2 * read * input.numKVHeads * input.headDim * 2;
    await decoder.warmup(input);
    spinner.update("float64 reference");
    const t0 = performance.now();
    const reference = referenceAttention(input);
    const referenceMs = performance.now() - t0;
    const rows: DemoRow[] = [];
    for (const strategy of STRATEGIES) {
      spinner.update(`${strategy}: 1 warm-up and ${runs} timed calls`);
      rows.push(await runStrategy(decoder, input, strategy, runs, reference));
    }
    spinner.stop();
    const lean = decoder.plan(input, { strategy: "lean" });
    const split = decoder.plan(input, { strategy: "split" });
    const failed = rows.some((r) => !r.ok);
    const note = timingNote(decoder);
    if (flags.json) {
      io.out(
        JSON.stringify(
          {
            version: VERSION,
            backend: decoder.backend,
            reason,
            ...(note ? { note } : {}),
            profile: decoder.profile,
            batch: {
              seqLens: lens,
              numHeads: input.numHeads,
              numKVHeads: input.numKVHeads,
              headDim: input.headDim,
              qLen,
              kvDtype: input.kvDtype,
              ...variantShape(flags),
            },
            matrixUnits,
            runs,
            tolerance: DEMO_TOLERANCE,
            rows,
          },
          null,
          2,
        ) + "\n",
      );
      return failed ? 1 : 0;
    }
    const { profile } = decoder;
    const lines = [
      `@lean/attention ${VERSION} demo: one ragged decode batch, every strategy`,
      "",
      `backend  ${decoder.backend} (${reason})`,
      `profile  ${profile.name}; grid ${profile.grid} workgroups (${profile.source})`,
      `batch    ${lens.length} sequences of ${lens.join(", ")} tokens (${tokens} in all)`,
      `         ${input.numHeads} query heads / ${input.numKVHeads} KV heads (GQA ` +
      `${input.numHeads / input.numKVHeads}), head dim ${input.headDim}, qLen ${qLen}, KV f16 ` +
      `(${(kvBytes / 2 ** 20).toFixed(1)} MiB of K and V)${variantText(variantShape(flags))}`,
      ...(matrixUnits
        ? ["kernel   the f16 matrix units (kernel: { matrixMath: true }): f16-grade results"]
        : []),
      "",
      "plan (lean)",
      ...describePlan(lean).split("\n").map((l) => `  ${l}`),
      "",
      `reference: float64, two-pass softmax, ${fmtMs(referenceMs)} ms`,
      `${runs} timed calls per strategy after 1 warm-up (wall time of decode(): upload, ` +
      `kernels, readback)`,
      "",
    ];
    const header = [
      "strategy".padEnd(8),
      "workgroups".padStart(10),
      "partials".padStart(8),
      "median ms".padStart(10),
      "min..max ms".padStart(15),
      "KV GB/s".padStart(8),
      "rel L2 err".padStart(10),
      "max |dLSE|".padStart(10),
    ].join("  ");
    lines.push(header, "-".repeat(header.length));
    for (const r of rows) {
      lines.push(
        [
          r.strategy.padEnd(8),
          String(r.workgroups).padStart(10),
          String(r.partials).padStart(8),
          fmtMs(r.medianMs).padStart(10),
          `${fmtMs(r.minMs)}..${fmtMs(r.maxMs)}`.padStart(15),
          (kvBytes / (r.medianMs * 1e6)).toFixed(2).padStart(8),
          fmtErr(r.relativeL2).padStart(10),
          fmtErr(r.lseError).padStart(10),
        ].join("  ") + (r.ok ? "" : "  FAIL"),
      );
    }
    const byName = Object.fromEntries(rows.map((r) => [r.strategy, r]));
    lines.push(
      "",
      `lean vs split: ${(byName.split.medianMs / byName.lean.medianMs).toFixed(2)}x, ` +
        `lean vs single: ${(byName.single.medianMs / byName.lean.medianMs).toFixed(2)}x`,
    );
    if (note) lines.push(`note: ${note}`);
    if (split.partition.splits === 1) {
      lines.push(
        `note: split chose 1 chunk per segment (${split.numSegments} segments fill grid ` +
          `${split.grid}), so it runs the same plan as single`,
      );
    }
    io.out(lines.join("\n") + "\n");
    if (failed) {
      io.err(
        `error: a strategy is out of tolerance (relative L2 ${DEMO_TOLERANCE.relativeL2}, ` +
          `LSE ${DEMO_TOLERANCE.lse})\n`,
      );
      return 1;
    }
    return 0;
  } finally {
    spinner.stop();
    await decoder.dispose();
  }
}
