/**
 * # @lean/attention/cli
 *
 * The command line of `@lean/attention`:
 *
 * ```sh
 * deno run jsr:@lean/attention/cli demo                # the main job (the default command)
 * deno run jsr:@lean/attention/cli bench --json
 * deno run --allow-write=plan.svg jsr:@lean/attention/cli plan --grid=96 --out=plan.svg
 * deno run jsr:@lean/attention/cli info
 * deno run --allow-ffi jsr:@lean/attention/cli demo --backend=dawn
 * ```
 *
 * - `demo` picks the best backend (a hardware GPU through the runtime's WebGPU, else the CPU),
 *   runs a realistic ragged decode batch with every strategy, and prints the plan, the timings
 *   and the error against the float64 reference;
 * - `bench` sweeps context lengths x strategies with a progress bar, `--json` for JSON;
 * - `plan` prints a plan and, with `--out=FILE`, writes an SVG picture of it (workgroups against
 *   LeanTiles; `--strategy=all` draws lean, split and single side by side);
 * - `info` lists the WebGPU adapters, their features and limits, and the device profiles.
 *
 * Only `plan --out` writes a file, and only `--backend=dawn` (or `info --dawn`) loads Dawn from
 * npm `webgpu`, which needs `--allow-ffi` (and `--allow-read` when run from a local checkout).
 * `--version` prints the version, which every `--json` output also carries. Bad flags print a
 * usage error naming the flag and the value, and exit with code 2. The building blocks (flag
 * parser, progress bar, spinner, plan pictures, the commands) are exported for scripts and tests.
 *
 * @example
 * ```ts
 * import { captureIO, runCli } from "@lean/attention/cli";
 * const io = captureIO();
 * const code = await runCli(["plan", "--seq-lens=500,60", "--heads=8", "--kv-heads=2",
 *   "--grid=6"], io);
 * console.log(code, io.stdout.includes("6 workgroups")); // 0 true
 * ```
 *
 * @module
 */

export { maxAbsError, relativeL2 } from "./src/cli/accuracy.ts";
export {
  type AdapterDescription,
  type AdapterReport,
  type KernelPaths,
  probeAdapters,
  REPORTED_LIMITS,
} from "./src/cli/adapters.ts";
export {
  type FlagSpec,
  type FlagSpecs,
  type FlagValue,
  formatUsage,
  MATRIX_MATH_FLAG,
  type ParsedArgs,
  type ParsedFlags,
  parseFlags,
  Q_LEN_FLAG,
  UsageError,
} from "./src/cli/args.ts";
export {
  type AutoChoice,
  autoChoice,
  type BackendChoice,
  type BackendChoiceOptions,
  openBestDecoder,
  timingNote,
} from "./src/cli/backend_choice.ts";
export { BENCH_FLAGS, BENCH_USAGE, benchCommand } from "./src/cli/bench_command.ts";
export { type BenchReport, type BenchRow, formatBenchTable } from "./src/cli/bench_report.ts";
export {
  VARIANT_FLAGS,
  variantFields,
  type VariantFlagValues,
  type VariantShape,
  variantShape,
  variantText,
} from "./src/cli/variant_flags.ts";
export {
  DEMO_FLAGS,
  DEMO_TOLERANCE,
  DEMO_USAGE,
  demoCommand,
  type DemoRow,
} from "./src/cli/demo_command.ts";
export { DEMO_SEQ_LENS, demoBatch, type DemoBatchOptions } from "./src/cli/demo_batch.ts";
export { INFO_FLAGS, INFO_USAGE, type InfoAdapter, infoCommand } from "./src/cli/info_command.ts";
export { type CapturedIO, captureIO, type CliIO, processIO } from "./src/cli/io.ts";
export { CLI_USAGE, runCli } from "./src/cli/main.ts";
export {
  PLAN_FLAGS,
  PLAN_USAGE,
  planCommand,
  planFromFlags,
  type PlanShapeFlags,
} from "./src/cli/plan_command.ts";
export {
  planComparisonSvg,
  planSvg,
  type PlanSvgOptions,
  segmentColour,
} from "./src/cli/plan_svg.ts";
export { ProgressBar, type ProgressBarOptions, renderProgress } from "./src/cli/progress_bar.ts";
export { gaussian, seededRandom } from "./src/cli/random.ts";
export { Spinner, type SpinnerOptions } from "./src/cli/spinner.ts";
// The main entry's types, which the CLI's exports mention (decoders, plans, batches): exported
// here too, so that this entry's documentation is complete.
export type * from "./mod.ts";
export { VERSION } from "./src/core/version.ts";

if (import.meta.main) {
  const { runCli } = await import("./src/cli/main.ts");
  const code = await runCli((globalThis as { Deno: { args: string[] } }).Deno.args);
  (globalThis as { Deno: { exit(code: number): never } }).Deno.exit(code);
}
