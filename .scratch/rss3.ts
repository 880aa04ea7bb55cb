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
const flags = new Set(Deno.args);
const run = async (steps: number, size: number) => {
  for (let step = 0; step < steps; step++) {
    const slots = cache.extend(seqs, 1);
    const plan = attention.plan(cache, { seqs, numHeads: 8 });
    const q = device.createBuffer({ size, usage: 0x80 | 0x8 | 0x4 });
    const out = device.createBuffer({ size, usage: 0x80 | 0x8 | 0x4 });
    const kv = device.createBuffer({ size, usage: 0x80 | 0x8 | 0x4 });
    if (flags.has("write")) { device.queue.writeBuffer(q, 0, new Float32Array(64)); device.queue.writeBuffer(kv, 0, new Float32Array(64)); }
    const enc = device.createCommandEncoder();
    if (flags.has("append")) cache.encodeAppend(enc, { slots, layer: 0, k: kv, v: kv });
    if (flags.has("encode")) attention.encode(enc, { plan, layer: 0, q, out });
    device.queue.submit([enc.finish()]);
    if (step % 8 === 7) await device.queue.onSubmittedWorkDone();
  }
  await device.queue.onSubmittedWorkDone();
};
await run(8, 8192);
await collectGarbage();
const before = Deno.memoryUsage().rss;
await run(Number(Deno.env.get("STEPS") ?? 16), Number(Deno.env.get("MB") ?? 4) * MiB);
await collectGarbage();
console.log([...flags].join("+"), ((Deno.memoryUsage().rss - before) / MiB).toFixed(1));
