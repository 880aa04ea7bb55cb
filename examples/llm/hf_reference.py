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
Names: tiny, llama32_1b, qwen25_05b, qwen25_7b_1l, mistral7b_2l, mistral7b_2l_w32, gemma2_2b_2l
(default: all).
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

# Prompt lengths: chunks of 16 with remainders, one exact chunk.
PROMPT_LENGTHS = {"tiny": [4, 11, 16, 29]}
DEFAULT_LENGTHS = [7, 16, 29, 61]
NEW_TOKENS = {"tiny": 32}
DEFAULT_NEW_TOKENS = 64


def prompts_for(name, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = PROMPT_LENGTHS.get(name, DEFAULT_LENGTHS)
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in lengths]


def make_model(name, folder):
    """Builds the model from the config (seeded) and perturbs norms and biases."""
    spec = dict(CONFIGS[name])
    spec.update(bos_token_id=None, eos_token_id=None, pad_token_id=None)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(spec, f, indent=2)
    config = AutoConfig.from_pretrained(folder)
    torch.manual_seed(1234)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model = model.to(torch.float32)
    g = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif pname.endswith(".bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


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
            model = AutoModelForCausalLM.from_pretrained(
                bf16_dir, dtype=torch.float32, attn_implementation="eager"
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
