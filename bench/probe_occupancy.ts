/**
 * How many 128-thread workgroups share a multiprocessor, by workgroup memory (session 50). The
 * matrix kernel runs one 128-thread workgroup per multiprocessor at its calibrated grid, and a
 * grid twice as large was slower, though its registers (up to 247) and workgroup memory (28-46
 * KB) would let two share one. Each workgroup here declares `bytes` of workgroup memory (touched,
 * so it is kept) and runs a dependent chain of multiply-adds per thread: four warps, one per
 * scheduler, each waiting on its own previous result. Where two workgroups share a
 * multiprocessor, twice the workgroups take about the same time (the schedulers interleave them);
 * where they cannot, twice the time (a second wave). Prints, per size, the time of each grid over
 * the time of one workgroup per multiprocessor.
 *
 * Usage: deno run -A --unstable-webgpu bench/probe_occupancy.ts [--sms=132] [--backend=dawn|webgpu]
 */

import { loadDawn } from "../dawn.ts";

const flag = (name: string) => Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
const sms = Number(flag("sms") ?? 132);
const gpu = flag("backend") === "webgpu" ? navigator.gpu : await loadDawn();
const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) throw new Error("no adapter");
const device = await adapter.requestDevice({
  requiredLimits: {
    maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
  },
});
console.log(`workgroup memory limit ${adapter.limits.maxComputeWorkgroupStorageSize} bytes`);

const ITER = 20000;
const kernel = (bytes: number) => {
  const words = Math.max(4, bytes / 16);
  return `var<workgroup> pad: array<vec4<u32>, ${words}>;
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(128)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  for (var i = lid; i < ${words}u; i += 128u) { pad[i] = vec4<u32>(i); }
  workgroupBarrier();
  var x = f32(pad[(lid * 7u) % ${words}u].x) * 1e-3;
  for (var i = 0u; i < ${ITER}u; i++) {
    x = fma(x, 0.9999, 0.5);
  }
  out[wg.x * 128u + lid] = x;
}`;
};

const grids = [1, 2, 3, 4].map((n) => n * sms);
const outBuf = device.createBuffer({
  size: grids[grids.length - 1] * 128 * 4,
  usage: GPUBufferUsage.STORAGE,
});

async function time(pipeline: GPUComputePipeline, groups: number, reps: number): Promise<number> {
  const bind = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: outBuf } }],
  });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bind);
  for (let r = 0; r < reps; r++) pass.dispatchWorkgroups(groups);
  pass.end();
  const t0 = performance.now();
  device.queue.submit([enc.finish()]);
  await device.queue.onSubmittedWorkDone();
  return (performance.now() - t0) / reps;
}

for (const kb of [0, 8, 16, 24, 28, 32, 40, 46]) {
  const bytes = kb * 1024;
  if (bytes > device.limits.maxComputeWorkgroupStorageSize) continue;
  const module = device.createShaderModule({ code: kernel(bytes) });
  const pipeline = await device.createComputePipelineAsync({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  // Warm: about 400 ms of back-to-back work at the base grid.
  const one = await time(pipeline, sms, 5);
  await time(pipeline, sms, Math.max(5, Math.ceil(400 / one)));
  const base = await time(pipeline, sms, 20);
  const ratios: string[] = [];
  for (const g of grids) ratios.push(((await time(pipeline, g, 20)) / base).toFixed(2));
  console.log(
    `${String(kb).padStart(2)} KB: ${base.toFixed(3)} ms at ${sms} workgroups; ` +
      grids.map((g, i) => `${g}: ${ratios[i]}x`).join(", "),
  );
}
device.destroy();
