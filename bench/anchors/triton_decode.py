"""Triton anchor: a split-KV decode kernel (the FlashDecoding scheme) with GQA grouping, written
for this benchmark in the manner of the Triton decode kernels of vLLM and SGLang.

K and V are packed like lean's input: rows of all sequences back to back, [tokens, KV heads, d],
f16, so ragged batches are not padded. Stage 1: every (split, KV head) program loads the query
rows of its KV head's group (group x qLen rows, as one tile, so QK^T and PV are tensor-core dots
when there are several rows), walks its split's tokens in blocks with the online softmax, and
writes its normalised output and log-sum-exp. A sequence gets ceil(len / split) splits of equal
length, so long sequences get many programs and short ones few (no fixed split count per batch).
Stage 2: one program per (sequence, KV head) merges the splits' states. The split length is
picked per case from two candidates (about 3 and 8 programs per multiprocessor) by time.

Checked against PyTorch's SDPA on the same data (per sequence, causal within the last qLen
tokens) before timing; timed on a warm GPU like the PyTorch anchor (anchor_common.py).

Writes JSON like torch_sdpa.py: {"device", "triton", "ms": {case: ms}, "aloneMs": {case: ms},
"detail": {case: {...}}}.

Usage: python3 bench/anchors/triton_decode.py bench/cases.json OUT.json [--only=SUBSTRING]
"""
import json
import math
import os
import sys

import torch
import triton
import triton.language as tl

from anchor_common import anchor_lens, kv_sets, time_warm

LOG2E = 1.4426950408889634
# "cpu" with TRITON_INTERPRET=1 runs the kernels in Triton's interpreter (a check without a GPU).
DEVICE = os.environ.get("ANCHOR_DEVICE", "cuda")


@triton.jit
def _split_kernel(
    Q, K, V, MidO, MidL,
    work_seq, work_begin, work_end, seq_len, seq_start,
    scale_log2,
    stride_qs, stride_qp, stride_qh,
    stride_kt, stride_kh,
    stride_ow, stride_oh, stride_or,
    stride_lw, stride_lh,
    GROUP: tl.constexpr, QLEN: tl.constexpr, ROWS: tl.constexpr, BLOCK_R: tl.constexpr,
    D: tl.constexpr, BLOCK_N: tl.constexpr, USE_DOT: tl.constexpr,
):
    w = tl.program_id(0)
    h = tl.program_id(1)
    b = tl.load(work_seq + w)
    t_begin = tl.load(work_begin + w)
    t_end = tl.load(work_end + w)
    length = tl.load(seq_len + b)
    base = tl.load(seq_start + b).to(tl.int64)
    r = tl.arange(0, BLOCK_R)
    d = tl.arange(0, D)
    pos = r // GROUP
    head = h * GROUP + r % GROUP
    row_ok = r < ROWS
    q = tl.load(Q + b * stride_qs + pos[:, None] * stride_qp + head[:, None] * stride_qh
                + d[None, :], mask=row_ok[:, None], other=0.0)
    # Row r sees the tokens before length - QLEN + pos + 1 (causal within the last QLEN).
    lim = length - QLEN + pos + 1
    m = tl.full([BLOCK_R], -1e30, tl.float32)
    l = tl.zeros([BLOCK_R], tl.float32)
    acc = tl.zeros([BLOCK_R, D], tl.float32)
    kv_head = K + h * stride_kh
    v_head = V + h * stride_kh
    for t0 in range(t_begin, t_end, BLOCK_N):
        t = t0 + tl.arange(0, BLOCK_N)
        t_ok = t < t_end
        offs = (base + t)[:, None] * stride_kt + d[None, :]
        k = tl.load(kv_head + offs, mask=t_ok[:, None], other=0.0)
        if USE_DOT:
            s = tl.dot(q, tl.trans(k))
        else:
            s = tl.sum(q.to(tl.float32) * k.to(tl.float32), axis=1)[None, :]
        s = s * scale_log2
        seen = t_ok[None, :] & (t[None, :] < lim[:, None])
        s = tl.where(seen, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        alpha = tl.exp2(m - m_new)
        p = tl.exp2(s - m_new[:, None])
        l = l * alpha + tl.sum(p, axis=1)
        v = tl.load(v_head + offs, mask=t_ok[:, None], other=0.0)
        if USE_DOT:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        else:
            acc = acc * alpha[:, None] + tl.sum(p.reshape(BLOCK_N, 1) * v.to(tl.float32),
                                                axis=0)[None, :]
        m = m_new
    seen_any = l > 0.0
    out = acc / tl.where(seen_any, l, 1.0)[:, None]
    lse = tl.where(seen_any, m + tl.log2(tl.where(seen_any, l, 1.0)), float("-inf"))
    tl.store(MidO + w * stride_ow + h * stride_oh + r[:, None] * stride_or + d[None, :], out,
             mask=row_ok[:, None])
    tl.store(MidL + w * stride_lw + h * stride_lh + r, lse, mask=row_ok)


@triton.jit
def _merge_kernel(
    MidO, MidL, O, seq_work_begin, seq_work_count,
    stride_ow, stride_oh, stride_or,
    stride_lw, stride_lh,
    stride_os, stride_op, stride_oh2,
    GROUP: tl.constexpr, ROWS: tl.constexpr, BLOCK_R: tl.constexpr, D: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    w0 = tl.load(seq_work_begin + b)
    n = tl.load(seq_work_count + b)
    r = tl.arange(0, BLOCK_R)
    d = tl.arange(0, D)
    row_ok = r < ROWS
    m = tl.full([BLOCK_R], -1e30, tl.float32)
    l = tl.zeros([BLOCK_R], tl.float32)
    acc = tl.zeros([BLOCK_R, D], tl.float32)
    for j in range(0, n):
        w = w0 + j
        lse = tl.load(MidL + w * stride_lw + h * stride_lh + r, mask=row_ok, other=float("-inf"))
        o = tl.load(MidO + w * stride_ow + h * stride_oh + r[:, None] * stride_or + d[None, :],
                    mask=row_ok[:, None], other=0.0)
        m_new = tl.maximum(m, lse)
        alpha = tl.exp2(m - m_new)
        p = tl.exp2(lse - m_new)
        l = l * alpha + p
        acc = acc * alpha[:, None] + p[:, None] * o
        m = m_new
    pos = r // GROUP
    head = h * GROUP + r % GROUP
    tl.store(O + b * stride_os + pos[:, None] * stride_op + head[:, None] * stride_oh2 + d[None, :],
             acc / l[:, None], mask=row_ok[:, None])


class SplitDecode:
    """The split plan of one batch shape, and the launches of both stages."""

    def __init__(self, lens, num_heads, num_kv_heads, head_dim, q_len, split_len):
        self.lens = lens
        self.h, self.kh, self.d, self.ql = num_heads, num_kv_heads, head_dim, q_len
        self.group = num_heads // num_kv_heads
        self.rows = self.group * q_len
        self.use_dot = self.rows > 1
        self.block_r = max(16, triton.next_power_of_2(self.rows)) if self.use_dot else 1
        self.block_n = 32 if head_dim > 128 else 64
        seq, begin, end, first, count = [], [], [], [], []
        for b, n in enumerate(lens):
            splits = max(1, math.ceil(n / split_len))
            first.append(len(seq))
            count.append(splits)
            for s in range(splits):
                seq.append(b)
                begin.append(s * split_len)
                end.append(min(n, (s + 1) * split_len))
        dev = DEVICE
        i32 = torch.int32
        self.work_seq = torch.tensor(seq, dtype=i32, device=dev)
        self.work_begin = torch.tensor(begin, dtype=i32, device=dev)
        self.work_end = torch.tensor(end, dtype=i32, device=dev)
        self.seq_len = torch.tensor(lens, dtype=i32, device=dev)
        starts = [0]
        for n in lens[:-1]:
            starts.append(starts[-1] + n)
        self.seq_start = torch.tensor(starts, dtype=torch.int64, device=dev)
        self.seq_work_begin = torch.tensor(first, dtype=i32, device=dev)
        self.seq_work_count = torch.tensor(count, dtype=i32, device=dev)
        self.work = len(seq)
        self.mid_o = torch.empty(self.work, self.kh, self.rows, head_dim, dtype=torch.float32,
                                 device=dev)
        self.mid_l = torch.empty(self.work, self.kh, self.rows, dtype=torch.float32, device=dev)
        self.out = torch.empty(len(lens), q_len, num_heads, head_dim, dtype=torch.float32,
                               device=dev)
        self.scale_log2 = LOG2E / math.sqrt(head_dim)

    def __call__(self, q, k, v):
        _split_kernel[(self.work, self.kh)](
            q, k, v, self.mid_o, self.mid_l,
            self.work_seq, self.work_begin, self.work_end, self.seq_len, self.seq_start,
            self.scale_log2,
            q.stride(0), q.stride(1), q.stride(2),
            k.stride(0), k.stride(1),
            self.mid_o.stride(0), self.mid_o.stride(1), self.mid_o.stride(2),
            self.mid_l.stride(0), self.mid_l.stride(1),
            GROUP=self.group, QLEN=self.ql, ROWS=self.rows, BLOCK_R=self.block_r, D=self.d,
            BLOCK_N=self.block_n, USE_DOT=self.use_dot,
            num_warps=4, num_stages=2,
        )
        _merge_kernel[(len(self.lens), self.kh)](
            self.mid_o, self.mid_l, self.out, self.seq_work_begin, self.seq_work_count,
            self.mid_o.stride(0), self.mid_o.stride(1), self.mid_o.stride(2),
            self.mid_l.stride(0), self.mid_l.stride(1),
            self.out.stride(0), self.out.stride(1), self.out.stride(2),
            GROUP=self.group, ROWS=self.rows, BLOCK_R=max(self.block_r, 1), D=self.d,
            num_warps=4,
        )
        return self.out


def reference(q, k, v, lens, q_len):
    """PyTorch's SDPA per sequence (f32 math), causal within the last q_len tokens."""
    outs = []
    start = 0
    for b, n in enumerate(lens):
        kb = k[start:start + n].permute(1, 0, 2).unsqueeze(0).float()
        vb = v[start:start + n].permute(1, 0, 2).unsqueeze(0).float()
        qb = q[b].permute(1, 0, 2).unsqueeze(0).float()  # [1, h, qlen, d]
        mask = torch.arange(n, device=DEVICE)[None, :] <= (n - q_len + torch.arange(
            q_len, device=DEVICE))[:, None]
        o = torch.nn.functional.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask,
                                                             enable_gqa=True)
        outs.append(o[0].permute(1, 0, 2))
        start += n
    return torch.stack(outs)


def time_case(c, sms):
    lens = anchor_lens(c)
    if c.get("headDimV", c["headDim"]) != c["headDim"] or c.get("kvDtype", "f16") != "f16":
        return None  # MLA and bf16 cases: not in this anchor
    h, kh, d, ql = c["numHeads"], c["numKVHeads"], c["headDim"], c.get("qLen", 1)
    tokens = sum(lens)
    kv_bytes = 2 * tokens * kh * d * 2
    sets = kv_sets(kv_bytes)
    q = torch.randn(len(lens), ql, h, d, device="cuda", dtype=torch.float16)
    kvs = [(torch.randn(tokens, kh, d, device="cuda", dtype=torch.float16),
            torch.randn(tokens, kh, d, device="cuda", dtype=torch.float16)) for _ in range(sets)]
    # Check one split plan against PyTorch on the first K/V copy.
    base = max(64, tokens * kh // (sms * 4))
    plan = SplitDecode(lens, h, kh, d, ql, base)
    got = plan(q, *kvs[0]).clone()
    ref = reference(q, *kvs[0], lens, ql)
    err = ((got - ref).norm() / ref.norm()).item()
    if not err < 1e-2:
        raise RuntimeError(f"triton output differs from PyTorch: relative L2 error {err}")
    best = None
    for per_sm in (3, 8):
        split = max(64, math.ceil(tokens * kh / (sms * per_sm) / 64) * 64)
        plan = SplitDecode(lens, h, kh, d, ql, split)
        r = time_warm(lambda i, plan=plan: plan(q, *kvs[i]), sets,
                      warm_ms=400.0 if best is None else 100.0, rounds=1)
        if best is None or r["ms"] < best[1]["ms"]:
            best = (split, r, plan)
    split, _, plan = best
    final = time_warm(lambda i: plan(q, *kvs[i]), sets, rounds=2)
    final.update({"splitLen": split, "programs": plan.work * kh, "checkRelL2": err})
    del kvs
    torch.cuda.empty_cache()
    return final


def main():
    cases = json.load(open(sys.argv[1]))["cases"]
    only = [a.split("=", 1)[1].split("|") for a in sys.argv[3:] if a.startswith("--only=")]
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    result = {"device": torch.cuda.get_device_name(), "triton": triton.__version__, "ms": {},
              "aloneMs": {}, "detail": {}}
    for c in cases:
        if only and not any(part in c["name"] for part in only[0]):
            continue
        try:
            r = time_case(c, sms)
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"{c['name']}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            r = None
        result["ms"][c["name"]] = r and r["ms"]
        result["aloneMs"][c["name"]] = r and r["aloneMs"]
        result["detail"][c["name"]] = r
        shown = "-" if r is None else (f"{r['ms']:.4f} ms (split {r['splitLen']}, "
                                       f"check {r['checkRelL2']:.1e})")
        print(f"{c['name']:24s} {shown}", flush=True)
        json.dump(result, open(sys.argv[2], "w"), indent=1)


if __name__ == "__main__":
    main()
