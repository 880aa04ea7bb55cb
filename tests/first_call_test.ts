/**
 * What a new user sees on a first call: progress reports (`onProgress`) and `warmup()`, the CLI's
 * spinner (only on a terminal), the note beside timings that say nothing about GPUs, the adapter
 * name browsers give, and `await using` on the decoder.
 */

import assert from "node:assert/strict";
import { createDecoder, type DecoderProgress } from "../mod.ts";
import { captureIO, runCli, Spinner, timingNote } from "../cli.ts";
import { summarizeAdapter } from "../src/gpu/gpu_runtime.ts";
import { PipelineCache } from "../src/gpu/pipeline_cache.ts";
import { kernelSpec } from "../src/gpu/kernel_choice.ts";
import { createPlan } from "../src/plan/plan.ts";
import { DECODE_LOOP_USAGE, stepProgress } from "../examples/decode_loop.ts";
import { backendStatuses } from "./backends.ts";
import { assertMatchesReference, type CaseSpec, makeInput } from "./helpers.ts";

Deno.test("onProgress on the CPU reports ready; a bad listener is a TypeError", async () => {
  const seen: DecoderProgress[] = [];
  const decoder = await createDecoder({ backend: "cpu", grid: 5, onProgress: (p) => seen.push(p) });
  assert.deepEqual(seen, [{ stage: "ready", message: "cpu backend ready (grid 5)" }]);
  await decoder.warmup({ seqLens: [70, 3], numHeads: 2, numKVHeads: 1, headDim: 8 });
  assert.equal(seen.length, 1, "the CPU compiles nothing");
  await decoder.dispose();
  await assert.rejects(
    () => createDecoder({ backend: "cpu", onProgress: "loud" as unknown as () => void }),
    (e: unknown) =>
      e instanceof TypeError && e.message === "onProgress must be a function: got string",
  );
});

Deno.test("warmup validates the shape and the strategies, and the decoder stays usable", async () => {
  const decoder = await createDecoder({ backend: "cpu" });
  const shape = { seqLens: [40], numHeads: 2, numKVHeads: 2, headDim: 8 };
  await assert.rejects(
    () => decoder.warmup({ ...shape, headDim: 12 }),
    (e: unknown) => e instanceof RangeError && /headDim/.test(e.message) && /12/.test(e.message),
  );
  await assert.rejects(
    () => decoder.warmup(shape, { strategies: ["lean", "fast"] as never }),
    (e: unknown) => e instanceof RangeError && /strategy/.test(e.message) && /fast/.test(e.message),
  );
  await assert.rejects(
    () => decoder.warmup(shape, { strategies: "lean" as never }),
    (e: unknown) =>
      e instanceof TypeError && /strategies must be an array: got string/.test(e.message),
  );
  await decoder.warmup(shape, { strategies: ["single"] });
  const input = makeInput({ ...shape, seed: 3 });
  assertMatchesReference(input, await decoder.decode(input), "after warmup");
  await decoder.dispose();
  await assert.rejects(() => decoder.warmup(shape), /Decoder is disposed/);
});

Deno.test("await using disposes the decoder at the end of its scope", async () => {
  let kept: { decode: (i: never) => Promise<unknown> } | undefined;
  {
    await using decoder = await createDecoder({ backend: "cpu" });
    kept = decoder;
    assert.equal(typeof decoder[Symbol.asyncDispose], "function");
  }
  await assert.rejects(() => kept!.decode({} as never), /Decoder is disposed/);
});

Deno.test("the pipeline cache reports each compile once, with its spec key and count", () => {
  // A device that only records what it is asked to create: no GPU needed.
  const created: string[] = [];
  const device = {
    createShaderModule: (d: { label: string }) => ({ label: d.label }),
    createComputePipeline: (d: { label: string }) => {
      created.push(d.label);
      return { label: d.label };
    },
    // Explicit layouts (src/kernels/abi.ts), one per set of bindings.
    createBindGroupLayout: (d: { label: string }) => {
      layouts.push(d.label);
      return { label: d.label };
    },
    createPipelineLayout: () => ({}),
  } as unknown as GPUDevice;
  const layouts: string[] = [];
  const heard: Array<[string, number]> = [];
  const cache = new PipelineCache(device, {}, (key, before) => heard.push([key, before]));
  const plan = createPlan({ seqLens: [500, 30], numHeads: 4, numKVHeads: 2, headDim: 64 }, {
    grid: 4,
  });
  const spec = kernelSpec(plan);
  cache.get("decode", spec);
  cache.get("decode", spec);
  cache.get("merge", spec);
  cache.get("decode", { ...spec, headDim: 128 });
  const append = cache.append("f16");
  assert.equal(cache.append("f16").pipeline, append.pipeline, "compiled once");
  assert.deepEqual(heard.map(([, n]) => n), [0, 1, 2, 3]);
  assert.deepEqual(heard.map(([k]) => k), created, "one report per compiled pipeline");
  assert.match(heard[0][0], /^decode:d64:f32:/);
  assert.match(heard[1][0], /^merge:d64:/);
  assert.match(heard[2][0], /^decode:d128:/);
  assert.equal(heard[3][0], "append:f16");
  // One layout for the decode and the merge kernel (one bind group serves both), one for appends.
  assert.deepEqual(layouts, ["lean-attention attention", "lean-attention append"]);
});

/** The GPU property tests' first kernel family (tests/gpu_backend_test.ts): already compiled. */
const GPU_SPEC: CaseSpec = {
  seqLens: [300, 1, 129],
  numHeads: 8,
  numKVHeads: 2,
  headDim: 64,
  kvDtype: "f32",
  seed: 21,
};

const webgpu = (await backendStatuses()).find((s) => s.name === "webgpu");
Deno.test({
  name: "webgpu: onProgress reports adapter, device, ready and each compile; after warmup() a " +
    "decode compiles nothing",
  ignore: !webgpu?.ok,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const seen: DecoderProgress[] = [];
    const decoder = await createDecoder({
      backend: "webgpu",
      grid: 8,
      onProgress: (p) => seen.push(p),
    });
    try {
      assert.deepEqual(seen.map((p) => p.stage), ["adapter", "device", "ready"]);
      assert.match(seen[1].message, /^opening a device on \S/);
      assert.match(seen[2].message, /^webgpu backend ready on .* \(grid 8, option\)$/);
      const input = makeInput(GPU_SPEC);
      await decoder.warmup(input);
      const compiles = seen.filter((p) => p.stage === "compile");
      assert.equal(compiles.length, decoder.stats().pipelinesCreated);
      assert.ok(compiles.some((p) => p.kernel?.startsWith("decode:d64:f32:")), "decode kernel");
      compiles.forEach((p, i) => {
        assert.equal(p.done, i);
        assert.equal(p.message, `compiling kernel ${i + 1}: ${p.kernel}`);
      });
      const before = seen.length;
      for (const strategy of ["lean", "split", "single"] as const) {
        const call = { ...input, strategy };
        assertMatchesReference(call, await decoder.decode(call), strategy);
      }
      assert.equal(seen.length, before, "warmup compiled every kernel the calls need");
    } finally {
      await decoder.dispose();
    }
  },
});
if (!webgpu?.ok) {
  console.log(`skipping the webgpu progress test: ${webgpu?.ok ? "" : webgpu?.reason}`);
}

Deno.test("Spinner draws only on a terminal, redraws in place and clears its line", async () => {
  const tty = captureIO({ errIsTerminal: true });
  const spinner = new Spinner({ io: tty, intervalMs: 10 });
  spinner.update("adapter");
  assert.equal(spinner.active, true);
  await new Promise((r) => setTimeout(r, 35));
  spinner.update("compiling kernel 1: decode");
  spinner.update("x");
  spinner.stop();
  assert.equal(spinner.active, false);
  const frames = tty.stderr.split("\r").filter((f) => f !== "");
  assert.ok(frames.length >= 5, `frames drawn while waiting: ${frames.length}`);
  assert.match(frames[0], /^\| adapter$/);
  assert.ok(frames.some((f) => f.startsWith("/ adapter") || f.startsWith("- adapter")));
  // A shorter message pads over the longer one; stop() blanks the line and returns to its start.
  assert.match(tty.stderr, /\r. x {25}\r {3}\r$/);
  assert.ok(!tty.stderr.includes("\n"));
  spinner.stop(); // twice is fine

  const log = captureIO();
  const quiet = new Spinner({ io: log });
  quiet.update("adapter");
  assert.equal(quiet.active, false);
  quiet.stop();
  assert.equal(log.stderr, "");
  assert.throws(() => new Spinner({ io: log, intervalMs: 0 }), RangeError);
});

Deno.test("timing notes: the CPU backend and software adapters, nothing on hardware; no redraws in logs", async () => {
  assert.match(timingNote({ backend: "cpu", profile: { name: "cpu" } })!, /^timings from the CPU/);
  assert.match(
    timingNote({ backend: "dawn", profile: { name: "google swiftshader", software: true } })!,
    /software adapter \(google swiftshader\) say nothing about GPU speed/,
  );
  assert.equal(
    timingNote({ backend: "webgpu", profile: { name: "H100", software: false } }),
    undefined,
  );

  const io = captureIO();
  const argv = ["bench", "--backend=cpu", "--contexts=64", "--heads=2", "--kv-heads=1"];
  assert.equal(await runCli([...argv, "--head-dim=8", "--runs=1"], io), 0, io.stderr);
  assert.match(io.stdout.split("\n")[1], /^note: timings from the CPU backend/);
  assert.ok(!io.stderr.includes("\r"), "off a terminal: no spinner, no redrawn progress bar");
  const json = captureIO();
  assert.equal(await runCli([...argv, "--head-dim=8", "--runs=1", "--json"], json), 0);
  assert.match(JSON.parse(json.stdout).note, /^timings from the CPU backend/);
});

Deno.test("adapter names: Deno's description, Dawn's device and driver, a browser's vendor", () => {
  const info = (o: Record<string, unknown>) => o as unknown as GPUAdapterInfo;
  assert.equal(
    summarizeAdapter(info({ description: "NVIDIA H100 80GB HBM3", vendor: "4318" })).description,
    "NVIDIA H100 80GB HBM3",
  );
  assert.equal(
    summarizeAdapter(info({ description: "NVIDIA: 580.159.04", device: "nvidia-h100" }))
      .description,
    "nvidia-h100 (NVIDIA: 580.159.04)",
  );
  const browser = summarizeAdapter(
    info({ description: "", device: "", vendor: "nvidia", architecture: "ampere" }),
  );
  assert.equal(browser.description, "nvidia ampere");
  assert.equal(browser.software, false);
  const swiftshader = summarizeAdapter(
    info({ description: "", device: "", vendor: "google", architecture: "swiftshader" }),
  );
  assert.deepEqual(swiftshader, {
    description: "google swiftshader",
    vendor: "google",
    architecture: "swiftshader",
    software: true,
  });
  assert.equal(summarizeAdapter(info({})).description, "unknown adapter");
  assert.equal(summarizeAdapter(undefined).description, "unknown adapter");
});

Deno.test("examples/decode_loop.ts --help prints its usage; its progress redraws only on a terminal", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", new URL("../examples/decode_loop.ts", import.meta.url).pathname, "--help"],
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.equal(new TextDecoder().decode(out.stdout), `${DECODE_LOOP_USAGE}\n`);
  for (const flag of ["--backend", "--large", "--steps", "--sync-every", "--gc", "-h, --help"]) {
    assert.ok(DECODE_LOOP_USAGE.includes(`  ${flag}`), flag);
  }

  let tty = "";
  const onTerminal = stepProgress((t) => tty += t, true, 4);
  for (let i = 1; i <= 4; i++) onTerminal(i, 4);
  assert.equal(tty, "\r[#...] 1/4 steps\r[##..] 2/4 steps\r[###.] 3/4 steps\r[####] 4/4 steps\n");
  let log = "";
  const inLog = stepProgress((t) => log += t, false, 4);
  for (let i = 1; i <= 4; i++) inLog(i, 4);
  assert.equal(log, "[####] 4/4 steps\n");
});
