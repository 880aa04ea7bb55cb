const adapter = await navigator.gpu.requestAdapter();
const device = await adapter!.requestDevice();
device.addEventListener("uncapturederror", (e) => console.log("UNCAPTURED", (e as GPUUncapturedErrorEvent).error.message));
const layout = device.createBindGroupLayout({ entries: [{ binding: 0, visibility: 4, buffer: { type: "storage", hasDynamicOffset: true } }] });
const pipeline = device.createComputePipeline({ layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module: device.createShaderModule({ code: `@group(0) @binding(0) var<storage, read_write> mark: array<u32, 1>;
@compute @workgroup_size(1) fn main() { mark[0] = mark[0] + 1u; }` }), entryPoint: "main" } });
const marks = device.createBuffer({ size: 256 * 8, usage: 0x80 | 0x4 });
const group = device.createBindGroup({ layout, entries: [{ binding: 0, resource: { buffer: marks, offset: 0, size: 4 } }] });
for (let i = 0; i < 8; i++) {
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, group, [i * 256]); pass.dispatchWorkgroups(1); pass.setBindGroup(0, group, [i * 256]);
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
console.log([...a.entries()].filter(([, x]) => x).map(([i, x]) => `${i}:${x}`).join(" "));
