/**
 * The parts of a DeepSeek-V3 `config.json` (`DeepseekV3ForCausalLM`, which Kimi K2 shares) that the
 * GQA models do not have: multi-head latent attention ({@linkcode MlaConfig}) and the routed and
 * shared experts ({@linkcode DeepseekMoeConfig}), read as transformers 5 reads them.
 *
 * A runner decodes MLA through the library as one latent KV head shared by every query head: a
 * token's K row is its normed latent (`kv_lora_rank` dims) then its roped shared key
 * (`qk_rope_head_dim`), and V is the latent itself, the first `kv_lora_rank` dims of that row
 * (`vFromK`). Each query head's no-RoPE part is absorbed into the latent space by its key
 * up-projection, and each head's latent output taken to its V head by its value up-projection.
 *
 * ```ts
 * import { parseModelConfig } from "./config.ts";
 * const c = parseModelConfig({
 *   architectures: ["DeepseekV3ForCausalLM"], hidden_size: 48, intermediate_size: 64,
 *   num_hidden_layers: 3, num_attention_heads: 4, vocab_size: 128, kv_lora_rank: 32,
 *   q_lora_rank: 32, qk_nope_head_dim: 16, qk_rope_head_dim: 8, v_head_dim: 16,
 *   n_routed_experts: 8, num_experts_per_tok: 2, n_group: 4, topk_group: 2,
 *   moe_intermediate_size: 16, first_k_dense_replace: 1,
 * });
 * console.log(c.arch, c.kvHeads, c.headDim, c.mla?.kvLoraRank, c.deepseekMoe?.experts); // deepseekv3 1 40 32 8
 * ```
 *
 * @module
 */

/** DeepSeek's multi-head latent attention. */
export interface MlaConfig {
  /** `q_lora_rank`: the queries' low-rank projection (0: a full `q_proj`). */
  qLoraRank: number;
  /** `kv_lora_rank`: the latent's dims (V's head dim in the library). */
  kvLoraRank: number;
  /** `qk_nope_head_dim`: a query head's dims without RoPE. */
  nopeDim: number;
  /** `qk_rope_head_dim`: the roped dims of a query head and of the shared key. */
  ropeDim: number;
  /** `v_head_dim`: a head's value dims after the value up-projection. */
  vHeadDim: number;
  /** `rope_interleave`: the roped dims are rotated as interleaved pairs (DeepSeek's layout). */
  ropeInterleave: boolean;
}

/** DeepSeek's mixture of experts (`DeepseekV3MoE`). */
export interface DeepseekMoeConfig {
  /** `n_routed_experts`. */
  experts: number;
  /** `num_experts_per_tok`. */
  topK: number;
  /** `n_group`: expert groups, of which `topkGroup` are chosen first. */
  groups: number;
  /** `topk_group`. */
  topkGroup: number;
  /** `routed_scaling_factor`: the routed experts' weights are scaled by it. */
  scale: number;
  /** `norm_topk_prob`: the chosen weights are normalised to sum to 1 first. */
  normTopK: boolean;
  /** `moe_intermediate_size`: each routed expert's width. */
  width: number;
  /** `n_shared_experts` times `moe_intermediate_size`: the shared expert's width (0: none). */
  sharedWidth: number;
  /** `first_k_dense_replace`: the first layers keep a dense MLP (`intermediate_size`). */
  denseLayers: number;
}

function int(json: Record<string, unknown>, key: string, fallback?: number, min = 1): number {
  const v = json[key] ?? fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
    throw new RangeError(
      `config.json: ${key} must be an integer of at least ${min}: got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/** Reads MLA's dims; each must suit the library's K rows (multiples of 8). */
export function parseMla(json: Record<string, unknown>): MlaConfig {
  const mla: MlaConfig = {
    qLoraRank: json.q_lora_rank == null ? 0 : int(json, "q_lora_rank"),
    kvLoraRank: int(json, "kv_lora_rank"),
    nopeDim: int(json, "qk_nope_head_dim"),
    ropeDim: int(json, "qk_rope_head_dim"),
    vHeadDim: int(json, "v_head_dim"),
    ropeInterleave: json.rope_interleave !== false,
  };
  for (const key of ["kv_lora_rank", "qk_rope_head_dim"]) {
    if ((json[key] as number) % 8 !== 0) {
      throw new RangeError(`config.json: ${key} must be a multiple of 8: got ${json[key]}`);
    }
  }
  if (mla.kvLoraRank + mla.ropeDim > 576) {
    throw new RangeError(
      `config.json: kv_lora_rank + qk_rope_head_dim must be at most 576: got ${
        mla.kvLoraRank + mla.ropeDim
      }`,
    );
  }
  if (json.attention_bias === true) {
    throw new RangeError("config.json: attention_bias must be false (not implemented): got true");
  }
  return mla;
}

/** Reads DeepSeek's expert settings (transformers' defaults where the config has none). */
export function parseDeepseekMoe(json: Record<string, unknown>): DeepseekMoeConfig {
  const experts = int(json, "n_routed_experts", 256);
  const topK = int(json, "num_experts_per_tok", 8);
  const groups = int(json, "n_group", 8);
  const topkGroup = int(json, "topk_group", 4);
  const width = int(json, "moe_intermediate_size", 2048);
  if (experts % groups !== 0 || experts / groups < 2) {
    throw new RangeError(
      `config.json: n_routed_experts (${experts}) must be a multiple of n_group of at least 2 experts each: got n_group ${groups}`,
    );
  }
  if (topkGroup > groups || topK > (experts / groups) * topkGroup) {
    throw new RangeError(
      `config.json: topk_group (${topkGroup}) and num_experts_per_tok (${topK}) must fit ${groups} groups of ${
        experts / groups
      } experts`,
    );
  }
  const scale = json.routed_scaling_factor ?? 2.5;
  if (typeof scale !== "number" || !(scale > 0)) {
    throw new RangeError(
      `config.json: routed_scaling_factor must be a number > 0: got ${JSON.stringify(scale)}`,
    );
  }
  return {
    experts,
    topK,
    groups,
    topkGroup,
    scale,
    normTopK: json.norm_topk_prob !== false,
    width,
    sharedWidth: int(json, "n_shared_experts", 1, 0) * width,
    denseLayers: int(json, "first_k_dense_replace", 3, 0),
  };
}
