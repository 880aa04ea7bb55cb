import { collectGarbage } from "../tests/gc.ts";
const adapter = await navigator.gpu.requestAdapter();
const device = await adapter!.requestDevice();
const MiB = 2 ** 20;
const pipeline = device.createComputePipeline({ layout: "auto", compute: { module: device.createShaderModule({ code: `@group(0) @binding(0) var<storage, read> a: array<u32>;
@group(0) @binding(1) var<storage, read_write> b: array<u32>;
@compute @workgroup_size(1) fn main() { b[0] = a[0] + 1u; }` }), entryPoint: "main" } });
const run = async (steps: number, size: number) => {
  for (let step = 0; step < steps; step++) {
    const q = device.createBuffer({ size, usage: 0x80 | 0x8 | 0x4 });
    const out = device.createBuffer({ size, usage: 0x80 | 0x8 | 0x4 });
    const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: q } }, { binding: 1, resource: { buffer: out } }] });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline); pass.setBindGroup(0, group); pass.dispatchWorkgroups(1); pass.end();
    device.queue.submit([enc.finish()]);
    if (step % 8 === 7) await device.queue.onSubmittedWorkDone();
  }
  await device.queue.onSubmittedWorkDone();
};
await run(8, 8192);
await collectGarbage();
const before = Deno.memoryUsage().rss;
await run(Number(Deno.args[0] ?? 16), Number(Deno.args[1] ?? 4) * MiB);
await collectGarbage();
console.log("baseline dispatch", ((Deno.memoryUsage().rss - before) / MiB).toFixed(1));
