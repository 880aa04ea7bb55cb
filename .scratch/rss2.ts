import { collectGarbage } from "../tests/gc.ts";
const adapter = await navigator.gpu.requestAdapter();
const device = await adapter!.requestDevice();
const MiB = 2 ** 20;
const mode = Deno.args[0];
const run = async (steps: number, bytes: number) => {
  for (let step = 0; step < steps; step++) {
    const bufs = [0, 1, 2].map(() => device.createBuffer({ size: bytes, usage: 0x80 | 0x8 | 0x4 }));
    if (mode !== "nowrite") for (const b of bufs) device.queue.writeBuffer(b, 0, new Float32Array(64));
    const enc = device.createCommandEncoder();
    if (mode === "copy") enc.copyBufferToBuffer(bufs[0], 0, bufs[1], 0, 256);
    device.queue.submit([enc.finish()]);
    if (step % 8 === 7) await device.queue.onSubmittedWorkDone();
  }
  await device.queue.onSubmittedWorkDone();
};
await run(8, 1024);
await collectGarbage();
const rss = Deno.memoryUsage().rss;
await run(16, 4 * MiB);
await collectGarbage();
device.queue.submit([device.createCommandEncoder().finish()]);
await device.queue.onSubmittedWorkDone();
await collectGarbage();
console.log(mode, ((Deno.memoryUsage().rss - rss) / MiB).toFixed(1));
