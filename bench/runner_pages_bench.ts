/**
 * Runner-owned paged KV through the attention encoder: a batch's f16 K/V in the runner's own
 * page buffers (pages shuffled), in NHD and HND layout, at several page sizes, planned from a
 * FlashInfer-style page table (`createIndptrPageTable`) and timed on a warm GPU (GPU time per
 * decode, timestamp queries). Prints one row per layout and page size, with the KV read rate.
 *
 * ```sh
 * deno run -A bench/runner_pages_bench.ts --context=32768 --batch=8 --page-sizes=1,16,128
 * deno run -A bench/runner_pages_bench.ts --context=512 --batch=2 --runs=3 --warmup-ms=0  # smoke
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { encodeKV } from "../mod.ts";
import { createAttentionEncoder, createIndptrPageTable, type PageLayout } from "../runner.ts";
import { BufferUsage, requestDevice, summarizeAdapter } from "../src/gpu/gpu_runtime.ts";
import { median, timeWarm } from "../src/gpu/gpu_timing.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    context: { type: "string", default: "32768" },
    batch: { type: "string", default: "8" },
    heads: { type: "string", default: "32" },
    "kv-heads": { type: "string", default: "8" },
    dim: { type: "string", default: "128" },
    "page-sizes": { type: "string", default: "1,16,128" },
    layouts: { type: "string", default: "NHD,HND" },
    "q-dtype": { type: "string", default: "f32" },
    runs: { type: "string", default: "30" },
    "warmup-ms": { type: "string", default: "400" },
    grid: { type: "string" },
    out: { type: "string" },
  },
});
const context = Number(values.context);
const batch = Number(values.batch);
const numHeads = Number(values.heads);
const numKVHeads = Number(values["kv-heads"]);
const headDim = Number(values.dim);
const pageSizes = values["page-sizes"].split(",").map(Number);
const layouts = values.layouts.split(",") as PageLayout[];
const qDtype = values["q-dtype"] as "f32" | "f16";

const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) throw new Error("no WebGPU adapter");
const device = await requestDevice(adapter);
const summary = summarizeAdapter(adapter.info);
const attention = await createAttentionEncoder(device, {
  ...(values.grid ? { grid: Number(values.grid) } : {}),
  qDtype,
  outDtype: qDtype,
});
const tokens = context * batch;
const rowElems = numKVHeads * headDim;
// Random f16 K/V (the values do not change the time; the bytes read do).
const data = new Float32Array(Math.min(tokens * rowElems, 1 << 24)).map(() => Math.random() - 0.5);
const halves = encodeKV(data, "f16") as Uint16Array;
const storage = (bytes: number) =>
  device.createBuffer({ size: bytes, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
const qBytes = (qDtype === "f16" ? 2 : 4) * batch * numHeads * headDim;
const q = storage(qBytes);
const out = storage(qBytes);
const rows: Record<string, unknown>[] = [];
console.log(
  `${summary.description}: ${batch} x ${context} tokens, ${numHeads}/${numKVHeads} heads, d${headDim}, f16 KV, ${qDtype} q/out, grid ${attention.grid}`,
);
for (const pageSize of pageSizes) {
  const pagesPerSeq = Math.ceil(context / pageSize);
  const numPages = pagesPerSeq * batch;
  const bytes = numPages * pageSize * rowElems * 2;
  if (bytes > Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize)) {
    console.log(`page ${pageSize}: skipped, ${bytes} bytes of K exceed a binding`);
    continue;
  }
  // Pages handed out in a shuffled order, as a runner's allocator after some churn would.
  const order = Uint32Array.from({ length: numPages }, (_, i) => i);
  for (let i = numPages - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const k = storage(bytes);
  const v = storage(bytes);
  for (let at = 0; at < bytes; at += halves.byteLength) {
    const n = Math.min(halves.byteLength, bytes - at);
    device.queue.writeBuffer(k, at, halves.buffer as ArrayBuffer, 0, n);
    device.queue.writeBuffer(v, at, halves.buffer as ArrayBuffer, 0, n);
  }
  for (const layout of layouts) {
    const table = createIndptrPageTable({
      indptr: Array.from({ length: batch + 1 }, (_, i) => i * pagesPerSeq),
      indices: order,
      lastPageLen: new Array(batch).fill(context - (pagesPerSeq - 1) * pageSize),
      pageSize,
      numPages,
      numKVHeads,
      headDim,
      kvDtype: "f16",
      layout,
    });
    const plan = attention.plan(table, { seqs: table.seqs, numHeads });
    const timing = await timeWarm(
      device,
      (pass) => attention.encode(pass, { plan, q, out, k, v }),
      { runs: Number(values.runs), warmupMs: Number(values["warmup-ms"]) },
    );
    const ms = median(timing.samplesMs);
    const gbs = (2 * tokens * rowElems * 2) / (ms * 1e6);
    rows.push({ layout, pageSize, medianMs: ms, kvGBps: gbs, samplesMs: timing.samplesMs });
    console.log(
      `${layout} page ${String(pageSize).padStart(3)}: ${ms.toFixed(3)} ms, KV ${
        gbs.toFixed(0)
      } GB/s`,
    );
    attention.discardUpload(plan);
  }
  k.destroy();
  v.destroy();
}
if (values.out) {
  await Deno.writeTextFile(
    values.out,
    JSON.stringify(
      {
        adapter: summary.description,
        context,
        batch,
        numHeads,
        numKVHeads,
        headDim,
        qDtype,
        grid: attention.grid,
        rows,
      },
      null,
      2,
    ),
  );
}
attention.dispose();
device.destroy();
