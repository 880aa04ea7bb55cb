/**
 * DeepSeek-V3 (and Kimi K2, its architecture) on the host, as a runner decodes MLA through the
 * library: each layer writes one latent K row per token into a {@linkcode KVCache} of K pages only
 * (`vFromK`: the normed latent, then the roped shared key; V is the latent itself), absorbs each
 * query head's no-RoPE part into the latent space through its key up-projection (the query is then
 * the absorbed latent query and the head's roped dims), runs the very paged plan a GPU encoder
 * would (`executePagedPlanOnCpu`), and takes each head's latent output through its value
 * up-projection and the output projection. Then a dense MLP for the first layers and DeepSeek's
 * routed and shared experts after them (`deepseek_moe.ts`). Slow; meant for small checkpoints and
 * tests against transformers (tests/llm_deepseek_test.ts).
 *
 * ```ts ignore
 * import { loadCheckpoint } from "./checkpoint.ts";
 * import { CpuMlaModel } from "./mla_model.ts";
 * import { generate } from "./generation.ts";
 * const runner = new CpuMlaModel(await loadCheckpoint("tests/fixtures/llm_deepseek"), { batch: 1, maxTokens: 64 });
 * console.log((await generate(runner, { prompts: [[1, 2, 3]], maxNewTokens: 8 })).tokens);
 * ```
 *
 * @module
 */

import { CPU_GRID } from "../../plan.ts";
import { executePagedPlanOnCpu, planForCache } from "../../runner.ts";
import type { Matrix, ModelWeights } from "./checkpoint.ts";
import { attentionStep } from "./cpu_model.ts";
import { routeToken } from "./deepseek_moe.ts";
import type { ForwardStep } from "./generation.ts";
import {
  type F32Matrix,
  HostRunner,
  matmul,
  rmsnorm,
  type RunnerOptions,
  widen,
} from "./host_runner.ts";
import type { MlaConfig } from "./mla_config.ts";
import type { MlaLayerWeights } from "./mla_weights.ts";
import { ropeInvFreq, ropeTable } from "./rope.ts";

/** A gate/up/down MLP in f32. */
interface Mlp {
  gateUp: F32Matrix;
  down: F32Matrix;
}

/** One layer's weights, every matrix widened to f32 once. */
interface Layer {
  attnNorm: Float32Array;
  qA?: F32Matrix;
  qANorm?: Float32Array;
  qB: F32Matrix;
  kvA: F32Matrix;
  kvANorm: Float32Array;
  kvB: F32Matrix;
  o: F32Matrix;
  mlpNorm: Float32Array;
  dense?: Mlp;
  experts?: {
    router: F32Matrix;
    correction: Float32Array;
    gateUp: F32Matrix[];
    down: F32Matrix[];
    shared?: Mlp;
  };
}

/** A checkpoint layer widened. */
function widenLayer(l: MlaLayerWeights): Layer {
  const mlp = (m: { gateUp: Matrix; down: Matrix }): Mlp => ({
    gateUp: widen(m.gateUp),
    down: widen(m.down),
  });
  const ex = l.experts;
  return {
    attnNorm: l.attnNorm,
    qA: l.qA && widen(l.qA),
    qANorm: l.qANorm,
    qB: widen(l.qB),
    kvA: widen(l.kvA),
    kvANorm: l.kvANorm,
    kvB: widen(l.kvB),
    o: widen(l.o),
    mlpNorm: l.mlpNorm,
    dense: l.dense && mlp(l.dense),
    experts: ex && {
      router: widen(ex.router),
      correction: ex.correction,
      gateUp: ex.gateUp.map(widen),
      down: ex.down.map(widen),
      shared: ex.shared && mlp(ex.shared),
    },
  };
}

/** `x` rotated by RoPE at one position: DeepSeek's interleaved pairs, or the halves' layout. */
function rope(
  x: Float32Array,
  at: number,
  dim: number,
  cos: Float32Array,
  sin: Float32Array,
  interleave: boolean,
  out: Float32Array,
  to: number,
): void {
  const half = dim / 2;
  for (let i = 0; i < half; i++) {
    // (Interleaved: pair (2i, 2i + 1) rotates by frequency i, and the result is laid out as
    // halves, as transformers' `apply_rotary_pos_emb_interleave` does.)
    const a = x[at + (interleave ? 2 * i : i)], b = x[at + (interleave ? 2 * i + 1 : i + half)];
    out[to + i] = Math.fround(a * cos[i]) - Math.fround(b * sin[i]);
    out[to + half + i] = Math.fround(b * cos[i]) + Math.fround(a * sin[i]);
  }
}

/** SwiGLU of `rows` rows of `[gate; up]` (width `w`) into `h`. */
function swiglu(gu: Float32Array, rows: number, w: number, h: Float32Array): void {
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < w; j++) {
      const g = gu[r * 2 * w + j];
      h[r * w + j] = Math.fround(g / (1 + Math.exp(-g))) * gu[r * 2 * w + w + j];
    }
  }
}

/** DeepSeek-V3 on the host; its cache holds one latent row per token and layer (K pages only). */
export class CpuMlaModel extends HostRunner {
  #mla: MlaConfig;
  #layers: Layer[];
  #cos: Float32Array;
  #sin: Float32Array;

  constructor(weights: ModelWeights, options: RunnerOptions) {
    const c = weights.config;
    if (!c.mla || !weights.mlaLayers) {
      throw new TypeError("CpuMlaModel: the checkpoint is not DeepSeek-V3's (no MLA layers)");
    }
    super(weights, options, {
      numKVHeads: 1,
      headDim: c.headDim,
      headDimV: c.mla.kvLoraRank,
      vFromK: true,
    });
    this.#mla = c.mla;
    this.#layers = weights.mlaLayers.map(widenLayer);
    ({ cos: this.#cos, sin: this.#sin } = ropeTable(
      ropeInvFreq(c.rope, this.#mla.ropeDim),
      options.maxTokens,
      c.rope.attentionScaling,
    ));
  }

  forward(step: ForwardStep): void {
    const c = this.config, m = this.#mla;
    const { seqs, qLen } = step;
    const rows = seqs.length * qLen, hidden = c.hidden, H = c.heads;
    const LAT = m.kvLoraRank, ROPE = m.ropeDim, NOPE = m.nopeDim, VD = m.vHeadDim;
    const QD = NOPE + ROPE, D = LAT + ROPE, half = ROPE / 2;
    const { ids, pos, x, slots } = this.embed(step);
    // One plan for every layer: one latent KV head, the query heads' absorbed rows.
    const plan = planForCache(this.cache, attentionStep(c, ids, qLen, 0), { grid: CPU_GRID });
    const xn = new Float32Array(rows * hidden);
    const qa = new Float32Array(rows * m.qLoraRank), qan = new Float32Array(qa.length);
    const qs = new Float32Array(rows * H * QD);
    const kva = new Float32Array(rows * D), k = new Float32Array(rows * D);
    const q = new Float32Array(rows * H * D);
    const vOut = new Float32Array(rows * H * VD);
    for (let l = 0; l < c.layers; l++) {
      const w = this.#layers[l];
      rmsnorm(x, rows, w.attnNorm, c.eps, xn);
      if (w.qA) {
        matmul(xn, rows, w.qA, qa);
        rmsnorm(qa, rows, w.qANorm!, c.eps, qan);
        matmul(qan, rows, w.qB, qs);
      } else {
        matmul(xn, rows, w.qB, qs);
      }
      matmul(xn, rows, w.kvA, kva);
      for (let r = 0; r < rows; r++) {
        // The latent K row: the normed latent, then the roped shared key.
        rmsnorm(kva.subarray(r * D, r * D + LAT), 1, w.kvANorm, c.eps, k.subarray(r * D));
        const cs = this.#cos.subarray(pos[r] * half), sn = this.#sin.subarray(pos[r] * half);
        rope(kva, r * D + LAT, ROPE, cs, sn, m.ropeInterleave, k, r * D + LAT);
        // Each head's query: its no-RoPE part absorbed by its key up-projection (the rows of
        // kv_b_proj for the head's keys), then its roped part.
        for (let h = 0; h < H; h++) {
          const qh = (r * H + h) * QD, out = (r * H + h) * D;
          for (let j = 0; j < LAT; j++) {
            let s = 0;
            for (let d = 0; d < NOPE; d++) {
              s += qs[qh + d] * w.kvB.data[(h * (NOPE + VD) + d) * LAT + j];
            }
            q[out + j] = Math.fround(s);
          }
          rope(qs, qh + NOPE, ROPE, cs, sn, m.ropeInterleave, q, out + LAT);
        }
      }
      this.cache.write(slots, l, { k });
      const lat = executePagedPlanOnCpu(plan, { q, ...this.cache.layerData(l) }).out;
      // Each head's latent output through its value up-projection.
      for (let r = 0; r < rows; r++) {
        for (let h = 0; h < H; h++) {
          const o = (r * H + h) * LAT;
          for (let e = 0; e < VD; e++) {
            const row = (h * (NOPE + VD) + NOPE + e) * LAT;
            let s = 0;
            for (let j = 0; j < LAT; j++) s += lat[o + j] * w.kvB.data[row + j];
            vOut[(r * H + h) * VD + e] = Math.fround(s);
          }
        }
      }
      matmul(vOut, rows, w.o, x, undefined, true);
      rmsnorm(x, rows, w.mlpNorm, c.eps, xn);
      this.#mlp(w, xn, rows, x);
    }
    if (step.sample) this.sample(step, x);
  }

  /** The layer's MLP or experts of `xn`, added into `x`. */
  #mlp(w: Layer, xn: Float32Array, rows: number, x: Float32Array): void {
    const hidden = this.config.hidden;
    const run = (m: Mlp, from: Float32Array, n: number) => {
      const width = m.down.cols;
      const gu = new Float32Array(n * 2 * width), h = new Float32Array(n * width);
      matmul(from, n, m.gateUp, gu);
      swiglu(gu, n, width, h);
      const y = new Float32Array(n * hidden);
      matmul(h, n, m.down, y);
      return y;
    };
    if (w.dense) {
      const y = run(w.dense, xn, rows);
      for (let i = 0; i < x.length; i++) x[i] += y[i];
      return;
    }
    const moe = this.config.deepseekMoe!, ex = w.experts!;
    const logits = new Float32Array(rows * moe.experts);
    matmul(xn, rows, ex.router, logits);
    const routed = new Float32Array(rows * hidden);
    for (let r = 0; r < rows; r++) {
      const token = xn.subarray(r * hidden, (r + 1) * hidden);
      const route = routeToken(
        logits.subarray(r * moe.experts, (r + 1) * moe.experts),
        ex.correction,
        moe,
      );
      route.experts.forEach((e, i) => {
        const y = run({ gateUp: ex.gateUp[e], down: ex.down[e] }, token, 1);
        for (let d = 0; d < hidden; d++) {
          routed[r * hidden + d] += Math.fround(y[d] * route.weights[i]);
        }
      });
    }
    const shared = ex.shared ? run(ex.shared, xn, rows) : new Float32Array(rows * hidden);
    for (let i = 0; i < x.length; i++) x[i] += Math.fround(routed[i] + shared[i]);
  }
}
