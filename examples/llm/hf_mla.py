#!/usr/bin/env python3
"""Hugging Face's MLA (DeepSeek-V3's DeepseekV3Attention) on a small random layer, for
tests/mla_deepseek_test.ts.

One DeepseekV3Attention layer of transformers (q through its LoRA q_a/q_b projections, the
latent K/V through kv_a_proj_with_mqa and its RMSNorm, interleaved RoPE with YaRN scaling, eager
attention), with seeded random weights and norm weights, runs three sequences in float64: each a
prompt (prefill, causal), then one decode token, then three tokens at once (a speculative
verification step), through transformers' DynamicCache, which holds MLA's latent rows
(kv_nope: the normed latent, k_rot: the roped shared key) as a runner's latent cache does.

Writes OUT/config.json (the dims, the layer's softmax scaling, the steps) and
OUT/tensors.safetensors (float32): the layer's weights by their transformers names, per sequence
`s{i}.hidden` [token][hidden] (every token of the prompt and the steps), `s{i}.cos` / `s{i}.sin`
[token][rope dims] (the rotary embedding the layer was given), `s{i}.decode` [1][hidden] and
`s{i}.verify` [3][hidden] (the layer's outputs at the steps) and `s{i}.kv_nope` / `s{i}.k_rot`
[token][dims] (the cache after the last step).

Usage: python3 examples/llm/hf_mla.py OUT
"""

import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import DeepseekV3Config, DynamicCache
from transformers.models.deepseek_v3 import modeling_deepseek_v3 as deepseek

PROMPTS = [37, 5, 61]
VERIFY = 3


def config():
    c = DeepseekV3Config(
        vocab_size=64,
        hidden_size=128,
        intermediate_size=64,
        moe_intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=8,
        num_key_value_heads=8,
        q_lora_rank=48,
        kv_lora_rank=64,
        qk_rope_head_dim=16,
        qk_nope_head_dim=32,
        v_head_dim=32,
        max_position_embeddings=256,
        rope_interleave=True,
        rope_parameters={
            "rope_type": "yarn",
            "rope_theta": 10000.0,
            "factor": 4.0,
            "original_max_position_embeddings": 64,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
        },
        attention_bias=False,
    )
    c._attn_implementation = "eager"
    return c


def causal_mask(past, q_len):
    """Additive [1, 1, q_len, past + q_len]: each new token sees the cache and itself."""
    allowed = torch.arange(past + q_len)[None, :] <= (past + torch.arange(q_len))[:, None]
    return torch.where(allowed, 0.0, float("-inf"))[None, None]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(2026)
    cfg = config()
    layer = deepseek.DeepseekV3Attention(cfg, layer_idx=0)
    rotary = deepseek.DeepseekV3RotaryEmbedding(cfg)
    with torch.no_grad():
        for norm in (layer.q_a_layernorm, layer.kv_a_layernorm):
            norm.weight.copy_(1 + 0.2 * torch.randn(norm.weight.shape))
        # The weights as stored (float32), then the layer in float64 on exactly those values.
        for p in layer.parameters():
            p.copy_(p.float())
    layer = layer.double().eval()
    tensors = {n: p.detach().float().contiguous() for n, p in layer.named_parameters()}
    for s, prompt in enumerate(PROMPTS):
        total = prompt + 1 + VERIFY
        hidden = torch.randn(1, total, cfg.hidden_size).float().double()
        cos, sin = rotary(hidden, torch.arange(total)[None])
        cache = DynamicCache(config=cfg)
        outs = []
        with torch.no_grad():
            for begin, end in ((0, prompt), (prompt, prompt + 1), (prompt + 1, total)):
                o = layer(
                    hidden[:, begin:end],
                    position_embeddings=(cos[:, begin:end], sin[:, begin:end]),
                    attention_mask=causal_mask(begin, end - begin).double(),
                    past_key_values=cache,
                )[0]
                outs.append(o[0])
        kv_nope, k_rot = cache.layers[0].keys, cache.layers[0].values
        tensors.update({
            f"s{s}.hidden": hidden[0].float(),
            f"s{s}.cos": cos[0].float(),
            f"s{s}.sin": sin[0].float(),
            f"s{s}.decode": outs[1].float(),
            f"s{s}.verify": outs[2].float(),
            f"s{s}.kv_nope": kv_nope[0, 0].float(),
            f"s{s}.k_rot": k_rot[0, 0].float(),
        })
    save_file({n: t.contiguous() for n, t in tensors.items()}, os.path.join(out, "tensors.safetensors"))
    meta = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "hiddenSize": cfg.hidden_size,
        "numHeads": cfg.num_attention_heads,
        "qLoraRank": cfg.q_lora_rank,
        "kvLoraRank": cfg.kv_lora_rank,
        "ropeDim": cfg.qk_rope_head_dim,
        "nopeDim": cfg.qk_nope_head_dim,
        "vHeadDim": cfg.v_head_dim,
        "rmsNormEps": cfg.rms_norm_eps,
        "scaling": layer.scaling,
        "prompts": PROMPTS,
        "verify": VERIFY,
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(f"MLA layer: {len(PROMPTS)} sequences, scaling {layer.scaling:.6f}", flush=True)


if __name__ == "__main__":
    main()
