const adapter = await navigator.gpu.requestAdapter();
const device = await adapter!.requestDevice();
const dyn = Deno.args[0] === "dyn";
const layout = device.createBindGroupLayout({ entries: [{ binding: 0, visibility: 4, buffer: { type: "storage", hasDynamicOffset: dyn } }] });
const pipeline = device.createComputePipeline({ layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module: device.createShaderModule({ code: `@group(0) @binding(0) var<storage, read_write> mark: array<u32>;
@compute @workgroup_size(1) fn main() { mark[0] = mark[0] + 7u; }` }), entryPoint: "main" } });
const marks = device.createBuffer({ size: 256 * 8, usage: 0x80 | 0x4 });
for (const at of [0, 256, 512]) {
  const group = device.createBindGroup({ layout, entries: [{ binding: 0, resource: { buffer: marks, offset: dyn ? 0 : at, size: 16 } }] });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  if (dyn) pass.setBindGroup(0, group, [at]); else pass.setBindGroup(0, group);
  pass.dispatchWorkgroups(1);
  pass.end();
  device.queue.submit([enc.finish()]);
}
const rb = device.createBuffer({ size: 256 * 8, usage: 0x1 | 0x8 });
const enc = device.createCommandEncoder();
enc.copyBufferToBuffer(marks, 0, rb, 0, 256 * 8);
device.queue.submit([enc.finish()]);
await rb.mapAsync(1);
const a = new Uint32Array(rb.getMappedRange());
console.log(dyn ? "dynamic" : "static", [...a.entries()].filter(([, x]) => x).map(([i, x]) => `${i}:${x}`).join(" "));
