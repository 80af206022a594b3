"""Runtimes: what runs the frozen backbone's encoder for a batch. One registry, chosen by ADAPTERSERVE_RUNTIME.

- "torch": PyTorch eager (Backbone.encode): every adapter kind, every device and dtype.
- "onnx": ONNX Runtime on the CPU (the CPU default), the encoder exported once as a graph (engine/onnx_graph.py)
  whose extra inputs carry per-row adapter weights, so mixed batches run in one graph call and adapters come and go
  without a new export. Batches with something the graph cannot express run on the torch path.

Every runtime takes the same `AdapterBatch` and answers (hidden [B, T, H], pooled [B, H] or None), and says what a
padding position costs next to a real token (`pad_cost`), which decides when the runner cuts a batch by length.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from ..adapters.batch import AdapterBatch

log = logging.getLogger(__name__)


class TorchRuntime:
    name = "torch"

    def __init__(self, backbone, threads: int = 1, int8: bool = False, cache: str = ""):
        if int8:
            raise RuntimeError(
                "ADAPTERSERVE_DTYPE=int8 runs on the onnx runtime; set ADAPTERSERVE_RUNTIME=onnx or auto"
            )
        self.backbone = backbone

    def pad_cost(self, tokens: int) -> float:
        """A padding position costs what a real token does: eager runs every layer on [B, T, H]."""
        return 1.0

    def encode(self, ids, mask, types, adapters: AdapterBatch):
        return self.backbone.encode(ids, mask, types, adapters=adapters)


def _onnx(backbone, threads: int = 1, int8: bool = False, cache: str = ""):
    from .onnx_runtime import OnnxRuntime

    return OnnxRuntime(backbone, threads, int8, cache)


RUNTIMES: dict[str, Callable] = {"torch": TorchRuntime, "onnx": _onnx}
# Measured on the 2-core CI machine, idle, on the passes the server makes (about 14 rows; docs/runtimes.md): the onnx
# runtime ran MiniLM 1.16-1.23x faster than torch eager with and without adapters, and served /v1/embeddings faster
# (docs/benchmarks.md); so it is the CPU default. CUDA runs torch.
DEFAULT = {"cpu": "onnx", "cuda": "torch"}


def make_runtime(name: str, backbone, threads: int = 1, int8: bool = False, cache: str = ""):
    """The runtime `name` ("auto": the measured default for the device; the onnx runtime for int8). An fp32 runtime
    that cannot load on this machine falls back to torch with a log line saying why; int8 never falls back (a
    silent fp32 server would not be what was asked for): it fails at start-up with the reason."""
    if name == "auto":
        name = "onnx" if int8 else DEFAULT[backbone.device.type]
        if name == "onnx" and not int8 and backbone.dtype != torch.float32:
            name = "torch"  # the graph runs float32: a float16/bfloat16 CPU backbone stays on torch
    if name not in RUNTIMES:
        raise RuntimeError(f"unknown runtime {name!r}; choose one of {sorted(RUNTIMES)} or auto")
    if name != "torch" and backbone.device.type != "cpu":
        raise RuntimeError(
            f"runtime {name!r} runs on the CPU only; use ADAPTERSERVE_RUNTIME=torch on {backbone.device}"
        )
    if int8:
        runtime = RUNTIMES[name](backbone, threads, int8=True, cache=cache)
    else:
        try:
            runtime = RUNTIMES[name](backbone, threads, cache=cache)
        except (ImportError, OSError, RuntimeError) as e:
            log.warning("runtime %s cannot load (%s); falling back to the PyTorch runtime", name, str(e)[:500])
            return TorchRuntime(backbone, threads)
    log.info("runtime ready", extra={"runtime": runtime.name, "int8": int8})
    return runtime
