#!/usr/bin/env python3
"""Hugging Face reference for the Deno LLM runner (examples/llm/generate.ts).

For each named config: builds the model from the config with a fixed seed
(AutoModelForCausalLM.from_config, random weights; norm weights and biases are
perturbed too, so that a runner ignoring them fails), saves it with
save_pretrained in float32 and in bfloat16, and runs greedy `generate` on the
same prompts for both. Each prompt is generated on its own (no padding), in
float32 with eager attention and TF32 off: the bfloat16 checkpoint's reference
is its weights upcast to float32, which is what the runner computes with them.

Writes, per checkpoint folder OUT/NAME-f32 and OUT/NAME-bf16:
  config.json, model*.safetensors    the checkpoint
  hf_reference.json                  prompts, generated tokens, top-2 logit gaps
  hf_logits.safetensors              logits [prompt][step][vocab], float32

Usage: python3 examples/llm/hf_reference.py OUT [NAME ...]
(HF_SKIP_F32=1: only the bfloat16 checkpoints and references; HF_SKIP_BF16=1: only float32.)
Names: tiny, llama32_1b, qwen25_05b, qwen25_7b_1l, mistral7b_2l, mistral7b_2l_w32, gemma2_2b_2l,
gptoss_tiny, gptoss_fixture, deepseek_fixture, deepseek_plain (default: all).

gpt-oss models (GptOssForCausalLM) also get random sinks and experts large enough that the
SwiGLU clamp acts, and their hf_reference.json records what the runner assumes of transformers:
the expert tensors' names and shapes, the experts' alpha and limit, and the RoPE inv_freq and
attention scaling.
"""

import json
import os
import sys
import time

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 32.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}

# Shapes of the public models (random weights); written the way their own
# config.json files spell them (transformers 4 keys), read back by AutoConfig.
CONFIGS = {
    # CI fixture: 2 layers, GQA 16/2 (group 8, so every prefill chunk length
    # uses one attention kernel specialisation), head_dim 16, Llama 3 RoPE with
    # a short original context (all three frequency bands in use), q/k/v/o
    # biases, tied embeddings. About 0.55 MB in float32.
    "tiny": {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": 256,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": dict(LLAMA3_ROPE, factor=8.0, original_max_position_embeddings=64),
        "attention_bias": True,
        "tie_word_embeddings": True,
        "max_position_embeddings": 2048,
        "initializer_range": 0.1,
    },
    "llama32_1b": {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "vocab_size": 128256,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": LLAMA3_ROPE,
        "tie_word_embeddings": True,
        "max_position_embeddings": 131072,
    },
    "qwen25_05b": {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
        "max_position_embeddings": 32768,
        "use_sliding_window": False,
        "sliding_window": 32768,
        "max_window_layers": 21,
    },
    # Qwen2.5 7B's attention shape (GQA 7:1, head_dim 128) with 1 of its 28 layers.
    "qwen25_7b_1l": {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 1,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": False,
        "max_position_embeddings": 32768,
        "use_sliding_window": False,
        "sliding_window": 131072,
        "max_window_layers": 28,
    },
    # Mistral 7B v0.1's shape with 2 of its 32 layers (sliding window 4096,
    # which the runner does not apply; the prompts stay far below it).
    "mistral7b_2l": {
        "architectures": ["MistralForCausalLM"],
        "model_type": "mistral",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 2,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 32000,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "sliding_window": 4096,
        "tie_word_embeddings": False,
        "max_position_embeddings": 32768,
    },
}
# The same with a 32-token window: prompts of up to 61 tokens and 64 new ones run well past it,
# on both layers.
CONFIGS["mistral7b_2l_w32"] = dict(CONFIGS["mistral7b_2l"], sliding_window=32)
# Gemma 2 2B's layer shape (8 / 4 heads x 256, query_pre_attn_scalar 256, attention and final
# logit soft-caps 50 and 30, GeGLU, norms after attention and MLP) with 2 layers (windowed, then
# global), a 32-token window (its own is 4096) so the prompts run past it, vocabulary cut to 32000.
CONFIGS["gemma2_2b_2l"] = {
    "architectures": ["Gemma2ForCausalLM"],
    "model_type": "gemma2",
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "vocab_size": 32000,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "hidden_activation": "gelu_pytorch_tanh",
    "query_pre_attn_scalar": 256,
    "sliding_window": 32,
    "attn_logit_softcapping": 50.0,
    "final_logit_softcapping": 30.0,
    "tie_word_embeddings": True,
    "max_position_embeddings": 8192,
}

# gpt-oss's layer (GptOssForCausalLM: q/k/v/o biases, per-head sinks, windowed and global layers
# alternating, YaRN RoPE with gpt-oss's own settings, a mixture of experts with top-k routing and
# the clamped SwiGLU, untied embeddings) at a small size: 4 layers, hidden 256, 8 / 2 heads x 64,
# 8 experts of width 256, top 2, a 16-token window so the prompts and 64 new tokens run past it.
GPT_OSS_ROPE = {
    "rope_type": "yarn",
    "rope_theta": 150000.0,
    "factor": 32.0,
    "beta_fast": 32.0,
    "beta_slow": 1.0,
    "truncate": False,
    "original_max_position_embeddings": 4096,
}
CONFIGS["gptoss_tiny"] = {
    "architectures": ["GptOssForCausalLM"],
    "model_type": "gpt_oss",
    "hidden_size": 256,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "vocab_size": 8192,
    "rms_norm_eps": 1e-5,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "sliding_window": 16,
    "layer_types": ["sliding_attention", "full_attention"] * 2,
    "rope_parameters": GPT_OSS_ROPE,
    "max_position_embeddings": 131072,
    "attention_bias": True,
    "tie_word_embeddings": False,
    "initializer_range": 0.1,
}
# The CI fixture of gpt-oss (tests/fixtures/llm_gptoss): 2 layers, hidden 32, 4 / 2 heads x 16,
# 4 experts of width 32, top 2, an 8-token window. About 0.25 MB in float32 with its logits.
CONFIGS["gptoss_fixture"] = dict(
    CONFIGS["gptoss_tiny"],
    hidden_size=32,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    vocab_size=128,
    num_local_experts=4,
    sliding_window=8,
    layer_types=["sliding_attention", "full_attention"],
)

# The CI fixture of DeepSeek-V3 (tests/fixtures/llm_deepseek; Kimi K2 shares the architecture):
# 3 layers (the first dense), 4 heads of MLA (LoRA queries of rank 32, a latent of 32 dims, 16
# no-RoPE and 8 interleaved RoPE dims per query head, V heads of 16), 8 routed experts in 4
# groups (2 groups, then 2 experts chosen; a corrected score for the choice, sigmoid weights
# normed and scaled by 2.5), one shared expert, YaRN RoPE (factor 4 over 32 positions) with its
# softmax scale. About 0.5 MB in float32 with its logits.
CONFIGS["deepseek_fixture"] = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "hidden_size": 48,
    "intermediate_size": 64,
    "moe_intermediate_size": 16,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "n_shared_experts": 1,
    "n_routed_experts": 8,
    "routed_scaling_factor": 2.5,
    "kv_lora_rank": 32,
    "q_lora_rank": 32,
    "qk_rope_head_dim": 8,
    "qk_nope_head_dim": 16,
    "v_head_dim": 16,
    "n_group": 4,
    "topk_group": 2,
    "num_experts_per_tok": 2,
    "first_k_dense_replace": 1,
    "norm_topk_prob": True,
    "vocab_size": 128,
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "rope_scaling": {
        "type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 32,
        "beta_fast": 32,
        "beta_slow": 1,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
    },
    "rope_interleave": True,
    "tie_word_embeddings": False,
    "initializer_range": 0.1,
}

# Its other branches (tests/fixtures/llm_deepseek_plain): a full q_proj (no query LoRA, as
# DeepSeek-V2-Lite's), RoPE in halves (rope_interleave false), no shared expert, weights not
# normalised, plain RoPE; 2 layers (the first dense). About 0.2 MB.
CONFIGS["deepseek_plain"] = dict(
    CONFIGS["deepseek_fixture"],
    q_lora_rank=None,
    rope_interleave=False,
    n_shared_experts=0,
    norm_topk_prob=False,
    routed_scaling_factor=1.5,
    num_hidden_layers=2,
    vocab_size=64,
    rope_scaling=None,
)

# Prompt lengths: chunks of 16 with remainders, one exact chunk.
PROMPT_LENGTHS = {
    "tiny": [4, 11, 16, 29],
    "gptoss_fixture": [4, 11, 16, 29],
    "deepseek_fixture": [4, 11, 16, 29],
    "deepseek_plain": [5, 16, 23],
}
DEFAULT_LENGTHS = [7, 16, 29, 61]
NEW_TOKENS = {"tiny": 32, "gptoss_fixture": 32, "deepseek_fixture": 32, "deepseek_plain": 24}
DEFAULT_NEW_TOKENS = 64


def prompts_for(name, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = PROMPT_LENGTHS.get(name, DEFAULT_LENGTHS)
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in lengths]


def load_eager(load, *args, **kwargs):
    """Eager attention, and eager experts where transformers has other implementations (5.x)."""
    try:
        return load(*args, attn_implementation="eager", experts_implementation="eager", **kwargs)
    except (TypeError, ValueError, KeyError):
        return load(*args, attn_implementation="eager", **kwargs)


def make_model(name, folder):
    """Builds the model from the config (seeded) and perturbs norms and biases."""
    spec = dict(CONFIGS[name])
    spec.update(bos_token_id=None, eos_token_id=None, pad_token_id=None)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(spec, f, indent=2)
    config = AutoConfig.from_pretrained(folder)
    torch.manual_seed(1234)
    model = load_eager(AutoModelForCausalLM.from_config, config)
    model = model.to(torch.float32)
    g = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif pname.endswith(".bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
        if spec["model_type"] == "gpt_oss":
            randomize_gpt_oss(model, spec, g)
        if spec["model_type"] == "deepseek_v3":
            # The routers' score corrections (zeros when made): they steer the choice only.
            for bname, b in model.named_buffers():
                if bname.endswith("e_score_correction_bias"):
                    b.copy_(0.1 * torch.randn(b.shape, generator=g))
    return model.eval()


def randomize_gpt_oss(model, spec, g):
    """Sinks of order 1 and experts whose gate and up values reach the clamp (|x| > limit)."""
    hidden, width = spec["hidden_size"], spec["intermediate_size"]
    scales = {
        "self_attn.sinks": 1.0,
        "experts.gate_up_proj": 4.0 / hidden**0.5,
        "experts.gate_up_proj_bias": 0.1,
        "experts.down_proj": 0.5 / width**0.5,
        "experts.down_proj_bias": 0.05,
    }
    for pname, p in model.named_parameters():
        for suffix, scale in scales.items():
            if pname.endswith(suffix):
                p.copy_(scale * torch.randn(p.shape, generator=g))


def gpt_oss_facts(model):
    """What the runner assumes of transformers' gpt-oss, as this installed version has it."""
    facts = {"tensors": {}}
    for pname, p in model.named_parameters():
        if ".layers.0." in pname and ("mlp" in pname or "sinks" in pname):
            facts["tensors"][pname] = list(p.shape)
    experts = model.model.layers[0].mlp.experts
    facts["experts_alpha"] = getattr(experts, "alpha", None)
    facts["experts_limit"] = getattr(experts, "limit", None)
    facts["experts_class"] = type(experts).__name__
    facts["experts_implementation"] = getattr(model.config, "_experts_implementation", None)
    rotary = getattr(model.model, "rotary_emb", None)
    if rotary is not None:
        facts["rope_inv_freq"] = rotary.inv_freq.float().cpu().tolist()
        facts["rope_attention_scaling"] = float(rotary.attention_scaling)
    with torch.no_grad():
        x = torch.randn(5, model.config.hidden_size, generator=torch.Generator().manual_seed(5))
        mlp = model.model.layers[0].mlp
        out = mlp(x.to(next(mlp.parameters()).device)[None])
        out = out[0] if isinstance(out, tuple) else out
        facts["mlp_probe_in"] = x.tolist()
        facts["mlp_probe_out"] = out.reshape(5, -1).float().cpu().tolist()
    return facts


def greedy(model, prompts, new_tokens, device):
    """Greedy generate, one prompt at a time; tokens and raw logits per step."""
    gen = GenerationConfig(
        max_new_tokens=new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=None,
        pad_token_id=0,
        bos_token_id=None,
        output_logits=True,
        return_dict_in_generate=True,
    )
    tokens, logits = [], []
    for p in prompts:
        ids = torch.tensor([p], device=device)
        mask = torch.ones_like(ids)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen)
        t = out.sequences[0, len(p):].tolist()
        if len(t) != new_tokens or len(out.logits) != new_tokens:
            raise RuntimeError(f"generate returned {len(t)} tokens, wanted {new_tokens}")
        tokens.append(t)
        logits.append(torch.stack([l[0].float() for l in out.logits]).cpu())
    return tokens, torch.stack(logits)


def greedy_forward(model, prompts, new_tokens, device):
    """The same greedy decode as explicit forward calls with HF's KV cache (fallback)."""
    tokens, logits = [], []
    for p in prompts:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([p], device=device), use_cache=True)
            steps = [out.logits[0, -1].float()]
            t = [int(torch.argmax(steps[-1]))]
            while len(t) < new_tokens:
                out = model(
                    input_ids=torch.tensor([[t[-1]]], device=device),
                    past_key_values=out.past_key_values,
                    use_cache=True,
                )
                steps.append(out.logits[0, -1].float())
                t.append(int(torch.argmax(steps[-1])))
        tokens.append(t)
        logits.append(torch.stack(steps).cpu())
    return tokens, torch.stack(logits)


def top_gaps(logits):
    top2 = torch.topk(logits, 2, dim=-1).values
    return (top2[..., 0] - top2[..., 1]).tolist()


def run_model(name, out, device, summary):
    """Makes one model's checkpoints and references."""
    t0 = time.time()
    f32_dir = os.path.join(out, f"{name}-f32")
    bf16_dir = os.path.join(out, f"{name}-bf16")
    model = make_model(name, f32_dir)
    vocab = model.config.vocab_size
    prompts = prompts_for(name, vocab, seed=7)
    new_tokens = NEW_TOKENS.get(name, DEFAULT_NEW_TOKENS)
    skip_f32 = os.environ.get("HF_SKIP_F32") == "1"  # only the bf16 checkpoint
    if not skip_f32:
        model.save_pretrained(f32_dir)
    skip_bf16 = os.environ.get("HF_SKIP_BF16") == "1"  # only the f32 checkpoint
    for folder, rounded in ((f32_dir, False), (bf16_dir, True)):
        if rounded and skip_bf16:
            continue
        if rounded:
            # The bf16 checkpoint's reference: the saved checkpoint loaded back in float32. (Not
            # the model cast back to float32: .to() would also round the RoPE inv_freq buffer.)
            model.to(torch.bfloat16).save_pretrained(bf16_dir)
            del model
            model = load_eager(
                AutoModelForCausalLM.from_pretrained, bf16_dir, dtype=torch.float32
            )
            model = model.to(torch.float32).eval()
        elif skip_f32:
            continue
        model.to(device)
        method = "generate"
        try:
            tokens, logits = greedy(model, prompts, new_tokens, device)
        except Exception as e:  # noqa: BLE001 - keep the other models going
            print(f"{name}: generate failed ({e!r}); using forward calls", flush=True)
            method = "forward loop"
            tokens, logits = greedy_forward(model, prompts, new_tokens, device)
        model.to("cpu")
        if device == "cuda":
            torch.cuda.empty_cache()
        save_file({"logits": logits.contiguous()}, os.path.join(folder, "hf_logits.safetensors"))
        gaps = top_gaps(logits)
        ref = {
            "model": name,
            "weights": "bf16" if rounded else "f32",
            "prompts": prompts,
            "tokens": tokens,
            "top2_gaps": gaps,
            "min_top2_gap": min(min(g) for g in gaps),
            "method": method,
            "attn_implementation": "eager",
            "compute_dtype": "float32",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        }
        if model.config.model_type == "gpt_oss":
            try:
                ref["gpt_oss"] = gpt_oss_facts(model)
            except Exception as e:  # noqa: BLE001 - the facts are a record, not the check
                ref["gpt_oss"] = {"error": repr(e)}
        with open(os.path.join(folder, "hf_reference.json"), "w") as f:
            json.dump(ref, f)
    summary["models"][name] = {
        "seconds": round(time.time() - t0, 1),
        "prompt_lengths": [len(p) for p in prompts],
        "new_tokens": new_tokens,
    }
    print(f"{name}: done in {time.time() - t0:.1f} s", flush=True)
    with open(os.path.join(out, f"{name}.done"), "w") as f:
        f.write("ok\n")
    del model



def main():
    out = sys.argv[1]
    names = sys.argv[2:] or list(CONFIGS)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    summary = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "models": {},
    }
    for name in names:
        try:
            run_model(name, out, device, summary)
        except Exception as e:  # noqa: BLE001 - keep the other models going
            print(f"{name}: FAILED: {e!r}", flush=True)
            summary["models"][name] = {"error": repr(e)}
    with open(os.path.join(out, "hf_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
