/**
 * `timeWarm` against a fake device whose passes take a known time (a fixed cost per pass plus a
 * cost per recording): the warm-up, the timed passes and the back-to-back passes get the
 * recordings they should, in order, and each sample is the pass's time over its recordings; under
 * timestamps too coarse for one recording the warm-up stays bounded.
 */

import assert from "node:assert/strict";
import { MAX_WARM_RECORDINGS, timeWarm, WARM_PASSES } from "../src/gpu/gpu_timing.ts";
import { fakeTimedDevice } from "./fake_timed_device.ts";

/** Milliseconds a fake pass costs: once per pass, and per recording (one dispatch each). */
const PASS_MS = 1;
const RECORDING_MS = 2;

/**
 * Every pass costs PASS_MS, and each recording `recordingMs(clock)` (RECORDING_MS by default), the
 * clock being the GPU milliseconds spent so far (a GPU that speeds up under load).
 */
function fakeDevice(recordingMs: (clockMs: number) => number = () => RECORDING_MS): GPUDevice {
  return fakeTimedDevice({ passMs: PASS_MS, dispatchMs: (_, clockMs) => recordingMs(clockMs) });
}

Deno.test("timeWarm times passes alone and back to back, each sample per recording", async () => {
  const indices: number[] = [];
  let warmRecordings = 0;
  const t = await timeWarm(fakeDevice(), (pass, i) => {
    indices.push(i);
    pass.dispatchWorkgroups(1);
  }, {
    runs: 3,
    warmup: 1,
    warmupMs: 20,
    streamMs: 9,
    warmRecord: (pass) => {
      warmRecordings++;
      pass.dispatchWorkgroups(1);
    },
  });
  // A lone pass: its own cost and one recording's.
  assert.deepEqual(t.samplesMs, [3, 3, 3]);
  // Back-to-back passes are sized from the probe (3 ms per recording alone): ceil(9 / 3) = 3
  // recordings, so each sample is (1 + 3 x 2) / 3 ms.
  assert.equal(t.runsPerStreamPass, 3);
  assert.deepEqual(t.streamSamplesMs, [7 / 3, 7 / 3, 7 / 3]);
  // The untimed pass and the timed ones take indices 0-3; the back-to-back recordings go on
  // from there, so rotated K/V copies keep turning.
  assert.deepEqual(indices, [0, 1, 2, 3, ...Array.from({ length: 9 }, (_, i) => 4 + i)]);
  // The warm-up filled at least its time, and the probe's two recordings came first.
  assert.ok(t.warmMs >= 20, `warm ${t.warmMs} ms`);
  assert.equal(warmRecordings, 2 + t.warmRecordings);
});

Deno.test("timeWarm without warm-up or stream times the passes alone only", async () => {
  const t = await timeWarm(fakeDevice(), (pass) => pass.dispatchWorkgroups(1), {
    runs: 2,
    warmupMs: 0,
  });
  assert.deepEqual(t.samplesMs, [3, 3]);
  assert.equal(t.warmMs, 0);
  assert.equal(t.streamSamplesMs, undefined);
  assert.equal(t.runsPerStreamPass, undefined);
});

Deno.test("timeWarm sizes back-to-back passes from the warm rate, not the cold probe", async () => {
  // Recordings take 8 ms for the first 50 ms of GPU time (a low clock), 2 ms after. The probe
  // sees 9 ms per recording and would put one recording in a pass of 8 ms; once warm, a
  // recording takes 2 ms, so the passes are sized again to 4 and the submission repeated.
  const t = await timeWarm(
    fakeDevice((clockMs) => clockMs < 50 ? 8 : 2),
    (pass) => pass.dispatchWorkgroups(1),
    { runs: 3, warmupMs: 100, streamMs: 8 },
  );
  assert.equal(t.runsPerStreamPass, 4);
  assert.deepEqual(t.streamSamplesMs, [9 / 4, 9 / 4, 9 / 4]);
  assert.deepEqual(t.samplesMs, [3, 3, 3]);
  assert.ok(t.warmMs >= 100, `warm ${t.warmMs} ms`);
});

Deno.test("timeWarm keeps its warm-up to a bounded number of recordings where timestamps are coarse", async () => {
  // Recordings of 1 us under timestamps rounded to 0.1 ms (as browsers round them): the probe
  // reads 0. Taken at face value it asked for 4.4 million recordings in one submission.
  const device = fakeTimedDevice({ passMs: 0, dispatchMs: () => 0.001, resolutionMs: 0.1 });
  let recorded = 0;
  const t = await timeWarm(device, (pass) => pass.dispatchWorkgroups(1), {
    runs: 2,
    warmupMs: 400,
    warmRecord: (pass) => {
      recorded++;
      pass.dispatchWorkgroups(1);
    },
  });
  // The probe's 2 recordings, then at most the cap (rounded up to whole passes) per submission,
  // in at most two submissions: the first sized from the floor of 2 us a recording (220,000),
  // the second from the measured 1 us, capped, and kept although short of 400 ms.
  assert.ok(recorded <= 2 + 2 * (MAX_WARM_RECORDINGS + WARM_PASSES), `${recorded} recordings`);
  assert.ok(
    t.warmRecordings <= MAX_WARM_RECORDINGS + WARM_PASSES,
    `${t.warmRecordings} in the last`,
  );
  assert.ok(t.warmMs >= 200, `warm ${t.warmMs} ms`);
  assert.deepEqual(t.samplesMs, [0, 0]);
});
