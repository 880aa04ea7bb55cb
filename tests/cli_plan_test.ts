/**
 * The CLI's `plan` and `info` commands: the plan picture's structure (no GPU needed), `plan`
 * writing it and printing the plan (MLA's head dims, the backend's own plan), and `info --json`.
 */

import assert from "node:assert/strict";
import { createDecoder, createPlan, type Plan } from "../mod.ts";
import { describePlan, DIRECT, PIECE, PIECE_STRIDE, REDUCE_STRIDE } from "../plan.ts";
import { captureIO, planSvg, runCli, segmentColour } from "../cli.ts";

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
  // The optional kernel paths of a device opened on the adapter: subgroups, shader-f16 and matrix
  // units, with why not; Deno's WebGPU has no matrix units, and says where to find them.
  if (a.available) {
    const k = a.kernels;
    assert.ok(k.deviceError === undefined, k.deviceError);
    assert.ok(Number.isInteger(k.subgroups) && k.subgroups >= 0, `subgroups ${k.subgroups}`);
    assert.equal(typeof k.shaderF16, "boolean");
    assert.equal(k.matrixUnits, false);
    assert.match(k.matrixReason, /chromium-experimental-subgroup-matrix.*--dawn/);
  }
});

Deno.test("runCli info prints each adapter's kernel paths: subgroups, shader-f16, matrix units", async () => {
  const io = captureIO();
  assert.equal(await runCli(["info"], io), 0, io.stderr);
  const info = captureIO();
  await runCli(["info", "--json"], info);
  const a = JSON.parse(info.stdout).adapters[0];
  if (!a.available) {
    assert.doesNotMatch(io.stdout, /kernels:/);
    return;
  }
  const k = a.kernels;
  assert.ok(
    io.stdout.includes(
      `  kernels: subgroups ${k.subgroups > 0 ? `of ${k.subgroups} lanes` : "no"}, ` +
        `shader-f16 (halfMath) ${k.shaderF16 ? "yes" : "no"}\n` +
        `  matrix units (matrixMath): no: ${k.matrixReason}\n  profile: lean grid`,
    ),
    io.stdout,
  );
});
