/**
 * The short runner soak of CI (the full one is `deno task soak:runner`, bench/runner_soak.ts):
 * requests arriving and being cancelled, fresh runner buffers every step, memory flat after
 * warm-up and sampled steps exact. On a GPU it uses the paged tests' kernel shape.
 */

import assert from "node:assert/strict";
import { runnerSoak, runnerSoakFailures } from "../bench/runner_soak.ts";
import { deviceTests } from "./gpu_device.ts";

Deno.test("runner soak: churning requests and fresh buffers keep memory flat (CPU)", async () => {
  const report = await runnerSoak({
    backend: "cpu",
    steps: 120,
    seed: 3,
    sampleEvery: 15,
    checkEvery: 40,
    maxTokens: 200,
    maxBatch: 4,
  });
  assert.ok(report.requests > 4 && report.cancelled > 0, `${report.requests} requests`);
  assert.equal(report.checked, 3);
  assert.deepStrictEqual(runnerSoakFailures(report), []);
});

// The soak opens its own devices: the module's device only says that the implementation opens
// here, and goes at once.
await deviceTests((test, gpu) => {
  gpu?.device.destroy();
  test(
    "runner soak: churning requests and fresh buffers keep memory flat",
    async ({ name }) => {
      const report = await runnerSoak({
        backend: name,
        steps: 240,
        seed: 4,
        sampleEvery: 20,
        checkEvery: 60,
        maxTokens: 300,
      });
      assert.equal(report.checked, 4);
      const last = report.samples[report.samples.length - 1];
      assert.ok(last.buffersLive > 0 && last.regions > 0, "the GPU path ran");
      assert.deepStrictEqual(runnerSoakFailures(report), []);
    },
    { dawnOnSoftware: true },
  );
});
