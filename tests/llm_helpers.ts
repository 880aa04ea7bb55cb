/**
 * Test helpers of the LLM runner example: tiny random checkpoints written in the Hugging Face
 * layout, and a float64 reference of the model (dense causal attention, one token at a time,
 * RoPE frequencies in float64) written independently of the runner's code.
 *
 * @module
 */

import { decodeKV, toBf16Bits, toF16Bits } from "../mod.ts";
import { type FloatDtype, type Tensor, writeSafetensors } from "../examples/llm/safetensors.ts";
import { seededRng } from "./helpers.ts";
import { gptOssMlpReference, yarnReference } from "./llm_gptoss_reference.ts";

/** gpt-oss's RoPE settings (`GptOssConfig`'s defaults, max_position_embeddings 131072). */
export const GPT_OSS_YARN = {
  factor: 32,
  beta_fast: 32,
  beta_slow: 1,
  truncate: false,
  original_max_position_embeddings: 4096,
};

/** Shape and options of a random checkpoint. */
export interface TinySpec {
  arch:
    | "LlamaForCausalLM"
    | "Qwen2ForCausalLM"
    | "MistralForCausalLM"
    | "Gemma2ForCausalLM"
    | "GptOssForCausalLM";
  hidden: number;
  ffn: number;
  layers: number;
  heads: number;
  kvHeads: number;
  /** Written as `head_dim` when given. */
  headDim?: number;
  vocab: number;
  dtype: FloatDtype;
  tie: boolean;
  /** q/k/v biases (Qwen2). */
  qkvBias?: boolean;
  /** An o_proj bias too (Llama's `attention_bias`). */
  oBias?: boolean;
  /** Llama 3 RoPE scaling. */
  llama3?: boolean;
  /** Write the config the transformers 5 way (`rope_parameters`). */
  v5Config?: boolean;
  /** Split the weights over two files. */
  split?: boolean;
  theta?: number;
  eps?: number;
  /** `sliding_window` (Mistral: every layer; Gemma 2: even layers). Default 4096 for Mistral. */
  slidingWindow?: number;
  /** Gemma 2: `query_pre_attn_scalar`, `attn_logit_softcapping`, `final_logit_softcapping`. */
  gemma?: { queryPreAttnScalar: number; attnSoftCap: number; finalSoftCap: number };
  /**
   * gpt-oss: experts (each `ffn` wide), top-k, YaRN RoPE (`rope_parameters`), per-head sinks,
   * q/k/v/o biases, `layer_types` alternating from a windowed layer (`slidingWindow`).
   */
  gptoss?: { experts: number; topK: number; yarn: Record<string, number | boolean | string> };
}

/** Writes `config.json` and safetensors with random weights (norm weights around 1). */
export async function writeTinyCheckpoint(dir: string, s: TinySpec, seed: number): Promise<void> {
  const rng = seededRng(seed);
  const D = s.headDim ?? s.hidden / s.heads;
  const encode = (v: Float32Array): Float32Array | Uint16Array =>
    s.dtype === "F32" ? v : s.dtype === "F16" ? toF16Bits(v) : toBf16Bits(v);
  const rand = (n: number, scale: number, offset = 0) =>
    Float32Array.from({ length: n }, () => offset + scale * (2 * rng() - 1));
  const tensors: Record<string, Tensor> = {};
  const put = (name: string, shape: number[], scale: number, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    tensors[name] = { dtype: s.dtype, shape, data: encode(rand(n, scale, offset)) };
  };
  const lin = (name: string, out: number, inp: number) =>
    put(name, [out, inp], 1.7 / Math.sqrt(inp));
  put("model.embed_tokens.weight", [s.vocab, s.hidden], 1);
  const ox = s.gptoss;
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}.`;
    if (ox) {
      const E = ox.experts, F = s.ffn;
      put(`${p}self_attn.sinks`, [s.heads], 1.5, 0.5);
      put(`${p}mlp.router.weight`, [E, s.hidden], 2 / Math.sqrt(s.hidden));
      put(`${p}mlp.router.bias`, [E], 0.5);
      // Large enough that the clamp at 7 acts on some gate and up values.
      put(`${p}mlp.experts.gate_up_proj`, [E, s.hidden, 2 * F], 8 / Math.sqrt(s.hidden));
      put(`${p}mlp.experts.gate_up_proj_bias`, [E, 2 * F], 0.5);
      put(`${p}mlp.experts.down_proj`, [E, F, s.hidden], 0.5 / Math.sqrt(F));
      put(`${p}mlp.experts.down_proj_bias`, [E, s.hidden], 0.3);
    }
    put(`${p}input_layernorm.weight`, [s.hidden], 0.2, s.gemma ? 0 : 1);
    lin(`${p}self_attn.q_proj.weight`, s.heads * D, s.hidden);
    lin(`${p}self_attn.k_proj.weight`, s.kvHeads * D, s.hidden);
    lin(`${p}self_attn.v_proj.weight`, s.kvHeads * D, s.hidden);
    if (s.qkvBias) {
      put(`${p}self_attn.q_proj.bias`, [s.heads * D], 0.3);
      put(`${p}self_attn.k_proj.bias`, [s.kvHeads * D], 0.3);
      put(`${p}self_attn.v_proj.bias`, [s.kvHeads * D], 0.3);
    }
    lin(`${p}self_attn.o_proj.weight`, s.hidden, s.heads * D);
    if (s.oBias) put(`${p}self_attn.o_proj.bias`, [s.hidden], 0.3);
    // Gemma 2's norms scale by (1 + w): weights around 0.
    const normOffset = s.gemma ? 0 : 1;
    put(`${p}post_attention_layernorm.weight`, [s.hidden], 0.2, normOffset);
    if (s.gemma) {
      put(`${p}pre_feedforward_layernorm.weight`, [s.hidden], 0.2, 0);
      put(`${p}post_feedforward_layernorm.weight`, [s.hidden], 0.2, 0);
    }
    if (!ox) {
      lin(`${p}mlp.gate_proj.weight`, s.ffn, s.hidden);
      lin(`${p}mlp.up_proj.weight`, s.ffn, s.hidden);
      lin(`${p}mlp.down_proj.weight`, s.hidden, s.ffn);
    }
  }
  put("model.norm.weight", [s.hidden], 0.2, s.gemma ? 0 : 1);
  if (!s.tie) lin("lm_head.weight", s.vocab, s.hidden);
  const theta = s.theta ?? 10000;
  const scaling = s.llama3
    ? {
      rope_type: "llama3",
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 64,
    }
    : null;
  const config: Record<string, unknown> = {
    architectures: [s.arch],
    hidden_size: s.hidden,
    intermediate_size: s.ffn,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    vocab_size: s.vocab,
    rms_norm_eps: s.eps ?? 1e-5,
    ...(s.gemma
      ? {
        hidden_activation: "gelu_pytorch_tanh",
        query_pre_attn_scalar: s.gemma.queryPreAttnScalar,
        attn_logit_softcapping: s.gemma.attnSoftCap,
        final_logit_softcapping: s.gemma.finalSoftCap,
      }
      : { hidden_act: "silu" }),
    tie_word_embeddings: s.tie,
    ...(s.headDim ? { head_dim: s.headDim } : {}),
    ...(s.arch === "MistralForCausalLM" || s.slidingWindow !== undefined
      ? { sliding_window: s.slidingWindow ?? 4096 }
      : {}),
    ...(s.v5Config
      ? { rope_parameters: { rope_theta: theta, rope_type: "default", ...(scaling ?? {}) } }
      : { rope_theta: theta, rope_scaling: scaling }),
    ...(ox
      ? {
        num_local_experts: ox.experts,
        num_experts_per_tok: ox.topK,
        layer_types: Array.from(
          { length: s.layers },
          (_, l) => l % 2 === 0 ? "sliding_attention" : "full_attention",
        ),
        max_position_embeddings: 131072,
        rope_parameters: { rope_theta: theta, rope_type: "yarn", ...ox.yarn },
      }
      : {}),
  };
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config, null, 2));
  const names = Object.keys(tensors);
  const cut = s.split ? Math.floor(names.length / 2) : names.length;
  const part = (list: string[]) => Object.fromEntries(list.map((n) => [n, tensors[n]]));
  await writeSafetensors(`${dir}/model-00001.safetensors`, part(names.slice(0, cut)));
  if (s.split) await writeSafetensors(`${dir}/model-00002.safetensors`, part(names.slice(cut)));
}

/** Float64 weights read back from a tiny checkpoint's tensors. */
type W = Map<string, Float64Array>;

async function readAll(dir: string): Promise<W> {
  const { openSafetensors } = await import("../examples/llm/safetensors.ts");
  const w: W = new Map();
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.endsWith(".safetensors")) continue;
    const f = await openSafetensors(`${dir}/${e.name}`);
    for (const n of f.names) {
      const t = await f.read(n);
      const v = t.dtype === "F32"
        ? (t.data as Float32Array)
        : decodeKV(t.data as Uint16Array, t.dtype === "F16" ? "f16" : "bf16");
      w.set(n, Float64Array.from(v));
    }
    f.close();
  }
  return w;
}

/** Greedy tokens and each step's logits of the float64 reference, prompt by prompt. */
export interface ReferenceRun {
  tokens: number[][];
  /** `[prompt][step]` logits. */
  logits: Float64Array[][];
}

/** Runs the float64 reference model on each prompt (one token at a time, dense KV). */
export async function referenceGenerate(
  dir: string,
  prompts: number[][],
  steps: number,
): Promise<ReferenceRun> {
  const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  const w = await readAll(dir);
  const hidden: number = cfg.hidden_size, H: number = cfg.num_attention_heads;
  const KV: number = cfg.num_key_value_heads, ffn: number = cfg.intermediate_size;
  const D: number = cfg.head_dim ?? hidden / H, eps: number = cfg.rms_norm_eps;
  const layers: number = cfg.num_hidden_layers, vocab: number = cfg.vocab_size;
  // Gemma 2 (from its definition in transformers): embeddings times sqrt(hidden), norms of
  // (1 + w) after attention and MLP too, GELU (tanh) gate, query_pre_attn_scalar, soft-caps,
  // sliding windows on even layers. Mistral: its window on every layer.
  const gemma = cfg.architectures[0] === "Gemma2ForCausalLM";
  const gptoss = cfg.architectures[0] === "GptOssForCausalLM";
  const scale = gemma ? 1 / Math.sqrt(cfg.query_pre_attn_scalar) : 1 / Math.sqrt(D);
  const attnCap: number = gemma ? cfg.attn_logit_softcapping ?? 0 : 0;
  const finalCap: number = gemma ? cfg.final_logit_softcapping ?? 0 : 0;
  const windowOf = (l: number): number => {
    const W: number = cfg.sliding_window ?? 0;
    if (cfg.layer_types) return cfg.layer_types[l] === "sliding_attention" ? W : 0;
    if (gemma) return l % 2 === 0 ? W : 0;
    return cfg.architectures[0] === "MistralForCausalLM" ? W : 0;
  };
  const rope = cfg.rope_parameters ?? { ...(cfg.rope_scaling ?? {}), rope_theta: cfg.rope_theta };
  const yarn = rope.rope_type === "yarn" ? yarnReference(rope, cfg, D) : undefined;
  const inv = Array.from({ length: D / 2 }, (_, i) => {
    const f = 1 / Math.pow(rope.rope_theta, (2 * i) / D);
    if (yarn) return yarn.inv[i];
    if (rope.rope_type !== "llama3") return f;
    const { factor, low_freq_factor: lo, high_freq_factor: hi } = rope;
    const old = rope.original_max_position_embeddings;
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < old / hi) return f;
    if (wavelen > old / lo) return f / factor;
    const smooth = (old / wavelen - lo) / (hi - lo);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
  const get = (n: string) => {
    const t = w.get(n);
    if (!t) throw new Error(`missing ${n}`);
    return t;
  };
  const lin = (x: Float64Array, name: string, out: number, bias?: string) => {
    const m = get(name), n = x.length, b = bias && w.has(bias) ? get(bias) : undefined;
    return Float64Array.from({ length: out }, (_, o) => {
      let s = b ? b[o] : 0;
      for (let i = 0; i < n; i++) s += x[i] * m[o * n + i];
      return s;
    });
  };
  const norm = (x: Float64Array, name: string) => {
    const g = get(name);
    const r = 1 / Math.sqrt(x.reduce((a, v) => a + v * v, 0) / x.length + eps);
    return x.map((v, i) => v * r * (gemma ? 1 + g[i] : g[i]));
  };
  const mscale = yarn?.attentionFactor ?? 1;
  const rot = (x: Float64Array, pos: number) => {
    const y = new Float64Array(D);
    for (let i = 0; i < D / 2; i++) {
      const c = mscale * Math.cos(pos * inv[i]), s = mscale * Math.sin(pos * inv[i]);
      y[i] = x[i] * c - x[i + D / 2] * s;
      y[i + D / 2] = x[i + D / 2] * c + x[i] * s;
    }
    return y;
  };
  const lmName = w.has("lm_head.weight") ? "lm_head.weight" : "model.embed_tokens.weight";
  const out: ReferenceRun = { tokens: [], logits: [] };
  for (const prompt of prompts) {
    const kc: Float64Array[][] = Array.from({ length: layers }, () => []);
    const vc: Float64Array[][] = Array.from({ length: layers }, () => []);
    const seq = [...prompt];
    const gen: number[] = [];
    const logits: Float64Array[] = [];
    for (let pos = 0; gen.length < steps; pos++) {
      const emb = get("model.embed_tokens.weight");
      let x = emb.slice(seq[pos] * hidden, (seq[pos] + 1) * hidden);
      if (gemma) x = x.map((v) => v * Math.sqrt(hidden));
      for (let l = 0; l < layers; l++) {
        const p = `model.layers.${l}.`;
        const xn = norm(x, `${p}input_layernorm.weight`);
        const q = lin(xn, `${p}self_attn.q_proj.weight`, H * D, `${p}self_attn.q_proj.bias`);
        const k = lin(xn, `${p}self_attn.k_proj.weight`, KV * D, `${p}self_attn.k_proj.bias`);
        const v = lin(xn, `${p}self_attn.v_proj.weight`, KV * D, `${p}self_attn.v_proj.bias`);
        for (let h = 0; h < KV; h++) {
          kc[l].push(rot(k.slice(h * D, (h + 1) * D), pos));
          vc[l].push(v.slice(h * D, (h + 1) * D));
        }
        const attn = new Float64Array(H * D);
        const W = windowOf(l);
        const first = W > 0 ? Math.max(0, pos - W + 1) : 0; // pos - W < t <= pos
        for (let h = 0; h < H; h++) {
          const kh = Math.floor(h / (H / KV));
          const qh = rot(q.slice(h * D, (h + 1) * D), pos);
          const scores = Array.from({ length: pos + 1 }, (_, t) => {
            if (t < first) return -Infinity;
            const kt = kc[l][t * KV + kh];
            let s = 0;
            for (let i = 0; i < D; i++) s += qh[i] * kt[i];
            s *= scale;
            return attnCap > 0 ? attnCap * Math.tanh(s / attnCap) : s;
          });
          // gpt-oss: the head's sink joins the softmax's denominator (and has no value).
          const sink = gptoss ? get(`${p}self_attn.sinks`)[h] : -Infinity;
          const m = Math.max(...scores, sink);
          const e = scores.map((s) => Math.exp(s - m));
          const z = e.reduce((a, b) => a + b, 0) + Math.exp(sink - m);
          for (let t = first; t <= pos; t++) {
            const vt = vc[l][t * KV + kh];
            for (let i = 0; i < D; i++) attn[h * D + i] += (e[t] / z) * vt[i];
          }
        }
        let o = lin(attn, `${p}self_attn.o_proj.weight`, hidden, `${p}self_attn.o_proj.bias`);
        if (gemma) o = norm(o, `${p}post_attention_layernorm.weight`);
        x = x.map((a, i) => a + o[i]);
        const xm = norm(x, `${p}${gemma ? "pre_feedforward" : "post_attention"}_layernorm.weight`);
        if (gptoss) {
          const moe = gptOssMlpReference(xm, `${p}mlp.`, get, cfg);
          x = x.map((a, i) => a + moe[i]);
          continue;
        }
        const g = lin(xm, `${p}mlp.gate_proj.weight`, ffn);
        const u = lin(xm, `${p}mlp.up_proj.weight`, ffn);
        const act = (a: number) =>
          gemma
            ? 0.5 * a * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (a + 0.044715 * a ** 3)))
            : a / (1 + Math.exp(-a));
        let d = lin(g.map((a, i) => act(a) * u[i]), `${p}mlp.down_proj.weight`, hidden);
        if (gemma) d = norm(d, `${p}post_feedforward_layernorm.weight`);
        x = x.map((a, i) => a + d[i]);
      }
      if (pos < seq.length - 1) continue;
      let lg = lin(norm(x, "model.norm.weight"), lmName, vocab);
      if (finalCap > 0) lg = lg.map((v) => finalCap * Math.tanh(v / finalCap));
      let best = 0;
      for (let t = 1; t < vocab; t++) if (lg[t] > lg[best]) best = t;
      logits.push(lg);
      gen.push(best);
      seq.push(best);
    }
    out.tokens.push(gen);
    out.logits.push(logits);
  }
  return out;
}

/** `|a - b| / |b|` over a whole vector (relative L2 error). */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/** The gap between the largest and second largest logit (how decisive greedy sampling is). */
export function topGap(logits: ArrayLike<number>): number {
  let a = -Infinity, b = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    if (v > a) {
      b = a;
      a = v;
    } else if (v > b) b = v;
  }
  return a - b;
}
