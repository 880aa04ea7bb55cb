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
