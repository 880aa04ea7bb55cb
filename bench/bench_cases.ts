/**
 * The benchmark cases of `bench/cases.json`, expanded: `seqLens` is a list, `"NxL"` (N sequences
 * of L tokens) or `"lognormal:N:median:sigma:seed"` (a seeded long-tailed draw that
 * `bench/anchors/torch_sdpa.py` reproduces exactly).
 */

import type { KVDtype } from "../mod.ts";

/** One benchmark case. */
export interface BenchCase {
  name: string;
  group: string;
  seqLens: number[];
  numHeads: number;
  numKVHeads: number;
  headDim: number;
  /** V's head dim (MLA: 512 beside K's 576); default `headDim`. */
  headDimV?: number;
  /**
   * V is the first `headDimV` dims of each K row (MLA's latent cache, `DecodeShape.vFromK`): no V
   * array, V read from K's rows.
   */
  vFromK?: boolean;
  qLen: number;
  /** KV dtype (default `"f16"`). */
  kvDtype: KVDtype;
  /** 8-bit dtypes: one scale per tensor (default) or per (token, KV head). */
  kvScales?: "tensor" | "token";
  /** `DecodeShape.slidingWindow`: each query row attends its last W tokens only. */
  slidingWindow?: number;
  /** `DecodeShape.logitsSoftCap` (Gemma 2). */
  logitsSoftCap?: number;
  /** One attention-sink logit per query head (gpt-oss), drawn by `bench/bench_input.ts`. */
  attentionSinks?: boolean;
}

/**
 * The tokens a case's kernels must read per sequence: all of them, or with a sliding window the
 * window's last `W + qLen - 1` (the window of the last query row, and the rows before it).
 */
export function tokensRead(
  c: { seqLens: number[]; slidingWindow?: number; qLen?: number },
): number {
  const span = c.slidingWindow === undefined ? Infinity : c.slidingWindow + (c.qLen ?? 1) - 1;
  return c.seqLens.reduce((a, n) => a + Math.min(n, span), 0);
}

function lognormal(n: number, median: number, sigma: number, seed: number): number[] {
  let s = seed >>> 0;
  const uniform = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 1) / 4294967297;
  };
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const z = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
    out.push(Math.max(16, Math.min(262144, Math.round(median * Math.exp(sigma * z)))));
  }
  return out;
}

function expand(spec: number[] | string): number[] {
  if (Array.isArray(spec)) return spec;
  const times = spec.match(/^(\d+)x(\d+)$/);
  if (times) return Array(Number(times[1])).fill(Number(times[2]));
  const [kind, n, median, sigma, seed] = spec.split(":");
  if (kind === "lognormal") return lognormal(+n, +median, +sigma, +seed);
  throw new RangeError(`seqLens must be a list, "NxL" or "lognormal:...": got ${spec}`);
}

/** Reads and expands the case file. */
export async function loadCases(
  path = new URL("./cases.json", import.meta.url),
): Promise<BenchCase[]> {
  const file = JSON.parse(await Deno.readTextFile(path));
  return file.cases.map((
    c: BenchCase & { seqLens: number[] | string; qLen?: number; kvDtype?: KVDtype },
  ) => ({
    ...c,
    seqLens: expand(c.seqLens),
    qLen: c.qLen ?? 1,
    kvDtype: c.kvDtype ?? "f16",
  }));
}
