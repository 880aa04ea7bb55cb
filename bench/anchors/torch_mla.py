"""PyTorch anchor for the MLA cases of bench/cases.json (K rows of 576, V rows of 512, one latent
KV head shared by every query head; f16), timed as torch_sdpa.py times its cases (anchor_common.py:
CUDA-graph replays after at least 400 ms of back-to-back work, best of three rounds' medians).
PyTorch's flash SDPA takes K and V of one head dim only, so two forms are timed and the faster
kept per case, both on the tensor cores:
  - "efficient": scaled_dot_product_attention with the memory-efficient backend (its V may have
    a head dim of its own), the one KV head broadcast to every query head (enable_gqa);
  - "matmul": the absorbed decode as two batched products, scores = q K^T (f16 in, f32 softmax),
    out = p V, the latent K/V read once per sequence for all heads.
Cases with "vFromK" (MLA's latent cache) take V as a view of K's first headDimV dims, so only K
is stored and read.
Each form is checked against a float64 result on the case's first 1024 tokens.

Writes JSON: {"device", "torch", "ms": {case: best ms back to back}, "aloneMs": {...},
"detail": {case: {"form": ..., per form: {...}}}}.

Usage: python3 bench/anchors/torch_mla.py bench/cases.json OUT.json [--only=SUBSTRING[|...]]
"""
import json
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from anchor_common import expand, kv_sets, time_warm


def forms(h, d, dv):
    scale = 1.0 / d ** 0.5

    def efficient(q, k, v):
        # q (b, h, 1, d); k (b, 1, L, d); v (b, 1, L, dv)
        with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
            return torch.nn.functional.scaled_dot_product_attention(
                q, k.expand(-1, h, -1, -1), v.expand(-1, h, -1, -1), scale=scale)

    def matmul(q, k, v):
        s = torch.matmul(q.squeeze(2), k.squeeze(1).transpose(1, 2)).float() * scale
        p = torch.softmax(s, dim=-1).to(torch.float16)
        return torch.matmul(p, v.squeeze(1)).unsqueeze(2)

    return {"efficient": efficient, "matmul": matmul}


def check(fn, h, d, dv):
    """Relative L2 error of a form against float64 on 1024 tokens (two sequences)."""
    q = torch.randn(2, h, 1, d, device="cuda", dtype=torch.float16)
    k = torch.randn(2, 1, 1024, d, device="cuda", dtype=torch.float16)
    v = torch.randn(2, 1, 1024, dv, device="cuda", dtype=torch.float16)
    got = fn(q, k, v).double()
    s = torch.matmul(q.double().squeeze(2), k.double().squeeze(1).transpose(1, 2)) / d ** 0.5
    ref = torch.matmul(torch.softmax(s, dim=-1), v.double().squeeze(1)).unsqueeze(2)
    return float((got - ref).norm() / ref.norm())


def time_case(c):
    d, dv = c["headDim"], c.get("headDimV", c["headDim"])
    if dv == d or c.get("kvDtype", "f16") != "f16" or c["numKVHeads"] != 1 or c.get("qLen", 1) != 1:
        return None  # MLA (one latent KV head, qLen 1) in f16 only
    lens = expand(c["seqLens"])
    b, h, length = len(lens), c["numHeads"], max(lens)
    latent = c.get("vFromK", False)  # V is the first dv dims of each K row: a view of K
    kv_bytes = b * length * (d + (0 if latent else dv)) * 2
    sets = kv_sets(kv_bytes)
    q = torch.randn(b, h, 1, d, device="cuda", dtype=torch.float16)
    ks = [torch.randn(b, 1, length, d, device="cuda", dtype=torch.float16) for _ in range(sets)]
    kvs = [(k, k[..., :dv] if latent else
            torch.randn(b, 1, length, dv, device="cuda", dtype=torch.float16)) for k in ks]
    detail = {}
    for name, fn in forms(h, d, dv).items():
        try:
            err = check(fn, h, d, dv)
            r = time_warm(lambda i, fn=fn: fn(q, *kvs[i]), sets)
            detail[name] = {**r, "relL2": err}
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"{c['name']} {name}: {e}", file=sys.stderr)
    del kvs, ks
    torch.cuda.empty_cache()
    if not detail:
        return None
    best = min(detail, key=lambda n: detail[n]["ms"])
    return {"ms": detail[best]["ms"], "aloneMs": detail[best]["aloneMs"], "form": best, **detail}


def main():
    cases = json.load(open(sys.argv[1]))["cases"]
    only = [a.split("=", 1)[1].split("|") for a in sys.argv[3:] if a.startswith("--only=")]
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "ms": {},
              "aloneMs": {}, "detail": {}}
    for c in cases:
        if only and not any(part in c["name"] for part in only[0]):
            continue
        r = time_case(c)
        if r is None:
            continue
        result["ms"][c["name"]] = r["ms"]
        result["aloneMs"][c["name"]] = r["aloneMs"]
        result["detail"][c["name"]] = r
        errs = ", ".join(f"{n} {r[n]['ms']:.4f} ms (relL2 {r[n]['relL2']:.1e})"
                         for n in ("efficient", "matmul") if n in r)
        print(f"{c['name']:24s} {r['ms']:.4f} ms ({r['form']}); {errs}", flush=True)
    json.dump(result, open(sys.argv[2], "w"), indent=1)


if __name__ == "__main__":
    main()
