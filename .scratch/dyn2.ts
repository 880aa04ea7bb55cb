const adapter = await navigator.gpu.requestAdapter();
const device = await adapter!.requestDevice();
const layout = device.createBindGroupLayout({ entries: [{ binding: 0, visibility: 4, buffer: { type: "storage", hasDynamicOffset: true } }] });
const pipeline = device.createComputePipeline({ layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module: device.createShaderModule({ code: `@group(0) @binding(0) var<storage, read_write> mark: array<u32>;
@compute @workgroup_size(1) fn main() { mark[0] = mark[0] + 1u; }` }), entryPoint: "main" } });
const marks = device.createBuffer({ size: 256 * 8, usage: 0x80 | 0x4 });
const group = device.createBindGroup({ layout, entries: [{ binding: 0, resource: { buffer: marks, offset: 0, size: Number(Deno.env.get("BSIZE") ?? 4) } }] });
for (const variant of (Deno.args[0] ?? "array").split(",")) {
  device.pushErrorScope("validation");
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  const off = variant === "array" ? [512] : new Uint32Array([512]);
  if (variant === "u32-5") pass.setBindGroup(0, group, off as Uint32Array, 0, 1);
  else pass.setBindGroup(0, group, off as number[]);
  pass.dispatchWorkgroups(1);
  pass.end();
  device.queue.submit([enc.finish()]);
  const err = await device.popErrorScope();
  console.log(variant, err?.message);
}
const rb = device.createBuffer({ size: 256 * 8, usage: 0x1 | 0x8 });
const enc = device.createCommandEncoder();
enc.copyBufferToBuffer(marks, 0, rb, 0, 256 * 8);
device.queue.submit([enc.finish()]);
await rb.mapAsync(1);
const a = new Uint32Array(rb.getMappedRange());
console.log([...a.entries()].filter(([, x]) => x).map(([i, x]) => `${i}:${x}`).join(" "));
