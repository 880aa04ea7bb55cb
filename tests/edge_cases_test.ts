/**
 * Required edge cases, each against the float64 reference on every backend and strategy:
 * 1-token contexts, contexts off the tile grid, a batch mixing 1 and 5000 tokens, head dims 8 and
 * 256, qLen up to 16, unequal row blocks, causal masking, peaky softmax and the default scale.
 */

import assert from "node:assert/strict";
import { type Decoder, KV_DTYPES, STRATEGIES } from "../mod.ts";
import { backendTest } from "./backends.ts";
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
  for (const kvDtype of KV_DTYPES) {
    await checkAllStrategies(decoder, {
      seqLens: [1],
      numHeads: 4,
      numKVHeads: 2,
      headDim: 64,
      kvDtype,
      seed: 11,
    });
    await checkAllStrategies(decoder, {
      seqLens: [1, 1, 1, 1, 1],
      numHeads: 8,
      numKVHeads: 1,
      headDim: 32,
      kvDtype,
      seed: 12,
    });
  }
});

backendTest("a single-token context outputs that token's value", async (decoder) => {
  const input = makeInput({ seqLens: [1, 1], numHeads: 2, numKVHeads: 1, headDim: 16, seed: 5 });
  const { out } = await decoder.decode(input);
  const v = input.v as Float32Array;
  for (let seq = 0; seq < 2; seq++) {
    for (let h = 0; h < 2; h++) {
      for (let d = 0; d < 16; d++) {
        const got = out[(seq * 2 + h) * 16 + d];
        const want = v[seq * 16 + d];
        assert.ok(Math.abs(got - want) <= 1e-6 * Math.abs(want) + 1e-7, `seq ${seq} head ${h}`);
      }
    }
  }
});

backendTest("contexts that are not a multiple of the tile size", async (decoder) => {
  await checkAllStrategies(decoder, {
    seqLens: [63, 64, 65, 127, 128, 129, 191, 2],
    numHeads: 4,
    numKVHeads: 2,
    headDim: 64,
    seed: 21,
  });
  await checkAllStrategies(decoder, {
    seqLens: [65, 200],
    numHeads: 2,
    numKVHeads: 2,
    headDim: 96,
    qLen: 3,
    kvDtype: "f16",
    seed: 22,
  });
});

backendTest("contexts off a 16-token tile grid", async (decoder) => {
  await checkAllStrategies(decoder, {
    seqLens: [15, 16, 17, 33, 47, 1, 100],
    numHeads: 4,
    numKVHeads: 1,
    headDim: 80,
    qLen: 1,
    kvDtype: "bf16",
    seed: 23,
  });
}, { decoder: { tileTokens: 16, grid: 5 } });

backendTest("contexts shorter than a 256-token tile", async (decoder) => {
  await checkAllStrategies(decoder, {
    seqLens: [255, 257, 3, 511],
    numHeads: 2,
    numKVHeads: 1,
    headDim: 48,
    qLen: 2,
    seed: 24,
  });
}, { decoder: { tileTokens: 256 } });

backendTest("a batch mixing 1 and 5000 tokens", async (decoder) => {
  for (const kvDtype of KV_DTYPES) {
    await checkAllStrategies(decoder, {
      seqLens: [1, 5000, 1],
      numHeads: 8,
      numKVHeads: 2,
      headDim: 64,
      kvDtype,
      seed: 31,
    });
  }
  await checkAllStrategies(decoder, {
    seqLens: [5000, 1],
    numHeads: 4,
    numKVHeads: 4,
    headDim: 32,
    qLen: 1,
    scale: 0.3,
    seed: 32,
  });
});

backendTest("head dims 8 and 256", async (decoder) => {
  for (const headDim of [8, 256]) {
    for (const qLen of [1, 16]) {
      await checkAllStrategies(decoder, {
        seqLens: [qLen, 70, 300],
        numHeads: 8,
        numKVHeads: 2,
        headDim,
        qLen,
        kvDtype: headDim === 8 ? "f16" : "f32",
        seed: 40 + headDim + qLen,
      });
    }
  }
});

backendTest("qLen up to 16, including contexts of exactly qLen tokens", async (decoder) => {
  for (const qLen of [2, 5, 16]) {
    await checkAllStrategies(decoder, {
      seqLens: [qLen, qLen + 1, 130],
      numHeads: 4,
      numKVHeads: 1,
      headDim: 64,
      qLen,
      kvDtype: qLen === 5 ? "bf16" : "f32",
      seed: 50 + qLen,
    });
  }
});

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
});

backendTest("query positions never see later tokens", async (decoder) => {
  const spec: CaseSpec = {
    seqLens: [80, 20],
    numHeads: 2,
    numKVHeads: 1,
    headDim: 32,
    qLen: 4,
    seed: 71,
  };
  for (const strategy of STRATEGIES) {
    const input = makeInput({ ...spec, strategy });
    const base = await decoder.decode(input);
    // Overwrite K and V of each sequence's last 3 tokens, which only query position 3 sees.
    const k = (input.k as Float32Array).slice();
    const v = (input.v as Float32Array).slice();
    let end = 0;
    for (const len of spec.seqLens) {
      end += len;
      for (let i = (end - 3) * 32; i < end * 32; i++) {
        k[i] = 5;
        v[i] = 100;
      }
    }
    const changed = { ...input, k, v };
    const after = await decoder.decode(changed);
    assertMatchesReference(changed, after, `changed ${strategy}`);
    const rowsOf = (out: Float32Array, pos: number) => {
      const rows: number[] = [];
      for (let seq = 0; seq < 2; seq++) {
        const o = (seq * 4 + pos) * 2 * 32;
        rows.push(...out.subarray(o, o + 2 * 32));
      }
      return rows;
    };
    assert.ok(relativeL2Error(rowsOf(after.out, 0), rowsOf(base.out, 0)) < 1e-6, strategy);
    assert.ok(relativeL2Error(rowsOf(after.out, 3), rowsOf(base.out, 3)) > 0.1, strategy);
  }
});

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
  const input = makeInput({ seqLens: [50, 3], numHeads: 2, numKVHeads: 1, headDim: 80, seed: 91 });
  const implicit = await decoder.decode(input);
  const explicit = await decoder.decode({ ...input, scale: 1 / Math.sqrt(80) });
  assert.ok(sameBits(implicit.out, explicit.out));
  assert.ok(sameBits(implicit.lse, explicit.lse));
  const other = await decoder.decode({ ...input, scale: 0.5 });
  assert.ok(!sameBits(implicit.lse, other.lse), "an explicit scale must change the result");
  assertMatchesReference({ ...input, scale: 0.5 }, other, "scale 0.5");
});
