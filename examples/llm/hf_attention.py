#!/usr/bin/env python3
"""Hugging Face's attention variants on random decode batches, for attention_check.ts.

gpt-oss-shaped attention (64 query / 8 KV heads x 64, sinks, 128-token sliding
windows on alternate layers) through transformers' gpt_oss eager attention, and
Gemma 2-shaped attention (8 / 4 heads x 256, query_pre_attn_scalar 256, logit
soft-cap 50, 4096-token windows on alternate layers) through its gemma2 eager
attention. Masks come from transformers' own mask functions
(masking_utils.causal_mask_function, sliding_window_overlay), so the window
semantics are transformers'. Computed in float32 on the GPU (TF32 off).

Writes OUT/cases.json (one entry per group: shape, variant, sequence lengths)
and OUT/tensors.safetensors: per group q [seq][qpos][head][dim],
k and v [token][kvHead][dim] (sequences concatenated), out like q, sinks [head].

Usage: python3 examples/llm/hf_attention.py OUT
"""

import inspect
import json
import os
import sys
import types

import torch
import transformers
from safetensors.torch import save_file
from transformers import masking_utils


def allowed_mask(length, q_len, window):
    """Boolean [q_len, length]: which tokens the last q_len positions attend (transformers' functions)."""
    q_idx = torch.arange(length - q_len, length)[:, None]
    kv_idx = torch.arange(length)[None, :]
    zero = torch.tensor(0)
    fn = masking_utils.causal_mask_function
    if window:
        fn = masking_utils.and_masks(fn, masking_utils.sliding_window_overlay(window))
    return fn(zero, zero, q_idx, kv_idx).expand(q_len, length)


def call(fn, module, q, k, v, mask, **kwargs):
    """Calls an eager attention function with the keyword arguments it takes."""
    params = inspect.signature(fn).parameters
    accepted = {n: x for n, x in kwargs.items() if n in params}
    out = fn(module, q, k, v, mask, **accepted)
    return out[0] if isinstance(out, tuple) else out


def run_group(name, spec, device, g):
    from transformers.models.gemma2 import modeling_gemma2
    from transformers.models.gpt_oss import modeling_gpt_oss

    H, KV, D, q_len = spec["numHeads"], spec["numKVHeads"], spec["headDim"], spec["qLen"]
    lens = spec["seqLens"]
    sinks = (2 * torch.randn(H, generator=g)).to(device) if spec.get("sinks") else None
    qs, ks, vs, outs = [], [], [], []
    for length in lens:
        q = torch.randn(1, H, q_len, D, generator=g) * spec["qAmplitude"]
        k = torch.randn(1, KV, length, D, generator=g)
        v = torch.randn(1, KV, length, D, generator=g)
        q, k, v = q.to(device), k.to(device), v.to(device)
        allowed = allowed_mask(length, q_len, spec.get("slidingWindow")).to(device)
        mask = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)[None, None]
        module = types.SimpleNamespace(
            num_key_value_groups=H // KV,
            training=False,
            sinks=sinks,
            scaling=spec["scale"],
            head_dim=D,
            attention_dropout=0.0,
            attn_logit_softcapping=spec.get("logitsSoftCap"),
            config=types.SimpleNamespace(attention_dropout=0.0),
        )
        fn = (modeling_gpt_oss if spec["model"] == "gpt_oss" else modeling_gemma2).eager_attention_forward
        with torch.no_grad():
            out = call(
                fn, module, q, k, v, mask,
                dropout=0.0, scaling=spec["scale"], softcap=spec.get("logitsSoftCap"),
            )
        if out.shape[1] == H and out.shape[2] == q_len:  # [1, H, qLen, D]: not transposed
            out = out.transpose(1, 2)
        qs.append(q[0].transpose(0, 1).reshape(-1))  # [qpos][head][dim]
        ks.append(k[0].transpose(0, 1).reshape(-1))  # [token][kvHead][dim]
        vs.append(v[0].transpose(0, 1).reshape(-1))
        outs.append(out[0].reshape(-1).float())
    tensors = {
        f"{name}.q": torch.cat(qs),
        f"{name}.k": torch.cat(ks),
        f"{name}.v": torch.cat(vs),
        f"{name}.out": torch.cat(outs),
    }
    if sinks is not None:
        tensors[f"{name}.sinks"] = sinks
    return {n: t.detach().cpu().contiguous() for n, t in tensors.items()}


GPT_OSS = dict(model="gpt_oss", numHeads=64, numKVHeads=8, headDim=64, scale=0.125, sinks=True, qAmplitude=1.0)
GEMMA2 = dict(model="gemma2", numHeads=8, numKVHeads=4, headDim=256, scale=256 ** -0.5, logitsSoftCap=50.0, qAmplitude=8.0)
GROUPS = {
    "gpt_oss_sliding_q1": dict(GPT_OSS, slidingWindow=128, qLen=1, seqLens=[1, 77, 128, 129, 300, 1000, 4096]),
    "gpt_oss_full_q1": dict(GPT_OSS, qLen=1, seqLens=[1, 77, 128, 129, 300, 1000, 4096]),
    "gpt_oss_sliding_q4": dict(GPT_OSS, slidingWindow=128, qLen=4, seqLens=[4, 130, 700, 2048]),
    "gemma2_sliding_q1": dict(GEMMA2, slidingWindow=4096, qLen=1, seqLens=[1, 300, 4096, 4097, 5000]),
    "gemma2_full_q1": dict(GEMMA2, qLen=1, seqLens=[1, 300, 4096, 4097, 5000]),
    "gemma2_sliding_q4": dict(GEMMA2, slidingWindow=4096, qLen=4, seqLens=[4, 4100]),
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(2026)
    tensors, cases = {}, {}
    for name, spec in GROUPS.items():
        try:
            tensors.update(run_group(name, spec, device, g))
            cases[name] = spec
        except Exception as e:  # noqa: BLE001 - keep the other groups going
            print(f"{name}: FAILED: {e!r}", flush=True)
            cases[name] = dict(spec, error=repr(e))
    save_file(tensors, os.path.join(out, "tensors.safetensors"))
    meta = {"transformers": transformers.__version__, "torch": torch.__version__, "device": device}
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"meta": meta, "groups": cases}, f, indent=1)
    print(f"attention groups: {sum('error' not in c for c in cases.values())} of {len(cases)}", flush=True)


if __name__ == "__main__":
    main()
