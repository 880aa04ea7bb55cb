/**
 * Issue 16's features where they meet, dense on the CPU: the attention variants (sliding window,
 * soft-cap, ALiBi, sinks) in every subset, with each KV dtype (8-bit with per-tensor and per-token
 * scales), uniform and ragged query lengths with empty requests, V rows of their own head dim,
 * GQA / MQA / MHA, every strategy, batch invariance and small KV windows, against the float64
 * reference; the reference against an independent definition; the semantics where features
 * interact, by hand. Paged plans: tests/combinations_paged_test.ts; GPU backends:
 * tests/combinations_gpu_test.ts. Cases: tests/combinations.ts.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  createDecoder,
  createPlan,
  type DecodeInput,
  type Decoder,
  mergeStates,
  referenceAttention,
  STRATEGIES,
} from "../mod.ts";
import { PIECE, PIECE_STRIDE, skippedTiles, validateShape } from "../plan.ts";
import {
  bindingBytes,
  comboArb,
  type ComboCase,
  comboInput,
  definition,
  describeCombo,
  sequenceAlone,
  work,
} from "./combinations.ts";
import { assertMatchesReference, fcParams, makeInput, maxAbsError, sameBits } from "./helpers.ts";

/** Whether two float64 results agree to `tol`, with -Infinity rows equal exactly. */
function assertClose(
  got: { out: ArrayLike<number>; lse: ArrayLike<number> },
  want: { out: ArrayLike<number>; lse: ArrayLike<number> },
  tol: number,
  label: string,
): void {
  assert.equal(got.lse.length, want.lse.length, `${label}: lse length`);
  for (let i = 0; i < want.lse.length; i++) {
    if (want.lse[i] === -Infinity) assert.equal(got.lse[i], -Infinity, `${label}: lse[${i}]`);
  }
  const finite = (a: ArrayLike<number>) => Array.from(a, (x) => (x === -Infinity ? 0 : x));
  assert.ok(maxAbsError(got.out, want.out) < tol, `${label}: out`);
  assert.ok(maxAbsError(finite(got.lse), finite(want.lse)) < tol, `${label}: lse`);
}

Deno.test("the reference follows the definitions of every feature combined (ragged, empty, headDimV, 8-bit)", () => {
  fc.assert(
    fc.property(comboArb.filter(({ spec }) => work(spec) <= 200_000), (c) => {
      const input = comboInput(c);
      assertClose(referenceAttention(input), definition(input), 1e-10, describeCombo(c));
    }),
    fcParams(150),
  );
});

/** CPU decoders by their options, shared by the cases of a property run. */
class Decoders {
  #decoders = new Map<string, Decoder>();
  async get(c: ComboCase): Promise<Decoder> {
    const options = {
      grid: c.grid,
      tileTokens: c.tileTokens,
      batchInvariant: c.batchInvariant,
      ...(c.windowTiles === undefined
        ? {}
        : { maxBindingBytes: bindingBytes(c.spec, c.windowTiles * c.tileTokens) }),
    };
    const key = JSON.stringify(options);
    let decoder = this.#decoders.get(key);
    if (!decoder) {
      decoder = await createDecoder({ backend: "cpu", ...options });
      this.#decoders.set(key, decoder);
    }
    return decoder;
  }
  async [Symbol.asyncDispose](): Promise<void> {
    for (const d of this.#decoders.values()) await d.dispose();
  }
}

Deno.test("CPU decode matches the reference on every combination of issue 16's features", async () => {
  await using decoders = new Decoders();
  await fc.assert(
    fc.asyncProperty(comboArb, async (c) => {
      const input = comboInput(c);
      const decoder = await decoders.get(c);
      assertMatchesReference(input, await decoder.decode(input), describeCombo(c));
    }),
    fcParams(200),
  );
});

Deno.test("an empty request with sinks is the merge identity: out 0, lse -Infinity, every strategy [cpu]", async () => {
  // The sink is a logit with no value: with no context there is no query row to attend, so the
  // row stays the merge identity (the reference's choice; README, empty requests).
  const shape = { numHeads: 4, numKVHeads: 2, headDim: 16 };
  const variant = { sinks: Float32Array.of(3, -1, 0, 8), alibiSlopes: Float32Array.of(1, 1, 1, 1) };
  for (const strategy of STRATEGIES) {
    for (const batchInvariant of [false, true]) {
      await using decoder = await createDecoder({ backend: "cpu", grid: 5, batchInvariant });
      const input = {
        ...makeInput({ ...shape, seqLens: [0, 70, 0], qLens: [2, 1, 3], strategy, seed: 4 }),
        ...variant,
      };
      const ref = referenceAttention(input);
      const got = await decoder.decode(input);
      // Rows of sequence 0 (2 queries) and 2 (3 queries) of 4 heads: empty.
      for (const rows of [[0, 2], [3, 6]]) {
        for (let r = rows[0]; r < rows[1]; r++) {
          for (let h = 0; h < 4; h++) {
            assert.equal(ref.lse[r * 4 + h], -Infinity);
            assert.equal(got.lse[r * 4 + h], -Infinity, `${strategy} row ${r} head ${h}`);
            for (let d = 0; d < 16; d++) assert.ok(Object.is(got.out[(r * 4 + h) * 16 + d], 0));
          }
        }
      }
      assertMatchesReference(input, got, strategy);
    }
  }
});

Deno.test("a sliding window with ragged qLens skips tiles per sequence's own earliest row", () => {
  // W = 16 and 16-token tiles over 1000 tokens: a sequence decoding 1 token sees 985..999 and
  // skips tiles 0..60 (61 tiles, tokens 0..975); one verifying 16 tokens has its earliest row at
  // P = 984, seeing 969..984: it skips 60 tiles. Each sequence skips by its own query length,
  // not the batch's largest.
  const shape = {
    seqLens: [1000, 1000, 0, 40],
    qLens: [1, 16, 5, 3],
    numHeads: 2,
    numKVHeads: 1,
    headDim: 8,
    slidingWindow: 16,
  };
  const p = validateShape(shape);
  assert.deepEqual(Array.from(skippedTiles(p, 16)!), [61, 60, 0, 1]);
  for (const strategy of STRATEGIES) {
    const plan = createPlan(shape, { grid: 7, tileTokens: 16, strategy });
    const first = [Infinity, Infinity, Infinity, Infinity];
    const tokens = [0, 0, 0, 0];
    const s = plan.schedule;
    for (let o = 0; o < s.pieces.length; o += PIECE_STRIDE) {
      const seq = s.pieces[o + PIECE.seq];
      first[seq] = Math.min(first[seq], s.pieces[o + PIECE.tokenBegin]);
      tokens[seq] += s.pieces[o + PIECE.tokenEnd] - s.pieces[o + PIECE.tokenBegin];
    }
    // Each row block of a sequence reads from its first unskipped tile to its end: with 2 rows
    // per qLen-1 block and up to 32 rows per qLen-16 block (blocks of the largest qLen).
    assert.equal(first[0], 61 * 16, strategy);
    assert.equal(first[1], 60 * 16, strategy);
    assert.equal(first[2], Infinity, `${strategy}: no work for the empty request`);
    assert.equal(first[3], 16, strategy);
    assert.equal(tokens[0] % (1000 - 976), 0, strategy);
    assert.equal(tokens[1] % (1000 - 960), 0, strategy);
  }
});

Deno.test("ALiBi biases ragged rows by their own positions (by hand)", async () => {
  // q = 0: every score is 0, so a row's logits are its ALiBi biases slope * (t - P) alone, and
  // its output the softmax average of V's rows under them. Sequence 0 has 3 tokens and 1 query
  // (P = 2); sequence 1 has 3 tokens and 2 queries (P = 1 and 2); sequence 2 is empty.
  const slope = Math.log(2); // weights 2^(t - P)
  const v = Float32Array.of(1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0);
  const input: DecodeInput = {
    q: new Float32Array(4 * 8),
    k: Float32Array.from({ length: 48 }, (_, i) => i % 7),
    v: Float32Array.from([...v, ...v]),
    seqLens: [3, 3, 0],
    qLens: [1, 2, 1],
    numHeads: 1,
    numKVHeads: 1,
    headDim: 8,
    alibiSlopes: Float32Array.of(slope),
  };
  // Row P = 2 over tokens 0..2: weights 1/4, 1/2, 1 (sum 7/4); P = 1 over 0..1: 1/2, 1.
  const wantOut = [[1 / 7, 2 / 7, 4 / 7], [1 / 3, 2 / 3, 0], [1 / 7, 2 / 7, 4 / 7], [0, 0, 0]];
  const wantLse = [Math.log(7 / 4), Math.log(3 / 2), Math.log(7 / 4), -Infinity];
  await using decoder = await createDecoder({ backend: "cpu", grid: 3 });
  for (const result of [referenceAttention(input), await decoder.decode(input)]) {
    for (let r = 0; r < 4; r++) {
      for (let d = 0; d < 3; d++) {
        assert.ok(Math.abs(result.out[r * 8 + d] - wantOut[r][d]) < 1e-6, `row ${r} dim ${d}`);
      }
      if (r === 3) assert.equal(result.lse[r], -Infinity);
      else assert.ok(Math.abs(result.lse[r] - wantLse[r]) < 1e-6, `lse row ${r}`);
    }
  }
});

Deno.test("merging states of a split context: exact with soft-cap and sinks in one part [cpu]", async () => {
  // A prefix of 200 tokens and a suffix of 100, decoded apart and merged, against the whole.
  await using decoder = await createDecoder({ backend: "cpu", grid: 5 });
  const whole = makeInput({ seqLens: [300], numHeads: 4, numKVHeads: 2, headDim: 16, seed: 8 });
  const row = 2 * 16;
  const part = (from: number, to: number): DecodeInput => ({
    ...whole,
    seqLens: [to - from],
    k: (whole.k as Float32Array).subarray(from * row, to * row),
    v: (whole.v as Float32Array).subarray(from * row, to * row),
  });
  const sinks = Float32Array.of(1, -2, 0.5, 3);
  const logitsSoftCap = 3;
  const full = await decoder.decode({ ...whole, logitsSoftCap, sinks });
  const merged = mergeStates([
    await decoder.decode({ ...part(0, 200), logitsSoftCap, sinks }),
    await decoder.decode({ ...part(200, 300), logitsSoftCap }),
  ]);
  assert.ok(maxAbsError(merged.out, full.out) < 1e-5);
  assert.ok(maxAbsError(merged.lse, full.lse) < 1e-5);
  // Sinks in both parts count twice; ALiBi biases a part by its own last position: neither
  // merges to the whole (README, merging attention states).
  const twice = mergeStates([
    await decoder.decode({ ...part(0, 200), sinks }),
    await decoder.decode({ ...part(200, 300), sinks }),
  ]);
  assert.ok(maxAbsError(twice.lse, (await decoder.decode({ ...whole, sinks })).lse) > 1e-3);
  const alibiSlopes = Float32Array.of(0.05, 0.05, 0.05, 0.05);
  const alibi = mergeStates([
    await decoder.decode({ ...part(0, 200), alibiSlopes }),
    await decoder.decode({ ...part(200, 300), alibiSlopes }),
  ]);
  assert.ok(maxAbsError(alibi.lse, (await decoder.decode({ ...whole, alibiSlopes })).lse) > 1e-3);
});

Deno.test("batch-invariant decoding: a sequence's rows are bitwise the same alone and in any batch, every combination [cpu]", async () => {
  await using decoders = new Decoders();
  await fc.assert(
    fc.asyncProperty(
      comboArb.filter(({ spec }) => spec.seqLens.some((n) => n > 0)),
      fc.nat(),
      async (c0, pick) => {
        // Batch invariance with KV windows holds for windows of at least a chunk; none here.
        const c: ComboCase = { ...c0, batchInvariant: true, windowTiles: undefined };
        const input = comboInput(c);
        const decoder = await decoders.get(c);
        const batch = await decoder.decode(input);
        const live = c.spec.seqLens.flatMap((n, i) => (n > 0 ? [i] : []));
        const i = live[pick % live.length];
        const { alone, rows } = sequenceAlone(input, i);
        const one = await decoder.decode(alone);
        const H = input.numHeads;
        const DV = input.headDimV ?? input.headDim;
        const n = one.lse.length;
        const label = `${describeCombo(c)} sequence ${i}`;
        assert.ok(sameBits(batch.lse.subarray(rows * H, rows * H + n), one.lse), `${label}: lse`);
        assert.ok(
          sameBits(batch.out.subarray(rows * H * DV, (rows * H + n) * DV), one.out),
          `${label}: out`,
        );
      },
    ),
    fcParams(150),
  );
});
