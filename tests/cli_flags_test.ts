/**
 * The CLI's flags and usage: flag parsing and usage errors, the usage text, the progress bar, and
 * `runCli`'s help, unknown command and usage errors (exit codes 0 and 2). No GPU needed.
 */

import assert from "node:assert/strict";
import {
  captureIO,
  formatUsage,
  parseFlags,
  ProgressBar,
  renderProgress,
  runCli,
  UsageError,
} from "../cli.ts";

const SPECS = {
  runs: { kind: "integer", min: 1, max: 1000, help: "timed runs" },
  json: { kind: "boolean", help: "print JSON" },
  backend: { kind: "choice", choices: ["cpu", "webgpu"], help: "backend" },
  "seq-lens": { kind: "integers", min: 1, max: 100, maxCount: 3, help: "lengths" },
  svg: { kind: "string", placeholder: "FILE", help: "output" },
} as const;

Deno.test("parseFlags reads --name=value, --name value and boolean flags", () => {
  const { flags, help } = parseFlags(
    ["--runs", "7", "--json", "--backend=webgpu", "--seq-lens=1,2,100", "--svg=a=b.svg"],
    SPECS,
  );
  assert.equal(help, false);
  assert.deepEqual(flags, {
    runs: 7,
    json: true,
    backend: "webgpu",
    "seq-lens": [1, 2, 100],
    svg: "a=b.svg",
  });
  assert.deepEqual(parseFlags([], SPECS).flags, {});
  assert.equal(parseFlags(["-h"], SPECS).help, true);
  assert.equal(parseFlags(["--runs=3", "--help"], SPECS).help, true);
});

Deno.test("parseFlags throws a UsageError naming the flag and the value", () => {
  const cases: Array<[string[], RegExp]> = [
    [["--frobnicate=1"], /^Unknown flag --frobnicate$/],
    [["-x"], /^Unknown flag "-x"$/],
    [["demo"], /^Unexpected argument "demo"/],
    [["--runs"], /^Flag --runs needs a value$/],
    [["--runs", "--json"], /^Flag --runs needs a value$/],
    [["--runs=0"], /^Flag --runs must be an integer from 1 to 1000: got "0"$/],
    [["--runs=1001"], /^Flag --runs must be an integer from 1 to 1000: got "1001"$/],
    [["--runs=2.5"], /^Flag --runs must be an integer from 1 to 1000: got "2.5"$/],
    [["--runs=ten"], /^Flag --runs must be an integer from 1 to 1000: got "ten"$/],
    [["--runs=1e3"], /got "1e3"$/],
    [["--runs=1", "--runs=2"], /^Flag --runs is given twice$/],
    [["--json=yes"], /^Flag --json takes no value: got "yes"$/],
    [["--backend=cuda"], /^Flag --backend must be one of cpu, webgpu: got "cuda"$/],
    [["--seq-lens=1,,2"], /^Flag --seq-lens must be an integer from 1 to 100: got ""$/],
    [["--seq-lens=1,2,3,4"], /list of 1 to 3 integers: got "1,2,3,4"$/],
    [["--seq-lens=5,101"], /^Flag --seq-lens must be an integer from 1 to 100: got "101"$/],
    [["--svg="], /^Flag --svg needs a non-empty value: got ""$/],
  ];
  for (const [argv, message] of cases) {
    assert.throws(() => parseFlags(argv, SPECS), (error: unknown) => {
      assert.ok(error instanceof UsageError, `${argv.join(" ")}: ${error}`);
      assert.equal(error.exitCode, 2);
      assert.match(error.message, message, argv.join(" "));
      assert.match(error.message, /^[A-Z]/, "sentence case");
      return true;
    });
  }
  assert.throws(() => parseFlags("--runs=1" as unknown as string[], SPECS), TypeError);
  assert.throws(() => parseFlags([1] as unknown as string[], SPECS), TypeError);
  // Object prototype names are not flags.
  assert.throws(() => parseFlags(["--constructor=1"], SPECS), /Unknown flag --constructor/);
});

Deno.test("formatUsage lists every flag with its values", () => {
  const text = formatUsage("lean-attention x", "Does x.", SPECS);
  assert.match(text, /^usage: lean-attention x \[flags\]\n\nDoes x\./);
  for (
    const hint of [
      "--runs=N",
      "--json ",
      "--backend=cpu|webgpu",
      "--seq-lens=N,N,...",
      "--svg=FILE",
    ]
  ) {
    assert.ok(text.includes(hint), hint);
  }
  assert.ok(text.includes("-h, --help"));
});

Deno.test("renderProgress draws a bar, a count and a percentage", () => {
  assert.equal(renderProgress(0, 4, 8), "[........] 0/4   0%");
  assert.equal(renderProgress(3, 4, 8, "x"), "[######..] 3/4  75%  x");
  assert.equal(renderProgress(10, 10, 5), "[#####] 10/10 100%");
  assert.throws(() => renderProgress(5, 4, 8), RangeError);
  assert.throws(() => renderProgress(1, 0, 8), RangeError);
});

Deno.test("ProgressBar redraws in place on a terminal and writes lines elsewhere", () => {
  const tty = captureIO({ errIsTerminal: true });
  const bar = new ProgressBar({ total: 3, io: tty, width: 6 });
  bar.tick("a");
  bar.tick("bb");
  bar.tick("c");
  bar.done();
  assert.equal(bar.completed, 3);
  assert.equal(tty.stderr.split("\r").length, 4); // three frames
  assert.equal(tty.stderr.split("\n").length, 2); // one newline at the end
  assert.ok(tty.stderr.includes("[######] 3/3 100%  c "), "last frame padded over the longer one");
  assert.throws(() => bar.tick(), RangeError);

  const log = captureIO();
  const plain = new ProgressBar({ total: 2, io: log, width: 4 });
  plain.tick("a");
  plain.tick("b");
  plain.done();
  assert.equal(log.stderr, "[##..] 1/2  50%  a\n[####] 2/2 100%  b\n");
  assert.equal(log.stdout, "");

  assert.throws(() => new ProgressBar({ total: 0, io: log }), RangeError);
  assert.throws(() => new ProgressBar({ total: "3" as unknown as number, io: log }), TypeError);
  assert.throws(() => new ProgressBar({ total: 3, io: log, width: 0 }), RangeError);
});

Deno.test("runCli: help, unknown command and usage errors with exit code 2", async () => {
  let io = captureIO();
  assert.equal(await runCli(["--help"], io), 0);
  assert.match(io.stdout, /^usage: lean-attention <command>/);
  for (const command of ["demo", "bench", "plan", "info"]) {
    io = captureIO();
    assert.equal(await runCli([command, "-h"], io), 0, command);
    assert.match(io.stdout, new RegExp(`^usage: lean-attention ${command} \\[flags\\]`));
  }
  io = captureIO();
  assert.equal(await runCli(["frob"], io), 2);
  assert.match(io.stderr, /^error: Unknown command "frob": expected demo, bench, plan or info\n/);
  const bad: Array<[string[], string]> = [
    [["demo", "--runs=0"], 'error: Flag --runs must be an integer from 1 to 1000: got "0"'],
    [["--backend=tpu"], 'error: Flag --backend must be one of auto, cpu, webgpu, dawn: got "tpu"'],
    [["bench", "--strategies=lean,fast"], "error: Flag --strategies must list strategies"],
    [
      ["bench", "--heads=6", "--kv-heads=4"],
      "error: Flag --heads must be a multiple of --kv-heads (4): got 6",
    ],
    [
      ["plan", "--heads=6", "--kv-heads=4", "--grid=8"],
      "error: Flags describe an invalid batch: numHeads",
    ],
    [["plan", "--head-dim=12", "--grid=8"], "error: Flags describe an invalid batch: headDim"],
    [["plan", "--width=800", "--grid=8"], "error: Flag --width sets the picture's width"],
    [["info", "--verbose"], "error: Unknown flag --verbose"],
  ];
  for (const [argv, start] of bad) {
    io = captureIO();
    assert.equal(await runCli(argv, io), 2, argv.join(" "));
    assert.ok(io.stderr.startsWith(start), `${argv.join(" ")}: ${io.stderr.split("\n")[0]}`);
    assert.match(io.stderr, /\n\nusage: lean-attention \w+ \[flags\]/, "usage follows the error");
    assert.equal(io.stdout, "");
  }
});
