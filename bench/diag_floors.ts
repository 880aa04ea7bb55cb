/**
 * Diagnostic of issue 13 (session 20): what a decode pass costs besides streaming K and V. Times
 * lean on a few shapes with parts of the pass removed (diagnostic only: outputs are not read):
 * the whole pass; the decode kernel's token loop skipped (its WGSL rewritten: the piece's set-up,
 * first loads and the workgroup's merge of its groups remain); the merge dispatch skipped; the
 * decode dispatch skipped (the merge alone; a pass with nothing in it is the benchmark's empty
 * pass, and cannot be warmed by time: its recordings take none). Then a plain streaming read of
 * the same bytes at two grids. The shapes separate the 4-row GQA kernel from the 1-row kernel
 * over the same bytes (`h8/8`) and from one KV head per sequence (`b8 h4/1`, each workgroup's K/V
 * rows contiguous). (Session 20's first runs also cut the groups' one-by-one merge to one group;
 * the kernels now merge the groups in parallel, so that variant is gone: bench/notes.md.)
 *
 * Session 21 adds variants that take the no-loop floor apart (`--variants=NAME|...`, default the
 * first four): the decode kernel returning at once, its barriers removed, its query loads
 * replaced by constants, and each run cut to its first piece. Session 22's take the token loop's
 * step apart: K/V rows read from the first 256 tokens (cached), the lanes' shuffles, the scores'
 * exponentials or the f16 unpacking removed, alone and with cached rows ("cached/bare": all
 * three removed, leaving the loads, the multiply-adds and the loop's control).
 *
 * Session 27 times the cells back to back too (`--stream-ms=2`: the benchmark's stream column),
 * where the targets are judged: an empty pass of both dispatches, back to back, is the least any
 * kernel of this two-dispatch design can take.
 *
 * The first variant's kernels calibrate the process's lean grids (cached per kernel class), so
 * a list should start with `lean`: a rewritten kernel calibrates to its own grid.
 *
 * Usage: deno run -A --unstable-webgpu bench/diag_floors.ts [--only=SUBSTRING|...]
 *   [--variants=NAME|...] [--stream-ms=MS] [--bench-cases=NAME|...] [--out=FILE]
 */

import {
  diagCases,
  installDispatchFilter,
  installShaderRewrite,
  timeLeanCell,
} from "./diag_lib.ts";
import { allVariants } from "./diag_floors_variants.ts";
import { requestDevice } from "../src/gpu/gpu_runtime.ts";
import { BufferUsage } from "../src/gpu/gpu_runtime.ts";
import { median, timeWarm } from "../src/gpu/gpu_timing.ts";
import { type BenchCase, loadCases } from "./bench_cases.ts";

const flag = (name: string) => Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
const out = flag("out");
const only = flag("only")?.split("|");
/** `--stream-ms=N`: also time passes of N ms of runs back to back (the benchmark's stream column). */
const streamMs = flag("stream-ms") ? Number(flag("stream-ms")) : undefined;

// The variants' hooks: a filter on the pass's dispatches and a rewrite of the decode kernel's WGSL.
const filter = installDispatchFilter();
let rewrite: ((code: string) => string) | undefined;
let rewriteMerge: ((code: string) => string) | undefined;
installShaderRewrite((code) =>
  rewrite && code.startsWith("// lean-attention decode kernel")
    ? rewrite(code)
    : rewriteMerge && code.startsWith("// lean-attention merge kernel")
    ? rewriteMerge(code)
    : code
);

const picked = flag("variants")?.split("|");
const variants = picked
  ? allVariants.filter((v) => picked.includes(v.name))
  : allVariants.slice(0, 4);

const kib = (n: number) => n * 1024;
const shape = (
  name: string,
  seqs: number,
  ctx: number,
  numHeads: number,
  numKVHeads: number,
): BenchCase => ({
  name,
  group: "diag",
  seqLens: Array(seqs).fill(kib(ctx)),
  numHeads,
  numKVHeads,
  headDim: 128,
  qLen: 1,
  kvDtype: "f16",
});
/** `--bench-cases=NAME|...`: the benchmark's cases of these exact names instead of the shapes below. */
const benchCases = flag("bench-cases")?.split("|");
const shapes: BenchCase[] = [
  shape("gqa32/8 2k", 1, 2, 32, 8),
  shape("gqa32/8 32k", 1, 32, 32, 8),
  shape("gqa32/8 128k", 1, 128, 32, 8),
  shape("b8 h4/1 128k", 8, 128, 4, 1),
  shape("h8/8 128k", 1, 128, 8, 8),
  shape("b1 h32 32k", 1, 32, 32, 32),
];
const cases = benchCases ? (await loadCases()).filter((c) => benchCases.includes(c.name)) : shapes;

// Held for the whole run: Deno's WebGPU panics ("Adapter does not exist") once a collected
// adapter's device is used.
const adapter = (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" }))!;
const device = await requestDevice(adapter);
const results: Record<string, unknown>[] = [];
console.log(
  `${"case".padEnd(14)} ${variants.map((v) => v.name.padStart(streamMs ? 25 : 18)).join("")}` +
    `${"read 264x128".padStart(18)}${"read 1056x256".padStart(18)}`,
);
for (const { c, input, kvBytes, kvSets } of diagCases(cases, only)) {
  const cells: string[] = [];
  for (const v of variants) {
    rewrite = v.rewrite;
    rewriteMerge = v.rewriteMerge;
    const cell = await timeLeanCell(
      device,
      input,
      kvSets,
      v.options ?? {},
      filter,
      v.skip,
      streamMs,
    );
    rewrite = undefined;
    rewriteMerge = undefined;
    cells.push(cell.text);
    if (cell.row) results.push({ case: c.name, variant: v.name, ...cell.row, kvBytes });
  }
  for (const [groups, size] of [[264, 128], [1056, 256]]) {
    const t = await readTime(kvBytes, kvSets, groups, size);
    cells.push(`${t.medianMs.toFixed(4)}/${t.lastWarmMs.toFixed(4)}`.padStart(18));
    results.push({ case: c.name, variant: `read ${groups}x${size}`, ...t, kvBytes });
  }
  const lean = results.find((r) => r.case === c.name && "pieces" in r);
  const shapeNote = lean ? ` (${lean.workgroups} workgroups, ${lean.pieces} pieces)` : "";
  console.log(`${c.name.padEnd(14)} ${cells.join("")}${shapeNote}`);
}
if (out) await Deno.writeTextFile(out, JSON.stringify({ results }, null, 1));

/** A grid-stride read of `bytes` (rotating over `sets` buffers), timed warm. */
async function readTime(bytes: number, sets: number, groups: number, size: number) {
  const module = device.createShaderModule({
    code: `
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> sink: array<u32>;
@compute @workgroup_size(${size})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  var acc = vec4<u32>(0u);
  let stride = nwg.x * ${size}u;
  let n = arrayLength(&src);
  for (var i = gid.x; i < n; i += stride) { acc ^= src[i]; }
  if (all(acc == vec4<u32>(0x9e3779b9u))) { sink[0] = acc.x; }
}`,
  });
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const sink = device.createBuffer({ size: 16, usage: BufferUsage.STORAGE });
  const srcs = Array.from(
    { length: sets },
    () => device.createBuffer({ size: Math.ceil(bytes / 16) * 16, usage: BufferUsage.STORAGE }),
  );
  const groupsOf = srcs.map((src) =>
    device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: src } }, {
        binding: 1,
        resource: { buffer: sink },
      }],
    })
  );
  try {
    const t = await timeWarm(device, (pass, i) => {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, groupsOf[i % sets]);
      pass.dispatchWorkgroups(groups);
    }, { runs: 25, warmupMs: 400 });
    return { medianMs: median(t.samplesMs), lastWarmMs: t.lastWarmMs };
  } finally {
    for (const s of srcs) s.destroy();
    sink.destroy();
  }
}
