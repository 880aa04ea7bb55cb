/**
 * `lean-attention bench`: a sweep of context lengths x strategies on one backend, with a progress
 * bar on standard error and a table (or `--json`) on standard output. Times are the backend's
 * kernel times (`decoder.timeKernels`: `timestamp-query` on GPUs, the plan's execution on the
 * CPU), so upload and readback are not included.
 *
 * @module
 */

import type { BackendName } from "../plan/backend.ts";
import { type KVDtype, MAX_HEAD_DIM, STRATEGIES, type Strategy } from "../core/problem.ts";
import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import { formatUsage, MATRIX_MATH_FLAG, parseFlags, Q_LEN_FLAG, UsageError } from "./args.ts";
import { timingNote } from "./backend_choice.ts";
import { demoBatch } from "./demo_batch.ts";
import type { CliIO } from "./io.ts";
import { ProgressBar } from "./progress_bar.ts";
import { openWithSpinner } from "./spinner.ts";
import { VERSION } from "../core/version.ts";
import type { BenchReport, BenchRow } from "./bench_report.ts";
import { VARIANT_FLAGS, variantFields, variantShape } from "./variant_flags.ts";
import { formatBenchTable } from "./bench_report.ts";

/**
 * Flags of `bench`.
 *
 * @example
 * ```ts
 * import { BENCH_FLAGS, parseFlags } from "@lean/attention/cli";
 * console.log(parseFlags(["--contexts=1024,4096"], BENCH_FLAGS).flags.contexts); // [ 1024, 4096 ]
 * ```
 */
export const BENCH_FLAGS = {
  backend: {
    kind: "choice",
    choices: ["auto", "cpu", "webgpu", "dawn"],
    help: "backend (default auto: a hardware GPU if there is one, else cpu)",
  },
  contexts: {
    kind: "integers",
    min: 1,
    max: 1 << 22,
    maxCount: 64,
    help: "context lengths to sweep (default 1024,4096,16384,65536 on GPUs; 256,1024,4096 on cpu)",
  },
  batch: {
    kind: "integer",
    min: 1,
    max: 1024,
    help: "sequences per case, all of that length (default 1)",
  },
  heads: { kind: "integer", min: 1, max: 256, help: "query heads (default 32)" },
  "kv-heads": { kind: "integer", min: 1, max: 256, help: "KV heads (default 8)" },
  "head-dim": {
    kind: "integer",
    min: 8,
    max: MAX_HEAD_DIM,
    help: "head dimension of Q and K (default 128)",
  },
  "head-dim-v": {
    kind: "integer",
    min: 8,
    max: MAX_HEAD_DIM,
    help: "head dimension of V (default --head-dim; MLA: 512 beside 576)",
  },
  "v-from-k": {
    kind: "boolean",
    help: "V is the first --head-dim-v dims of each K row (MLA's latent cache)",
  },
  "q-len": Q_LEN_FLAG,
  "kv-dtype": {
    kind: "choice",
    choices: ["f16", "bf16", "f32", "int8", "fp8e4m3", "fp8e5m2"],
    help: "K/V dtype (default f16; the 8-bit ones with one scale per tensor)",
  },
  "matrix-math": MATRIX_MATH_FLAG,
  ...VARIANT_FLAGS,
  strategies: {
    kind: "string",
    placeholder: "LIST",
    help: "comma-separated strategies (default lean,split,single)",
  },
  runs: {
    kind: "integer",
    min: 1,
    max: 1000,
    help: "timed runs per case (default 10 on GPUs, 3 on cpu)",
  },
  grid: { kind: "integer", min: 1, max: 65536, help: "lean grid (default: the device's)" },
  json: { kind: "boolean", help: "print the results as JSON" },
} as const;

/**
 * Usage text of `bench`.
 *
 * @example
 * ```ts
 * import { BENCH_USAGE } from "@lean/attention/cli";
 * console.log(BENCH_USAGE.includes("--json")); // true
 * ```
 */
export const BENCH_USAGE: string = formatUsage(
  "lean-attention bench",
  "Times every strategy over a sweep of context lengths (f16 KV unless --kv-dtype says otherwise;\n" +
    "a model's attention variant with --sliding-window, --soft-cap, --sinks, --alibi) with the\n" +
    "backend's kernel timer, and prints a table or JSON.",
  BENCH_FLAGS,
);

function parseStrategies(text: string | undefined): Strategy[] {
  if (text === undefined) return [...STRATEGIES];
  const list = text.split(",");
  for (const s of list) {
    if (!(STRATEGIES as readonly string[]).includes(s)) {
      throw new UsageError(
        `Flag --strategies must list strategies from ${STRATEGIES.join(", ")}: got ` +
          JSON.stringify(text),
      );
    }
  }
  if (new Set(list).size !== list.length) {
    throw new UsageError(
      `Flag --strategies must not repeat a strategy: got ${JSON.stringify(text)}`,
    );
  }
  return list as Strategy[];
}

/**
 * Runs `bench` with its flags; returns the exit code. Throws `UsageError` for bad flags.
 *
 * @example
 * ```ts
 * import { benchCommand, captureIO } from "@lean/attention/cli";
 * const io = captureIO();
 * await benchCommand(["--backend=cpu", "--contexts=64", "--runs=1", "--json"], io);
 * console.log(JSON.parse(io.stdout).rows.length); // 3
 * ```
 */
export async function benchCommand(argv: readonly string[], io: CliIO): Promise<number> {
  const { flags, help } = parseFlags(argv, BENCH_FLAGS);
  if (help) {
    io.out(`${BENCH_USAGE}\n`);
    return 0;
  }
  const strategies = parseStrategies(flags.strategies);
  const requested = (flags.backend ?? "auto") as "auto" | BackendName;
  const numHeads = flags.heads ?? 32;
  const numKVHeads = flags["kv-heads"] ?? 8;
  const headDim = flags["head-dim"] ?? 128;
  const batch = flags.batch ?? 1;
  const qLen = flags["q-len"] ?? 1;
  const kvDtype = (flags["kv-dtype"] ?? "f16") as KVDtype;
  if (numHeads % numKVHeads !== 0) {
    throw new UsageError(
      `Flag --heads must be a multiple of --kv-heads (${numKVHeads}): got ${numHeads}`,
    );
  }
  const headDimV = flags["head-dim-v"] ?? headDim;
  const vFromK = flags["v-from-k"] ?? false;
  for (const [flag, dim] of [["head-dim", headDim], ["head-dim-v", headDimV]] as const) {
    if (dim % 8 !== 0) throw new UsageError(`Flag --${flag} must be a multiple of 8: got ${dim}`);
  }
  if (vFromK && headDimV > headDim) {
    throw new UsageError(
      `Flag --head-dim-v must be at most --head-dim (${headDim}) with --v-from-k: got ${headDimV}`,
    );
  }
  // V's fields, where they differ from the plain shape's, and the attention variant's.
  const dimsV = {
    ...(headDimV === headDim ? {} : { headDimV }),
    ...(vFromK ? { vFromK } : {}),
  };
  const variant = variantFields(flags, numHeads);
  const window = flags["sliding-window"];
  // The shape every case shares (the report's too); the cases differ in their context only.
  const shape = { numHeads, numKVHeads, headDim, ...dimsV, qLen, kvDtype };
  const { decoder, reason, spinner } = await openWithSpinner(
    io,
    requested,
    flags.grid,
    flags["matrix-math"] ? { matrixMath: true } : undefined,
  );
  try {
    const onCpu = decoder.backend === "cpu";
    const contexts = flags.contexts ?? (onCpu ? [256, 1024, 4096] : [1024, 4096, 16384, 65536]);
    const runs = flags.runs ?? (onCpu ? 3 : 10);
    // Compile the sweep's kernels first, under the spinner, so that no step of the bar is a
    // silent compile (the cases share them: same head dim, dtype and rows per block).
    for (const context of contexts) {
      const seqLens: number[] = Array(batch).fill(context);
      await decoder.warmup({ seqLens, ...shape, ...variant }, { strategies });
    }
    spinner.stop();
    const bar = new ProgressBar({ total: contexts.length * strategies.length, io });
    const rows: BenchRow[] = [];
    for (const context of contexts) {
      const input = {
        ...demoBatch({ seqLens: Array(batch).fill(context), ...shape, seed: context }),
        ...variant,
      };
      // K's rows, and V's unless it is read from them; with a window, the window's tokens (the
      // last query row's window and the rows before it), which are all the kernels read.
      const tokens = window === undefined ? context : Math.min(context, window + qLen - 1);
      const kvBytes = batch * tokens * numKVHeads * (headDim + (vFromK ? 0 : headDimV)) *
        KV_DTYPE_INFO[kvDtype].bytes;
      for (const strategy of strategies) {
        // GPUs: calls back to back too (~2 ms per sample); the CPU has no pass to start.
        const timing = await decoder.timeKernels({ ...input, strategy }, {
          runs,
          warmup: 1,
          streamMs: onCpu ? 0 : 2,
        });
        rows.push({
          context,
          strategy,
          workgroups: decoder.plan(input, { strategy }).schedule.workgroups,
          medianMs: timing.medianMs,
          kvGBps: kvBytes / (timing.medianMs * 1e6),
          ...(timing.stream ? { streamMs: timing.stream.medianMs } : {}),
        });
        bar.tick(`${strategy} ${context}`);
      }
    }
    bar.done();
    const note = timingNote(decoder);
    const report: BenchReport = {
      version: VERSION,
      backend: decoder.backend,
      reason,
      ...(note ? { note } : {}),
      device: decoder.profile.name,
      grid: decoder.profile.grid,
      shape: { batch, ...shape, ...variantShape(flags) },
      matrixUnits: decoder.profile.matrixUnits === true,
      runs,
      rows,
    };
    io.out(flags.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatBenchTable(report)}\n`);
    return 0;
  } finally {
    spinner.stop();
    await decoder.dispose();
  }
}
