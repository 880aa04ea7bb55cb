/**
 * Required edge cases, each against the float64 reference on every backend and strategy:
 * 1-token contexts, contexts off the tile grid, a batch mixing 1 and 5000 tokens, head dims 8 and
 * 256, qLen up to 16, unequal row blocks, causal masking, peaky softmax and the default scale.
 */

import assert from "node:assert/strict";
import { decodeKV, type Decoder, encodeKV, STRATEGIES } from "../mod.ts";
import { backendTest } from "./backends.ts";
import { BF16_Q2, F16_D8, F16_MHA, F32_GQA } from "./kernel_set.ts";
import {
  assertMatchesReference,
  type CaseSpec,
  describeSpec,
  makeInput,
  relativeL2Error,
  sameBits,
} from "./helpers.ts";

/** Decodes a spec under every strategy and checks each result against the reference. */
async function checkAllStrategies(decoder: Decoder, spec: CaseSpec): Promise<void> {
  for (const strategy of STRATEGIES) {
    const s = { ...spec, strategy };
    const input = makeInput(s);
    assertMatchesReference(input, await decoder.decode(input), describeSpec(s));
  }
}

backendTest("contexts of a single token", async (decoder) => {
  await checkAllStrategies(decoder, { ...F32_GQA, seqLens: [1], seed: 11 });
  await checkAllStrategies(decoder, { ...F16_MHA, seqLens: [1, 1, 1, 1, 1], seed: 12 });
  await checkAllStrategies(decoder, { ...F16_D8, seqLens: [1, 1, 1], seed: 13 });
  // With qLen 2 the shortest context is 2 tokens, both new.
  await checkAllStrategies(decoder, { ...BF16_Q2, seqLens: [2, 2], seed: 14 });
});

backendTest("a single-token context outputs that token's value", async (decoder) => {
  const { numHeads: H, numKVHeads: KVH, headDim: D } = F32_GQA;
  const input = makeInput({ ...F32_GQA, seqLens: [1, 1], seed: 5 });
  const { out } = await decoder.decode(input);
  const v = input.v as Float32Array;
  for (let seq = 0; seq < 2; seq++) {
    for (let h = 0; h < H; h++) {
      const kvHead = Math.floor(h / (H / KVH));
      for (let d = 0; d < D; d++) {
        const got = out[(seq * H + h) * D + d];
        const want = v[(seq * KVH + kvHead) * D + d];
        assert.ok(Math.abs(got - want) <= 1e-6 * Math.abs(want) + 1e-7, `seq ${seq} head ${h}`);
      }
    }
  }
});

backendTest("contexts that are not a multiple of the tile size", async (decoder) => {
  await checkAllStrategies(decoder, {
    ...F32_GQA,
    seqLens: [63, 64, 65, 127, 128, 129, 191, 2],
    seed: 21,
  });
  await checkAllStrategies(decoder, { ...BF16_Q2, seqLens: [65, 200, 3], seed: 22 });
});

backendTest("contexts off a 16-token tile grid", async (decoder) => {
  await checkAllStrategies(decoder, {
    ...F32_GQA,
    seqLens: [15, 16, 17, 33, 47, 1, 100],
    seed: 23,
  });
}, { decoder: { tileTokens: 16, grid: 5 } });

backendTest("contexts shorter than a 256-token tile", async (decoder) => {
  await checkAllStrategies(decoder, {
    ...F32_GQA,
    seqLens: [255, 257, 3, 511],
    seed: 24,
  });
}, { decoder: { tileTokens: 256 } });

backendTest("a batch mixing 1 and 5000 tokens", async (decoder) => {
  await checkAllStrategies(decoder, { ...F32_GQA, seqLens: [1, 5000, 1], seed: 31 });
  await checkAllStrategies(decoder, { ...F16_MHA, seqLens: [5000, 1], scale: 0.3, seed: 32 });
  await checkAllStrategies(decoder, { ...BF16_Q2, seqLens: [2, 5000, 2], seed: 33 });
});

backendTest("head dims 8 and 256", async (decoder) => {
  for (const headDim of [8, 256]) {
    for (const qLen of [1, 16]) {
      await checkAllStrategies(decoder, {
        seqLens: [qLen, 70, 300],
        // Two MHA heads at d8 with qLen 1: the kernel of the F16_D8 family.
        numHeads: headDim === 8 && qLen === 1 ? 2 : 8,
        numKVHeads: 2,
        headDim,
        qLen,
        kvDtype: headDim === 8 ? "f16" : "f32",
        seed: 40 + headDim + qLen,
      });
    }
  }
}, { exhaustive: true });

backendTest("contexts of exactly qLen tokens", async (decoder) => {
  await checkAllStrategies(decoder, { ...BF16_Q2, seqLens: [2, 3, 130], seed: 52 });
});

backendTest("qLen 16, including contexts of exactly qLen tokens", async (decoder) => {
  await checkAllStrategies(decoder, {
    seqLens: [16, 17, 130],
    numHeads: 4,
    numKVHeads: 1,
    headDim: 64,
    qLen: 16,
    seed: 66,
  });
}, { exhaustive: true });

backendTest("KV groups split into unequal row blocks", async (decoder) => {
  // 17 rows per KV group with headDim 128 (16 rows per block at most): blocks of 9 and 8 rows.
  await checkAllStrategies(decoder, {
    seqLens: [90, 7],
    numHeads: 17,
    numKVHeads: 1,
    headDim: 128,
    seed: 61,
  });
  // MQA with qLen 16: 96 rows per group at headDim 256 (8 rows per block): 12 blocks.
  await checkAllStrategies(decoder, {
    seqLens: [40],
    numHeads: 6,
    numKVHeads: 1,
    headDim: 256,
    qLen: 16,
    seed: 62,
  });
}, { exhaustive: true });

/**
 * Overwrites K and V of each sequence's last `qLen - 1` tokens, which only the last query position
 * sees: the first position's output must not change, the last one's must.
 */
async function checkCausal(decoder: Decoder, spec: CaseSpec): Promise<void> {
  const { numHeads: H, numKVHeads: KVH, headDim: D } = spec;
  const qLen = spec.qLen ?? 1;
  const kvDtype = spec.kvDtype ?? "f32";
  const row = KVH * D;
  for (const strategy of STRATEGIES) {
    const input = makeInput({ ...spec, strategy });
    const base = await decoder.decode(input);
    // Copies: decodeKV returns f32 data itself.
    const k = decodeKV(input.k, kvDtype).slice();
    const v = decodeKV(input.v!, kvDtype).slice();
    let end = 0;
    for (const len of spec.seqLens) {
      end += len;
      k.fill(5, (end - qLen + 1) * row, end * row);
      v.fill(100, (end - qLen + 1) * row, end * row);
    }
    const changed = { ...input, k: encodeKV(k, kvDtype), v: encodeKV(v, kvDtype) };
    const after = await decoder.decode(changed);
    assertMatchesReference(changed, after, `changed ${strategy}`);
    const rowsOf = (out: Float32Array, pos: number) => {
      const rows: number[] = [];
      for (let seq = 0; seq < spec.seqLens.length; seq++) {
        const o = (seq * qLen + pos) * H * D;
        rows.push(...out.subarray(o, o + H * D));
      }
      return rows;
    };
    assert.ok(relativeL2Error(rowsOf(after.out, 0), rowsOf(base.out, 0)) < 1e-6, strategy);
    assert.ok(relativeL2Error(rowsOf(after.out, qLen - 1), rowsOf(base.out, qLen - 1)) > 0.1);
  }
}

backendTest("query positions never see later tokens", async (decoder) => {
  await checkCausal(decoder, { ...BF16_Q2, seqLens: [80, 20], seed: 71 });
});

backendTest("query positions never see later tokens (qLen 4)", async (decoder) => {
  await checkCausal(decoder, {
    seqLens: [80, 20],
    numHeads: 2,
    numKVHeads: 1,
    headDim: 32,
    qLen: 4,
    seed: 71,
  });
}, { exhaustive: true });

backendTest("peaky softmax with large scores", async (decoder) => {
  await checkAllStrategies(decoder, {
    seqLens: [300, 64, 2],
    numHeads: 4,
    numKVHeads: 2,
    headDim: 64,
    qLen: 2,
    scale: 1,
    qAmplitude: 8,
    seed: 81,
  });
});

backendTest("the default scale is 1 / sqrt(headDim)", async (decoder) => {
  const input = makeInput({ ...F32_GQA, seqLens: [50, 3], seed: 91 });
  const implicit = await decoder.decode(input);
  const explicit = await decoder.decode({ ...input, scale: 1 / Math.sqrt(64) });
  assert.ok(sameBits(implicit.out, explicit.out));
  assert.ok(sameBits(implicit.lse, explicit.lse));
  const other = await decoder.decode({ ...input, scale: 0.5 });
  assert.ok(!sameBits(implicit.lse, other.lse), "an explicit scale must change the result");
  assertMatchesReference({ ...input, scale: 0.5 }, other, "scale 0.5");
});
