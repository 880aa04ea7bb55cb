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

import type { VariantOptions } from "../../mod.ts";
import { CPU_GRID } from "../../plan.ts";
import { executePagedPlanOnCpu, type PagedPlan, planForCache } from "../../runner.ts";
import type { ModelWeights } from "./checkpoint.ts";
import type { ModelConfig } from "./config.ts";
import type { ForwardStep } from "./generation.ts";
import {
  type F32Matrix,
  HostRunner,
  matmul,
  rmsnorm,
  type RunnerOptions,
  widen,
} from "./host_runner.ts";
import { expertActivation, routeExperts } from "./moe.ts";
import { ropeInvFreq, ropeTable } from "./rope.ts";

export type { RunnerOptions } from "./host_runner.ts";

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

/** The model on the host. */
export class CpuModel extends HostRunner {
  #layers: {
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
  #cos: Float32Array;
  #sin: Float32Array;

  constructor(weights: ModelWeights, options: RunnerOptions) {
    const c = weights.config;
    if (c.mla) {
      throw new TypeError("CpuModel: DeepSeek-V3 (MLA) runs on CpuMlaModel (mla_model.ts)");
    }
    super(weights, options, { numKVHeads: c.kvHeads, headDim: c.headDim });
    this.#layers = weights.layers.map((l) => ({
      ...l,
      qkv: widen(l.qkv),
      o: widen(l.o),
      gateUp: widen(l.gateUp),
      down: widen(l.down),
      router: l.router ? widen(l.router) : undefined,
    }));
    ({ cos: this.#cos, sin: this.#sin } = ropeTable(
      ropeInvFreq(c.rope, c.headDim),
      options.maxTokens,
      c.rope.attentionScaling,
    ));
  }

  forward(step: ForwardStep): void {
    const c = this.config;
    const { seqs, qLen } = step;
    const rows = seqs.length * qLen;
    const H = c.heads, KV = c.kvHeads, D = c.headDim, half = D / 2, hidden = c.hidden;
    const qkvDim = (H + 2 * KV) * D;
    // Gemma 2 scales embeddings by sqrt(hidden), rounded to f32 as transformers does.
    const { ids, pos, x, slots } = this.embed(step, c.gemma ? Math.fround(Math.sqrt(hidden)) : 1);
    const layers = this.#layers;
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
    if (step.sample) this.sample(step, x);
  }
}
