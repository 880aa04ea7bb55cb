/**
 * Soak: many decode calls with varying shapes and strategies on one decoder, watching the GPU
 * buffers it holds (`decoder.stats()`) and the JS heap (`Deno.memoryUsage()`), with sampled
 * results checked against the float64 reference. `deno task soak` runs 10,000 calls;
 * tests/soak_test.ts runs a short version in CI.
 *
 *     deno task soak [--backend=cpu|webgpu|dawn] [--calls=10000] [--check-every=50] [--seed=1]
 *
 * The last line is `soak: PASS ...` or `soak: FAIL ...`; the exit status follows it.
 *
 * @module
 */

import "../dawn.ts"; // registers Dawn for --backend=dawn
import { parseArgs } from "node:util";
import {
  type BackendName,
  createDecoder,
  type Decoder,
  type KVDtype,
  referenceAttention,
  STRATEGIES,
} from "../mod.ts";
import { makeInput, maxAbsError, relativeL2Error } from "../tests/helpers.ts";
import { mulberry32 } from "./random.ts";

/** Kernel shapes of the soak: few, so a software adapter compiles each once. */
export const SOAK_FAMILIES: readonly {
  numHeads: number;
  numKVHeads: number;
  headDim: number;
  qLen: number;
  kvDtype: KVDtype;
}[] = [
  { numHeads: 8, numKVHeads: 2, headDim: 64, qLen: 1, kvDtype: "f32" },
  { numHeads: 4, numKVHeads: 4, headDim: 128, qLen: 1, kvDtype: "f16" },
  { numHeads: 2, numKVHeads: 2, headDim: 8, qLen: 1, kvDtype: "f16" },
];

/** Options of {@linkcode soak}. */
export interface SoakOptions {
  /** Decode calls to make. */
  calls: number;
  /** Check one call in this many against the reference (and the first and last). */
  checkEvery: number;
  /** Seed of shapes and data. */
  seed: number;
  /** Longest context of a sequence. */
  maxTokens?: number;
  /** Called every 10% of the calls. */
  progress?: (line: string) => void;
}

/** What a soak run saw. */
export interface SoakReport {
  calls: number;
  checked: number;
  /** Checked calls outside the reference tolerances (2e-5 relative L2, 2e-4 LSE). */
  mismatches: string[];
  /** Largest `buffersLive` seen, and after the first 10% of the calls. */
  maxBuffersLive: number;
  maxBuffersLiveAfterWarmup: number;
  buffersCreated: number;
  /** Buffers created during the second half (growth only: steady shapes allocate nothing). */
  buffersCreatedSecondHalf: number;
  /** Largest `heapUsed` in bytes during the second quarter and during the last quarter. */
  heapSecondQuarter: number;
  heapLastQuarter: number;
  ms: number;
}

/** Runs a soak on a decoder. */
export async function soak(decoder: Decoder, options: SoakOptions): Promise<SoakReport> {
  const rng = mulberry32(options.seed);
  const maxTokens = options.maxTokens ?? 3000;
  const report: SoakReport = {
    calls: options.calls,
    checked: 0,
    mismatches: [],
    maxBuffersLive: 0,
    maxBuffersLiveAfterWarmup: 0,
    buffersCreated: 0,
    buffersCreatedSecondHalf: 0,
    heapSecondQuarter: 0,
    heapLastQuarter: 0,
    ms: 0,
  };
  const t0 = performance.now();
  let createdAtHalf = 0;
  for (let i = 0; i < options.calls; i++) {
    const family = SOAK_FAMILIES[Math.floor(rng() * SOAK_FAMILIES.length)];
    const numSeqs = 1 + Math.floor(rng() * 4);
    const seqLens = Array.from({ length: numSeqs }, () => {
      const r = rng();
      return 1 + Math.floor((r < 0.3 ? 64 : maxTokens) * rng());
    });
    const strategy = STRATEGIES[Math.floor(rng() * STRATEGIES.length)];
    const input = makeInput({ ...family, seqLens, strategy, seed: Math.floor(rng() * 2 ** 31) });
    const result = await decoder.decode(input);
    if (i === 0 || i === options.calls - 1 || i % options.checkEvery === 0) {
      const ref = referenceAttention(input);
      const outError = relativeL2Error(result.out, ref.out);
      const lseError = maxAbsError(result.lse, ref.lse);
      report.checked++;
      if (!(outError < 2e-5) || !(lseError < 2e-4)) {
        report.mismatches.push(`call ${i} [${seqLens}] ${strategy}: ${outError} ${lseError}`);
      }
    }
    const stats = decoder.stats();
    report.maxBuffersLive = Math.max(report.maxBuffersLive, stats.buffersLive);
    if (i >= options.calls / 10) {
      report.maxBuffersLiveAfterWarmup = Math.max(
        report.maxBuffersLiveAfterWarmup,
        stats.buffersLive,
      );
    }
    if (i === Math.floor(options.calls / 2)) createdAtHalf = stats.buffersCreated;
    report.buffersCreated = stats.buffersCreated;
    const heap = Deno.memoryUsage().heapUsed;
    if (i >= options.calls / 4 && i < options.calls / 2) {
      report.heapSecondQuarter = Math.max(report.heapSecondQuarter, heap);
    }
    if (i >= (3 * options.calls) / 4) {
      report.heapLastQuarter = Math.max(report.heapLastQuarter, heap);
    }
    if (options.progress && (i + 1) % Math.max(1, Math.floor(options.calls / 10)) === 0) {
      options.progress(
        `  ${i + 1} calls, ${stats.buffersLive} buffers live (${stats.buffersCreated} created), ` +
          `heap ${(heap / 2 ** 20).toFixed(1)} MiB, ${
            ((performance.now() - t0) / 1000).toFixed(1)
          } s`,
      );
    }
  }
  report.buffersCreatedSecondHalf = report.buffersCreated - createdAtHalf;
  report.ms = performance.now() - t0;
  return report;
}

/** The verdicts of a report: empty when it passes. */
export function soakFailures(report: SoakReport, maxBuffers: number): string[] {
  const failures: string[] = [...report.mismatches];
  if (report.maxBuffersLive > maxBuffers) {
    failures.push(`${report.maxBuffersLive} GPU buffers live at once (bound ${maxBuffers})`);
  }
  // Heap: the last quarter may not grow beyond the second by more than 50% + 64 MiB.
  const heapBound = report.heapSecondQuarter * 1.5 + 64 * 2 ** 20;
  if (report.heapLastQuarter > heapBound) {
    failures.push(
      `heap grew from ${report.heapSecondQuarter} to ${report.heapLastQuarter} bytes`,
    );
  }
  return failures;
}

/**
 * GPU buffers a decoder may hold at once in a soak without KV windows: q, k, v, tables (params
 * and schedule), result, partials and a couple of readback buffers (a margin over them).
 */
export const SOAK_MAX_BUFFERS = 12;

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      backend: { type: "string", default: "auto" },
      calls: { type: "string", default: "10000" },
      "check-every": { type: "string", default: "50" },
      seed: { type: "string", default: "1" },
    },
  });
  const decoder = await createDecoder({ backend: values.backend as BackendName | "auto" });
  const calls = Number(values.calls);
  console.log(`soak: ${calls} calls on ${decoder.backend} (${decoder.profile.name})`);
  const report = await soak(decoder, {
    calls,
    checkEvery: Number(values["check-every"]),
    seed: Number(values.seed),
    progress: (line) => console.log(line),
  });
  await decoder.dispose();
  const failures = soakFailures(report, SOAK_MAX_BUFFERS);
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  const summary =
    `${report.calls} calls in ${(report.ms / 1000).toFixed(1)} s, ${report.checked} ` +
    `checked against the reference, buffers live max ${report.maxBuffersLive} ` +
    `(${report.buffersCreated} created, ${report.buffersCreatedSecondHalf} in the second half), ` +
    `heap ${mib(report.heapSecondQuarter)} -> ${mib(report.heapLastQuarter)}`;
  for (const f of failures) console.log(`  failure: ${f}`);
  console.log(`soak: ${failures.length === 0 ? "PASS" : "FAIL"} ${summary}`);
  Deno.exit(failures.length === 0 ? 0 : 1);
}
