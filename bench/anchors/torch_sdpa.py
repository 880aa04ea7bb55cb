"""PyTorch anchor: scaled_dot_product_attention with the flash backend on the cases of
bench/cases.json (f16, decode), timed with CUDA events (median of 20 after warm-up, rotating K/V
copies when they fit in L2). Ragged batches are padded to their longest sequence (flash SDPA has
no ragged decode path), which PyTorch's time includes. Writes JSON: {case name: median ms}.

Usage: python3 bench/anchors/torch_sdpa.py bench/cases.json OUT.json
"""
import json
import math
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


def lognormal(n, median, sigma, seed):
    s = seed & 0xFFFFFFFF
    out = []

    def uniform():
        nonlocal s
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        return (s + 1) / 4294967297

    for _ in range(n):
        z = math.sqrt(-2 * math.log(uniform())) * math.cos(2 * math.pi * uniform())
        out.append(max(16, min(262144, int(math.floor(median * math.exp(sigma * z) + 0.5)))))
    return out


def expand(spec):
    if isinstance(spec, list):
        return spec
    if "x" in spec and spec.split("x")[0].isdigit():
        n, length = spec.split("x")
        return [int(length)] * int(n)
    kind, n, median, sigma, seed = spec.split(":")
    return lognormal(int(n), float(median), float(sigma), int(seed))


def time_case(c):
    lens = expand(c["seqLens"])
    b, h, kh, d, ql = len(lens), c["numHeads"], c["numKVHeads"], c["headDim"], c.get("qLen", 1)
    length = max(lens)
    kv_bytes = 2 * b * kh * length * d * 2
    if kv_bytes > 60e9:
        return None
    sets = min(8, max(1, math.ceil(150e6 / kv_bytes)))
    q = torch.randn(b, h, ql, d, device="cuda", dtype=torch.float16)
    kvs = [(torch.randn(b, kh, length, d, device="cuda", dtype=torch.float16),
            torch.randn(b, kh, length, d, device="cuda", dtype=torch.float16)) for _ in range(sets)]
    gqa = h != kh
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        for i in range(5):
            k, v = kvs[i % sets]
            torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
        times = []
        for i in range(20):
            k, v = kvs[i % sets]
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
    times.sort()
    del kvs
    torch.cuda.empty_cache()
    return (times[9] + times[10]) / 2


def main():
    cases = json.load(open(sys.argv[1]))["cases"]
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "ms": {}}
    for c in cases:
        try:
            ms = time_case(c)
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"{c['name']}: {e}", file=sys.stderr)
            ms = None
        result["ms"][c["name"]] = ms
        print(f"{c['name']:24s} {ms if ms is None else f'{ms:.4f} ms'}", flush=True)
    json.dump(result, open(sys.argv[2], "w"), indent=1)


if __name__ == "__main__":
    main()
