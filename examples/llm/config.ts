/**
 * The model shape of a Hugging Face `config.json` of the Llama family (`LlamaForCausalLM`,
 * `Qwen2ForCausalLM`, `MistralForCausalLM`), of Gemma 2 (`Gemma2ForCausalLM`), of gpt-oss
 * (`GptOssForCausalLM`) and of DeepSeek-V3 (`DeepseekV3ForCausalLM`, see `mla_config.ts`), read
 * the same way from configs written by transformers 4.x (`rope_theta`, `rope_scaling`) and 5.x
 * (`rope_parameters`).
 *
 * Sliding windows are applied per layer ({@linkcode ModelConfig.layerWindows}, the library's
 * `slidingWindow`): `layer_types` when the config has it, else Mistral's window on every layer,
 * Qwen2's (with `use_sliding_window`) from `max_window_layers` on, Gemma 2's and gpt-oss's on
 * even layers. Gemma 2 also caps attention logits (`attn_logit_softcapping`, the library's
 * `logitsSoftCap`) and final logits, scales attention by `query_pre_attn_scalar^-0.5`, and has its
 * own norms. gpt-oss adds per-head attention sinks (read from the checkpoint), a mixture of
 * experts in place of the MLP ({@linkcode MoeConfig}) and YaRN RoPE.
 *
 * ```ts
 * import { parseModelConfig } from "./config.ts";
 * const c = parseModelConfig({
 *   architectures: ["Qwen2ForCausalLM"], hidden_size: 896, intermediate_size: 4864,
 *   num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2,
 *   vocab_size: 151936, rms_norm_eps: 1e-6, rope_theta: 1000000, tie_word_embeddings: true,
 * });
 * console.log(c.arch, c.headDim, c.rope.type, c.tieEmbeddings); // qwen2 64 default true
 * ```
 *
 * @module
 */

import {
  type DeepseekMoeConfig,
  type MlaConfig,
  parseDeepseekMoe,
  parseMla,
} from "./mla_config.ts";

/** Architectures the runner implements. */
export type Arch = "llama" | "qwen2" | "mistral" | "gemma2" | "gptoss" | "deepseekv3";

/** RoPE frequency scaling (`rope_type`): none, linear, Llama 3's or YaRN. */
export interface RopeConfig {
  type: "default" | "linear" | "llama3" | "yarn";
  theta: number;
  /**
   * `factor` of linear, llama3 and yarn scaling (1 for default). YaRN with
   * `original_max_position_embeddings` uses `max_position_embeddings` over it, as transformers 5
   * does.
   */
  factor: number;
  /** Llama 3: `low_freq_factor`, `high_freq_factor`; Llama 3 and YaRN: `original_max_position_embeddings`. */
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
  /** YaRN: `beta_fast` and `beta_slow` (rotations bounding the ramp; default 32 and 1). */
  betaFast: number;
  betaSlow: number;
  /** YaRN: round the ramp's bounds to integers (`truncate`, default true). */
  truncate: boolean;
  /**
   * The factor cos and sin are multiplied by (YaRN's `attention_factor`, default
   * `0.1 ln(factor) + 1`, or the `mscale`/`mscale_all_dim` ratio); 1 for the other types.
   */
  attentionScaling: number;
}

/** gpt-oss's mixture of experts (`GptOssMLP`). */
export interface MoeConfig {
  /** `num_local_experts`. */
  experts: number;
  /** `num_experts_per_tok`: experts each token is routed to. */
  topK: number;
  /** `swiglu_alpha`: the sigmoid's gain in `gate * sigmoid(alpha gate)` (default 1.702). */
  alpha: number;
  /** `swiglu_limit`: gate clamped above, up clamped on both sides (default 7). */
  limit: number;
}

/** What the runner needs of a checkpoint's config. */
export interface ModelConfig {
  arch: Arch;
  hidden: number;
  ffn: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
  eps: number;
  rope: RopeConfig;
  tieEmbeddings: boolean;
  /** The config's attention window (`sliding_window`), or 0. */
  slidingWindow: number;
  /** Each layer's sliding window (0: full causal attention), see the module doc. */
  layerWindows: number[];
  /** Softmax scale of attention: `1 / sqrt(headDim)`, Gemma 2's `query_pre_attn_scalar^-0.5`. */
  attnScale: number;
  /** Attention logit soft-cap (Gemma 2), or 0. */
  attnSoftCap: number;
  /** Final logit soft-cap (Gemma 2), or 0. */
  finalSoftCap: number;
  /**
   * Gemma 2's layer: embeddings times `sqrt(hidden)`, norms of `(1 + w)` (the loaded norm
   * weights hold `1 + w`), norms after attention and MLP too, a GELU (tanh) gate.
   */
  gemma: boolean;
  /** gpt-oss: the mixture of experts (`ffn` is each expert's width); absent for dense MLPs. */
  moe?: MoeConfig;
  /** gpt-oss: every layer has per-head attention sinks (`self_attn.sinks`). */
  sinks: boolean;
  /**
   * DeepSeek-V3: multi-head latent attention (`mla_config.ts`). The library's shape is then one
   * KV head (`kvHeads` 1) of K rows of `headDim` = latent + RoPE dims, V their latent.
   */
  mla?: MlaConfig;
  /** DeepSeek-V3: routed and shared experts after its first dense layers. */
  deepseekMoe?: DeepseekMoeConfig;
}

const ARCHS: Record<string, Arch> = {
  LlamaForCausalLM: "llama",
  Qwen2ForCausalLM: "qwen2",
  MistralForCausalLM: "mistral",
  Gemma2ForCausalLM: "gemma2",
  GptOssForCausalLM: "gptoss",
  DeepseekV3ForCausalLM: "deepseekv3",
};

function int(json: Record<string, unknown>, key: string, fallback?: number): number {
  const v = json[key] ?? fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new RangeError(
      `config.json: ${key} must be a positive integer: got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

function num(obj: Record<string, unknown>, key: string, fallback: number): number {
  const v = obj[key] ?? fallback;
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
    throw new RangeError(`config.json: ${key} must be a number > 0: got ${JSON.stringify(v)}`);
  }
  return v;
}

/** `0.1 mscale ln(scale) + 1` (1 for scales up to 1): YaRN's attention factor. */
function yarnMscale(scale: number, mscale = 1): number {
  return scale <= 1 ? 1 : 0.1 * mscale * Math.log(scale) + 1;
}

/** Reads the RoPE settings: `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling`. */
function parseRope(
  json: Record<string, unknown>,
  defaultTheta: number,
  defaultMaxPositions?: number,
): RopeConfig {
  const params = (json.rope_parameters ?? json.rope_scaling ?? {}) as Record<string, unknown>;
  if (typeof params !== "object" || params === null) {
    throw new TypeError(`config.json: rope_parameters must be an object: got ${typeof params}`);
  }
  const type = String(params.rope_type ?? params.type ?? "default");
  if (type !== "default" && type !== "linear" && type !== "llama3" && type !== "yarn") {
    throw new RangeError(
      `config.json: rope type must be "default", "linear", "llama3" or "yarn" (others are not implemented): got "${type}"`,
    );
  }
  const theta = num(params, "rope_theta", num(json, "rope_theta", defaultTheta));
  const scaled = type !== "default";
  let factor = scaled ? num(params, "factor", NaN) : 1;
  let originalMaxPositions = num(params, "original_max_position_embeddings", 8192);
  let attentionScaling = 1;
  if (type === "yarn") {
    // transformers 5: with original_max_position_embeddings the factor is the context ratio.
    const max = json.max_position_embeddings == null
      ? defaultMaxPositions
      : num(json, "max_position_embeddings", NaN);
    if (params.original_max_position_embeddings != null) {
      if (max !== undefined) factor = max / originalMaxPositions;
    } else if (max !== undefined) {
      originalMaxPositions = max;
    } else {
      throw new RangeError(
        "config.json: YaRN RoPE needs max_position_embeddings or original_max_position_embeddings",
      );
    }
    const given = params.attention_factor;
    const mscale = Number(params.mscale ?? 0), mscaleAll = Number(params.mscale_all_dim ?? 0);
    attentionScaling = given != null
      ? num(params, "attention_factor", 1)
      : mscale && mscaleAll
      ? yarnMscale(factor, mscale) / yarnMscale(factor, mscaleAll)
      : yarnMscale(factor);
  }
  return {
    type,
    theta,
    factor,
    lowFreqFactor: num(params, "low_freq_factor", 1),
    highFreqFactor: num(params, "high_freq_factor", 4),
    originalMaxPositions,
    // transformers takes `beta_fast or 32`: a 0 or null there means the default too.
    betaFast: Number(params.beta_fast) || 32,
    betaSlow: Number(params.beta_slow) || 1,
    truncate: params.truncate !== false,
    attentionScaling,
  };
}

/** Parses a `config.json` object; unsupported architectures or settings throw, naming the field. */
export function parseModelConfig(json: Record<string, unknown>): ModelConfig {
  if (typeof json !== "object" || json === null) {
    throw new TypeError(`config.json must hold an object: got ${typeof json}`);
  }
  const archName = (json.architectures as string[] | undefined)?.[0];
  const arch = archName === undefined ? undefined : ARCHS[archName];
  if (!arch) {
    throw new RangeError(
      `config.json: architectures[0] must be one of ${Object.keys(ARCHS).join(", ")}: got ${
        JSON.stringify(archName)
      }`,
    );
  }
  if (arch === "deepseekv3") return parseDeepseek(json);
  const hidden = int(json, "hidden_size");
  const heads = int(json, "num_attention_heads");
  const kvHeads = int(json, "num_key_value_heads", heads);
  if (heads % kvHeads !== 0) {
    throw new RangeError(
      `config.json: num_attention_heads (${heads}) must be a multiple of num_key_value_heads: got ${kvHeads}`,
    );
  }
  const headDim = json.head_dim == null ? hidden / heads : int(json, "head_dim");
  if (!Number.isInteger(headDim) || headDim % 8 !== 0 || headDim > 256) {
    throw new RangeError(
      `config.json: the head dimension must be a multiple of 8 up to 256: got ${headDim}`,
    );
  }
  const gemma = arch === "gemma2";
  const gptoss = arch === "gptoss";
  const want = gemma ? "gelu_pytorch_tanh" : "silu";
  const act = (gemma ? json.hidden_activation ?? json.hidden_act : json.hidden_act) ?? want;
  if (act !== want) {
    throw new RangeError(
      `config.json: the ${gemma ? "hidden_activation" : "hidden_act"} must be "${want}": got ${
        JSON.stringify(act)
      }`,
    );
  }
  if (hidden % 4 !== 0) {
    throw new RangeError(`config.json: hidden_size must be a multiple of 4: got ${hidden}`);
  }
  const ffn = int(json, "intermediate_size");
  if (ffn % 4 !== 0) {
    throw new RangeError(`config.json: intermediate_size must be a multiple of 4: got ${ffn}`);
  }
  const window = json.use_sliding_window === false
    ? 0
    : Number(json.sliding_window ?? (gptoss ? 128 : 0)) || 0;
  const slidingWindow = arch === "qwen2" && json.use_sliding_window !== true ? 0 : window;
  const layers = int(json, "num_hidden_layers");
  const types = json.layer_types as string[] | undefined;
  const layerWindows = Array.from({ length: layers }, (_, l) => {
    if (slidingWindow === 0) return 0;
    if (Array.isArray(types)) return types[l] === "sliding_attention" ? slidingWindow : 0;
    if (arch === "qwen2") return l >= Number(json.max_window_layers ?? layers) ? slidingWindow : 0;
    if (arch === "gemma2" || gptoss) return l % 2 === 0 ? slidingWindow : 0;
    return slidingWindow;
  });
  const cap = (key: string) => json[key] == null ? 0 : num(json, key, 0);
  return {
    arch,
    hidden,
    ffn,
    layers,
    heads,
    kvHeads,
    headDim,
    vocab: int(json, "vocab_size"),
    eps: num(json, "rms_norm_eps", gptoss ? 1e-5 : 1e-6),
    // gpt-oss's defaults (GptOssConfig): theta 150000, 131072 positions.
    rope: gptoss ? parseRope(json, 150000, 131072) : parseRope(json, 10000),
    tieEmbeddings: json.tie_word_embeddings === true,
    slidingWindow,
    layerWindows,
    attnScale: 1 / Math.sqrt(gemma ? num(json, "query_pre_attn_scalar", headDim) : headDim),
    attnSoftCap: gemma ? cap("attn_logit_softcapping") : 0,
    finalSoftCap: gemma ? cap("final_logit_softcapping") : 0,
    gemma,
    ...(gptoss ? { moe: parseMoe(json) } : {}),
    sinks: gptoss,
  };
}

/** A DeepSeek-V3 config: MLA, its experts, YaRN RoPE over the roped dims. */
function parseDeepseek(json: Record<string, unknown>): ModelConfig {
  const mla = parseMla(json);
  const act = json.hidden_act ?? "silu";
  if (act !== "silu") {
    throw new RangeError(`config.json: the hidden_act must be "silu": got ${JSON.stringify(act)}`);
  }
  const layers = int(json, "num_hidden_layers");
  const rope = parseRope(json, 10000);
  // transformers (`yarn_apply_mscale`): qk_head_dim^-0.5, times YaRN's mscale at
  // `mscale_all_dim` squared.
  const params = (json.rope_parameters ?? json.rope_scaling ?? {}) as Record<string, unknown>;
  const mscaleAll = Number(params.mscale_all_dim ?? 0);
  const m = rope.type === "yarn" && mscaleAll ? yarnMscale(Number(params.factor), mscaleAll) : 1;
  return {
    arch: "deepseekv3",
    hidden: int(json, "hidden_size"),
    ffn: int(json, "intermediate_size"),
    layers,
    heads: int(json, "num_attention_heads"),
    kvHeads: 1,
    headDim: mla.kvLoraRank + mla.ropeDim,
    vocab: int(json, "vocab_size"),
    eps: num(json, "rms_norm_eps", 1e-6),
    rope,
    tieEmbeddings: json.tie_word_embeddings === true,
    slidingWindow: 0,
    layerWindows: new Array(layers).fill(0),
    attnScale: (m * m) / Math.sqrt(mla.nopeDim + mla.ropeDim),
    attnSoftCap: 0,
    finalSoftCap: 0,
    gemma: false,
    sinks: false,
    mla,
    deepseekMoe: parseDeepseekMoe(json),
  };
}

/** gpt-oss's expert settings (transformers' defaults where the config has none). */
function parseMoe(json: Record<string, unknown>): MoeConfig {
  const experts = int(json, "num_local_experts", 128);
  const topK = int(json, "num_experts_per_tok", 4);
  if (topK > experts) {
    throw new RangeError(
      `config.json: num_experts_per_tok must be at most num_local_experts (${experts}): got ${topK}`,
    );
  }
  if (experts % 4 !== 0) {
    // The runner's expert down projection reads E (ffn + 1) inputs in groups of 4.
    throw new RangeError(`config.json: num_local_experts must be a multiple of 4: got ${experts}`);
  }
  return {
    experts,
    topK,
    alpha: num(json, "swiglu_alpha", 1.702),
    limit: num(json, "swiglu_limit", 7),
  };
}
