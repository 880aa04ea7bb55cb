"""PyTorch anchor: scaled_dot_product_attention with the flash backend on the cases of
bench/cases.json (f16, decode), on a warm GPU (see anchor_common.py: CUDA-graph replays after at
least 400 ms of back-to-back work, best of three rounds' medians; K/V copies rotated when they
fit in L2). Ragged batches are padded to their longest sequence (flash SDPA has no ragged decode
path), which PyTorch's time includes. qLen > 1 runs without a causal mask (flash SDPA's causal
mask is aligned to the top left), so it does slightly more work than decode needs.

Writes JSON: {"device", "torch", "ms": {case: best median ms back to back}, "aloneMs": {case: best
median ms of one call alone}, "detail": {case: {...}}}.

Usage: python3 bench/anchors/torch_sdpa.py bench/cases.json OUT.json [--only=SUBSTRING]
"""
import json
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from anchor_common import anchor_lens, kv_sets, time_warm


def time_case(c):
    lens = anchor_lens(c)
    if c.get("headDimV", c["headDim"]) != c["headDim"] or c.get("kvDtype", "f16") != "f16":
        return None  # MLA and bf16 cases: not in this anchor
    b, h, kh, d, ql = len(lens), c["numHeads"], c["numKVHeads"], c["headDim"], c.get("qLen", 1)
    length = max(lens)
    kv_bytes = 2 * b * kh * length * d * 2
    if kv_bytes > 80e9:
        return None
    sets = kv_sets(kv_bytes)
    q = torch.randn(b, h, ql, d, device="cuda", dtype=torch.float16)
    kvs = [(torch.randn(b, kh, length, d, device="cuda", dtype=torch.float16),
            torch.randn(b, kh, length, d, device="cuda", dtype=torch.float16)) for _ in range(sets)]
    gqa = h != kh

    def call(i):
        k, v = kvs[i]
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        result = time_warm(call, sets)
    del kvs
    torch.cuda.empty_cache()
    return result


def main():
    cases = json.load(open(sys.argv[1]))["cases"]
    only = [a.split("=", 1)[1].split("|") for a in sys.argv[3:] if a.startswith("--only=")]
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "ms": {},
              "aloneMs": {}, "detail": {}}
    for c in cases:
        if only and not any(part in c["name"] for part in only[0]):
            continue
        try:
            r = time_case(c)
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"{c['name']}: {e}", file=sys.stderr)
            r = None
        result["ms"][c["name"]] = r and r["ms"]
        result["aloneMs"][c["name"]] = r and r["aloneMs"]
        result["detail"][c["name"]] = r
        shown = "-" if r is None else f"{r['ms']:.4f} ms"
        print(f"{c['name']:24s} {shown}", flush=True)
    json.dump(result, open(sys.argv[2], "w"), indent=1)


if __name__ == "__main__":
    main()
