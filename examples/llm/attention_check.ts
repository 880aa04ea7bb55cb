/**
 * The library's attention variants against Hugging Face's (the groups `hf_attention.py` wrote:
 * gpt-oss-shaped attention with sinks and alternating 128-token windows, Gemma 2-shaped with its
 * logit soft-cap and alternating 4096-token windows): each group is one ragged decode batch, run
 * with every strategy on a decoder (`--backend`, default `webgpu`), its output compared with
 * transformers' and with the library's float64 reference. One JSON line per group and strategy.
 *
 * ```sh
 * deno run -A examples/llm/attention_check.ts --in DIR --out results.jsonl [--backend webgpu]
 * ```
 *
 * @module
 */

import {
  createDecoder,
  type DecodeInput,
  referenceAttention,
  STRATEGIES,
  type Strategy,
} from "../../mod.ts";
import "../../dawn.ts";
import { openSafetensors } from "./safetensors.ts";

/** A group of `cases.json`. */
export interface AttentionGroup {
  model: string;
  numHeads: number;
  numKVHeads: number;
  headDim: number;
  qLen: number;
  seqLens: number[];
  scale: number;
  slidingWindow?: number;
  logitsSoftCap?: number;
  sinks?: boolean;
  error?: string;
}

/** One group's result on one strategy. */
export interface AttentionResult {
  group: string;
  backend: string;
  strategy: Strategy;
  seqLens: number[];
  qLen: number;
  variant: string;
  /** Relative L2 error of our output against transformers', and against our float64 reference. */
  relL2VsHf: number;
  relL2VsReference: number;
  /** transformers' output against our float64 reference (how far the two definitions agree). */
  hfRelL2VsReference: number;
  maxAbsVsHf: number;
}

function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return Number.isNaN(m) ? NaN : m;
}

/** Runs every group of `dir` on a backend; returns one result per group and strategy. */
export async function checkAttention(
  dir: string,
  backend: "webgpu" | "dawn" | "cpu",
): Promise<(AttentionResult | { group: string; error: string })[]> {
  const cases = JSON.parse(await Deno.readTextFile(`${dir}/cases.json`));
  const file = await openSafetensors(`${dir}/tensors.safetensors`);
  const decoder = await createDecoder({ backend });
  const results: (AttentionResult | { group: string; error: string })[] = [];
  try {
    for (const [name, g] of Object.entries(cases.groups as Record<string, AttentionGroup>)) {
      if (g.error) {
        results.push({ group: name, error: `hf: ${g.error}` });
        continue;
      }
      const read = async (t: string) => (await file.read(`${name}.${t}`)).data as Float32Array;
      const input: DecodeInput = {
        q: await read("q"),
        k: await read("k"),
        v: await read("v"),
        seqLens: g.seqLens,
        numHeads: g.numHeads,
        numKVHeads: g.numKVHeads,
        headDim: g.headDim,
        qLen: g.qLen,
        scale: g.scale,
        ...(g.slidingWindow ? { slidingWindow: g.slidingWindow } : {}),
        ...(g.logitsSoftCap ? { logitsSoftCap: g.logitsSoftCap } : {}),
        ...(g.sinks ? { sinks: await read("sinks") } : {}),
      };
      const hf = await read("out");
      const ref = referenceAttention(input);
      const variant = [
        g.slidingWindow ? `window ${g.slidingWindow}` : "",
        g.logitsSoftCap ? `soft-cap ${g.logitsSoftCap}` : "",
        g.sinks ? "sinks" : "",
      ].filter((x) => x).join(", ") || "plain";
      for (const strategy of STRATEGIES) {
        try {
          const { out } = await decoder.decode({ ...input, strategy });
          results.push({
            group: name,
            backend,
            strategy,
            seqLens: g.seqLens,
            qLen: g.qLen,
            variant,
            relL2VsHf: relL2(out, hf),
            relL2VsReference: relL2(out, ref.out),
            hfRelL2VsReference: relL2(hf, ref.out),
            maxAbsVsHf: maxAbs(out, hf),
          });
        } catch (e) {
          results.push({ group: `${name} ${strategy}`, error: (e as Error).message });
        }
      }
    }
  } finally {
    file.close();
    await decoder.dispose();
  }
  return results;
}

if (import.meta.main) {
  const arg = (name: string, fallback?: string) => {
    const i = Deno.args.indexOf(`--${name}`);
    const v = i >= 0 ? Deno.args[i + 1] : fallback;
    if (v === undefined) throw new RangeError(`--${name} is required`);
    return v;
  };
  const backend = arg("backend", "webgpu") as "webgpu" | "dawn" | "cpu";
  const results = await checkAttention(arg("in"), backend);
  const lines = results.map((r) => JSON.stringify(r)).join("\n") + "\n";
  await Deno.writeTextFile(arg("out"), lines, { append: true });
  console.log(lines.trimEnd());
}
