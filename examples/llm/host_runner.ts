/**
 * What the LLM runner's host models share (`cpu_model.ts` for the GQA architectures,
 * `mla_model.ts` for DeepSeek-V3): their options, f32 matrices and the two kernels of their
 * arithmetic (a matmul, an RMSNorm), and {@linkcode HostRunner}, which holds the host KV cache of
 * a batch, embeds a step's tokens and samples greedily.
 *
 * @module
 */

import type { KVDtype } from "../../mod.ts";
import { createKVCache, type KVCache } from "../../runner.ts";
import { type Matrix, type ModelWeights, toF32 } from "./checkpoint.ts";
import type { ModelConfig } from "./config.ts";
import type { ForwardStep, ModelRunner } from "./generation.ts";

/** Options of the runners' backends. */
export interface RunnerOptions {
  /** Sequences in the batch. */
  batch: number;
  /** Most tokens a sequence will hold (prompt + generated): sizes the cache and RoPE table. */
  maxTokens: number;
  /** KV cache dtype (default `"f32"`). */
  kvDtype?: KVDtype;
  /** Tokens per KV page (default 16). */
  pageSize?: number;
}

/** A weight matrix widened to f32 once. */
export interface F32Matrix {
  rows: number;
  cols: number;
  data: Float32Array;
}

/** A checkpoint matrix widened to f32. */
export const widen = (m: Matrix): F32Matrix => ({ rows: m.rows, cols: m.cols, data: toF32(m) });

/** `y[r][o] = (acc ? y[r][o] : 0) + (x[r] . w[o] + bias[o])`. */
export function matmul(
  x: Float32Array,
  rows: number,
  w: F32Matrix,
  y: Float32Array,
  bias?: Float32Array,
  acc = false,
): void {
  const { rows: out, cols: n, data } = w;
  for (let r = 0; r < rows; r++) {
    const xo = r * n;
    for (let o = 0; o < out; o++) {
      const wo = o * n;
      let s = 0;
      for (let i = 0; i < n; i++) s += x[xo + i] * data[wo + i];
      s = Math.fround(s) + (bias ? bias[o] : 0);
      y[r * out + o] = acc ? y[r * out + o] + Math.fround(s) : s;
    }
  }
}

/** RMSNorm of each of `rows` rows of `w.length` values, times `w`, into `y`. */
export function rmsnorm(
  x: Float32Array,
  rows: number,
  w: Float32Array,
  eps: number,
  y: Float32Array,
): void {
  const n = w.length;
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[r * n + i] * x[r * n + i];
    const inv = 1 / Math.sqrt(Math.fround(ss / n) + Math.fround(eps));
    for (let i = 0; i < n; i++) y[r * n + i] = Math.fround(x[r * n + i] * inv) * w[i];
  }
}

/** The host cache's shape: K rows of `headDim` over `numKVHeads`, V as K's prefix or its own. */
export interface HostCacheShape {
  numKVHeads: number;
  headDim: number;
  /** MLA: V is the first `headDimV` dims of each K row (`vFromK`). */
  headDimV?: number;
  vFromK?: boolean;
}

/**
 * A model on the host: the KV cache of a batch (one sequence per batch entry), the embeddings,
 * final norm and output projection, and greedy sampling. Subclasses run the layers.
 */
export abstract class HostRunner implements ModelRunner {
  readonly config: ModelConfig;
  /** The host KV cache (one sequence per batch entry). */
  readonly cache: KVCache;
  protected readonly embedding: F32Matrix;
  #lmHead: F32Matrix;
  #norm: Float32Array;
  #ids: number[];
  #next: Int32Array;
  #history: number[][];
  #logits = new Float32Array(0);

  constructor(weights: ModelWeights, options: RunnerOptions, cache: HostCacheShape) {
    const c = weights.config;
    this.config = c;
    this.embedding = widen(weights.embed);
    this.#lmHead = weights.lmHead === weights.embed ? this.embedding : widen(weights.lmHead);
    this.#norm = weights.norm;
    const pageSize = options.pageSize ?? 16;
    this.cache = createKVCache({
      numLayers: c.layers,
      ...cache,
      kvDtype: options.kvDtype ?? "f32",
      pageSize,
      numPages: options.batch * Math.ceil(options.maxTokens / pageSize),
    });
    this.#ids = Array.from({ length: options.batch }, () => this.cache.addSequence());
    this.#next = new Int32Array(options.batch);
    this.#history = Array.from({ length: options.batch }, () => []);
  }

  abstract forward(step: ForwardStep): void;

  /**
   * A step's rows: the cache's sequence ids, each row's position, the tokens' embeddings (times
   * `scale`), and the cache slots the step's K/V rows go to (the sequences extended by `qLen`).
   */
  protected embed(step: ForwardStep, scale = 1): {
    ids: number[];
    pos: Int32Array;
    x: Float32Array;
    slots: ReturnType<KVCache["extend"]>;
  } {
    const { seqs, qLen } = step;
    const hidden = this.config.hidden, rows = seqs.length * qLen;
    const ids = seqs.map((b) => this.#ids[b]);
    const pos = new Int32Array(rows);
    const x = new Float32Array(rows * hidden);
    for (let s = 0; s < seqs.length; s++) {
      const len = this.cache.length(ids[s]);
      for (let p = 0; p < qLen; p++) {
        const r = s * qLen + p;
        const tok = step.tokens ? step.tokens[r] : this.#next[seqs[s]];
        pos[r] = len + p;
        x.set(this.embedding.data.subarray(tok * hidden, (tok + 1) * hidden), r * hidden);
        if (scale !== 1) { for (let i = 0; i < hidden; i++) x[r * hidden + i] *= scale; }
      }
    }
    return { ids, pos, x, slots: this.cache.extend(ids, qLen) };
  }

  /**
   * A sampling step's end: each sequence's last row of `x` normed and projected to logits (Gemma
   * 2's final soft-cap), then its greedy token.
   */
  protected sample(step: ForwardStep, x: Float32Array): void {
    const c = this.config;
    const { seqs, qLen } = step;
    const hidden = c.hidden, n = seqs.length;
    const last = new Float32Array(n * hidden);
    for (let s = 0; s < n; s++) {
      const r = s * qLen + qLen - 1;
      last.set(x.subarray(r * hidden, (r + 1) * hidden), s * hidden);
    }
    const lastN = new Float32Array(n * hidden);
    rmsnorm(last, n, this.#norm, c.eps, lastN);
    const logits = new Float32Array(n * c.vocab);
    matmul(lastN, n, this.#lmHead, logits);
    const cap = c.finalSoftCap;
    if (cap > 0) {
      for (let i = 0; i < logits.length; i++) {
        logits[i] = Math.fround(Math.tanh(Math.fround(logits[i] / cap))) * cap;
      }
    }
    for (let s = 0; s < n; s++) {
      let best = 0;
      for (let t = 1; t < c.vocab; t++) {
        if (logits[s * c.vocab + t] > logits[s * c.vocab + best]) best = t;
      }
      this.#next[seqs[s]] = best;
      this.#history[seqs[s]][step.genIndex] = best;
    }
    this.#logits = logits;
  }

  readLogits(): Promise<Float32Array> {
    return Promise.resolve(this.#logits);
  }

  readTokens(generated: number): Promise<number[][]> {
    return Promise.resolve(this.#history.map((h) => h.slice(0, generated)));
  }

  sync(): Promise<void> {
    return Promise.resolve();
  }

  dispose(): void {
    this.cache.dispose();
  }
}
