/**
 * Host-side planning cost: `createPlan` (validate, tile config, partition, schedule) for a large
 * ragged batch and for one very long sequence, on an H100-sized grid. Target: under 50 us median
 * per plan.
 *
 * - `deno task bench` runs these as `Deno.bench` cases (avg, p75, p99, ...).
 * - `deno task bench:median` runs this file as a script and prints the median of each case, timed
 *   call by call with `performance.now()` (`deno bench` reports no median).
 *
 * @module
 */

import { createPlan, type DecodeShape, type Strategy } from "../mod.ts";
import { mulberry32 } from "./random.ts";

/** H100 SXM: 132 SMs. */
const GRID = 132;

/** Long-tailed context lengths: lognormal (median 1000 tokens, sigma 1.2), clamped to 100..32768. */
function lognormalLengths(n: number, seed: number): number[] {
  const rand = mulberry32(seed);
  const mu = Math.log(1000);
  const sigma = 1.2;
  return Array.from({ length: n }, () => {
    const u1 = 1 - rand();
    const u2 = rand();
    const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    return Math.min(32768, Math.max(100, Math.round(Math.exp(mu + sigma * z))));
  });
}

/** (a) 256 sequences, GQA 32/8, head dim 128, f16 KV. */
const ragged: DecodeShape = {
  seqLens: lognormalLengths(256, 2405),
  numHeads: 32,
  numKVHeads: 8,
  headDim: 128,
  kvDtype: "f16",
};

/** (b) One sequence of 512k tokens, 32 heads (MHA). */
const longContext: DecodeShape = {
  seqLens: [524288],
  numHeads: 32,
  numKVHeads: 32,
  headDim: 128,
  kvDtype: "f16",
};

interface Case {
  name: string;
  group: string;
  shape: DecodeShape;
  strategy: Strategy;
}

const CASES: Case[] = [
  { name: "lean: 256 ragged seqs, 8 kv heads", group: "ragged", shape: ragged, strategy: "lean" },
  { name: "split: 256 ragged seqs, 8 kv heads", group: "ragged", shape: ragged, strategy: "split" },
  {
    name: "single: 256 ragged seqs, 8 kv heads",
    group: "ragged",
    shape: ragged,
    strategy: "single",
  },
  {
    name: "lean: 1 seq of 524288 tokens, 32 heads",
    group: "long",
    shape: longContext,
    strategy: "lean",
  },
];

for (const c of CASES) {
  Deno.bench({
    name: c.name,
    group: c.group,
    baseline: c.strategy === "lean",
    fn: () => {
      createPlan(c.shape, { strategy: c.strategy, grid: GRID });
    },
  });
}

/** Median of per-call wall times in microseconds, after a warm-up. */
function medianMicros(fn: () => void, warmup = 2000, samples = 10000): number {
  for (let i = 0; i < warmup; i++) fn();
  const times = new Float64Array(samples);
  for (let i = 0; i < samples; i++) {
    const t0 = performance.now();
    fn();
    times[i] = performance.now() - t0;
  }
  times.sort();
  return times[samples >> 1] * 1000;
}

if (import.meta.main) {
  const lens = ragged.seqLens as number[];
  const total = lens.reduce((a, b) => a + b, 0);
  console.log(
    `ragged batch: ${lens.length} seqs, ${total} tokens, lengths ${Math.min(...lens)}..${
      Math.max(...lens)
    }; grid ${GRID}`,
  );
  for (const c of CASES) {
    const plan = createPlan(c.shape, { strategy: c.strategy, grid: GRID });
    const us = medianMicros(() => createPlan(c.shape, { strategy: c.strategy, grid: GRID }));
    const verdict = us < 50 ? "ok" : "OVER 50 us";
    console.log(
      `${c.name.padEnd(40)} median ${us.toFixed(1).padStart(6)} us  ` +
        `(${plan.numTiles} tiles, ${plan.schedule.workgroups} workgroups, ` +
        `${plan.schedule.pieceOffsets[plan.schedule.workgroups]} pieces)  ${verdict}`,
    );
  }
}
