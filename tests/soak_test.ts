/**
 * The short soak of CI (the full one is `deno task soak`, bench/soak.ts): calls with varying
 * shapes and strategies hold a bounded number of GPU buffers and a bounded heap, and sampled
 * results match the reference.
 */

import assert from "node:assert/strict";
import { soak, SOAK_MAX_BUFFERS, soakFailures } from "../bench/soak.ts";
import { backendTest } from "./backends.ts";

backendTest("soak: varying calls hold bounded buffers and heap, sampled results exact", async (
  decoder,
  backend,
) => {
  const calls = backend === "cpu" ? 300 : 120;
  const report = await soak(decoder, { calls, checkEvery: 10, seed: 7, maxTokens: 1500 });
  assert.equal(report.calls, calls);
  assert.ok(report.checked >= calls / 10, `${report.checked} calls checked`);
  assert.deepStrictEqual(soakFailures(report, SOAK_MAX_BUFFERS), []);
  if (backend !== "cpu") {
    assert.ok(report.maxBuffersLive >= 6, "the GPU backend pools its buffers");
    // Growth only: the second half of the calls reuses the pool.
    assert.ok(report.buffersCreatedSecondHalf <= 4, `${report.buffersCreatedSecondHalf} created`);
  }
});
