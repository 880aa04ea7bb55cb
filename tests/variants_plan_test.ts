/**
 * The attention variants in planning and in the runner: a sliding window's plan schedules only
 * the tiles inside some row's window (its cost follows the window, not the context), step plans
 * are reused only while the skipped tiles hold, bad variant values are rejected naming the field
 * and the value (everything stays usable), and paged plans (CPU, and the attention encoder on
 * every GPU that opens here) carry the variant of their layer.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  createDecoder,
  createPlan,
  type DecodeInput,
  referenceAttention,
  STRATEGIES,
} from "../mod.ts";
import { executePlanOnCpu, PIECE, PIECE_STRIDE, skippedTiles } from "../plan.ts";
import {
  createAttentionEncoder,
  createKVCache,
  executePagedPlanOnCpu,
  type KVCache,
  planForCache,
} from "../runner.ts";
import { reusePlan } from "../src/plan/reuse.ts";
import { deviceTest, gpuBuffer, readF32 } from "./gpu_device.ts";
import { assertMatchesReference, fcParams, makeInput, randomFloats, seededRng } from "./helpers.ts";

Deno.test("a sliding window's plan covers each window exactly once and nothing before it", () => {
  fc.assert(
    fc.property(
      fc.record({
        qLen: fc.integer({ min: 1, max: 16 }),
        extras: fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 5 }),
        W: fc.oneof(fc.integer({ min: 1, max: 70 }), fc.integer({ min: 1, max: 4000 })),
        strategy: fc.constantFrom(...STRATEGIES),
        grid: fc.constantFrom(1, 5, 16, 132),
        tileTokens: fc.constantFrom(16, 64, 256),
        batchInvariant: fc.boolean(),
        maxBindingBytes: fc.option(fc.constantFrom(40960, 98304), { nil: undefined }),
      }),
      (c) => {
        const shape = {
          seqLens: c.extras.map((e) => e + c.qLen),
          numHeads: 4,
          numKVHeads: 2,
          headDim: 16,
          qLen: c.qLen,
          slidingWindow: c.W,
        };
        const plan = createPlan(shape, { ...c, grid: c.grid });
        const T = plan.tiles.tileTokens;
        const segs = shape.seqLens.length * 2 * plan.tiles.rowBlocks;
        // Tokens each segment's pieces cover, as absolute positions.
        const covered: number[][] = Array.from({ length: segs }, () => []);
        const s = plan.schedule;
        for (let o = 0; o < s.pieces.length; o += PIECE_STRIDE) {
          const seq = s.pieces[o + PIECE.seq];
          const seg = (seq * 2 + s.pieces[o + PIECE.kvHead]) * plan.tiles.rowBlocks +
            s.pieces[o + PIECE.rowBlock];
          const shift = shape.seqLens[seq] - s.pieces[o + PIECE.seqLen]; // window-relative pieces
          for (let t = s.pieces[o + PIECE.tokenBegin]; t < s.pieces[o + PIECE.tokenEnd]; t++) {
            covered[seg].push(t + shift);
          }
        }
        let tiles = 0;
        shape.seqLens.forEach((L, seq) => {
          // The union of the rows' windows is lo .. L - 1: scheduled from lo's tile on, once.
          const lo = Math.max(0, L - c.qLen + 1 - c.W);
          const first = Math.floor(lo / T) * T;
          tiles += Math.ceil(L / T) - first / T;
          for (let j = 0; j < 2 * plan.tiles.rowBlocks; j++) {
            const got = covered[seq * 2 * plan.tiles.rowBlocks + j].sort((a, b) => a - b);
            assert.equal(got.length, L - first, `seq ${seq}: tokens scheduled`);
            got.forEach((t, i) => assert.equal(t, first + i, `seq ${seq}: token ${first + i}`));
          }
        });
        assert.equal(plan.numTiles, tiles * 2 * plan.tiles.rowBlocks);
        assert.deepEqual(
          Array.from(skippedTiles(plan.problem, T)!),
          shape.seqLens.map((L) => Math.floor(Math.max(0, L - c.qLen + 1 - c.W) / T)),
        );
      },
    ),
    fcParams(200),
  );
});

Deno.test("a sliding window's plan costs what its window costs, whatever the context", () => {
  const base = { numHeads: 32, numKVHeads: 8, headDim: 128, kvDtype: "f16" } as const;
  for (const strategy of STRATEGIES) {
    const short = createPlan({ ...base, seqLens: [4096] }, { grid: 132, strategy });
    for (const context of [8192, 32768, 131072, 1 << 20]) {
      const long = createPlan({ ...base, seqLens: [context], slidingWindow: 4096 }, {
        grid: 132,
        strategy,
      });
      assert.ok(long.numTiles <= short.numTiles + long.numSegments, `${strategy} ${context}`);
      assert.ok(long.schedule.workgroups <= short.schedule.workgroups + long.numSegments);
    }
    // Eight sequences of 128k with W = 4096 cost eight 4k sequences, qLen 16 included.
    const batch = createPlan({
      ...base,
      seqLens: Array(8).fill(131072),
      qLen: 16,
      slidingWindow: 4096,
    }, {
      grid: 132,
      strategy,
    });
    const small = createPlan({ ...base, seqLens: Array(8).fill(4096), qLen: 16 }, {
      grid: 132,
      strategy,
    });
    assert.ok(batch.numTiles <= small.numTiles + batch.numSegments, strategy);
  }
});

Deno.test("step plans with a sliding window: reused while the skipped tiles hold, else planned afresh", () => {
  const options = { grid: 8, tileTokens: 16 };
  let lens = [40, 3, 100];
  const W = 23;
  let previous = createPlan({
    seqLens: lens,
    numHeads: 2,
    numKVHeads: 1,
    headDim: 8,
    slidingWindow: W,
  }, options);
  let reused = 0;
  for (let step = 0; step < 80; step++) {
    lens = lens.map((n) => n + 1);
    const shape = { seqLens: lens, numHeads: 2, numKVHeads: 1, headDim: 8, slidingWindow: W };
    const fresh = createPlan(shape, options);
    const next = reusePlan(previous, fresh.problem, options);
    if (next) {
      reused++;
      assert.deepEqual(next.schedule, fresh.schedule, `step ${step}`);
      assert.deepEqual(next.partition, fresh.partition, `step ${step}`);
    } else {
      assert.ok(
        lens.some((n) => Math.ceil(n / 16) !== Math.ceil((n - 1) / 16)) ||
          skippedTiles(fresh.problem, 16)!.some((n, s) =>
            n !== skippedTiles(previous.problem, 16)![s]
          ),
        `step ${step}: not reused, though nothing moved`,
      );
    }
    previous = next ?? fresh;
  }
  assert.ok(reused > 20, `reused ${reused} of 80 steps`);
});

/** Bad values of each variant field: [value, error type, message part]. */
const BAD: Record<string, [unknown, typeof TypeError | typeof RangeError, string][]> = {
  slidingWindow: [
    ["8", TypeError, 'slidingWindow must be a number: got "8"'],
    [0, RangeError, "slidingWindow must be an integer >= 1: got 0"],
    [-3, RangeError, "got -3"],
    [2.5, RangeError, "got 2.5"],
    [NaN, RangeError, "got NaN"],
    [Infinity, RangeError, "got Infinity"],
  ],
  logitsSoftCap: [
    [null, TypeError, "logitsSoftCap must be a number: got null"],
    [0, RangeError, "logitsSoftCap must be a finite number > 0: got 0"],
    [-1, RangeError, "got -1"],
    [NaN, RangeError, "got NaN"],
    [Infinity, RangeError, "got Infinity"],
  ],
  alibiSlopes: [
    [
      [0.5, 0.5],
      TypeError,
      "alibiSlopes must be a Float32Array (one value per query head): got Array",
    ],
    [new Float64Array(2), TypeError, "got Float64Array"],
    [new Float32Array(3), RangeError, "alibiSlopes must hold one value per query head (2): got 3"],
    [Float32Array.of(0.5, NaN), RangeError, "alibiSlopes[1] must be finite: got NaN"],
  ],
  sinks: [
    [1, TypeError, "sinks must be a Float32Array (one value per query head): got 1"],
    [new Float32Array(1), RangeError, "sinks must hold one value per query head (2): got 1"],
    [Float32Array.of(-Infinity, 0), RangeError, "sinks[0] must be finite: got -Infinity"],
  ],
};

Deno.test("bad variant values: TypeError or RangeError naming the field and the value; all stays usable", async () => {
  await using decoder = await createDecoder({ backend: "cpu" });
  const input = makeInput({ seqLens: [5, 9], numHeads: 2, numKVHeads: 1, headDim: 8, seed: 1 });
  const cache = createKVCache({
    numLayers: 1,
    numKVHeads: 1,
    headDim: 8,
    pageSize: 4,
    numPages: 8,
  });
  const seq = cache.addSequence();
  cache.extend([seq], 6);
  for (const [field, cases] of Object.entries(BAD)) {
    for (const [value, type, message] of cases) {
      const bad = { ...input, [field]: value } as DecodeInput;
      const check = (e: unknown) => {
        assert.ok(e instanceof type, `${field} = ${String(value)}: ${(e as Error).name}`);
        assert.ok((e as Error).message.includes(message), (e as Error).message);
        return true;
      };
      await assert.rejects(() => decoder.decode(bad), check);
      assert.throws(() => createPlan(bad, { grid: 4 }), check);
      assert.throws(() => referenceAttention(bad), check);
      assert.throws(
        () => planForCache(cache, { seqs: [seq], numHeads: 2, [field]: value }, { grid: 4 }),
        check,
      );
    }
  }
  // Everything still works, with good values of every field.
  const good = {
    ...input,
    slidingWindow: 3,
    logitsSoftCap: 5,
    alibiSlopes: Float32Array.of(0.25, 0.5),
    sinks: Float32Array.of(0, 1),
  };
  assertMatchesReference(good, await decoder.decode(good));
  assert.equal(
    planForCache(cache, { seqs: [seq], numHeads: 2, sinks: good.sinks }, { grid: 4 }).problem
      .variant?.sinks?.[1],
    1,
  );
  cache.dispose();
});

Deno.test("the variant's tables are copied: changing the caller's arrays changes no plan", () => {
  const sinks = Float32Array.of(1, 2);
  const plan = createPlan({ seqLens: [5], numHeads: 2, numKVHeads: 1, headDim: 8, sinks }, {
    grid: 2,
  });
  sinks[0] = 9;
  assert.equal(plan.problem.variant?.sinks?.[0], 1);
});

/** Fills a cache's sequence with random K/V rows (host data for `cache.append`). */
function fill(cache: KVCache, seq: number, n: number, seed: number): Float32Array[] {
  const rng = seededRng(seed);
  const row = cache.rowElements;
  const k = Array.from({ length: cache.numLayers }, () => randomFloats(rng, n * row));
  const v = Array.from({ length: cache.numLayers }, () => randomFloats(rng, n * row));
  cache.append(seq, { k, v });
  return [...k, ...v];
}

/** Gemma 2-like layers: a windowed, soft-capped one and a global one, with ALiBi and sinks. */
function layerVariants(numHeads: number) {
  const rng = seededRng(11);
  const slopes = Float32Array.from({ length: numHeads }, () => rng() * 0.2);
  const sinks = Float32Array.from({ length: numHeads }, () => 4 * rng() - 2);
  return [
    { slidingWindow: 37, logitsSoftCap: 20, alibiSlopes: slopes, sinks },
    { slidingWindow: 1 << 20, logitsSoftCap: 50, alibiSlopes: new Float32Array(numHeads), sinks },
  ];
}

Deno.test("paged plans carry each layer's variant (CPU)", () => {
  const cache = createKVCache({
    numLayers: 2,
    numKVHeads: 2,
    headDim: 16,
    pageSize: 8,
    numPages: 64,
  });
  const a = cache.addSequence();
  const b = cache.addSequence();
  const da = fill(cache, a, 150, 1);
  const db = fill(cache, b, 40, 2);
  const numHeads = 4;
  const q = randomFloats(seededRng(3), 2 * 2 * numHeads * 16);
  layerVariants(numHeads).forEach((variant, layer) => {
    for (const strategy of STRATEGIES) {
      const plan = planForCache(cache, { seqs: [a, b], numHeads, qLen: 2, strategy, ...variant }, {
        grid: 5,
      });
      const got = executePagedPlanOnCpu(plan, { q, ...cache.layerData(layer) });
      const input: DecodeInput = {
        q,
        k: new Float32Array([...da[layer], ...db[layer]]),
        v: new Float32Array([...da[2 + layer], ...db[2 + layer]]),
        seqLens: [150, 40],
        numHeads,
        numKVHeads: 2,
        headDim: 16,
        qLen: 2,
        ...variant,
      };
      assertMatchesReference(input, got, `layer ${layer} ${strategy}`);
      const dense = executePlanOnCpu(createPlan(input, { grid: 5, strategy }), input, 0.25);
      assert.deepEqual(got, dense, `layer ${layer} ${strategy}: paged == dense`);
    }
  });
  cache.dispose();
});

await deviceTest(
  "the attention encoder runs each layer's variant (alternating windowed layers)",
  async ({ device }) => {
    // The variants' kernel family (tests/kernel_set.ts), paged: GQA 4/2, d16, qLen 2.
    const cache = createKVCache({
      device,
      numLayers: 2,
      numKVHeads: 2,
      headDim: 16,
      pageSize: 16,
      numPages: 32,
    });
    const attention = await createAttentionEncoder(device, { grid: 5 });
    try {
      const a = cache.addSequence();
      const b = cache.addSequence();
      const da = fill(cache, a, 200, 1);
      const db = fill(cache, b, 30, 2);
      const numHeads = 4;
      const q = randomFloats(seededRng(3), 2 * 2 * numHeads * 16);
      const qb = gpuBuffer(device, q);
      const out = gpuBuffer(device, new Float32Array(q.length).fill(NaN));
      const lse = gpuBuffer(device, new Float32Array(2 * 2 * numHeads).fill(NaN));
      const variants = layerVariants(numHeads);
      const plans = variants.map((v) =>
        attention.plan(cache, { seqs: [a, b], numHeads, qLen: 2, ...v })
      );
      // Layers alternate between the two plans, as Gemma 2's and gpt-oss's do.
      for (const layer of [0, 1, 0]) {
        const enc = device.createCommandEncoder();
        attention.encode(enc, { plan: plans[layer], layer, q: qb, out, lse });
        device.queue.submit([enc.finish()]);
        const got = {
          out: await readF32(device, out, q.length),
          lse: await readF32(device, lse, 2 * 2 * numHeads),
        };
        const input: DecodeInput = {
          q,
          k: new Float32Array([...da[layer], ...db[layer]]),
          v: new Float32Array([...da[2 + layer], ...db[2 + layer]]),
          seqLens: [200, 30],
          numHeads,
          numKVHeads: 2,
          headDim: 16,
          qLen: 2,
          ...variants[layer],
        };
        assertMatchesReference(input, got, `layer ${layer}`);
      }
      for (const buf of [qb, out, lse]) buf.destroy();
    } finally {
      attention.dispose();
      cache.dispose();
    }
  },
);
