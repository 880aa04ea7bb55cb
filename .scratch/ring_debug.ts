import { createAttentionEncoder, createKVCache } from "../mod.ts";
import { requestDevice } from "../src/gpu_runtime.ts";
const adapter = await navigator.gpu.requestAdapter();
const device = await requestDevice(adapter!);
const cache = createKVCache({ device, numLayers: 2, numKVHeads: 2, headDim: 64, pageSize: 16, numPages: 256, kvDtype: "f16" });
const attention = await createAttentionEncoder(device, { grid: 8 });
const seqs = [cache.addSequence(), cache.addSequence(), cache.addSequence()];
cache.extend(seqs, [400, 3, 170]);
const mk = (n: number) => device.createBuffer({ size: n, usage: 0x80 | 0x8 | 0x4 });
const q = mk(4 * 3 * 8 * 64), out = mk(4 * 3 * 8 * 64), kv = mk(4 * 3 * 2 * 64);
for (let step = 0; step < 200; step++) {
  const slots = cache.extend(seqs, 1);
  const plan = attention.plan(cache, { seqs, numHeads: 8 });
  const enc = device.createCommandEncoder();
  for (let layer = 0; layer < 2; layer++) {
    cache.encodeAppend(enc, { slots, layer, k: kv, v: kv });
    attention.encode(enc, { plan, layer, q, out });
  }
  device.queue.submit([enc.finish()]);
  if (step % 25 === 24) { await device.queue.onSubmittedWorkDone(); console.log(step, JSON.stringify(attention.stats())); }
}
