"""The ceiling: the bare backbone batched in-process, no HTTP, no adapters, no batcher.

The same texts in the same order, cut into batches of the server's max batch size; each batch is tokenized,
padded to its longest row and encoded (adapterserve.engine.backbone.encode), one after another on this thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from adapterserve.engine.runner import pad
from adapterserve.engine.tokenize import tokenize

from .server import cpu_counters


@dataclass
class InprocResult:
    batch_size: int
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
            "sequences": self.sequences,
            "seconds": round(self.seconds, 3),
            "seq_per_s": round(self.seq_per_s, 2),
            "padding_ratio": round(self.padding_ratio, 4),
            "tokenize_share": round(self.tokenize_s / self.seconds, 4) if self.seconds else 0.0,
            "others_cpu_cores": self.others_cpu_cores,
            "steal_cores": self.steal_cores,
        }


def _sync(backbone) -> None:
    if backbone.device.type == "cuda":
        torch.cuda.synchronize(backbone.device)


def bare_backbone(
    backbone, texts: list[str], batch_size: int, duration: float, warmup_batches: int = 2, inputs_per_batch_fn=None
) -> InprocResult:
    """Batches of `batch_size` texts through tokenize -> pad -> encode for `duration` seconds (whole batches)."""
    pad_id = backbone.tokenizer.pad_token_id or 0
    limit = backbone.info.max_length
    i = 0

    def next_batch():
        nonlocal i
        batch = [texts[(i + j) % len(texts)] for j in range(batch_size)]
        i += batch_size
        return batch

    with torch.inference_mode():
        for _ in range(warmup_batches):
            rows = tokenize(backbone.tokenizer, next_batch(), None, limit, True)
            backbone.encode(*pad(rows, pad_id, backbone.device))
        _sync(backbone)
        n = real = padded = 0
        tok_s = 0.0
        (m0, st0), c0 = cpu_counters(), time.process_time()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < duration:
            t1 = time.perf_counter()
            rows = tokenize(backbone.tokenizer, next_batch(), None, limit, True)
            tok_s += time.perf_counter() - t1
            ids, mask, types = pad(rows, pad_id, backbone.device)
            backbone.encode(ids, mask, types)
            _sync(backbone)
            n += len(rows)
            real += sum(len(r) for r in rows)
            padded += ids.numel()
        seconds = time.perf_counter() - t0
        m1, st1 = cpu_counters()
        others = max(0.0, (m1 - m0) - (time.process_time() - c0)) / seconds
    return InprocResult(
        batch_size, n, seconds, 1 - real / max(1, padded), tok_s, round(others, 3), round((st1 - st0) / seconds, 3)
    )
