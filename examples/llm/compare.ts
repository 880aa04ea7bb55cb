/**
 * Compares one run of the runner with the Hugging Face reference of the same checkpoint (written
 * by `hf_reference.py`): generated tokens prompt by prompt, and each step's logits as a relative
 * L2 error `|ours - hf| / |hf|` over the vocabulary. Logits are compared up to and including the
 * first step where the tokens differ (later steps see different inputs). Prints one JSON line.
 *
 * ```sh
 * deno run -A examples/llm/compare.ts --model DIR --ours OURS.json --ours-logits OURS.safetensors --label webgpu
 * ```
 *
 * `OURS.json` is `generate.ts --json`'s last line; `OURS.safetensors` its `--logits-out`.
 *
 * @module
 */

import { openSafetensors } from "./safetensors.ts";

/** The comparison of one run. */
export interface Comparison {
  label: string;
  model: string;
  weights: string;
  promptLengths: number[];
  newTokens: number;
  /** Leading generated tokens equal to HF's, per prompt. */
  matchingTokens: number[];
  allTokensMatch: boolean;
  /** Largest and median relative L2 error of the compared steps' logits. */
  logitsRelL2Max: number;
  logitsRelL2Median: number;
  stepsCompared: number;
  /** Smallest top-1 minus top-2 logit gap of HF's compared steps (how close greedy calls were). */
  hfMinTop2Gap: number;
  msPerStep: number;
  tokensPerSecond: number;
}

function flag(args: string[], name: string): string {
  const i = args.indexOf(`--${name}`);
  if (i < 0 || args[i + 1] === undefined) throw new RangeError(`--${name} is required`);
  return args[i + 1];
}

async function logitsOf(path: string): Promise<{ data: Float32Array; shape: number[] }> {
  const f = await openSafetensors(path);
  try {
    const t = await f.read("logits");
    return { data: t.data as Float32Array, shape: t.shape };
  } finally {
    f.close();
  }
}

/** Compares a run (its JSON line and logits file) with the reference in `dir`. */
export async function compareRun(
  dir: string,
  oursJson: string,
  oursLogits: string,
  label: string,
): Promise<Comparison> {
  const ref = JSON.parse(await Deno.readTextFile(`${dir}/hf_reference.json`));
  const lines = (await Deno.readTextFile(oursJson)).trim().split("\n");
  const ours = JSON.parse(lines[lines.length - 1]);
  const hf = await logitsOf(`${dir}/hf_logits.safetensors`);
  const mine = await logitsOf(oursLogits);
  const [P, N, V] = hf.shape;
  if (mine.shape.join() !== hf.shape.join()) {
    throw new RangeError(`logits shapes differ: ours ${mine.shape}, hf ${hf.shape}`);
  }
  const matching: number[] = [];
  const errors: number[] = [];
  let minGap = Infinity;
  for (let p = 0; p < P; p++) {
    const a: number[] = ours.tokens[p], b: number[] = ref.tokens[p];
    let m = 0;
    while (m < N && a[m] === b[m]) m++;
    matching.push(m);
    for (let s = 0; s < Math.min(N, m + 1); s++) {
      const at = (p * N + s) * V;
      let num = 0, den = 0;
      for (let v = 0; v < V; v++) {
        const d = mine.data[at + v] - hf.data[at + v];
        num += d * d;
        den += hf.data[at + v] * hf.data[at + v];
      }
      errors.push(Math.sqrt(num / den));
      minGap = Math.min(minGap, ref.top2_gaps[p][s]);
    }
  }
  const sorted = errors.slice().sort((x, y) => x - y);
  return {
    label,
    model: ref.model,
    weights: ref.weights,
    promptLengths: ref.prompts.map((x: number[]) => x.length),
    newTokens: N,
    matchingTokens: matching,
    allTokensMatch: matching.every((m) => m === N),
    logitsRelL2Max: sorted[sorted.length - 1],
    logitsRelL2Median: sorted[Math.floor(sorted.length / 2)],
    stepsCompared: errors.length,
    hfMinTop2Gap: minGap,
    msPerStep: ours.msPerStep,
    tokensPerSecond: ours.tokensPerSecond,
  };
}

if (import.meta.main) {
  const a = Deno.args;
  const r = await compareRun(
    flag(a, "model"),
    flag(a, "ours"),
    flag(a, "ours-logits"),
    flag(a, "label"),
  );
  console.log(JSON.stringify(r));
}
