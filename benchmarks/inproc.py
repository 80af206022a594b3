"""The ceiling: the best plain transformers does on the same texts, in-process, no HTTP, no adapters.

HF `AutoModel` with SDPA attention, tokenization included (the fast tokenizer, padding to each batch's
longest row), at the server's thread count, batches of `batch_size` texts, one after another on this
thread. Two orders of the same texts: as they arrive, and sorted by length (the least padding any batcher
could reach). The served rate is compared with the better of the two.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .server import cpu_counters

ORDERS = ("arrival", "sorted")


@dataclass
class InprocResult:
    batch_size: int
    order: str
    threads: int
    sequences: int
    seconds: float
    padding_ratio: float  # padded positions / all positions, over every batch
    tokenize_s: float
    others_cpu_cores: float | None = None  # CPU other processes used meanwhile
    steal_cores: float | None = None  # CPU the hypervisor gave to other guests meanwhile

    @property
    def seq_per_s(self) -> float:
        return self.sequences / self.seconds if self.seconds else 0.0

    def summary(self) -> dict:
        return {
            "batch_size": self.batch_size,
            "order": self.order,
            "threads": self.threads,
            "sequences": self.sequences,
            "seconds": round(self.seconds, 3),
            "seq_per_s": round(self.seq_per_s, 2),
            "padding_ratio": round(self.padding_ratio, 4),
            "tokenize_share": round(self.tokenize_s / self.seconds, 4) if self.seconds else 0.0,
            "others_cpu_cores": self.others_cpu_cores,
            "steal_cores": self.steal_cores,
        }


def load_hf(path: str, device: str = "cpu"):
    """The plain transformers model and tokenizer, as a new user loads them."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(path, attn_implementation="sdpa").eval().to(device)
    return model, AutoTokenizer.from_pretrained(path)


WINDOW_BATCHES = 8  # "sorted" sorts each window of this many batches: both orders cover the same texts


def ordered(texts: list[str], order: str, window: int) -> list[str]:
    """The texts as they arrive, or sorted by length (characters: what a client can see) within each window of
    `window` texts, so that after any whole number of windows both orders have run exactly the same texts."""
    if order != "sorted":
        return list(texts)
    return [t for i in range(0, len(texts), window) for t in sorted(texts[i : i + window], key=len)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hf_ceiling(
    model,
    tokenizer,
    texts: list[str],
    batch_size: int,
    duration: float,
    order: str = "arrival",
    threads: int = 0,
    max_length: int = 512,
    warmup_batches: int = 2,
) -> InprocResult:
    """Batches of `batch_size` texts through tokenizer -> AutoModel for `duration` seconds (whole batches)."""
    if threads:
        torch.set_num_threads(threads)
    device = next(model.parameters()).device
    window = batch_size * WINDOW_BATCHES
    seq = ordered(texts[: len(texts) // window * window or len(texts)], order, window)
    batches = [seq[i : i + batch_size] for i in range(0, len(seq), batch_size)]
    i = 0

    def step() -> tuple[int, int, int, float]:
        nonlocal i
        batch = batches[i % len(batches)]
        i += 1
        t1 = time.perf_counter()
        enc = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        tok = time.perf_counter() - t1
        model(**{k: v.to(device) for k, v in enc.items()})
        _sync(device)
        return len(batch), int(enc["attention_mask"].sum()), enc["input_ids"].numel(), tok

    with torch.inference_mode():
        for _ in range(warmup_batches):
            step()
        i = 0  # measured windows start at the first text
        n = real = padded = 0
        tok_s = 0.0
        (m0, st0), c0 = cpu_counters(), time.process_time()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < duration or i % WINDOW_BATCHES:  # whole windows only
            rows, r, p, t = step()
            n, real, padded, tok_s = n + rows, real + r, padded + p, tok_s + t
        seconds = time.perf_counter() - t0
        m1, st1 = cpu_counters()
        others = max(0.0, (m1 - m0) - (time.process_time() - c0)) / seconds
    return InprocResult(
        batch_size,
        order,
        torch.get_num_threads(),
        n,
        seconds,
        1 - real / max(1, padded),
        tok_s,
        round(others, 3),
        round((st1 - st0) / seconds, 3),
    )


def ceiling(path: str, texts: list[str], batch_size: int, duration: float, threads: int, device: str = "cpu") -> dict:
    """Both orders, interleaved in halves (arrival, sorted, arrival, sorted) so that a change in the machine's
    load meanwhile hits both alike; the figure of each order is over its two halves."""
    model, tokenizer = load_hf(path, device)
    parts: dict[str, list[InprocResult]] = {o: [] for o in ORDERS}
    for _ in range(2):
        for order in ORDERS:
            parts[order].append(hf_ceiling(model, tokenizer, texts, batch_size, duration / 2, order, threads))
    out: dict = {}
    for order, rs in parts.items():
        merged = InprocResult(
            batch_size,
            order,
            rs[0].threads,
            sum(r.sequences for r in rs),
            sum(r.seconds for r in rs),
            sum(r.padding_ratio for r in rs) / len(rs),
            sum(r.tokenize_s for r in rs),
            round(sum(r.others_cpu_cores or 0 for r in rs) / len(rs), 3),
            round(sum(r.steal_cores or 0 for r in rs) / len(rs), 3),
        )
        out[order] = merged.summary()
    best = max(ORDERS, key=lambda o: out[o]["seq_per_s"])
    return {**out[best], "best_order": best, "orders": out}
