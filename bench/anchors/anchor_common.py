"""Shared by the Python anchors: the cases of bench/cases.json expanded as bench/bench_cases.ts
does, and timing on a warm GPU.

Timing: the calls are captured in a CUDA graph (so launch gaps do not count), the graph is
replayed back to back for at least `warm_ms` of GPU time, and the timed replays follow on the
same stream with no gap, each between CUDA events. An idle GPU runs at a low clock (an H200's SM
clock idles at 345 MHz and runs at 1980 MHz under load), so without the warm-up a short timed
burst measures the clock ramp. Several rounds are timed; the best round's median is reported.

Two times per case, as the benchmark reports lean's: `ms`, per call over a replayed graph of
`inner` calls back to back (about 2 ms of work at the warm rate: a graph sized from a cold call
is captured again once the warm rate is known), and `aloneMs`, one call between two events
(a graph of one call), like a lean pass timed alone between its timestamps.
"""
import math

import torch


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
    """seqLens of a case: a list, "NxL", or "lognormal:N:median:sigma:seed"."""
    if isinstance(spec, list):
        return spec
    if "x" in spec and spec.split("x")[0].isdigit():
        n, length = spec.split("x")
        return [int(length)] * int(n)
    kind, n, median, sigma, seed = spec.split(":")
    return lognormal(int(n), float(median), float(sigma), int(seed))


def anchor_lens(c):
    """The sequence lengths an anchor reads for a case: with a sliding window only the tokens the
    window keeps (its last W + qLen - 1), as a server hands its kernel a window's slice of the
    cache. The anchors have no attention sinks or logit soft-cap: cases with them are timed
    without (each costs a few operations per score, beside reading the score's K and V)."""
    lens = expand(c["seqLens"])
    window = c.get("slidingWindow")
    if window:
        lens = [min(n, window + c.get("qLen", 1) - 1) for n in lens]
    return lens


def kv_sets(kv_bytes):
    """Copies of K and V to rotate so that a cache smaller than L2 is not timed from L2."""
    return min(8, max(1, math.ceil(150e6 / kv_bytes))) if kv_bytes < 100e6 else 1


def _elapsed(fn_block):
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    fn_block()
    end.record()
    return start, end


def _timed(replays, runs):
    """Enqueues `runs` replays (taking `replays` in turn), each between two events; returns the
    event pairs."""
    pairs = []
    for i in range(runs):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        replays[i % len(replays)]()
        b.record()
        pairs.append((a, b))
    return pairs


def _median(sorted_ms):
    return (sorted_ms[(len(sorted_ms) - 1) // 2] + sorted_ms[len(sorted_ms) // 2]) / 2


def _capture(call, sets, inner, stream):
    """A graph of `inner` calls back to back (rotating the K/V copies) and one single-call graph
    per copy."""
    graph = torch.cuda.CUDAGraph()
    # One single-call graph per K/V copy, replayed in turn, so lone calls rotate the copies as
    # the graph of many calls does (a cache below L2's size is not timed from L2).
    singles = [torch.cuda.CUDAGraph() for _ in range(sets)]
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        with torch.cuda.graph(graph, stream=stream):
            for j in range(inner):
                call(j % sets)
        for i, single in enumerate(singles):
            with torch.cuda.graph(single, stream=stream):
                call(i)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    return graph, singles


def _calls_per_replay(replay_ms, per_call_ms):
    return max(1, min(256, math.ceil(replay_ms / max(1e-4, per_call_ms))))


def time_warm(call, sets, warm_ms=400.0, runs=20, rounds=3, replay_ms=2.0):
    """Times `call(i)` (i picks the K/V copy) on a warm GPU. Returns a dict with the best round's
    median ms per call back to back (`ms`) and per call alone (`aloneMs`), every round's
    median, the minimum, and the warm-up's GPU ms."""
    for i in range(3):
        call(i % sets)
    torch.cuda.synchronize()
    s, e = _elapsed(lambda: call(0))
    torch.cuda.synchronize()
    first = max(1e-3, s.elapsed_time(e))
    # A call timed cold runs at a low clock, so the graph it sizes holds too few calls: after the
    # warm-up the graph is sized again from the warm rate and captured again if it should hold
    # more (as the benchmark sizes lean's back-to-back passes), so a replay's fixed cost is
    # spread over about `replay_ms` of warm work.
    inner = _calls_per_replay(replay_ms, first)
    stream = torch.cuda.Stream()
    graph, singles = _capture(call, sets, inner, stream)
    # The cold replay time bounds the warm one from above: warm until the measured warm-up
    # reaches warm_ms, raising the replay count from what was measured.
    s, e = _elapsed(graph.replay)
    torch.cuda.synchronize()
    per_replay = max(1e-3, s.elapsed_time(e))
    warm = None
    medians = []
    samples = []
    attempts = 4
    for attempt in range(attempts):
        reps = max(1, math.ceil(1.1 * warm_ms / per_replay))
        ws, we = _elapsed(lambda: [graph.replay() for _ in range(reps)])
        # One more warm replay, timed on its own: the warm rate per call.
        ls, le = _elapsed(graph.replay)
        events = []
        alone_events = []
        for _ in range(rounds):
            events.append(_timed([graph.replay], runs))
            alone_events.append(_timed([single.replay for single in singles], runs))
        torch.cuda.synchronize()
        warm = ws.elapsed_time(we)
        per_replay = max(1e-3, warm / reps)
        sized = _calls_per_replay(replay_ms, ls.elapsed_time(le) / inner)
        if sized > inner and attempt + 1 < attempts:
            # Too few calls per replay for the warm rate: capture again and time again.
            del graph, singles
            graph, singles = _capture(call, sets, sized, stream)
            per_replay = per_replay * sized / inner
            inner = sized
            continue
        if warm >= warm_ms:
            break
    for round_events in events:
        ms = sorted(a.elapsed_time(b) / inner for a, b in round_events)
        samples.extend(ms)
        medians.append(_median(ms))
    alone_medians = [_median(sorted(a.elapsed_time(b) for a, b in r)) for r in alone_events]
    del graph, singles
    return {
        "ms": min(medians),
        "aloneMs": min(alone_medians),
        "aloneRoundMedians": alone_medians,
        "roundMedians": medians,
        "minMs": min(samples),
        "warmMs": warm,
        "callsPerReplay": inner,
    }
