import { collectGarbage } from "../tests/gc.ts";
const adapter = await navigator.gpu.requestAdapter();
const device = await adapter!.requestDevice();
const refs: WeakRef<GPUBuffer>[] = [];
const mode = Deno.args[0];
async function run() {
for (let step = 0; step < 8; step++) {
  const q = device.createBuffer({ size: 256, usage: 0x80 | 0x8 | 0x4 });
  const out = device.createBuffer({ size: 256, usage: 0x80 | 0x8 | 0x4 });
  device.queue.writeBuffer(q, 0, new Float32Array(4));
  const enc = device.createCommandEncoder();
  if (mode === "copy") enc.copyBufferToBuffer(q, 0, out, 0, 16);
  device.queue.submit([enc.finish()]);
  refs.push(new WeakRef(q), new WeakRef(out));
}
}
await run();
await device.queue.onSubmittedWorkDone();
await collectGarbage();
console.log(mode, refs.map((r, i) => r.deref() ? i : -1).filter((i) => i >= 0));
