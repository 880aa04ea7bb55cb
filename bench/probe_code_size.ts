/**
 * Does a kernel's code size cost a pass time (session 54)? Session 32 left about 3 us of the
 * merge dispatch unexplained by its arithmetic, barriers and rounds of reads, and suspected the
 * cold instruction fetch of long unrolled code. This probe times passes of two dispatches, as
 * lean's (264 workgroups, then 32), back to back on a warm GPU, with one of the two running
 * `N` multiply-adds in 8 independent chains either as straight-line code (about 16 bytes of
 * machine code each) or as a loop of 8 per iteration (the same arithmetic in a few hundred
 * bytes). Straight-line minus loop is what the code's size costs.
 *
 * Usage: deno run -A --unstable-webgpu bench/probe_code_size.ts [--sizes=512,2048,8192]
 *   [--out=FILE]
 */

import { BufferUsage } from "../src/gpu/gpu_runtime.ts";
import { median, timeWarm } from "../src/gpu/gpu_timing.ts";

const flag = (name: string) => Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
const sizes = (flag("sizes") ?? "512,2048,8192").split(",").map(Number);

type Body = "empty" | "loop" | "unrolled";

/** A kernel of 128 threads running `n` multiply-adds as `body`, its result written. */
function kernelWGSL(body: Body, n: number): string {
  const chains = 8;
  const steps = Math.max(1, Math.floor(n / chains));
  let work = "";
  if (body === "loop") {
    work = `  for (var i = 0u; i < ${steps}u; i++) {
    let c = f32(i) * 1e-3;
${
      Array.from({ length: chains }, (_, k) => `    a${k} = fma(a${k}, 1.0001, c + ${k}.5);`).join(
        "\n",
      )
    }
  }`;
  } else if (body === "unrolled") {
    const out: string[] = [];
    for (let i = 0; i < steps; i++) {
      for (let k = 0; k < chains; k++) {
        out.push(`  a${k} = fma(a${k}, 1.0001, ${((i * chains + k) * 1e-3).toFixed(3)});`);
      }
    }
    work = out.join("\n");
  }
  return `
@group(0) @binding(0) var<storage, read_write> sink: array<f32>;
@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${Array.from({ length: chains }, (_, k) => `  var a${k} = f32(lid + ${k}u) * 1e-4;`).join("\n")}
${work}
  let s = ${Array.from({ length: chains }, (_, k) => `a${k}`).join(" + ")};
  if (s == 1234.5) { sink[wid.x * 128u + lid] = s; }
}`;
}

const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) throw new Error("no adapter");
const device = await adapter.requestDevice({ requiredFeatures: ["timestamp-query"] });
const sink = device.createBuffer({ size: 264 * 128 * 4, usage: BufferUsage.STORAGE });
const pipelines = new Map<string, { pipeline: GPUComputePipeline; bind: GPUBindGroup }>();
function kernel(body: Body, n: number) {
  const key = `${body}:${n}`;
  let k = pipelines.get(key);
  if (!k) {
    const pipeline = device.createComputePipeline({
      layout: "auto",
      compute: {
        module: device.createShaderModule({ code: kernelWGSL(body, n) }),
        entryPoint: "main",
      },
    });
    const bind = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: sink } }],
    });
    k = { pipeline, bind };
    pipelines.set(key, k);
  }
  return k;
}
const cells: Record<string, unknown>[] = [];
const variants: { where: "first" | "second"; body: Body; n: number }[] = [
  { where: "first", body: "empty", n: 0 },
];
for (const where of ["first", "second"] as const) {
  for (const n of sizes) {
    for (const body of ["loop", "unrolled"] as const) variants.push({ where, body, n });
  }
}
for (const round of [1, 2]) {
  for (const v of variants) {
    const busy = kernel(v.body, v.n);
    const empty = kernel("empty", 0);
    const [a, b] = v.where === "first" ? [busy, empty] : [empty, busy];
    const record = (pass: GPUComputePassEncoder) => {
      pass.setPipeline(a.pipeline);
      pass.setBindGroup(0, a.bind);
      pass.dispatchWorkgroups(264);
      pass.setPipeline(b.pipeline);
      pass.setBindGroup(0, b.bind);
      pass.dispatchWorkgroups(32);
    };
    const t = await timeWarm(device, record, { runs: 15, warmupMs: 400, streamMs: 2 });
    const stream = median(t.streamSamplesMs ?? [NaN]);
    const alone = median(t.samplesMs);
    console.log(
      `round ${round} ${v.where.padEnd(6)} ${v.body.padEnd(8)} n ${String(v.n).padStart(5)} ` +
        `stream ${(stream * 1e3).toFixed(2)} us alone ${(alone * 1e3).toFixed(2)} us`,
    );
    cells.push({ round, ...v, streamUs: stream * 1e3, aloneUs: alone * 1e3 });
  }
}
const out = flag("out");
if (out) await Deno.writeTextFile(out, JSON.stringify(cells, null, 2));
device.destroy();
