/**
 * The CLI's `demo` and `bench` commands on the CPU backend in process (their flags, JSON reports
 * and tables), and the `cli.ts` entry point as a subprocess (exit codes 0 and 2).
 */

import assert from "node:assert/strict";
import { captureIO, formatBenchTable, runCli } from "../cli.ts";

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

Deno.test("runCli bench takes a model's attention variant: window, soft-cap, sinks, ALiBi", async () => {
  const argv = ["bench", "--backend=cpu", "--contexts=40,200", "--heads=4", "--kv-heads=2"];
  const common = [...argv, "--head-dim=16", "--strategies=lean", "--runs=1"];
  const variant = ["--sliding-window=32", "--soft-cap=50", "--sinks", "--alibi"];
  const io = captureIO();
  assert.equal(await runCli([...common, ...variant], io), 0, io.stderr);
  assert.match(io.stdout, /f16 KV, window 32, soft-cap 50, sinks, ALiBi; median/);
  const json = captureIO();
  assert.equal(await runCli([...common, ...variant, "--json"], json), 0, json.stderr);
  const report = JSON.parse(json.stdout);
  assert.equal(report.shape.slidingWindow, 32);
  assert.equal(report.shape.logitsSoftCap, 50);
  assert.equal(report.shape.sinks, true);
  assert.equal(report.shape.alibi, true);
  // GB/s counts the window's tokens only: 32 of 40 or 200, 2 KV heads, K and V of 16 f16 dims.
  for (const row of report.rows) {
    const bytes = Math.min(row.context, 32) * 2 * 32 * 2;
    assert.ok(Math.abs(row.kvGBps * row.medianMs * 1e6 - bytes) < 1e-6 * bytes, `${row.context}`);
  }
  // The window reaches the planner: 200 tokens plan the tiles of the last 32 only (two 64-token
  // tiles per KV head), half the workgroups of the plain context.
  const plain = captureIO();
  assert.equal(await runCli([...common, "--json"], plain), 0, plain.stderr);
  const wgs = (r: { rows: { context: number; workgroups: number }[] }) =>
    r.rows.find((x) => x.context === 200)!.workgroups;
  assert.ok(wgs(report) < wgs(JSON.parse(plain.stdout)), `${wgs(report)}`);
  for (
    const [bad, re] of [
      ["--sliding-window=0", /--sliding-window.*"0"/],
      ["--soft-cap=-5", /--soft-cap.*"-5"/],
      ["--soft-cap=2.5", /--soft-cap.*"2.5"/],
    ] as const
  ) {
    const err = captureIO();
    assert.equal(await runCli([...argv, bad], err), 2);
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

Deno.test("runCli demo takes a model's attention variant and checks every strategy against float64", async () => {
  const flags = ["demo", "--backend=cpu", "--runs=1", "--seq-lens=300,77", "--q-len=2"];
  const variant = ["--sliding-window=100", "--soft-cap=30", "--sinks", "--alibi"];
  const io = captureIO();
  assert.equal(await runCli([...flags, ...variant, "--json"], io), 0, io.stderr);
  const report = JSON.parse(io.stdout);
  assert.deepEqual(
    [
      report.batch.slidingWindow,
      report.batch.logitsSoftCap,
      report.batch.sinks,
      report.batch.alibi,
    ],
    [100, 30, true, true],
  );
  assert.equal(report.rows.length, 3);
  for (const row of report.rows) assert.ok(row.ok && row.relativeL2 < 1e-6, JSON.stringify(row));
  const text = captureIO();
  assert.equal(await runCli([...flags, ...variant], text), 0, text.stderr);
  assert.match(text.stdout, /of K and V\), window 100, soft-cap 30, sinks, ALiBi\n/);
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
