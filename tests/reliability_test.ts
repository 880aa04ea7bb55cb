/**
 * Reliability on every backend: KV caches split over small bindings, batch-invariant decoding,
 * many calls in flight at once, grids beyond 65,535 workgroups, disposed decoders; and on GPU
 * backends a lost device and failed allocations surfacing as clear errors.
 */

import assert from "node:assert/strict";
import {
  createDecoder,
  createPlan,
  type DecodeInput,
  type DecodeOutput,
  DeviceLostError,
  GPUAllocationError,
  type KVArray,
  type Plan,
  referenceAttention,
  STRATEGIES,
} from "../mod.ts";
import { PIECE, PIECE_STRIDE, REDUCE_STRIDE } from "../plan.ts";
import { backendStatuses, backendTest } from "./backends.ts";
import { F16_D8, F16_MHA, F32_GQA } from "./kernel_set.ts";
import {
  assertMatchesReference,
  type CaseSpec,
  describeSpec,
  makeInput,
  maxAbsError,
  randomFloats,
  relativeL2Error,
  sameBits,
  seededRng,
} from "./helpers.ts";

/** Kernel shapes the GPU property tests compile anyway (see tests/decode_test.ts). */

backendTest("a KV cache over 1 MiB bindings is split into windows and decodes exactly", async (
  decoder,
) => {
  assert.equal(decoder.profile.maxBindingBytes, 1 << 20);
  const cases: CaseSpec[] = [
    { ...F32_GQA, seqLens: [5000, 37, 2100, 900], seed: 21 }, // 512-byte rows: 2048 per window
    { ...F16_MHA, seqLens: [700, 3000, 1], seed: 22 }, // 1 KiB rows: 1024 per window
    { ...F16_MHA, seqLens: [1025, 1023, 2048], qLen: 1, seed: 23 },
  ];
  for (const spec of cases) {
    for (const strategy of STRATEGIES) {
      const s = { ...spec, strategy };
      const input = makeInput(s);
      const windows = decoder.plan(input, { strategy }).schedule.windows.length;
      assert.ok(windows >= 3, `${describeSpec(s)}: ${windows} windows`);
      assertMatchesReference(input, await decoder.decode(input), describeSpec(s));
    }
  }
}, { decoder: { maxBindingBytes: 1 << 20 } });

backendTest("dozens of tiny windows, sequences crossing several of them", async (decoder) => {
  const spec: CaseSpec = { ...F32_GQA, seqLens: [1500, 3, 640, 129], qLen: 1, seed: 24 };
  for (const strategy of STRATEGIES) {
    const input = makeInput({ ...spec, strategy });
    // 64 KiB bindings: 128 rows per window.
    assert.ok(decoder.plan(input, { strategy }).schedule.windows.length >= 18);
    assertMatchesReference(input, await decoder.decode(input), strategy);
  }
}, { decoder: { maxBindingBytes: 1 << 16 } });

/** A sequence decoded alone and inside other batches must give the very same bits. */
async function checkBatchInvariance(
  decode: (input: DecodeInput) => Promise<DecodeOutput>,
  family: Omit<CaseSpec, "seqLens" | "seed">,
): Promise<void> {
  const target = makeInput({ ...family, seqLens: [1400], seed: 31 });
  const rowFloats = target.q.length;
  for (const strategy of STRATEGIES) {
    const alone = await decode({ ...target, strategy });
    assertMatchesReference({ ...target, strategy }, alone, `alone ${strategy}`);
    for (const [i, others] of [[40], [3000, 7], [1, 1, 900, 5000]].entries()) {
      // The target sits after the others; its q, k and v are the same data.
      const pad = makeInput({ ...family, seqLens: others, seed: 40 + i });
      const kv = (a: KVArray, b: KVArray) => {
        const joined = new (a.constructor as Float32ArrayConstructor)(a.length + b.length);
        joined.set(a);
        joined.set(b, a.length);
        return joined as KVArray;
      };
      const batch: DecodeInput = {
        ...target,
        strategy,
        seqLens: [...others, 1400],
        q: kv(pad.q, target.q) as Float32Array,
        k: kv(pad.k, target.k),
        v: kv(pad.v!, target.v!),
      };
      const got = await decode(batch);
      const out = got.out.subarray(pad.q.length, pad.q.length + rowFloats);
      const lse = got.lse.subarray(got.lse.length - alone.lse.length);
      assert.ok(sameBits(out, alone.out), `${strategy}: out differs beside ${others}`);
      assert.ok(sameBits(lse, alone.lse), `${strategy}: lse differs beside ${others}`);
    }
  }
}

backendTest("batchInvariant: a sequence's output is bitwise the same in any batch", async (d) => {
  await checkBatchInvariance((input) => d.decode(input), F32_GQA);
  await checkBatchInvariance((input) => d.decode(input), { ...F16_MHA, qLen: 1 });
}, { decoder: { batchInvariant: true } });

Deno.test("without batchInvariant lean cuts depend on the batch (the option matters)", () => {
  const shape = { ...F32_GQA, seqLens: [1400] };
  const alone = createPlan(shape, { strategy: "lean", grid: 16 });
  const beside = createPlan({ ...shape, seqLens: [3000, 7, 1400] }, { strategy: "lean", grid: 16 });
  const cuts = (plan: Plan, seq: number) => {
    const s = plan.schedule;
    const out: number[] = [];
    for (let i = 0; i < s.pieces.length; i += PIECE_STRIDE) {
      if (s.pieces[i + PIECE.seq] === seq) out.push(s.pieces[i + PIECE.tokenBegin]);
    }
    return out.sort((a, b) => a - b).join(",");
  };
  assert.notEqual(cuts(alone, 0), cuts(beside, 2), "the lean cuts of a sequence moved");
  const invariant = { strategy: "lean", grid: 16, batchInvariant: true } as const;
  assert.equal(
    cuts(createPlan(shape, invariant), 0),
    cuts(createPlan({ ...shape, seqLens: [3000, 7, 1400] }, invariant), 2),
  );
});

backendTest("many decode calls in flight give the same bits as one at a time", async (decoder) => {
  const specs: CaseSpec[] = [];
  for (let i = 0; i < 18; i++) {
    const family = [F32_GQA, F16_MHA, F16_D8][i % 3];
    specs.push({
      ...family,
      seqLens: [50 + 97 * i, 1 + i, 400 + 13 * (i % 5)].slice(0, 1 + (i % 3)),
      strategy: STRATEGIES[i % 3],
      seed: 500 + i,
    });
  }
  const inputs = specs.map(makeInput);
  const sequential: DecodeOutput[] = [];
  for (const input of inputs) sequential.push(await decoder.decode(input));
  for (let round = 0; round < 2; round++) {
    const concurrent = await Promise.all(inputs.map((input) => decoder.decode(input)));
    concurrent.forEach((r, i) => {
      assert.ok(
        sameBits(r.out, sequential[i].out),
        `round ${round}: out of ${describeSpec(specs[i])}`,
      );
      assert.ok(
        sameBits(r.lse, sequential[i].lse),
        `round ${round}: lse of ${describeSpec(specs[i])}`,
      );
    });
  }
  inputs.forEach((input, i) =>
    assertMatchesReference(input, sequential[i], describeSpec(specs[i]))
  );
});

/** A deep copy of an input's arrays (the reference of a call whose arrays change later). */
function cloneInput(input: DecodeInput): DecodeInput {
  return { ...input, q: input.q.slice(), k: input.k.slice(), v: input.v!.slice() };
}

backendTest(
  "decode takes its inputs at call time: changing them before awaiting changes nothing",
  async (
    decoder,
  ) => {
    const inputs = [
      makeInput({ ...F32_GQA, seqLens: [300, 1, 129], seed: 91 }),
      makeInput({ ...F32_GQA, seqLens: [77, 400], seed: 92 }),
      makeInput({ ...F32_GQA, seqLens: [5], seed: 93 }),
    ];
    const kept = inputs.map(cloneInput);
    // The first call finds the backend free, the others wait behind it.
    const pending = inputs.map((input) => decoder.decode(input));
    for (const input of inputs) {
      input.q.fill(0.25);
      (input.k as Float32Array).fill(-1);
      (input.v as Float32Array).fill(3);
    }
    const results = await Promise.all(pending);
    results.forEach((r, i) => assertMatchesReference(kept[i], r, `call ${i}`));
  },
);

backendTest("timeKernels while decodes are in flight leaves every decode's result intact", async (
  decoder,
) => {
  const inputs = Array.from(
    { length: 14 },
    (_, i) => makeInput({ ...F32_GQA, seqLens: [200 + 37 * i, 3 + i], seed: 600 + i }),
  );
  const timed = makeInput({ ...F32_GQA, seqLens: [900, 40], seed: 700 });
  const sequential: DecodeOutput[] = [];
  for (const input of inputs) sequential.push(await decoder.decode(input));
  const pending = inputs.map((input) => decoder.decode(input));
  // Timing calls made at every few microtask turns land while decodes bind, wait for their
  // error scopes and submit. No warm-up (`warmupMs: 0`): 400 ms of a 940-token decode is tens of
  // thousands of recordings per call, and what is tested is the interleaving, not the clock.
  const timings: Promise<unknown>[] = [];
  let turn = Promise.resolve();
  for (let i = 0; i < 80; i++) {
    turn = turn.then(() => {
      if (i % 3 === 1) {
        timings.push(decoder.timeKernels(timed, { runs: 1, warmup: 0, warmupMs: 0 }));
      }
    });
  }
  await turn;
  const results = await Promise.all(pending);
  await Promise.all(timings);
  results.forEach((r, i) => {
    assert.ok(sameBits(r.out, sequential[i].out), `out of call ${i} changed by timing`);
    assert.ok(sameBits(r.lse, sequential[i].lse), `lse of call ${i} changed by timing`);
  });
  inputs.forEach((input, i) => assertMatchesReference(input, results[i], `call ${i}`));
});

backendTest("grids beyond 65,535 workgroups decode correctly (2-D dispatch)", async (decoder) => {
  // 35,000 one-token sequences x 2 KV heads: 70,000 segments, one workgroup each under "single".
  const seqLens = Array.from({ length: 35_000 }, (_, i) => 1 + (i % 3 === 0 ? 1 : 0));
  const input = makeInput({ ...F16_D8, seqLens, strategy: "single", seed: 61 });
  const plan = decoder.plan(input, { strategy: "single" });
  assert.equal(plan.schedule.workgroups, 70_000);
  assertMatchesReference(input, await decoder.decode(input), "single, 70,000 workgroups");
});

backendTest("merges beyond 65,535 records dispatch in two dimensions", async (decoder) => {
  // 34,000 sequences of 65 tokens x 2 KV heads, every tile its own workgroup: 68,000 merges.
  const seqLens = Array.from({ length: 34_000 }, () => 65);
  const input = makeInput({ ...F16_D8, seqLens: [1], seed: 62 });
  const rng = seededRng(63);
  // f16 bits straight away (35 M elements): values of either sign in [0.125, 1).
  const bits = () =>
    Uint16Array.from(
      { length: 34_000 * 65 * 16 },
      () => 0x3000 + Math.floor(rng() * 0x0c00) + (rng() < 0.5 ? 0x8000 : 0),
    );
  Object.assign(input, { seqLens, q: randomFloats(rng, 34_000 * 16), k: bits(), v: bits() });
  const plan = decoder.plan(input, { strategy: "lean" });
  assert.equal(plan.schedule.reduce.length / REDUCE_STRIDE, 68_000);
  assert.equal(plan.schedule.workgroups, 136_000);
  const got = await decoder.decode(input);
  // Check sampled sequences against the reference of a batch of just those sequences.
  const tokens = 65 * 2 * 8;
  for (const seq of [0, 1, 17_001, 33_999]) {
    const one = makeInput({ ...F16_D8, seqLens: [65], seed: 1 });
    one.q = input.q.slice(seq * 16, seq * 16 + 16);
    one.k = (input.k as Uint16Array).slice(seq * tokens, (seq + 1) * tokens);
    one.v = (input.v as Uint16Array).slice(seq * tokens, (seq + 1) * tokens);
    const ref = referenceAttention(one);
    const out = got.out.subarray(seq * 16, seq * 16 + 16);
    assert.ok(relativeL2Error(out, ref.out) < 2e-5, `sequence ${seq}: out`);
    assert.ok(maxAbsError(got.lse.subarray(seq * 2, seq * 2 + 2), ref.lse) < 2e-4, `lse ${seq}`);
  }
}, { decoder: { grid: 136_000 } });

backendTest("dispose waits for calls in flight, then every call fails clearly", async (decoder) => {
  const inputs = [1, 2, 3].map((i) => makeInput({ ...F32_GQA, seqLens: [300 * i, 5], seed: i }));
  const pending = inputs.map((input) => decoder.decode(input));
  await decoder.dispose();
  const results = await Promise.all(pending);
  results.forEach((r, i) => assertMatchesReference(inputs[i], r, `call ${i} in flight`));
  const disposed = (e: Error) =>
    e instanceof Error &&
    e.message === "Decoder is disposed: create a new one with createDecoder()";
  await assert.rejects(() => decoder.decode(inputs[0]), disposed);
  await assert.rejects(() => decoder.timeKernels(inputs[0], { runs: 1, warmup: 0 }), disposed);
  assert.throws(() => decoder.plan(inputs[0]), disposed);
  await decoder.dispose(); // a second dispose is harmless
});

const gpu = (await backendStatuses()).find((s) => s.name === "webgpu");
const adapter = gpu?.ok ? await navigator.gpu?.requestAdapter() : null;

Deno.test({
  name: "a lost device fails pending and later calls with DeviceLostError; a new decoder works",
  ignore: !adapter,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const device = await adapter!.requestDevice({
      requiredLimits: {
        maxComputeWorkgroupStorageSize: adapter!.limits.maxComputeWorkgroupStorageSize,
      },
    });
    const decoder = await createDecoder({ backend: "webgpu", device, grid: 8 });
    const input = makeInput({ ...F32_GQA, seqLens: [300, 1, 129], seed: 71 });
    assertMatchesReference(input, await decoder.decode(input), "before the loss");
    const pending = [1, 2, 3, 4].map(() => decoder.decode(input));
    device.destroy();
    const lost = (e: Error) =>
      e instanceof DeviceLostError &&
      /^The GPU device was lost \(reason: destroyed/.test(e.message);
    // Handlers go on at once: the calls reject while the first is awaited.
    const settled = pending.map((call) => call.then(() => new Error("resolved"), (e: Error) => e));
    for (const e of await Promise.all(settled)) assert.ok(lost(e), `not a loss: ${e}`);
    await assert.rejects(() => decoder.decode(input), lost);
    await assert.rejects(() => decoder.decode(input), lost);
    await assert.rejects(() => decoder.timeKernels(input, { runs: 1, warmup: 0 }), lost);
    await decoder.dispose();
    const fresh = await createDecoder({ backend: "webgpu", grid: 8 });
    try {
      assertMatchesReference(input, await fresh.decode(input), "new decoder");
    } finally {
      await fresh.dispose();
    }
  },
});

/** A device whose `createBuffer` asks for more than `maxBufferSize` for one buffer role. */
function failingDevice(device: GPUDevice, fail: { role: RegExp | null }): GPUDevice {
  return new Proxy(device, {
    get(target, key) {
      if (key === "createBuffer") {
        return (descriptor: GPUBufferDescriptor) => {
          const bad = fail.role?.test(descriptor.label ?? "");
          const size = bad ? target.limits.maxBufferSize + 256 : descriptor.size;
          return target.createBuffer({ ...descriptor, size });
        };
      }
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test({
  name: "a failed allocation rejects clearly, releases what the call created, and recovers",
  ignore: !adapter,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const device = await adapter!.requestDevice({
      requiredLimits: {
        maxComputeWorkgroupStorageSize: adapter!.limits.maxComputeWorkgroupStorageSize,
      },
    });
    const fail = { role: null as RegExp | null };
    const decoder = await createDecoder({
      backend: "webgpu",
      device: failingDevice(device, fail),
      grid: 8,
    });
    try {
      const small = makeInput({ ...F32_GQA, seqLens: [300, 1], seed: 81 });
      assertMatchesReference(small, await decoder.decode(small), "warm-up");
      const warm = decoder.stats();
      // A bigger call grows several buffers; the partials buffer fails.
      const big = makeInput({ ...F32_GQA, seqLens: [5000, 3000, 77], seed: 82 });
      fail.role = /partials/;
      await assert.rejects(
        () => decoder.decode(big),
        (e: Error) =>
          e instanceof GPUAllocationError && e.kind === "validation" &&
          /^GPU buffers of this call failed validation \(\d+ bytes new\): .*released/.test(
            e.message,
          ),
      );
      const after = decoder.stats();
      assert.ok(
        after.buffersLive <= warm.buffersLive,
        `${after.buffersLive} > ${warm.buffersLive}`,
      );
      fail.role = null;
      assertMatchesReference(big, await decoder.decode(big), "after the failure");
      assertMatchesReference(small, await decoder.decode(small), "small again");
    } finally {
      await decoder.dispose();
      device.destroy();
    }
  },
});
if (!adapter) console.log("skipping device-loss and allocation tests: no webgpu adapter here");
