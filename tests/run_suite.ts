/**
 * The README's test command, `deno task test`: the whole suite (every test module and every
 * documentation example), ending with one summary line in `deno test`'s own format.
 *
 * - **Where the only GPU is a software adapter** (lavapipe: CI and development machines) or
 *   there is none, most of the suite's time is one CPU core at a time compiling kernels with
 *   LLVM, so test modules run in their own `deno test` processes, as many at once as the machine
 *   has cores (`LEAN_TEST_JOBS=N` sets the number), the slowest known modules first. Everything
 *   is type-checked once first (`deno test --doc --no-run`), then each process runs with
 *   `--no-check`; the documentation examples run in one more process. Each module's output is
 *   printed whole when it ends, so outputs never interleave. A process that dies by SIGABRT or
 *   SIGSEGV after its own summary of 0 failures (a known crash in lavapipe's teardown at exit,
 *   docs/testing.md) runs again, at most three more times, and the last run counts: a crash
 *   there counts as a failure.
 * - **On a hardware GPU, with `LEAN_TEST_JOBS=1`, or with arguments**, it is exactly `deno test
 *   -A --v8-flags=--expose-gc --doc [arguments]`, one process: GPU tests calibrate and compare
 *   grids on the one GPU, and test files in several threads of one process stopped making
 *   progress on the H200 (docs/testing.md).
 *
 * Run: `deno task test` (or `deno run -A tests/run_suite.ts`).
 *
 * @module
 */

import { summarizeAdapter } from "../src/gpu/gpu_runtime.ts";

/** The flags every `deno test` of the suite takes. */
const TEST_FLAGS = ["test", "-A", "--v8-flags=--expose-gc"];

/**
 * Test modules known to take the longest on lavapipe, longest first (session 53's fresh-clone
 * run with `GALLIVM_PERF=nopt`: 305, 156, 93, 60, 48, 47, 43 and 41 s; docs/testing.md, "Where a
 * fresh clone's test time goes"), started first so that no long module starts last.
 */
const SLOW_FIRST = [
  "tests/kernel_options_test.ts",
  "tests/decode_test.ts",
  "tests/matrix_emulated_test.ts",
  "tests/token_runs_test.ts",
  "tests/paged_gpu_test.ts",
  "tests/reliability_test.ts",
  "tests/tiled_test.ts",
  "tests/combinations_gpu_test.ts",
];

/** Folders `deno test` does not search (deno.json's `exclude`, and what no test lives in). */
const SKIPPED_DIRS = new Set([
  ".git",
  ".gpu",
  ".wt",
  ".scratch",
  "node_modules",
  "dist",
  "results",
]);

/**
 * Whether a file name is a test module's, by `deno test`'s rule.
 *
 * @example
 * ```ts
 * import { isTestModule } from "./run_suite.ts";
 * console.log(isTestModule("decode_test.ts"), isTestModule("helpers.ts")); // true false
 * ```
 */
export function isTestModule(name: string): boolean {
  return /(^|[._])test\.(ts|tsx|mts|js|mjs|jsx)$/.test(name);
}

/**
 * Every test module under `dir` (folders `deno test` does not search left out), as sorted paths
 * relative to it.
 *
 * @example
 * ```ts
 * import { testModules } from "./run_suite.ts";
 * console.log(testModules("tests").includes("run_suite_test.ts")); // true
 * ```
 */
export function testModules(dir: string, prefix = ""): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${prefix}${entry.name}`;
    if (entry.isDirectory && !SKIPPED_DIRS.has(entry.name)) {
      found.push(...testModules(`${dir}/${entry.name}`, `${path}/`));
    } else if (entry.isFile && isTestModule(entry.name)) {
      found.push(path);
    }
  }
  return found.sort();
}

/**
 * Test processes to run at once: `LEAN_TEST_JOBS`, else 1 where Deno's WebGPU finds a hardware
 * adapter, else the machine's cores.
 *
 * @example
 * ```ts
 * import { suiteJobs } from "./run_suite.ts";
 * console.log((await suiteJobs()) >= 1); // true
 * ```
 */
export async function suiteJobs(): Promise<number> {
  const set = Deno.env.get("LEAN_TEST_JOBS");
  if (set !== undefined) {
    const n = Number(set);
    if (!Number.isInteger(n) || n < 1) {
      throw new RangeError(`LEAN_TEST_JOBS must be a whole number >= 1, got "${set}"`);
    }
    return n;
  }
  const adapter = await navigator.gpu?.requestAdapter().catch(() => null);
  if (adapter && !summarizeAdapter(adapter.info).software) return 1;
  return Math.max(1, navigator.hardwareConcurrency);
}

/** Counts from a `deno test` summary line. */
export interface Summary {
  ok: boolean;
  passed: number;
  failed: number;
  ignored: number;
}

/**
 * The counts of the last summary line of a `deno test` output, or undefined where it has none.
 *
 * @example
 * ```ts
 * import { parseSummary } from "./run_suite.ts";
 * console.log(parseSummary("ok | 6 passed | 0 failed | 1 ignored (2s)")?.ignored); // 1
 * ```
 */
export function parseSummary(output: string): Summary | undefined {
  // (Colour codes, should the output have any: `deno test` colours only a terminal's.)
  // deno-lint-ignore no-control-regex
  const plain = output.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "");
  const lines = plain.split("\n").filter((l) => /^(ok|FAILED) \| \d+ passed/.test(l));
  const line = lines.at(-1);
  if (line === undefined) return undefined;
  const count = (what: string) => Number(line.match(new RegExp(`(\\d+) ${what}`))?.[1] ?? 0);
  return {
    ok: line.startsWith("ok"),
    passed: count("passed"),
    failed: count("failed"),
    ignored: count("ignored"),
  };
}

/** The test processes running now (ended with the runner on SIGINT or SIGTERM). */
const running = new Set<Deno.ChildProcess>();

/**
 * Ends the running test processes with the runner when it is interrupted or terminated (a CI
 * timeout signals the runner; its children would go on otherwise).
 */
function endChildrenOnSignals(): void {
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    Deno.addSignalListener(signal, () => {
      for (const child of running) {
        try {
          child.kill("SIGKILL");
        } catch {
          // (Already ended.)
        }
      }
      Deno.exit(code);
    });
  }
}

/**
 * The environment of the suite's processes over a software adapter: Mesa's llvmpipe without LLVM's
 * optimization passes (`GALLIVM_PERF=nopt`, unless the caller set `GALLIVM_PERF`). Compiling
 * kernels is most of the suite's time there, and the tests' shapes are small: with a cold shader
 * cache on the 2-core development machine, `tests/matrix_emulated_test.ts` took 143 s instead of
 * 287 and `tests/kernel_options_test.ts` 272 s instead of 337 (session 53, the two runs of each at
 * once), and the whole fresh-clone suite 500 s instead of 783. The kernels' WGSL, the SPIR-V and
 * Mesa's own NIR passes are the same; lavapipe runs the code LLVM emits unoptimized.
 */
const SOFTWARE_ADAPTER_ENV = { GALLIVM_PERF: Deno.env.get("GALLIVM_PERF") ?? "nopt" };

/** One `deno test` process's output (stdout and stderr as they came) and exit status. */
async function runDeno(args: string[]): Promise<ProcessRun> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    env: SOFTWARE_ADAPTER_ENV,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  running.add(child);
  child.status.finally(() => running.delete(child));
  const chunks: string[] = [];
  const decoder = () => new TextDecoderStream();
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(decoder())) chunks.push(text);
  };
  const [status] = await Promise.all([
    child.status,
    collect(child.stdout),
    collect(child.stderr),
  ]);
  return { code: status.code, output: chunks.join("") };
}

/**
 * Reruns of a module whose process crashed at exit after a summary of 0 failures. Mesa's shader
 * cache is warm by then, so a rerun takes seconds; session 53's fresh-clone run saw
 * `tests/kernel_options_test.ts` crash so twice in a row (then 10 runs of it in a row, alone,
 * without a crash), so one rerun was not enough. `.ci/run` reruns the serial suite as often.
 */
export const CRASH_RERUNS = 3;

/** A test process's exit status and its whole output. */
export interface ProcessRun {
  /** Exit status (134: SIGABRT, 139: SIGSEGV). */
  readonly code: number;
  /** stdout and stderr together. */
  readonly output: string;
}

/** A test process that died by SIGABRT or SIGSEGV after a summary of 0 failures. */
function crashedAtExit(code: number, summary: Summary | undefined): boolean {
  return (code === 134 || code === 139) && summary?.ok === true;
}

/**
 * Runs a module's process, and runs it again (at most {@linkcode CRASH_RERUNS} times) while it
 * crashes at exit after a summary of 0 failures; the last run counts. `log` gets each crashed
 * run's output with a note.
 *
 * @example
 * ```ts
 * import { runCountingCrashes } from "./run_suite.ts";
 * const runs = [134, 0].map((code) => ({ code, output: "ok | 2 passed | 0 failed (1s)" }));
 * const next = () => Promise.resolve(runs.shift()!);
 * const { run } = await runCountingCrashes("a_test.ts", next, () => {});
 * console.log(run.code); // 0
 * ```
 */
export async function runCountingCrashes(
  name: string,
  runOnce: () => Promise<ProcessRun>,
  log: (text: string) => void,
): Promise<{ run: ProcessRun; summary: Summary | undefined }> {
  let run = await runOnce();
  let summary = parseSummary(run.output);
  for (let rerun = 1; rerun <= CRASH_RERUNS && crashedAtExit(run.code, summary); rerun++) {
    log(
      `${run.output}\n[suite] ${name}: crashed at exit (exit ${run.code}) after its summary ` +
        `of 0 failures; running it again (${rerun} of at most ${CRASH_RERUNS}), the last run counts`,
    );
    run = await runOnce();
    summary = parseSummary(run.output);
  }
  return { run, summary };
}

/** Runs the suite in processes, `jobs` at once; returns the exit status. */
async function runParallel(jobs: number): Promise<number> {
  const start = performance.now();
  const modules = testModules(".");
  const order = [
    ...SLOW_FIRST.filter((m) => modules.includes(m)),
    ...modules.filter((m) => !SLOW_FIRST.includes(m)),
  ];
  console.log(
    `lean-attention suite: ${modules.length} test modules and the documentation ` +
      `examples, ${jobs} processes at once (type check first)`,
  );
  const check = await runDeno([...TEST_FLAGS, "--doc", "--no-run"]);
  if (check.code !== 0) {
    console.log(check.output);
    console.log(`FAILED | 0 passed | 1 failed (type check of the suite)`);
    return 1;
  }
  // The documentation examples of every file that is not a test module: `deno test --doc`
  // over the folder with the test modules left out.
  const docArgs = [
    ...TEST_FLAGS,
    "--doc",
    "--no-check",
    `--ignore=${modules.join(",")}`,
    ".",
  ];
  const queue: { name: string; args: string[] }[] = [
    ...order.map((m) => ({ name: m, args: [...TEST_FLAGS, "--doc", "--no-check", m] })),
    { name: "documentation examples", args: docArgs },
  ];
  const total = { passed: 0, failed: 0, ignored: 0 };
  const failures: string[] = [];
  const worker = async () => {
    for (let job = queue.shift(); job !== undefined; job = queue.shift()) {
      const { run, summary } = await runCountingCrashes(
        job.name,
        () => runDeno(job.args),
        console.log,
      );
      console.log(run.output);
      total.passed += summary?.passed ?? 0;
      total.failed += summary?.failed ?? 0;
      total.ignored += summary?.ignored ?? 0;
      if (run.code !== 0 || summary === undefined) {
        // A failed test, or an exit with no summary or no failed test (an uncaught error, a
        // crash): the module fails, counted once if no test of it did.
        if ((summary?.failed ?? 0) === 0) total.failed += 1;
        failures.push(`${job.name} (exit ${run.code})`);
      }
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  const seconds = Math.round((performance.now() - start) / 1000);
  if (failures.length > 0) console.log(`[suite] failed: ${failures.join(", ")}`);
  const ok = failures.length === 0;
  console.log(
    `${ok ? "ok" : "FAILED"} | ${total.passed} passed | ${total.failed} failed | ` +
      `${total.ignored} ignored (${Math.floor(seconds / 60)}m${seconds % 60}s)`,
  );
  return ok ? 0 : 1;
}

if (import.meta.main) {
  const jobs = Deno.args.length > 0 ? 1 : await suiteJobs();
  if (jobs === 1) {
    const status = await new Deno.Command(Deno.execPath(), {
      args: [...TEST_FLAGS, "--doc", ...Deno.args],
      stdout: "inherit",
      stderr: "inherit",
    }).spawn().status;
    // (A process ended by a signal has code 128 plus its number, as a shell reports it.)
    Deno.exit(status.code);
  }
  endChildrenOnSignals();
  Deno.exit(await runParallel(jobs));
}
