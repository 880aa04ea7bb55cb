/**
 * Does a fixed split of a stream leave time on the table at its end (session 54)? Lean gives
 * every workgroup of a one-wave grid the same share of the K/V bytes, so a pass ends when its
 * slowest workgroup does. This probe streams a buffer the same way, with and without work
 * handed out at run time, and times each on a warm GPU:
 *
 * - `static`: workgroup `w` reads the `w`-th equal contiguous share (lean's split);
 * - `hybrid F`: the first fraction `F` split so, the rest in fixed chunks that workgroups claim
 *   one at a time with an atomic counter when their share is done (the faster ones take more);
 * - `dynamic`: every chunk claimed so.
 *
 * A claimed chunk's result would not depend on who computed it (each chunk its own partial
 * state, merged in chunk order), so such a schedule would stay deterministic. The counter of a
 * pass is reset by the pass before it (two counters, alternating), so no extra dispatch.
 * `--ari=1` gives each loaded word the 4-row kernel's arithmetic (two halves, four rows: eight
 * multiply-adds), so the workgroups' pace depends on their multiprocessor as lean's does.
 *
 * Usage: deno run -A --unstable-webgpu bench/probe_balance.ts [--mib=128,512,1024]
 *   [--grids=264,528] [--ari=0,1] [--chunk-kib=64] [--out=FILE]
 */

import { BufferUsage } from "../src/gpu/gpu_runtime.ts";
import { median, timeWarm } from "../src/gpu/gpu_timing.ts";

const flag = (name: string) => Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
const list = (name: string, fallback: string) => (flag(name) ?? fallback).split(",").map(Number);

const THREADS = 128;
const UNROLL = 4;
const STEP = THREADS * UNROLL; // vec4 per workgroup step

/** The probe kernel: `ARI` selects the arithmetic per loaded word. */
function probeWGSL(ari: boolean): string {
  const work = (v: string) =>
    ari
      ? [0, 1, 2, 3].map((c) =>
        `    { let h = unpack2x16float(${v}[${c}]);
      a0 = fma(h, q0, a0); a1 = fma(h, q1, a1); a2 = fma(h, q2, a2); a3 = fma(h, q3, a3); }`
      ).join("\n")
      : `    x ^= ${v};`;
  const body = (i: string) =>
    `    let w0 = src[${i}];
    let w1 = src[${i} + ${THREADS}u];
    let w2 = src[${i} + ${2 * THREADS}u];
    let w3 = src[${i} + ${3 * THREADS}u];
${["w0", "w1", "w2", "w3"].map(work).join("\n")}`;
  return `
struct Params { static_per_wg: u32, static_total: u32, chunk: u32, total: u32, slot: u32 }
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> ctr: array<atomic<u32>, 2>;
@group(0) @binding(2) var<storage, read_write> sink: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;
var<workgroup> claim: u32;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  if (wid.x == 0u && lid == 0u) { atomicStore(&ctr[1u - p.slot], 0u); }
  var x = vec4<u32>(0u);
  let q0 = vec2<f32>(f32(lid) * 1e-3, 0.5); let q1 = q0.yx; let q2 = q0 * 0.25; let q3 = q1 * 0.75;
  var a0 = vec2<f32>(0.0); var a1 = a0; var a2 = a0; var a3 = a0;
  let s0 = wid.x * p.static_per_wg;
  for (var i = s0 + lid; i < s0 + p.static_per_wg; i += ${STEP}u) {
${body("i")}
  }
  loop {
    if (lid == 0u) { claim = atomicAdd(&ctr[p.slot], 1u); }
    let c = workgroupUniformLoad(&claim);
    let base = p.static_total + c * p.chunk;
    if (base >= p.total) { break; }
    for (var i = base + lid; i < min(base + p.chunk, p.total); i += ${STEP}u) {
${body("i")}
    }
    workgroupBarrier();
  }
  let f = a0 + a1 + a2 + a3;
  if (all(x == vec4<u32>(0x9e3779b9u)) || f.x == 1234.5) { sink[lid] = x.x + u32(f.y); }
}`;
}

const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) throw new Error("no adapter");
const device = await adapter.requestDevice({
  requiredFeatures: ["timestamp-query"],
  requiredLimits: {
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
  },
});
const chunk = (Number(flag("chunk-kib") ?? 64) * 1024) / 16;
if (chunk % STEP !== 0) throw new RangeError(`--chunk-kib: not a multiple of ${STEP * 16} bytes`);
const modes: { name: string; fraction: number }[] = [
  { name: "static", fraction: 1 },
  { name: "hybrid 0.95", fraction: 0.95 },
  { name: "hybrid 0.9", fraction: 0.9 },
  { name: "hybrid 0.75", fraction: 0.75 },
  { name: "dynamic", fraction: 0 },
];
const cells: Record<string, unknown>[] = [];
const ctr = device.createBuffer({ size: 8, usage: BufferUsage.STORAGE });
const sink = device.createBuffer({ size: 4 * THREADS, usage: BufferUsage.STORAGE });
for (const mib of list("mib", "128,512,1024")) {
  const bytes = Math.min(mib * 2 ** 20, device.limits.maxStorageBufferBindingSize);
  const total = Math.floor(bytes / 16 / STEP) * STEP;
  const src = device.createBuffer({ size: total * 16, usage: BufferUsage.STORAGE });
  for (const ari of list("ari", "0,1")) {
    const module = device.createShaderModule({ code: probeWGSL(ari === 1) });
    const pipeline = device.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: "main" },
    });
    for (const grid of list("grids", "264,528")) {
      for (const mode of modes) {
        // Each workgroup's static share is whole steps; what the shares leave goes to chunks.
        const perWg = Math.floor((total * mode.fraction) / grid / STEP) * STEP;
        const staticTotal = perWg * grid;
        const chunks = Math.ceil((total - staticTotal) / chunk);
        const uniforms = [0, 1].map((slot) => {
          const u = device.createBuffer({
            size: 32,
            usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST,
          });
          // Chunks past the end are not read: `total` rounds the last chunk's end down.
          const end = staticTotal + chunks * chunk;
          device.queue.writeBuffer(
            u,
            0,
            new Uint32Array([perWg, staticTotal, chunk, Math.min(end, total), slot, 0, 0, 0]),
          );
          return device.createBindGroup({
            layout: pipeline.getBindGroupLayout(0),
            entries: [src, ctr, sink, u].map((buffer, binding) => ({
              binding,
              resource: { buffer },
            })),
          });
        });
        let n = 0;
        const record = (pass: GPUComputePassEncoder) => {
          pass.setPipeline(pipeline);
          pass.setBindGroup(0, uniforms[n++ % 2]);
          pass.dispatchWorkgroups(grid);
        };
        const t = await timeWarm(device, record, { runs: 15, warmupMs: 400, streamMs: 2 });
        const stream = median(t.streamSamplesMs ?? [NaN]);
        const alone = median(t.samplesMs);
        const tbs = (ms: number) => (total * 16) / (ms / 1e3) / 1e12;
        console.log(
          `${String(mib).padStart(5)} MiB ari ${ari} grid ${grid} ${mode.name.padEnd(12)} ` +
            `stream ${stream.toFixed(4)} ms (${tbs(stream).toFixed(2)} TB/s) alone ${
              alone.toFixed(4)
            } ms (${tbs(alone).toFixed(2)} TB/s) chunks ${chunks}`,
        );
        cells.push({ mib, ari, grid, mode: mode.name, streamMs: stream, aloneMs: alone, chunks });
      }
    }
  }
  src.destroy();
}
const out = flag("out");
if (out) await Deno.writeTextFile(out, JSON.stringify({ chunkVec4: chunk, cells }, null, 2));
device.destroy();
