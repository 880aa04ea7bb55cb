/**
 * What only GPU backends have: pooled buffers and cached pipelines (a steady stream of
 * same-shaped calls allocates nothing), caller-owned devices left alone, 2-D dispatch sizes.
 */

import assert from "node:assert/strict";
import { createDecoder } from "../mod.ts";
import { dispatchSize } from "../src/gpu/kernel_choice.ts";
import { backendTest, gpuTest } from "./backends.ts";
import { assertMatchesReference, type CaseSpec, makeInput } from "./helpers.ts";

const SPEC: CaseSpec = {
  seqLens: [300, 1, 129],
  numHeads: 8,
  numKVHeads: 2,
  headDim: 64,
  kvDtype: "f32", // the kernel of the GPU property tests' first family: compiled once
  seed: 11,
};

gpuTest(
  "same-shaped calls create no GPU buffers or pipelines after warm-up",
  async (backend) => {
    const decoder = await backend.open();
    try {
      for (const strategy of ["lean", "split", "single"] as const) {
        await decoder.decode({ ...makeInput(SPEC), strategy });
      }
      const warm = decoder.stats();
      assert.ok(warm.pipelinesCreated >= 1 && warm.buffersCreated >= 1, JSON.stringify(warm));
      for (let i = 0; i < 12; i++) {
        const strategy = (["lean", "split", "single"] as const)[i % 3];
        const input = { ...makeInput({ ...SPEC, seed: 100 + i }), strategy };
        assertMatchesReference(input, await decoder.decode(input), `call ${i}`);
      }
      assert.deepStrictEqual(decoder.stats(), warm);
    } finally {
      await decoder.dispose();
    }
  },
);

const adapter = await navigator.gpu?.requestAdapter();
Deno.test({
  name: "a caller's device is used as given and left alive by dispose()",
  ignore: !adapter,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const device = await adapter!.requestDevice({
      requiredLimits: {
        maxComputeWorkgroupStorageSize: adapter!.limits.maxComputeWorkgroupStorageSize,
      },
    });
    let lost = false;
    device.lost.then(() => lost = true);
    const decoder = await createDecoder({ backend: "webgpu", device, grid: 8 });
    assert.equal(decoder.backend, "webgpu");
    const input = makeInput(SPEC);
    assertMatchesReference(input, await decoder.decode(input), "caller device");
    await decoder.dispose();
    // The device still works: a buffer round trip after the decoder is gone.
    const buffer = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ });
    await buffer.mapAsync(GPUMapMode.READ);
    buffer.unmap();
    assert.equal(lost, false);
    device.destroy();
  },
});
if (!adapter) console.log("skipping caller-device test: navigator.gpu has no adapter here");

Deno.test("grids beyond 65,535 workgroups dispatch in two dimensions", () => {
  assert.deepStrictEqual(dispatchSize(1, 65535), [1, 1]);
  assert.deepStrictEqual(dispatchSize(65535, 65535), [65535, 1]);
  for (const n of [65536, 100000, 65535 * 65535]) {
    const [x, y] = dispatchSize(n, 65535);
    assert.ok(x <= 65535 && y <= 65535 && x * y >= n && x * (y - 1) < n, `${n}: ${x} x ${y}`);
  }
});

// The kernels reduce the lanes' dot products with subgroup shuffles where the device has them
// (both lavapipe runtimes do): force the workgroup-memory path so it is tested too.
backendTest(
  "the workgroup-memory reduction (no subgroups) matches the reference",
  async (decoder, name) => {
    if (name === "cpu") return;
    for (const strategy of ["lean", "split", "single"] as const) {
      const gqa = { ...makeInput({ ...SPEC, seed: 40 }), strategy };
      assertMatchesReference(gqa, await decoder.decode(gqa), `f32 GQA ${strategy}`);
      const mha = {
        ...makeInput({
          seqLens: [200, 3, 64],
          numHeads: 4,
          numKVHeads: 4,
          headDim: 128,
          kvDtype: "f16",
          seed: 41,
        }),
        strategy,
      };
      assertMatchesReference(mha, await decoder.decode(mha), `f16 MHA ${strategy}`);
    }
  },
  { decoder: { kernel: { subgroups: false }, poison: true } },
);
