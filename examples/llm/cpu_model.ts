/**
 * The runner's CPU backend: the whole model on the host in f32 arrays (matrices widened to f32
 * once), attention through a host {@linkcode KVCache} and the very paged plan the GPU encoder
 * would run, executed by `executePagedPlanOnCpu`. Slow; meant for small checkpoints and tests.
 *
 * ```ts ignore
 * import { loadCheckpoint } from "./checkpoint.ts";
 * import { CpuModel } from "./cpu_model.ts";
 * import { generate } from "./generation.ts";
 * const runner = new CpuModel(await loadCheckpoint("tests/fixtures/llm_tiny"), { batch: 1, maxTokens: 64 });
 * console.log((await generate(runner, { prompts: [[1, 2, 3]], maxNewTokens: 8 })).tokens);
 * ```
 *
 * @module
 */

import type { KVDtype, VariantOptions } from "../../mod.ts";
import { CPU_GRID } from "../../plan.ts";
import {
  createKVCache,
  executePagedPlanOnCpu,
  type KVCache,
  type PagedPlan,
  planForCache,
} from "../../runner.ts";
import { type Matrix, type ModelWeights, toF32 } from "./checkpoint.ts";
import type { ModelConfig } from "./config.ts";
import type { ForwardStep, ModelRunner } from "./generation.ts";
import { expertActivation, routeExperts } from "./moe.ts";
import { ropeInvFreq, ropeTable } from "./rope.ts";

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

/** PyTorch's `gelu(x, approximate="tanh")`. */
function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}

/**
 * The attention step of a layer kind: the model's query shape and scale, the layer's sliding
 * window (0: none), the model's logit soft-cap (Gemma 2) and the layer's sinks (gpt-oss).
 */
export function attentionStep(
  c: ModelConfig,
  seqs: number[],
  qLen: number,
  window: number,
  sinks?: Float32Array,
): { seqs: number[]; numHeads: number; qLen: number; scale: number } & VariantOptions {
  return {
    seqs,
    numHeads: c.heads,
    qLen,
    scale: c.attnScale,
    ...(window > 0 ? { slidingWindow: window } : {}),
    ...(c.attnSoftCap > 0 ? { logitsSoftCap: c.attnSoftCap } : {}),
    ...(sinks ? { sinks } : {}),
  };
}

/**
 * Every layer's attention plan for one forward pass: layers of one kind (same window, no sinks)
 * share one plan; with sinks (gpt-oss: one set per layer) each layer has its own.
 */
export function layerPlans(
  c: ModelConfig,
  sinks: (Float32Array | undefined)[],
  seqs: number[],
  qLen: number,
  plan: (step: ReturnType<typeof attentionStep>) => PagedPlan,
): PagedPlan[] {
  const shared = new Map<number, PagedPlan>();
  return c.layerWindows.map((window, l) => {
    if (sinks[l]) return plan(attentionStep(c, seqs, qLen, window, sinks[l]));
    let p = shared.get(window);
    if (!p) shared.set(window, p = plan(attentionStep(c, seqs, qLen, window)));
    return p;
  });
}

/**
 * A step's sampling: each sequence's last row of `x` normed and projected to logits (Gemma 2's
 * final soft-cap), then its greedy token into `next` and its `history`. Returns the logits.
 */
export function sampleGreedy(
  c: ModelConfig,
  step: ForwardStep,
  x: Float32Array,
  norm: Float32Array,
  lmHead: F32Matrix,
  next: Int32Array,
  history: number[][],
): Float32Array<ArrayBuffer> {
  const { seqs, qLen } = step;
  const hidden = c.hidden, n = seqs.length;
  const last = new Float32Array(n * hidden);
  for (let s = 0; s < n; s++) {
    const r = s * qLen + qLen - 1;
    last.set(x.subarray(r * hidden, (r + 1) * hidden), s * hidden);
  }
  const lastN = new Float32Array(n * hidden);
  rmsnorm(last, n, norm, c.eps, lastN);
  const logits = new Float32Array(n * c.vocab);
  matmul(lastN, n, lmHead, logits);
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
    next[seqs[s]] = best;
    history[seqs[s]][step.genIndex] = best;
  }
  return logits;
}

/** The model on the host. */
export class CpuModel implements ModelRunner {
  readonly config: ModelConfig;
  /** The host KV cache (one sequence per batch entry). */
  readonly cache: KVCache;
  #w: {
    embed: F32Matrix;
    lmHead: F32Matrix;
    norm: Float32Array;
    layers: {
      attnNorm: Float32Array;
      qkv: F32Matrix;
      qkvBias?: Float32Array;
      o: F32Matrix;
      oBias?: Float32Array;
      mlpNorm: Float32Array;
      postAttnNorm?: Float32Array;
      postMlpNorm?: Float32Array;
      gateUp: F32Matrix;
      gateUpBias?: Float32Array;
      down: F32Matrix;
      sinks?: Float32Array;
      router?: F32Matrix;
      routerBias?: Float32Array;
    }[];
  };
  #ids: number[];
  #cos: Float32Array;
  #sin: Float32Array;
  #next: Int32Array;
  #history: number[][];
  #logits = new Float32Array(0);

  constructor(weights: ModelWeights, options: RunnerOptions) {
    const c = weights.config;
    if (c.mla) {
      throw new TypeError("CpuModel: DeepSeek-V3 (MLA) runs on CpuMlaModel (mla_model.ts)");
    }
    this.config = c;
    const embed = widen(weights.embed);
    this.#w = {
      embed,
      lmHead: weights.lmHead === weights.embed ? embed : widen(weights.lmHead),
      norm: weights.norm,
      layers: weights.layers.map((l) => ({
        ...l,
        qkv: widen(l.qkv),
        o: widen(l.o),
        gateUp: widen(l.gateUp),
        down: widen(l.down),
        router: l.router ? widen(l.router) : undefined,
      })),
    };
    const pageSize = options.pageSize ?? 16;
    this.cache = createKVCache({
      numLayers: c.layers,
      numKVHeads: c.kvHeads,
      headDim: c.headDim,
      kvDtype: options.kvDtype ?? "f32",
      pageSize,
      numPages: options.batch * Math.ceil(options.maxTokens / pageSize),
    });
    this.#ids = Array.from({ length: options.batch }, () => this.cache.addSequence());
    ({ cos: this.#cos, sin: this.#sin } = ropeTable(
      ropeInvFreq(c.rope, c.headDim),
      options.maxTokens,
      c.rope.attentionScaling,
    ));
    this.#next = new Int32Array(options.batch);
    this.#history = Array.from({ length: options.batch }, () => []);
  }

  forward(step: ForwardStep): void {
    const c = this.config;
    const { seqs, qLen } = step;
    const rows = seqs.length * qLen;
    const H = c.heads, KV = c.kvHeads, D = c.headDim, half = D / 2, hidden = c.hidden;
    const qkvDim = (H + 2 * KV) * D;
    const ids = seqs.map((b) => this.#ids[b]);
    const pos = new Int32Array(rows);
    const x = new Float32Array(rows * hidden);
    // Gemma 2 scales embeddings by sqrt(hidden), rounded to f32 as transformers does.
    const embedScale = c.gemma ? Math.fround(Math.sqrt(hidden)) : 1;
    for (let s = 0; s < seqs.length; s++) {
      const len = this.cache.length(ids[s]);
      for (let p = 0; p < qLen; p++) {
        const r = s * qLen + p;
        const tok = step.tokens ? step.tokens[r] : this.#next[seqs[s]];
        pos[r] = len + p;
        x.set(this.#w.embed.data.subarray(tok * hidden, (tok + 1) * hidden), r * hidden);
        if (c.gemma) { for (let i = 0; i < hidden; i++) x[r * hidden + i] *= embedScale; }
      }
    }
    const slots = this.cache.extend(ids, qLen);
    const layers = this.#w.layers;
    const plans = layerPlans(
      c,
      layers.map((l) => l.sinks),
      ids,
      qLen,
      (s) => planForCache(this.cache, s, { grid: CPU_GRID }),
    );
    const xn = new Float32Array(rows * hidden);
    const qkv = new Float32Array(rows * qkvDim);
    const q = new Float32Array(rows * H * D);
    const k = new Float32Array(rows * KV * D);
    const v = new Float32Array(rows * KV * D);
    const moe = c.moe;
    const gu = new Float32Array(rows * layers[0].gateUp.rows);
    const h = new Float32Array(rows * layers[0].down.cols);
    const routerLogits = new Float32Array(moe ? rows * moe.experts : 0);
    const tmp = c.gemma ? new Float32Array(rows * hidden) : x;
    const tmpN = new Float32Array(c.gemma ? rows * hidden : 0);
    /** Gemma 2: `x += norm(tmp)` (the sublayer's output normed before the residual add). */
    const addNormed = (w: Float32Array) => {
      rmsnorm(tmp, rows, w, c.eps, tmpN);
      for (let i = 0; i < x.length; i++) x[i] += tmpN[i];
    };
    for (let l = 0; l < c.layers; l++) {
      const w = layers[l];
      rmsnorm(x, rows, w.attnNorm, c.eps, xn);
      matmul(xn, rows, w.qkv, qkv, w.qkvBias);
      for (let r = 0; r < rows; r++) {
        for (let head = 0; head < H + 2 * KV; head++) {
          const src = r * qkvDim + head * D;
          const [dst, at] = head < H
            ? [q, (r * H + head) * D]
            : head < H + KV
            ? [k, (r * KV + head - H) * D]
            : [v, (r * KV + head - H - KV) * D];
          for (let i = 0; i < half; i++) {
            const a = qkv[src + i], b = qkv[src + i + half];
            if (head >= H + KV) {
              dst[at + i] = a;
              dst[at + i + half] = b;
              continue;
            }
            const cs = this.#cos[pos[r] * half + i], sn = this.#sin[pos[r] * half + i];
            dst[at + i] = Math.fround(a * cs) - Math.fround(b * sn);
            dst[at + i + half] = Math.fround(b * cs) + Math.fround(a * sn);
          }
        }
      }
      this.cache.write(slots, l, { k, v });
      const attn = executePagedPlanOnCpu(plans[l], { q, ...this.cache.layerData(l) }).out;
      matmul(attn, rows, w.o, tmp, w.oBias, !c.gemma);
      if (w.postAttnNorm) addNormed(w.postAttnNorm);
      rmsnorm(x, rows, w.mlpNorm, c.eps, xn);
      if (moe) {
        // gpt-oss: route, every expert's gate/up, weighted activations, one down projection.
        matmul(xn, rows, w.router!, routerLogits, w.routerBias);
        routeExperts(routerLogits, rows, moe, c.ffn, h);
        matmul(xn, rows, w.gateUp, gu, w.gateUpBias);
        expertActivation(gu, rows, moe, c.ffn, h);
        matmul(h, rows, w.down, tmp, undefined, true);
        continue;
      }
      matmul(xn, rows, w.gateUp, gu);
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < c.ffn; j++) {
          const g = gu[r * 2 * c.ffn + j];
          const act = c.gemma ? geluTanh(g) : g / (1 + Math.exp(-g));
          h[r * c.ffn + j] = Math.fround(act) * gu[r * 2 * c.ffn + c.ffn + j];
        }
      }
      matmul(h, rows, w.down, tmp, undefined, !c.gemma);
      if (w.postMlpNorm) addNormed(w.postMlpNorm);
    }
    if (!step.sample) return;
    this.#logits = sampleGreedy(
      c,
      step,
      x,
      this.#w.norm,
      this.#w.lmHead,
      this.#next,
      this.#history,
    );
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
