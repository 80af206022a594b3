"""What p99 latency at half load a server on this CPU could reach at best: a simulation of the batcher's queue.

`make bench` measures p99 at half of the peak against an idle request's p50 (target <= 4x). This model says how
much of the gap is queueing that no server code can remove. Requests arrive as a Poisson process; `workers`
inference workers each run one pass at a time; a worker that frees up takes its share of the queued rows, as
`engine/batcher.py` does; a pass costs `per_pass_ms` plus `ms_per_token` per real token (CPU passes grow with
their tokens, so batching saves only the per-pass part), times `inflation` under load (two passes at once share
caches and memory bandwidth, and the event loop preempts them); every request also spends `latency_ms` outside
the passes (HTTP, tokenization, thread handoffs) that uses no worker. Padding is left out, which flatters the
model. An idle request is one pass of one row with no inflation. The peak is every worker on passes of
`pass_tokens` tokens, and half load is half of it.

`python -m benchmarks.queueing` fits the pass cost in-process (the default backbone on the onnx runtime, one
thread, passes of 1 and of 16 rows of the benchmark's texts) and prints the model's ratio over a grid of the
serving overheads the model adds to it.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
import time
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Model:
    ms_per_token: float
    per_pass_ms: float = 0.0
    inflation: float = 1.0
    latency_ms: float = 0.0
    workers: int = 2
    max_batch_size: int = 64
    pass_tokens: int = 512  # the runner's CPU limit on real tokens per pass (settings.pass_tokens)

    def pass_ms(self, tokens: int, loaded: bool = True) -> float:
        return (self.per_pass_ms + self.ms_per_token * tokens) * (self.inflation if loaded else 1.0)

    def capacity(self, lengths: list[int]) -> float:
        """Rows per second with every worker busy on passes as full as the runner makes them (the peak)."""
        mean = statistics.fmean(lengths)
        rows = max(1.0, self.pass_tokens / mean)
        return 1000 * self.workers * rows / self.pass_ms(round(rows * mean))

    def idle_p50(self, lengths: list[int]) -> float:
        return statistics.median(self.pass_ms(n, loaded=False) for n in lengths) + self.latency_ms


def simulate(model: Model, lengths: list[int], rate: float, requests: int = 100_000, seed: int = 0) -> list[float]:
    """Latencies (ms) of `requests` Poisson arrivals at `rate` per second, one row each, lengths drawn from
    `lengths`."""
    rng = random.Random(seed)
    t, arrivals = 0.0, []
    for _ in range(requests):
        t += rng.expovariate(rate / 1000)
        arrivals.append((t, rng.choice(lengths)))
    free = [(0.0, w) for w in range(model.workers)]  # (time the worker frees up, worker)
    queue: list[tuple[float, int]] = []
    latencies: list[float] = []
    i = 0
    while i < len(arrivals) or queue:
        at, w = heapq.heappop(free)
        if not queue:
            at = max(at, arrivals[i][0])
        while i < len(arrivals) and arrivals[i][0] <= at:
            queue.append(arrivals[i])
            i += 1
        share = min(model.max_batch_size, math.ceil(len(queue) / model.workers))  # Batcher._share
        batch, queue = queue[:share], queue[share:]
        end = at + model.pass_ms(sum(n for _, n in batch))
        latencies += [end - a + model.latency_ms for a, _ in batch]
        heapq.heappush(free, (end, w))
    return latencies


def quantile(xs: list[float], q: float) -> float:
    """As the benchmark computes a measured phase's percentiles (load.quantile), on unsorted values."""
    from .load import quantile as sorted_quantile

    return sorted_quantile(sorted(xs), q)


def half_load_ratio(model: Model, lengths: list[int], rate: float | None = None, **kw) -> dict:
    """p50/p99 at `rate` requests per second (default: half the model's peak), and p99 over the idle p50."""
    lat = simulate(model, lengths, rate or 0.5 * model.capacity(lengths), **kw)
    idle = model.idle_p50(lengths)
    p99 = quantile(lat, 0.99)
    return {"p50_ms": quantile(lat, 0.5), "p99_ms": p99, "idle_p50_ms": idle, "ratio": p99 / idle}


def load(backbone: str | None = None):
    """The backbone on the CPU in float32, and the onnx runtime on one thread: what the pass cost is fitted on."""
    import torch

    from adapterserve.engine.backbone import load_backbone
    from adapterserve.engine.runtime import RUNTIMES
    from adapterserve.settings import default_backbone

    torch.set_num_threads(1)
    bb = load_backbone(backbone or default_backbone(), "cpu", "float32")
    return bb, RUNTIMES["onnx"](bb, 1)


def token_lengths(bb, texts: list[str]) -> list[int]:
    """Tokens per text as the service counts them (its tokenizer call and length limit)."""
    from adapterserve.engine.tokenize import tokenize

    return [len(r) for r in tokenize(bb.tokenizer, texts, None, bb.info.max_length, True)]


def measure_pass_cost(bb, runtime, texts: list[str], rows_per_pass: int = 16) -> tuple[float, float]:
    """In-process pass cost (`load`), fitted as `per_pass_ms + ms_per_token * tokens` to one-row passes and to
    passes of `rows_per_pass` rows of similar length (runtimes.sorted_halves, as the runner groups them)."""
    import torch

    from adapterserve.adapters.batch import AdapterBatch
    from adapterserve.engine.runner import pad
    from adapterserve.engine.tokenize import tokenize

    from .runtimes import sorted_halves

    rows = tokenize(bb.tokenizer, texts, None, bb.info.max_length, True)
    pad_id = bb.tokenizer.pad_token_id or 0
    groups = [[r] for r in rows] + sorted_halves(rows, rows_per_pass)

    def one(group) -> float:
        ids, mask, types = pad(group, pad_id, bb.device)
        plan = AdapterBatch.from_row_adapters([None] * len(group))
        start = time.perf_counter()
        with torch.inference_mode():
            runtime.encode(ids, mask, types, plan)
        return time.perf_counter() - start

    for g in groups[:10]:
        one(g)
    points = [(len(g) * max(len(r) for r in g), 1000 * one(g)) for g in groups]  # (padded tokens, ms)
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - slope * mx, slope


def explain_half_load(
    per_pass_ms: float, ms_per_token: float, lengths: list[int], half: dict, idle_p50_ms: float, requests: int = 100_000
) -> dict:
    """The model at the rate of a measured half-load phase (`half`: make bench's open-loop record at 50%), with the
    in-process pass cost, once at that speed and once as slow as the phase's passes were (its `ms_per_batch` over
    the in-process time of `mean_batch` rows). The time outside the passes is set so that the model's idle request
    takes what the measured one took."""
    alone = Model(ms_per_token, per_pass_ms)
    latency = max(0.0, idle_p50_ms - alone.idle_p50(lengths))
    alone = replace(alone, latency_ms=latency)
    tokens = round(half["mean_batch"] * statistics.fmean(lengths))
    inflation = max(1.0, half["ms_per_batch"] / alone.pass_ms(tokens, loaded=False))
    loaded = replace(alone, inflation=inflation)
    rate = half["offered_rps"]
    return {
        "per_pass_ms": round(per_pass_ms, 3),
        "ms_per_token": round(ms_per_token, 4),
        "latency_ms": round(latency, 2),
        "inflation": round(inflation, 3),
        "alone": half_load_ratio(alone, lengths, rate, requests=requests),
        "loaded": half_load_ratio(loaded, lengths, rate, requests=requests),
    }


def main(argv: list[str] | None = None) -> None:
    from .corpus import load_texts

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timed", type=int, default=320, help="texts timed in-process")
    p.add_argument("--texts", type=int, default=5000, help="texts whose token counts the simulated requests draw")
    p.add_argument("--pass-cost", default=None, help="PER_PASS_MS,MS_PER_TOKEN: skip the measurement")
    p.add_argument("--rate", type=float, default=None, help="req/s (default: half of each model's peak)")
    p.add_argument("--requests", type=int, default=100_000)
    args = p.parse_args(argv)
    texts, _ = load_texts(args.texts, 0)
    bb, runtime = load()
    if args.pass_cost:
        per_pass, per_token = (float(x) for x in args.pass_cost.split(","))
    else:
        per_pass, per_token = measure_pass_cost(bb, runtime, texts[: args.timed])
    lengths = token_lengths(bb, texts)
    print(
        f"pass cost in-process: {per_pass:.2f} ms + {per_token:.4f} ms per token; {statistics.fmean(lengths):.1f}"
        f" tokens per text (p99 {quantile(lengths, 0.99)})"
    )
    print(
        "| added CPU per pass, ms | inflation under load | latency outside passes, ms | peak req/s | idle p50 ms "
        "| p99 at half load, ms | ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    # The last rows: the server's own figures at half load (docs/runtimes.md, eighth round), 2.2 ms of Python per
    # pass beyond the in-process run, passes 1.16x slower in CPU time and 1.35x in wall time.
    grid = ((0, 1.0, 0), (0, 1.0, 4), (1.5, 1.0, 4), (2.2, 1.16, 4), (2.2, 1.35, 4))
    for extra, inflation, latency in grid:
        m = Model(per_token, per_pass + extra, inflation, latency)
        r = half_load_ratio(m, lengths, args.rate, requests=args.requests)
        print(
            f"| {extra} | {inflation} | {latency} | {m.capacity(lengths):.0f} | {r['idle_p50_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['ratio']:.2f} |"
        )


if __name__ == "__main__":
    main()
