/**
 * The decode-loop example's small model on every WebGPU implementation that opens here: tokens
 * are deterministic, and one step's attention (through the paged cache and the runner API)
 * matches a dense decode of the K/V the cache holds.
 */

import assert from "node:assert/strict";
import { makePrompts, openDevice, runDecodeLoop, SMALL_MODEL } from "../examples/decode_loop.ts";
import { type KVArray, referenceAttention } from "../mod.ts";
import { summarizeAdapter } from "../src/gpu/gpu_runtime.ts";
import { assertNoPoison, OUT_TOLERANCE, relativeL2Error } from "./helpers.ts";
import { EXHAUSTIVE_ENV, softwareSkip } from "./kernel_set.ts";

for (const backend of ["webgpu", "dawn"] as const) {
  // Probe, then release at once: a device (Dawn's above all) left alive until the process exits
  // outlives the other test files and is torn down with the process.
  const probe = await openDevice(backend).catch((e: Error) => e.message);
  const name =
    `decode loop example: deterministic tokens, attention equals a dense decode [${backend}]`;
  let skip: string | undefined;
  if (typeof probe === "string") console.log(`skipping decode loop on "${backend}": ${probe}`);
  else {
    const info = (probe.device as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
    const exhaustive = EXHAUSTIVE_ENV || !summarizeAdapter(info).software;
    skip = softwareSkip({ name: backend, exhaustive }, {});
    if (skip) console.log(`ignoring "${name}" on this software adapter: ${skip}`);
    probe.release();
  }
  Deno.test({
    name,
    ignore: typeof probe === "string" || skip !== undefined,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      if (typeof probe === "string") return;
      const opened = await openDevice(backend);
      try {
        await decodeLoopCase(opened.device);
      } finally {
        opened.release();
      }
    },
  });
}

async function decodeLoopCase(device: GPUDevice): Promise<void> {
  const model = SMALL_MODEL;
  const prompts = makePrompts(3, model.vocab, [5, 2, 11]);
  const options = { device, model, prompts, steps: 8, kvDtype: "f16" as const };
  const first = await runDecodeLoop({ ...options, inspect: { step: 12, layer: 1 } });
  const second = await runDecodeLoop({ ...options, syncEvery: 5 });
  assert.deepStrictEqual(first.tokens, second.tokens, "same seed, same tokens");
  assert.equal(first.tokens.length, 3);
  for (const t of first.tokens) {
    assert.equal(t.length, 8);
    assert.ok(t.every((x) => Number.isInteger(x) && x >= 0 && x < model.vocab), t.join(","));
  }
  assert.ok(new Set(first.tokens.flat()).size > 1, "tokens are not all the same");
  const ins = first.inspection!;
  assert.deepStrictEqual(ins.seqLens, prompts.map(() => 13), "step 12 holds 13 tokens each");
  const cat = (parts: KVArray[]) => {
    const all = new Uint16Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      all.set(p as Uint16Array, o);
      o += p.length;
    }
    return all;
  };
  const headDim = model.dim / model.heads;
  const ref = referenceAttention({
    q: ins.q,
    k: cat(ins.k),
    v: cat(ins.v),
    seqLens: ins.seqLens,
    numHeads: model.heads,
    numKVHeads: model.kvHeads,
    headDim,
    kvDtype: "f16",
  });
  assertNoPoison("out", ins.out, ref.out.length);
  const err = relativeL2Error(ins.out, ref.out);
  assert.ok(err < OUT_TOLERANCE, `attention relative L2 error ${err}`);
  assert.ok(first.stepMs.length > 0 && first.tokensPerSecond > 0);
}
