/**
 * The CLI: flag parsing and usage errors, the progress bar, the plan picture's structure (no GPU
 * needed), the commands on the CPU backend in process, and the `cli.ts` entry point as a
 * subprocess (exit codes 0 and 2).
 */

import assert from "node:assert/strict";
import { createDecoder, createPlan, type Plan } from "../mod.ts";
import { describePlan, DIRECT, PIECE, PIECE_STRIDE, REDUCE_STRIDE } from "../plan.ts";
import {
  captureIO,
  formatBenchTable,
  formatUsage,
  parseFlags,
  planSvg,
  ProgressBar,
  renderProgress,
  runCli,
  segmentColour,
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

/** Checks that every tag is closed in order (the SVG is well-formed XML without a DOM parser). */
function assertWellFormed(svg: string): void {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    const [, closing, name, selfClosing] = m;
    if (selfClosing) continue;
    if (closing) assert.equal(stack.pop(), name, `</${name}> closes the open tag`);
    else stack.push(name);
  }
  assert.deepEqual(stack, [], "every tag closed");
  assert.ok(!/NaN|undefined|Infinity/.test(svg), "no NaN, undefined or Infinity in the SVG");
  assert.ok(!/&(?!#\d+;)/.test(svg), "text is escaped");
}

function count(svg: string, cls: string): number {
  return svg.split(`class="${cls}"`).length - 1;
}

/** The crossings a plan has, counted from the schedule directly. */
function crossings(plan: Plan): { seq: number; head: number } {
  const s = plan.schedule;
  let seq = 0;
  let head = 0;
  for (let w = 0; w < s.workgroups; w++) {
    for (let i = s.pieceOffsets[w] + 1; i < s.pieceOffsets[w + 1]; i++) {
      const changed = s.pieces[i * PIECE_STRIDE + PIECE.seq] !==
        s.pieces[(i - 1) * PIECE_STRIDE + PIECE.seq];
      if (changed) seq++;
      else head++;
    }
  }
  return { seq, head };
}

const SHAPES = [
  {
    seqLens: [37, 512, 1000, 4096, 130, 2048, 777, 3000],
    numHeads: 32,
    numKVHeads: 4,
    headDim: 128,
  },
  { seqLens: [5000], numHeads: 8, numKVHeads: 1, headDim: 64 },
  { seqLens: [64, 64, 65], numHeads: 4, numKVHeads: 2, headDim: 64, qLen: 4 },
];

Deno.test("planSvg draws one bar per piece, hatches partial pieces and marks crossings and merges", () => {
  let sawSeqCross = false;
  let sawMerge = false;
  for (const shape of SHAPES) {
    for (const strategy of ["lean", "split", "single"] as const) {
      for (const grid of [7, 96]) {
        const plan = createPlan(shape, { strategy, grid });
        const svg = planSvg(plan);
        const label = `${strategy} grid ${grid} ${shape.seqLens}`;
        assert.match(
          svg,
          /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="1100" height="\d+"/,
        );
        assertWellFormed(svg);
        const s = plan.schedule;
        const pieces = s.pieceOffsets[s.workgroups];
        assert.equal(count(svg, "piece"), pieces, label);
        assert.equal(count(svg, "partial"), s.partialSlots, label);
        let direct = 0;
        for (let i = 0; i < pieces; i++) {
          direct += +(s.pieces[i * PIECE_STRIDE + PIECE.slot] === DIRECT);
        }
        assert.equal(svg.split('data-slot="direct"').length - 1, direct, label);
        const want = crossings(plan);
        assert.equal(count(svg, "cross cross-seq"), want.seq, label);
        assert.equal(count(svg, "cross cross-head"), want.head, label);
        assert.equal(want.seq + want.head, pieces - s.workgroups, label);
        const merges = [...svg.matchAll(/class="merge"[^>]*data-slots="(\d+)"/g)];
        assert.equal(merges.length, s.reduce.length / REDUCE_STRIDE, label);
        assert.equal(merges.reduce((a, m) => a + Number(m[1]), 0), s.partialSlots, label);
        // One row per workgroup: every workgroup index appears on some piece.
        const rows = new Set([...svg.matchAll(/data-wg="(\d+)"/g)].map((m) => Number(m[1])));
        assert.equal(rows.size, s.workgroups, label);
        sawSeqCross ||= want.seq > 0;
        sawMerge ||= merges.length > 0;
      }
    }
  }
  assert.ok(sawSeqCross && sawMerge, "the shapes exercise crossings and merges");
});

Deno.test("planSvg keeps bars inside the plot and in global tile order", () => {
  const plan = createPlan(SHAPES[0], { strategy: "lean", grid: 96 });
  const svg = planSvg(plan, { width: 800, title: "a <b> & c" });
  assert.match(svg, /width="800"/);
  assert.ok(svg.includes("a &#60;b&#62; &#38; c"), "title escaped");
  const bars = [
    ...svg.matchAll(/class="piece" x="([\d.]+)" y="(\d+)" width="([\d.]+)"[^>]*data-wg="(\d+)"/g),
  ]
    .map((m) => ({ x: +m[1], y: +m[2], w: +m[3], wg: +m[4] }));
  assert.equal(bars.length, plan.schedule.pieceOffsets[plan.schedule.workgroups]);
  for (let i = 1; i < bars.length; i++) {
    // Runs are contiguous in the global order: each bar starts where the previous one ended.
    assert.ok(Math.abs(bars[i].x - (bars[i - 1].x + bars[i - 1].w)) < 0.02, `bar ${i}`);
    assert.ok(bars[i].y >= bars[i - 1].y, "rows go down with the workgroup index");
    assert.equal(bars[i].y > bars[i - 1].y, bars[i].wg !== bars[i - 1].wg);
  }
  const last = bars[bars.length - 1];
  assert.ok(bars[0].x === 70 && Math.abs(last.x + last.w - (800 - 20)) < 0.02, "spans the plot");
  assert.throws(() => planSvg(plan, { width: 100 }), RangeError);
  assert.throws(() => planSvg(plan, { width: "wide" as unknown as number }), TypeError);
});

Deno.test("segmentColour varies hue by sequence and shade by head", () => {
  assert.equal(segmentColour(0, 0, 1), "hsl(0,62%,52%)");
  assert.equal(segmentColour(0, 0, 8), "hsl(0,62%,34%)");
  assert.equal(segmentColour(0, 7, 8), "hsl(0,62%,70%)");
  assert.notEqual(segmentColour(1, 0, 8), segmentColour(2, 0, 8));
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

Deno.test("runCli plan writes the picture and prints the plan", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/p.svg`;
    const io = captureIO();
    const argv = ["plan", "--seq-lens=700,90,300", "--heads=8", "--kv-heads=2", "--grid=12"];
    assert.equal(await runCli([...argv, `--out=${path}`], io), 0, io.stderr);
    const plan = createPlan({ seqLens: [700, 90, 300], numHeads: 8, numKVHeads: 2, headDim: 128 }, {
      grid: 12,
    });
    assert.ok(io.stdout.startsWith("lean: 3 seq x 2 kv heads x 1 row blocks = 6 segments"));
    assert.ok(io.stdout.includes(`wrote ${path} (workgroups: lean 12; ${plan.numTiles} tiles)`));
    const svg = await Deno.readTextFile(path);
    assert.equal(svg, planSvg(plan));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runCli plan takes MLA's head dims, and plans as the chosen backend would", async () => {
  // With --grid: the library's plan of the shape (K rows of 576, V rows of 512).
  const mla = ["--seq-lens=900,40", "--heads=16", "--kv-heads=1", "--head-dim=576"];
  let io = captureIO();
  assert.equal(await runCli(["plan", ...mla, "--head-dim-v=512", "--grid=6"], io), 0, io.stderr);
  const shape = {
    seqLens: [900, 40],
    numHeads: 16,
    numKVHeads: 1,
    headDim: 576,
    headDimV: 512,
  };
  const want = createPlan(shape, { grid: 6 });
  assert.equal(io.stdout, `${describePlan(want)}\n  grid 6 from --grid\n`);
  // V's head dim is part of the shape: above K's it is refused as the library refuses it.
  io = captureIO();
  assert.equal(await runCli(["plan", ...mla, "--head-dim-v=600", "--grid=6"], io), 2);
  assert.ok(
    io.stderr.startsWith('error: Flag --head-dim-v must be an integer from 8 to 576: got "600"'),
  );
  // Without --grid: the backend's own plan (its blocks and its grid), here the CPU's.
  io = captureIO();
  assert.equal(await runCli(["plan", ...mla, "--head-dim-v=512", "--backend=cpu"], io), 0);
  const decoder = await createDecoder({ backend: "cpu" });
  try {
    const own = decoder.plan(shape);
    assert.ok(io.stdout.startsWith(`${describePlan(own)}\n  grid ${own.grid} from cpu device`));
  } finally {
    await decoder.dispose();
  }
});

Deno.test("runCli bench --json on the CPU gives one row per context and strategy", async () => {
  const io = captureIO();
  const argv = [
    "bench",
    "--backend=cpu",
    "--contexts=64,200",
    "--heads=4",
    "--kv-heads=2",
    "--head-dim=32",
    "--strategies=lean,single",
    "--runs=1",
    "--json",
  ];
  assert.equal(await runCli(argv, io), 0, io.stderr);
  const report = JSON.parse(io.stdout);
  assert.equal(report.backend, "cpu");
  assert.deepEqual(
    report.rows.map((r: { context: number; strategy: string }) => `${r.strategy} ${r.context}`),
    [
      "lean 64",
      "single 64",
      "lean 200",
      "single 200",
    ],
  );
  for (const row of report.rows) assert.ok(row.medianMs > 0 && row.kvGBps > 0);
  // Back-to-back timings are for GPUs: the CPU has no pass to start and drain.
  for (const row of report.rows) assert.equal(row.streamMs, undefined);
  assert.equal(io.stderr.trim().split("\n").length, 4, "a progress line per case");
  assert.ok(io.stderr.includes("[##############################] 4/4 100%  single 200"));
});

Deno.test("runCli bench takes --q-len and --matrix-math, and says what ran", async () => {
  const io = captureIO();
  const argv = [
    "bench",
    "--backend=cpu",
    "--contexts=40",
    "--heads=8",
    "--kv-heads=2",
    "--head-dim=16",
    "--q-len=4",
    "--matrix-math",
    "--strategies=lean",
    "--runs=1",
  ];
  assert.equal(await runCli(argv, io), 0, io.stderr);
  // The CPU backend has no matrix units: the option is ignored, and the table says so.
  assert.match(io.stdout, /2 heads, head dim 16, qLen 4, f16 KV; median/);
  const json = captureIO();
  assert.equal(await runCli([...argv, "--json"], json), 0, json.stderr);
  const report = JSON.parse(json.stdout);
  assert.deepEqual(report.shape, {
    batch: 1,
    numHeads: 8,
    numKVHeads: 2,
    headDim: 16,
    qLen: 4,
    kvDtype: "f16",
  });
  assert.equal(report.matrixUnits, false);
  for (const bad of ["--q-len=0", "--q-len=17"]) {
    const err = captureIO();
    assert.equal(await runCli(["bench", "--backend=cpu", bad], err), 2);
    assert.match(err.stderr, /Flag --q-len must be an integer from 1 to 16/);
  }
});

Deno.test("runCli bench takes --kv-dtype: 8-bit K/V with one scale per tensor", async () => {
  const argv = ["bench", "--backend=cpu", "--contexts=40", "--heads=4", "--kv-heads=2"];
  const common = [...argv, "--head-dim=16", "--strategies=lean", "--runs=1"];
  for (const dtype of ["int8", "fp8e4m3"]) {
    const io = captureIO();
    assert.equal(await runCli([...common, `--kv-dtype=${dtype}`], io), 0, io.stderr);
    assert.match(io.stdout, new RegExp(`head dim 16, qLen 1, ${dtype} KV; median`));
    const json = captureIO();
    assert.equal(await runCli([...common, `--kv-dtype=${dtype}`, "--json"], json), 0);
    const report = JSON.parse(json.stdout);
    assert.equal(report.shape.kvDtype, dtype);
    // GB/s counts the 8-bit bytes: half of f16's per token.
    const row = report.rows[0];
    assert.ok(Math.abs(row.kvGBps * row.medianMs * 1e6 - 2 * 40 * 2 * 16) < 1e-6 * 2560);
  }
  const err = captureIO();
  assert.equal(await runCli([...argv, "--kv-dtype=int4"], err), 2);
  assert.match(err.stderr, /--kv-dtype/);
  assert.match(err.stderr, /int4/);
});

Deno.test("runCli bench takes MLA: --head-dim-v, and --v-from-k (V read from K's rows)", async () => {
  const argv = ["bench", "--backend=cpu", "--contexts=40", "--heads=16", "--kv-heads=1"];
  const common = [...argv, "--head-dim=72", "--head-dim-v=64", "--strategies=lean", "--runs=1"];
  for (const latent of [false, true]) {
    const flags = latent ? [...common, "--v-from-k"] : common;
    const io = captureIO();
    assert.equal(await runCli(flags, io), 0, io.stderr);
    assert.match(io.stdout, new RegExp(`head dim 72/64${latent ? " \\(V from K\\)" : ""}, qLen 1`));
    const json = captureIO();
    assert.equal(await runCli([...flags, "--json"], json), 0, json.stderr);
    const report = JSON.parse(json.stdout);
    assert.equal(report.shape.headDimV, 64);
    assert.equal(report.shape.vFromK, latent ? true : undefined);
    // GB/s counts K's rows and, unless it is read from them, V's: f16, 40 tokens, one KV head.
    const row = report.rows[0];
    const bytes = 40 * (72 + (latent ? 0 : 64)) * 2;
    assert.ok(Math.abs(row.kvGBps * row.medianMs * 1e6 - bytes) < 1e-6 * bytes);
  }
  for (
    const [bad, re] of [
      [
        ["--head-dim-v=80", "--v-from-k"],
        /Flag --head-dim-v must be at most --head-dim \(72\) with --v-from-k: got 80/,
      ],
      [["--head-dim-v=60"], /Flag --head-dim-v must be a multiple of 8: got 60/],
      [["--head-dim-v=1024"], /--head-dim-v/],
    ] as const
  ) {
    const err = captureIO();
    assert.equal(await runCli([...argv, "--head-dim=72", ...bad], err), 2);
    assert.match(err.stderr, re);
  }
});

Deno.test("runCli demo takes --q-len and --matrix-math, and says what ran", async () => {
  const io = captureIO();
  const argv = ["demo", "--backend=cpu", "--seq-lens=40,100", "--q-len=4", "--matrix-math"];
  assert.equal(await runCli([...argv, "--runs=1", "--json"], io), 0, io.stderr);
  const report = JSON.parse(io.stdout);
  assert.equal(report.batch.qLen, 4);
  // The CPU backend has no matrix units: the option is ignored, and the results stay f32 grade.
  assert.equal(report.matrixUnits, false);
  for (const row of report.rows) assert.ok(row.ok && row.relativeL2 < 1e-5, JSON.stringify(row));
  const text = captureIO();
  assert.equal(await runCli([...argv, "--runs=1"], text), 0, text.stderr);
  assert.match(text.stdout, /head dim 128, qLen 4, KV f16/);
  assert.ok(!text.stdout.includes("matrix units"));
  // A batch whose sequences are shorter than qLen: the decoder's error, naming the field.
  const short = captureIO();
  assert.equal(
    await runCli(["demo", "--backend=cpu", "--seq-lens=2", "--q-len=4", "--runs=1"], short),
    1,
  );
  assert.match(short.stderr, /seqLens\[0\] must be 0 or an integer >= qLen \(4\): got 2/);
});

Deno.test("formatBenchTable shows back-to-back columns only for rows that have them", () => {
  const base = {
    version: "0.1.0",
    backend: "webgpu" as const,
    reason: "requested",
    device: "gpu",
    grid: 8,
    shape: { batch: 1, numHeads: 4, numKVHeads: 2, headDim: 32, qLen: 1 },
    matrixUnits: false,
    runs: 3,
  };
  const rows = [
    { context: 64, strategy: "lean" as const, workgroups: 8, medianMs: 0.02, kvGBps: 1 },
    { context: 64, strategy: "split" as const, workgroups: 4, medianMs: 0.03, kvGBps: 1 },
  ];
  const alone = formatBenchTable({ ...base, rows });
  assert.ok(!alone.includes("b2b"), alone);
  const both = formatBenchTable({
    ...base,
    rows: [{ ...rows[0], streamMs: 0.0125 }, { ...rows[1], streamMs: 0.0275 }],
  });
  assert.match(both, /lean b2b ms +split b2b ms/);
  assert.match(both, /0\.013 +0\.028/);
});

Deno.test("runCli info --json reports the CPU and what auto picks, Dawn only when asked", async () => {
  const io = captureIO();
  assert.equal(await runCli(["info", "--json"], io), 0, io.stderr);
  const info = JSON.parse(io.stdout);
  assert.match(info.runtime, /^Deno /);
  assert.equal(info.adapters.length, 2);
  assert.equal(info.adapters[0].backend, "webgpu");
  assert.deepEqual(info.adapters[1], {
    backend: "dawn",
    available: false,
    reason: "not loaded (opt-in: --dawn loads it)",
  });
  assert.deepEqual(info.cpu, { grid: 16, source: "builtin" });
  const a = info.adapters[0];
  // With a hardware adapter auto picks it; with none or a software one, the CPU.
  assert.equal(info.auto.backend, a.available && !a.summary.software ? "webgpu" : "cpu");
  if (a.available) assert.ok(a.limits.maxStorageBufferBindingSize > 0 && a.profile.grid >= 1);
});

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../cli.ts", import.meta.url).pathname, ...args],
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

Deno.test("cli.ts exits 2 on a bad flag and runs the demo on the CPU", async () => {
  const bad = await cli(["plan", "--grid=-3"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^error: Flag --grid must be an integer from 1 to 65536: got "-3"\n/);

  const demo = await cli(["demo", "--backend=cpu", "--runs=1"]);
  assert.equal(demo.code, 0, demo.stderr);
  assert.match(demo.stdout, /backend {2}cpu \(requested\)/);
  assert.match(demo.stdout, /lean: 8 seq x 8 kv heads x 1 row blocks = 64 segments/);
  for (const strategy of ["lean", "split", "single"]) {
    const row = demo.stdout.split("\n").find((l) => l.startsWith(`${strategy} `));
    assert.ok(row, `a row for ${strategy}`);
    const relL2 = Number(row.trim().split(/\s+/).at(-2));
    assert.ok(relL2 < 1e-5, `${strategy} rel L2 ${relL2}`);
  }
});
