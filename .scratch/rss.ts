import { createAttentionEncoder, createKVCache } from "../mod.ts";
import { requestDevice } from "../src/gpu_runtime.ts";
import { collectGarbage } from "../tests/gc.ts";
const adapter = await navigator.gpu.requestAdapter();
const device = await requestDevice(adapter!);
const cache = createKVCache({ device, numLayers: 1, numKVHeads: 2, headDim: 64, pageSize: 16, numPages: 64, kvDtype: "f16" });
const attention = await createAttentionEncoder(device, { grid: 8 });
const seqs = [cache.addSequence(), cache.addSequence()];
cache.extend(seqs, [40, 130]);
const MiB = 2 ** 20;
const size = Number(Deno.args[0] ?? 4) * MiB;
const run = async (steps: number) => {
  for (let step = 0; step < steps; step++) {
    cache.extend(seqs, 1);
    const plan = attention.plan(cache, { seqs, numHeads: 8 });
    const q = device.createBuffer({ size, usage: 0x80 | 0x8 | 0x4 });
    const out = device.createBuffer({ size, usage: 0x80 | 0x8 | 0x4 });
    const enc = device.createCommandEncoder();
    attention.encode(enc, { plan, layer: 0, q, out });
    device.queue.submit([enc.finish()]);
    if (step % 8 === 7) await device.queue.onSubmittedWorkDone();
  }
  await device.queue.onSubmittedWorkDone();
};
await run(8);
await collectGarbage();
const before = Deno.memoryUsage().rss;
await run(32);
await collectGarbage();
const after = Deno.memoryUsage().rss;
console.log(`rss growth ${((after - before) / MiB).toFixed(1)} MiB for ${32 * 2 * size / MiB} MiB of buffers`);
