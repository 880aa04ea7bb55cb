/**
 * The CLI's dispatcher: picks the command, runs it, and turns usage errors into a message with
 * the command's usage on standard error and exit code 2.
 *
 * @module
 */

import { UsageError } from "./args.ts";
import { BENCH_USAGE, benchCommand } from "./bench_command.ts";
import { DEMO_USAGE, demoCommand } from "./demo_command.ts";
import { INFO_USAGE, infoCommand } from "./info_command.ts";
import { type CliIO, processIO } from "./io.ts";
import { PLAN_USAGE, planCommand } from "./plan_command.ts";
import { VERSION } from "../core/version.ts";

/**
 * The CLI's top-level usage text.
 *
 * @example
 * ```ts
 * import { CLI_USAGE } from "@lean/attention/cli";
 * console.log(CLI_USAGE.split("\n")[0]); // usage: lean-attention <command> [flags]
 * ```
 */
export const CLI_USAGE: string = `usage: lean-attention <command> [flags]

Decode-phase attention on WebGPU, scheduled with LeanAttention.

commands:
  demo   run a realistic ragged decode batch with every strategy on the best backend: plan,
         timings, error against the float64 reference (the default command)
  bench  sweep context lengths x strategies with a progress bar (--json for JSON)
  plan   print a plan and write an SVG picture of it
  info   list WebGPU adapters, features, limits and device profiles

Run "lean-attention <command> --help" for a command's flags, "lean-attention --version" for
the version. --backend=dawn (and info --dawn) loads Dawn from npm webgpu: in Deno it needs
--allow-read and --allow-ffi.`;

const COMMANDS: Record<
  string,
  { run: (argv: readonly string[], io: CliIO) => Promise<number>; usage: string }
> = {
  demo: { run: demoCommand, usage: DEMO_USAGE },
  bench: { run: benchCommand, usage: BENCH_USAGE },
  plan: { run: planCommand, usage: PLAN_USAGE },
  info: { run: infoCommand, usage: INFO_USAGE },
};

/**
 * Runs the CLI on `argv` (without the program name) and returns the exit code: 0 success, 1 a
 * failure (a backend that cannot open, a result out of tolerance), 2 a usage error. `--version`
 * prints the package version.
 *
 * @example
 * ```ts
 * import { captureIO, runCli } from "@lean/attention/cli";
 * const io = captureIO();
 * const code = await runCli(["plan", "--grid=zero"], io);
 * console.log(code, io.stderr.split("\n")[0]);
 * // 2 error: Flag --grid must be an integer from 1 to 65536: got "zero"
 * ```
 */
export async function runCli(
  argv: readonly string[],
  io: CliIO = processIO(),
): Promise<number> {
  const [first, ...rest] = argv;
  if (first === "-h" || first === "--help" || first === "help") {
    io.out(`${CLI_USAGE}\n`);
    return 0;
  }
  if (first === "--version" || first === "-V") {
    io.out(`@lean/attention ${VERSION}\n`);
    return 0;
  }
  // No command, or flags only: the demo.
  const name = first === undefined || first.startsWith("--") ? "demo" : first;
  const args = name === first ? rest : argv;
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    io.err(
      `error: Unknown command ${JSON.stringify(name)}: expected demo, bench, plan or info\n\n` +
        `${CLI_USAGE}\n`,
    );
    return 2;
  }
  try {
    return await command.run(args, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`error: ${error.message}\n\n${command.usage}\n`);
      return error.exitCode;
    }
    io.err(`error: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}
