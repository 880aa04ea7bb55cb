import { UploadRing } from "../src/upload_ring.ts";
const adapter = await navigator.gpu.requestAdapter();
const device = await adapter!.requestDevice();
device.addEventListener("uncapturederror", (e) => console.log("UNCAPTURED", (e as GPUUncapturedErrorEvent).error.message));
const ring = new UploadRing(device, { label: "t", usage: 0x40 | 0x80 });
const regions = [];
for (let i = 0; i < 8; i++) {
  const r = ring.acquire(512, "k");
  regions.push(r);
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  ring.mark(r, pass, enc);
  pass.end();
  device.queue.submit([enc.finish()]);
}
await device.queue.onSubmittedWorkDone();
console.log(regions.map((r) => `${r.arenaId}:${r.offset}`).join(" "), JSON.stringify(ring.regions));
await new Promise((r) => setTimeout(r, 100));
const r = ring.acquire(512, "k");
await new Promise((r) => setTimeout(r, 100));
console.log(JSON.stringify(ring.regions));
