/**
 * End-to-end demo: one realistic ragged decode batch run with every strategy on the chosen
 * backend, timed and checked against the float64 reference.
 *
 * ```sh
 * deno task demo                    # backend "auto": a hardware GPU if there is one, else the CPU
 * deno task demo --backend=cpu      # or webgpu, dawn, auto; --runs=N timed runs per strategy
 * ```
 *
 * @module
 */

import {
  type BackendName,
  createDecoder,
  type DecodeInput,
  type Decoder,
  describePlan,
  encodeKV,
  referenceAttention,
  STRATEGIES,
  type Strategy,
} from "../mod.ts";
import { mulberry32 } from "./random.ts";

const USAGE = `usage: deno task demo [--backend=auto|cpu|webgpu|dawn] [--runs=N]

  --backend=NAME  backend to run on (default auto: a hardware GPU if there is one, else cpu)
  --runs=N        timed runs per strategy after one warm-up (default 5)
  -h, --help      show this help`;

const BACKENDS = ["auto", "cpu", "webgpu", "dawn"] as const;

/** Tolerances against the float64 reference; the demo exits 1 when a strategy exceeds them. */
const MAX_REL_L2 = 1e-3;
const MAX_LSE_ERR = 1e-3;

interface Args {
  backend: "auto" | BackendName;
  runs: number;
}

function usageError(message: string): never {
  console.error(`error: ${message}\n\n${USAGE}`);
  Deno.exit(2);
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { backend: "auto", runs: 5 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "-h" || arg === "--help") {
      console.log(USAGE);
      Deno.exit(0);
    }
    const match = /^--(backend|runs)(?:=(.*))?$/.exec(arg);
    if (!match) usageError(`unknown argument ${JSON.stringify(arg)}`);
    const value = match[2] ?? argv[++i];
    if (value === undefined) usageError(`--${match[1]} needs a value`);
    if (match[1] === "backend") {
      if (!(BACKENDS as readonly string[]).includes(value)) {
        usageError(`--backend must be one of ${BACKENDS.join(", ")}: got ${JSON.stringify(value)}`);
      }
      args.backend = value as Args["backend"];
    } else {
      const runs = Number(value);
      if (!Number.isInteger(runs) || runs < 1 || runs > 1000) {
        usageError(`--runs must be an integer from 1 to 1000: got ${JSON.stringify(value)}`);
      }
      args.runs = runs;
    }
  }
  return args;
}

/** Standard normal values (Box-Muller) times `std`. */
function gaussian(length: number, std: number, rand: () => number): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - rand())) * std;
    const t = 2 * Math.PI * rand();
    out[i] = r * Math.cos(t);
    if (i + 1 < length) out[i + 1] = r * Math.sin(t);
  }
  return out;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function relL2(got: Float32Array, want: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    const d = got[i] - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  return Math.sqrt(num / den);
}

function maxAbsDiff(got: Float32Array, want: Float64Array): number {
  let max = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= max)) max = d; // NaN propagates
  }
  return max;
}

const fmtInt = (n: number) => n.toLocaleString("en-US");
const fmtMs = (ms: number) => (ms < 10 ? ms.toFixed(2) : ms.toFixed(1));
const fmtErr = (e: number) => e.toExponential(2);

function buildBatch(): DecodeInput {
  const seqLens = [37, 512, 1000, 4096, 130, 2048, 777, 3000];
  const numHeads = 32;
  const numKVHeads = 8;
  const headDim = 128;
  const tokens = seqLens.reduce((a, b) => a + b, 0);
  const rand = mulberry32(0x1ea4);
  // Unit-variance q and k: scores q.k / sqrt(headDim) are ~N(0, 1), as in a trained model's
  // typical decode step; v like post-projection activations.
  const q = gaussian(seqLens.length * numHeads * headDim, 1, rand);
  const k = gaussian(tokens * numKVHeads * headDim, 1, rand);
  const v = gaussian(tokens * numKVHeads * headDim, 1, rand);
  return {
    q,
    k: encodeKV(k, "f16"),
    v: encodeKV(v, "f16"),
    seqLens,
    numHeads,
    numKVHeads,
    headDim,
    kvDtype: "f16",
  };
}

interface Row {
  strategy: Strategy;
  workgroups: number;
  partials: number;
  medianMs: number;
  minMs: number;
  maxMs: number;
  relL2: number;
  lseErr: number;
}

async function runStrategy(
  decoder: Decoder,
  input: DecodeInput,
  strategy: Strategy,
  runs: number,
  reference: { out: Float64Array; lse: Float64Array },
): Promise<Row> {
  const plan = decoder.plan(input, { strategy });
  const call = { ...input, strategy };
  const first = await decoder.decode(call); // warm-up (pipelines, buffers, JIT)
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await decoder.decode(call);
    times.push(performance.now() - t0);
  }
  return {
    strategy,
    workgroups: plan.schedule.workgroups,
    partials: plan.schedule.partialSlots,
    medianMs: median(times),
    minMs: Math.min(...times),
    maxMs: Math.max(...times),
    relL2: relL2(first.out, reference.out),
    lseErr: maxAbsDiff(first.lse, reference.lse),
  };
}

async function main(): Promise<number> {
  const args = parseArgs(Deno.args);
  let decoder: Decoder;
  try {
    decoder = await createDecoder({ backend: args.backend });
  } catch (error) {
    console.error(`error: could not create the ${args.backend} backend: ${errorMessage(error)}`);
    return 1;
  }
  try {
    const { profile } = decoder;
    console.log("@lean/attention demo: ragged decode batch, all strategies\n");
    console.log(`backend  ${decoder.backend}${args.backend === "auto" ? " (picked by auto)" : ""}`);
    console.log(
      `profile  ${profile.name}; grid ${profile.grid} workgroups (${profile.source})`,
    );

    const input = buildBatch();
    const lens = Array.from(input.seqLens);
    const tokens = lens.reduce((a, b) => a + b, 0);
    const kvBytes = 2 * tokens * input.numKVHeads * input.headDim * 2;
    console.log(
      `batch    ${lens.length} seqs, lengths ${lens.join(" ")} (${fmtInt(tokens)} tokens)`,
    );
    console.log(
      `         ${input.numHeads} query heads / ${input.numKVHeads} KV heads` +
        ` (GQA ${input.numHeads / input.numKVHeads}), head dim ${input.headDim}, qLen 1,` +
        ` KV f16 (${(kvBytes / 2 ** 20).toFixed(1)} MiB K+V)\n`,
    );

    console.log("plan (lean)");
    console.log(
      describePlan(decoder.plan(input, { strategy: "lean" })).split("\n").map((l) => `  ${l}`)
        .join("\n") + "\n",
    );

    const t0 = performance.now();
    const reference = referenceAttention(input);
    console.log(
      `reference (float64, two-pass softmax): ${fmtMs(performance.now() - t0)} ms\n`,
    );

    const rows: Row[] = [];
    for (const strategy of STRATEGIES) {
      rows.push(await runStrategy(decoder, input, strategy, args.runs, reference));
    }

    const header = [
      "strategy".padEnd(8),
      "workgroups".padStart(10),
      "partials".padStart(8),
      "median ms".padStart(10),
      "min..max ms".padStart(15),
      "KV GB/s".padStart(8),
      "rel L2 err".padStart(10),
      "max |dLSE|".padStart(10),
    ].join("  ");
    console.log(
      `${args.runs} timed runs per strategy after 1 warm-up; errors vs float64 reference`,
    );
    console.log(header);
    console.log("-".repeat(header.length));
    let failed = false;
    for (const r of rows) {
      const ok = r.relL2 <= MAX_REL_L2 && r.lseErr <= MAX_LSE_ERR;
      failed ||= !ok;
      console.log(
        [
          r.strategy.padEnd(8),
          String(r.workgroups).padStart(10),
          String(r.partials).padStart(8),
          fmtMs(r.medianMs).padStart(10),
          `${fmtMs(r.minMs)}..${fmtMs(r.maxMs)}`.padStart(15),
          (kvBytes / (r.medianMs * 1e6)).toFixed(2).padStart(8),
          fmtErr(r.relL2).padStart(10),
          fmtErr(r.lseErr).padStart(10),
        ].join("  ") + (ok ? "" : "  FAIL"),
      );
    }
    const split = decoder.plan(input, { strategy: "split" });
    if (split.partition.splits === 1) {
      console.log(
        `\nnote: split chose 1 chunk per segment (${split.numSegments} segments already fill` +
          ` grid ${split.grid}), so it runs the same plan as single`,
      );
    }
    if (failed) {
      console.error(
        `\nerror: a strategy exceeded the tolerance (rel L2 ${MAX_REL_L2}, LSE ${MAX_LSE_ERR})`,
      );
      return 1;
    }
    return 0;
  } finally {
    await decoder.dispose();
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

if (import.meta.main) {
  Deno.exit(
    await main().catch((error) => {
      console.error(`error: ${error instanceof Error ? error.stack ?? error.message : error}`);
      return 1;
    }),
  );
}
