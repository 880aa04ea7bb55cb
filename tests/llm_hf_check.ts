/**
 * The LLM runner against a checkpoint made by examples/llm/hf_reference.py on the GPU machine
 * (tests/fixtures/llm_*: the checkpoint, HF's prompts, greedy tokens and logits).
 *
 * Tolerance: logits within 1e-4 relative L2 of the reference at every step. Both sides compute
 * in f32 (float64 for our reference) and differ only in summation order and rounding of exp, cos
 * and rsqrt: the measured errors are 2e-7 to 4e-7 (about 1e-6 for gpt-oss). A real mistake (a
 * wrong RoPE pairing, a missing bias or norm weight, mixed-up pages, a wrong expert) moves logits
 * by 1e-2 or more. Tokens must match exactly, which is well posed: HF's smallest gap between the
 * top two logits is asserted to be 10 times the largest logit error.
 *
 * @module
 */

import assert from "node:assert/strict";
import { generate, type ModelRunner } from "../examples/llm/generation.ts";
import { openSafetensors } from "../examples/llm/safetensors.ts";
import { relL2 } from "./llm_helpers.ts";

/** Largest relative L2 error of a step's logits. */
export const LOGITS_TOLERANCE = 1e-4;

/** Runs generation and collects every step's logits per prompt. */
export async function run(
  runner: ModelRunner,
  prompts: number[][],
  steps: number,
): Promise<{ tokens: number[][]; logits: Float32Array[][] }> {
  const V = runner.config.vocab;
  const logits: Float32Array[][] = prompts.map(() => []);
  try {
    const r = await generate(runner, {
      prompts,
      maxNewTokens: steps,
      onLogits: (seqs, g, values) =>
        seqs.forEach((b, i) => logits[b][g] = values.slice(i * V, (i + 1) * V)),
    });
    return { tokens: r.tokens, logits };
  } finally {
    runner.dispose();
  }
}

/** What `hf_reference.py` wrote beside a checkpoint: prompts, HF's tokens, top-2 gaps. */
export interface HfReference {
  prompts: number[][];
  tokens: number[][];
  top2_gaps: number[][];
}

/** A fixture folder's reference and HF's logits `[prompt][step][vocab]`. */
export async function hfFixture(
  dir: string,
): Promise<{ ref: HfReference; logits: Float32Array; shape: number[] }> {
  const ref = JSON.parse(await Deno.readTextFile(`${dir}/hf_reference.json`));
  const f = await openSafetensors(`${dir}/hf_logits.safetensors`);
  const t = await f.read("logits");
  f.close();
  return { ref, logits: t.data as Float32Array, shape: t.shape };
}

/**
 * Generates the fixture's prompts with `runner` (disposing it): HF's greedy tokens, every step's
 * logits within {@linkcode LOGITS_TOLERANCE}, and HF's top-2 gaps 10 times the largest logit error.
 */
export async function checkAgainstHf(runner: ModelRunner, dir: string): Promise<void> {
  const { ref, logits, shape } = await hfFixture(dir);
  const [P, N, V] = shape;
  const mine = await run(runner, ref.prompts, N);
  assert.deepStrictEqual(mine.tokens, ref.tokens, "same greedy tokens as transformers");
  let maxAbsError = 0;
  for (let p = 0; p < P; p++) {
    for (let s = 0; s < N; s++) {
      const hf = logits.subarray((p * N + s) * V, (p * N + s + 1) * V);
      const err = relL2(mine.logits[p][s], hf);
      assert.ok(err < LOGITS_TOLERANCE, `prompt ${p} step ${s}: relative L2 ${err}`);
      for (let v = 0; v < V; v++) {
        maxAbsError = Math.max(maxAbsError, Math.abs(mine.logits[p][s][v] - hf[v]));
      }
    }
  }
  // Greedy token equality is well posed: no step's top-2 gap is near the logits' error.
  const minGap = Math.min(...ref.top2_gaps.flat());
  assert.ok(minGap > 10 * maxAbsError, `top-2 gap ${minGap} vs logit error ${maxAbsError}`);
}
