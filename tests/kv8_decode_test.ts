/**
 * Dense decode with 8-bit KV (`int8`, `fp8e4m3`, `fp8e5m2`) and their scales, per tensor and per
 * (token, KV head): every backend against the float64 reference (the CPU over the whole shape
 * space, a software adapter over the 8-bit families of the kernel set), and bad inputs.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type DecodeInput,
  encodeKV,
  type KVDtype,
  referenceAttention,
  STRATEGIES,
} from "../mod.ts";
import { backendTest, propertyParams } from "./backends.ts";
import { assertMatchesReference, type CaseSpec, describeSpec, makeInput } from "./helpers.ts";
import { KV8_FAMILIES } from "./kernel_set.ts";

const KV8: readonly KVDtype[] = ["int8", "fp8e4m3", "fp8e5m2"];

function caseArb(fullSpace: boolean): fc.Arbitrary<CaseSpec> {
  const family = fullSpace
    ? fc.record({
      numHeads: fc.constantFrom(1, 2, 4, 8),
      kvDiv: fc.constantFrom(1, 2, 4),
      headDim: fc.oneof(
        fc.constantFrom(8, 24, 64, 128),
        fc.integer({ min: 1, max: 32 }).map((n) => 8 * n),
      ),
      qLen: fc.integer({ min: 1, max: 4 }),
      kvDtype: fc.constantFrom(...KV8),
    }).map((f) => ({ ...f, numKVHeads: Math.max(1, f.numHeads / f.kvDiv) }))
    : fc.constantFrom(...KV8_FAMILIES);
  return fc.record({
    family,
    lens: fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 1, maxLength: 4 }),
    strategy: fc.constantFrom(...STRATEGIES),
    kvScales: fc.constantFrom("tensor" as const, "token" as const),
    seed: fc.integer({ min: 0, max: 0x7fffffff }),
  }).map((r) => ({
    seqLens: r.lens.map((n) => n + r.family.qLen),
    numHeads: r.family.numHeads,
    numKVHeads: r.family.numKVHeads,
    headDim: r.family.headDim,
    qLen: r.family.qLen,
    kvDtype: r.family.kvDtype,
    strategy: r.strategy,
    kvScales: r.kvScales,
    seed: r.seed,
    qAmplitude: 2,
  }));
}

backendTest(
  "8-bit KV decode matches the float64 reference, per-tensor and per-token scales",
  async (decoder, backend, context) => {
    if (!context.exhaustive) {
      // A software adapter: every family of the set in both scale modes, once each.
      let i = 0;
      for (const family of KV8_FAMILIES) {
        for (const kvScales of ["tensor", "token"] as const) {
          const spec: CaseSpec = {
            ...family,
            seqLens: [130 + 37 * i, 1 + i],
            strategy: STRATEGIES[i % STRATEGIES.length],
            kvScales,
            seed: 1000 + i++,
            qAmplitude: 2,
          };
          const input = makeInput(spec);
          const label = `${describeSpec(spec)} ${kvScales}`;
          assertMatchesReference(input, await decoder.decode(input), label);
        }
      }
    }
    await fc.assert(
      fc.asyncProperty(caseArb(context.exhaustive), async (spec) => {
        const input = makeInput(spec);
        assertMatchesReference(
          input,
          await decoder.decode(input),
          describeSpec(spec) + ` ${spec.kvScales}`,
        );
      }),
      propertyParams(backend, 120, 4, context),
    );
  },
);

backendTest(
  "8-bit KV: a per-token scale array is the tensor's scale where all are equal",
  async (decoder) => {
    for (const kvDtype of KV8) {
      const spec: CaseSpec = {
        seqLens: [70, 5],
        numHeads: 4,
        numKVHeads: 2,
        headDim: 16,
        kvDtype,
        seed: 7,
      };
      const input = makeInput(spec);
      const rows = 75 * 2;
      const perToken: DecodeInput = {
        ...input,
        kScale: new Float32Array(rows).fill(input.kScale as number),
        vScale: new Float32Array(rows).fill(input.vScale as number),
      };
      const a = await decoder.decode(input);
      const b = await decoder.decode(perToken);
      assertMatchesReference(perToken, b, kvDtype);
      for (let i = 0; i < a.out.length; i++) {
        assert.ok(
          Math.abs(a.out[i] - b.out[i]) <= 1e-5 * (1 + Math.abs(a.out[i])),
          `${kvDtype} out[${i}]`,
        );
      }
    }
  },
);

backendTest(
  "8-bit KV: bad inputs throw naming the field and value, decoder usable after",
  async (decoder) => {
    const base: DecodeInput = {
      q: new Float32Array(4 * 16).fill(0.1),
      k: encodeKV(new Float32Array(3 * 2 * 16).fill(0.5), "int8", { scale: 0.01 }),
      v: encodeKV(new Float32Array(3 * 2 * 16).fill(0.25), "int8", { scale: 0.01 }),
      kScale: 0.01,
      vScale: 0.01,
      seqLens: [3],
      numHeads: 4,
      numKVHeads: 2,
      headDim: 16,
      kvDtype: "int8",
    };
    const bad: Array<[Partial<DecodeInput>, ErrorConstructor, RegExp]> = [
      [
        { k: new Float32Array(96) },
        TypeError,
        /k must be a Int8Array of codes \(kvDtype "int8"\): got Float32Array/,
      ],
      [{ v: new Uint8Array(96) }, TypeError, /v must be a Int8Array.*got Uint8Array/],
      [
        { kvDtype: "fp8e4m3" },
        TypeError,
        /k must be a Uint8Array of codes \(kvDtype "fp8e4m3"\): got Int8Array/,
      ],
      [{ k: new Int8Array(95) }, RangeError, /k must have 96 elements: got 95/],
      [{ kScale: 0 }, RangeError, /kScale must be a finite number > 0: got 0/],
      [{ vScale: -2 }, RangeError, /vScale must be a finite number > 0: got -2/],
      [{ kScale: Infinity }, RangeError, /kScale must be a finite number > 0: got Infinity/],
      [
        { kScale: "1" as never },
        TypeError,
        /kScale must be a number or a Float32Array.*got string/,
      ],
      [
        { vScale: [1, 2] as never },
        TypeError,
        /vScale must be a number or a Float32Array.*got Array/,
      ],
      [
        { kScale: new Float32Array(5).fill(1) },
        RangeError,
        /kScale must have 6 elements \(one per token and KV head\): got 5/,
      ],
      [
        { vScale: Float32Array.from([1, 1, 1, NaN, 1, 1]) },
        RangeError,
        /vScale\[3\] must be a finite number > 0: got NaN/,
      ],
      [
        { kScale: new Float32Array(6) },
        RangeError,
        /kScale\[0\] must be a finite number > 0: got 0/,
      ],
      [
        { kvDtype: "f16", k: new Uint16Array(96), v: new Uint16Array(96) },
        RangeError,
        /kScale applies to the 8-bit kvDtypes only: got 0.01 for kvDtype "f16"/,
      ],
    ];
    for (const [patch, type, pattern] of bad) {
      await assert.rejects(
        () => decoder.decode({ ...base, ...patch }),
        (e: Error) => e instanceof type && pattern.test(e.message),
        `${String(pattern)}`,
      );
    }
    const ok = await decoder.decode(base);
    assertMatchesReference(base, ok, "after bad inputs");
  },
);

backendTest(
  "8-bit KV with per-token scales over KV windows (small binding limit) matches the reference",
  async (decoder) => {
    for (const kvDtype of KV8) {
      for (const kvScales of ["tensor", "token"] as const) {
        const spec: CaseSpec = {
          seqLens: [300, 41, 700],
          numHeads: 4,
          numKVHeads: 2,
          headDim: 16,
          kvDtype,
          kvScales,
          strategy: "lean",
          seed: 99,
        };
        const input = makeInput(spec);
        const plan = decoder.plan(input);
        assert.ok(plan.schedule.windows.length > 1, "the cache is cut into windows");
        assertMatchesReference(input, await decoder.decode(input), `${kvDtype} ${kvScales}`);
      }
    }
  },
  // 160 tokens of 2 x 16 bytes per window.
  { decoder: { maxBindingBytes: 160 * 32 } },
);

backendTest(
  "FP8 NaN codes make the rows that read them NaN, as in the reference",
  async (decoder) => {
    for (const kvDtype of ["fp8e4m3", "fp8e5m2"] as const) {
      const k = encodeKV(new Float32Array(40 * 2 * 16).fill(0.25), kvDtype) as Uint8Array;
      k[5 * 32 + 3] = kvDtype === "fp8e4m3" ? 0x7f : 0xfe; // token 5, KV head 0
      const input: DecodeInput = {
        q: new Float32Array(4 * 16).fill(0.1),
        k,
        v: encodeKV(new Float32Array(40 * 2 * 16).fill(0.5), kvDtype),
        kScale: 2,
        vScale: 0.5,
        seqLens: [40],
        numHeads: 4,
        numKVHeads: 2,
        headDim: 16,
        kvDtype,
      };
      const { out, lse } = await decoder.decode(input);
      const ref = referenceAttention(input);
      for (let i = 0; i < out.length; i++) {
        assert.equal(Number.isNaN(out[i]), Number.isNaN(ref.out[i]), `${kvDtype} out[${i}]`);
      }
      // Query heads 0 and 1 read KV head 0: NaN; heads 2 and 3: 0.5 x 0.5.
      for (let h = 0; h < 4; h++) {
        for (let d = 0; d < 16; d++) {
          const x = out[h * 16 + d];
          assert.ok(h < 2 ? Number.isNaN(x) : x === 0.25, `${kvDtype} head ${h}: ${x}`);
        }
        assert.equal(Number.isNaN(lse[h]), h < 2, `${kvDtype} lse ${h}`);
      }
    }
  },
);

backendTest(
  "every 8-bit code reaches the output exactly: one-token sequences whose V rows hold all 256",
  async (decoder) => {
    // One token per sequence: its softmax weight is 1, so each output row is its V row times
    // the scale. 8 sequences x 2 KV heads x 16 dims = 256 codes, each once.
    const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
    for (const kvDtype of KV8) {
      const v = kvDtype === "int8" ? new Int8Array(codes.buffer) : codes;
      const k = kvDtype === "int8" ? new Int8Array(256) : new Uint8Array(256);
      const input: DecodeInput = {
        q: new Float32Array(8 * 4 * 16).fill(0.5),
        k,
        v,
        kScale: 1,
        vScale: 0.5,
        seqLens: [1, 1, 1, 1, 1, 1, 1, 1],
        numHeads: 4,
        numKVHeads: 2,
        headDim: 16,
        kvDtype,
      };
      const want = referenceAttention(input).out;
      const { out } = await decoder.decode(input);
      for (let i = 0; i < out.length; i++) {
        const same = Object.is(out[i], Math.fround(want[i])) ||
          (Number.isNaN(out[i]) && Number.isNaN(want[i]));
        assert.ok(same, `${kvDtype} output ${i}: ${out[i]}, want ${want[i]}`);
      }
    }
  },
);
