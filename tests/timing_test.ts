/** Kernel timing: positive samples on every backend, bad options rejected, decoder still usable. */

import assert from "node:assert/strict";
import { backendTest } from "./backends.ts";
import { assertMatchesReference, type CaseSpec, makeInput } from "./helpers.ts";

const SPEC: CaseSpec = {
  seqLens: [500, 3],
  numHeads: 8,
  numKVHeads: 2,
  headDim: 64,
  kvDtype: "f32",
  seed: 5,
};

backendTest("timeKernels returns one positive sample per run", async (decoder) => {
  const input = makeInput(SPEC);
  const t = await decoder.timeKernels(input, { runs: 5, warmup: 1, kvSets: 2, warmupMs: 30 });
  assert.equal(t.samplesMs.length, 5);
  // GPUs run the timed passes after at least warmupMs of the same work; the CPU does not warm.
  if (decoder.backend === "cpu") assert.equal(t.warmMs, 0);
  else assert.ok(t.warmMs >= 30 && t.lastWarmMs > 0, `warm ${t.warmMs} ms, ${t.lastWarmMs}`);
  for (const ms of t.samplesMs) assert.ok(ms > 0 && Number.isFinite(ms), `sample ${ms}`);
  const sorted = [...t.samplesMs].sort((a, b) => a - b);
  assert.equal(t.medianMs, sorted[2]);
  // Without streamMs nothing is timed back to back.
  assert.equal(t.stream, undefined);
  // Timing leaves the decoder's results as they were.
  assertMatchesReference(input, await decoder.decode(input), "after timing");
}, { dawnOnSoftware: true });

backendTest("timeKernels with streamMs also times runs back to back", async (decoder) => {
  const input = makeInput(SPEC);
  for (const warmupMs of [0, 20]) {
    const t = await decoder.timeKernels(input, {
      runs: 3,
      warmup: 0,
      kvSets: 2,
      warmupMs,
      streamMs: 5,
    });
    assert.equal(t.samplesMs.length, 3);
    const s = t.stream;
    assert.ok(s, "stream timing missing");
    assert.equal(s.samplesMs.length, 3);
    assert.ok(Number.isInteger(s.runsPerSample) && s.runsPerSample >= 1 && s.runsPerSample <= 256);
    for (const ms of s.samplesMs) assert.ok(ms > 0 && Number.isFinite(ms), `stream sample ${ms}`);
    const sorted = [...s.samplesMs].sort((a, b) => a - b);
    assert.equal(s.medianMs, sorted[1]);
  }
  assertMatchesReference(input, await decoder.decode(input), "after stream timing");
});

backendTest("timeKernels rejects bad options", async (decoder) => {
  const input = makeInput(SPEC);
  await assert.rejects(() => decoder.timeKernels(input, { runs: 0 }), /^RangeError: runs must be/);
  await assert.rejects(
    () => decoder.timeKernels(input, { kvSets: "2" as unknown as number }),
    /^TypeError: kvSets must be a number/,
  );
  await assert.rejects(() => decoder.timeKernels(input, { warmup: -1 }), /got -1$/);
  await assert.rejects(
    () => decoder.timeKernels(input, { warmupMs: -5 }),
    /^RangeError: warmupMs must be from 0 to 60000: got -5/,
  );
  await assert.rejects(
    () => decoder.timeKernels(input, { warmupMs: "1" as unknown as number }),
    /^TypeError: warmupMs must be a number/,
  );
  await assert.rejects(
    () => decoder.timeKernels(input, { streamMs: 1001 }),
    /^RangeError: streamMs must be from 0 to 1000: got 1001/,
  );
  await assert.rejects(
    () => decoder.timeKernels(input, { streamMs: "2" as unknown as number }),
    /^TypeError: streamMs must be a number: got string/,
  );
  // The decoder stays usable after bad options.
  assertMatchesReference(input, await decoder.decode(input), "after bad options");
});
