"""The "onnx" runtime: the encoder graph of onnx_graph.py in ONNX Runtime, exported once per backbone.

The export is cached on disk under a key made of the backbone's files (their names, sizes and bytes hashed),
the torch version and this module's graph version, so a restart loads it in a second and a changed backbone
gets a new one. Two graphs: with the per-row adapter inputs, and plain (batches with no adapter rows, such as
embeddings). Each inference worker thread has its own session, with the worker's share of the CPU threads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
from pathlib import Path

import torch

from ..adapters.batch import AdapterBatch
from .onnx_graph import DeltaEncoder, in_graph, input_names, per_row_inputs

log = logging.getLogger(__name__)

GRAPH_VERSION = "1"


def cache_root(folder: str = "") -> Path:
    """ADAPTERSERVE_RUNTIME_CACHE (settings.runtime_cache), else ~/.cache/adapterserve/onnx."""
    return Path(folder) if folder else Path.home() / ".cache" / "adapterserve" / "onnx"


def backbone_key(path: str) -> str:
    h = hashlib.sha256(f"{GRAPH_VERSION}|{torch.__version__}".encode())
    root = Path(path)
    for f in sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []:
        h.update(f"{f.relative_to(root)}|{f.stat().st_size}".encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:24]


def export(backbone, folder: Path) -> dict[str, Path]:
    """Both graphs, exported unless the cache already holds them (written to a temp name, then renamed)."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = backbone.model.config
    H, L, inter = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 7, 8]]) % cfg.vocab_size  # any ids: tracing needs only shapes
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    types = torch.zeros_like(ids)
    widths = _widths(H, inter)
    out = {}
    for name, deltas in (("plain", False), ("delta", True)):
        path = folder / f"{name}.onnx"
        out[name] = path
        if path.is_file():
            continue
        names = input_names(L) if deltas else input_names(0)
        args = [ids, mask, types]
        dyn = {n: {0: "batch", 1: "tokens"} for n in names[:3]}
        if deltas:
            for n in names[3:]:
                site = n.split(".", 1)[1].rsplit(".", 1)[0]
                part = n.rsplit(".", 1)[1]
                args.append(_example(site, part, widths, H))
                rank_axis = {"a": 2, "b": 1, "dw": 2, "db": 1, "uw": 1, "ub": None}[part]
                dyn[n] = {0: "batch"} | ({rank_axis: f"rank.{n.rsplit('.', 1)[0]}"} if rank_axis else {})
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        log.info("exporting the backbone to ONNX", extra={"graph": name, "path": str(path)})
        # The TorchScript exporter is deprecated in favour of the torch.export one, which needs onnxscript and
        # has not been tried on this graph's 120 dynamic-rank inputs: the warning is known, and only it is muted.
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning
            )
            torch.onnx.export(
                DeltaEncoder(backbone, deltas).eval(),  # a new module trains by default: dropout would export
                tuple(args),
                str(tmp),
                input_names=names,
                output_names=["hidden"],
                dynamic_axes=dyn | {"hidden": {0: "batch", 1: "tokens"}},
                opset_version=17,
                dynamo=False,
            )
        backbone.model.eval()  # export restores the wrapper's mode on the shared modules: keep them in eval
        tmp.replace(path)
    return out


def quantize(paths: dict[str, Path], inter: int) -> dict[str, Path]:
    """int8 copies of the graphs (cached beside them): dynamic quantization, int8 weights per output channel,
    activations quantized per batch. The FFN's output projection (the MatMuls whose weight has `inter` input
    rows) stays float: its input, after GELU, has the outliers that cost the most accuracy (measured on MiniLM:
    embedding cosine to fp32 mean 0.991 / min 0.979 with it quantized, 0.995 / 0.991 without; docs/runtimes.md).
    Adapter weights are graph inputs, not initializers, so they stay float."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = {}
    for name, src in paths.items():
        dst = src.with_name(f"{name}.int8.onnx")
        out[name] = dst
        if dst.is_file():
            continue
        model = onnx.load(str(src), load_external_data=False)
        rows = {i.name: tuple(i.dims) for i in model.graph.initializer}
        skip = [
            n.name
            for n in model.graph.node
            if n.op_type == "MatMul" and any(rows.get(x, (0,))[0] == inter for x in n.input)
        ]
        tmp = dst.with_suffix(f".tmp{os.getpid()}")
        log.info("quantizing the backbone graph to int8", extra={"graph": name, "float_matmuls": len(skip)})
        quantize_dynamic(
            str(src),
            str(tmp),
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=skip,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        tmp.replace(dst)
    return out


def int8_capable() -> str | None:
    """Why this CPU cannot run the int8 graph well, or None. x86 needs AVX2 for ONNX Runtime's int8 kernels (VNNI
    makes them fast); other architectures are left to ONNX Runtime."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return None if " avx2" in flags else "this CPU has no AVX2, which ONNX Runtime's int8 kernels need"


def _widths(H: int, inter: int) -> dict[str, tuple[int, int]]:
    return {
        "attention.self.query": (H, H),
        "attention.self.key": (H, H),
        "attention.self.value": (H, H),
        "attention.output.dense": (H, H),
        "intermediate.dense": (H, inter),
        "output.dense": (inter, H),
    }


def _example(site: str, part: str, widths, H: int) -> torch.Tensor:
    r, B = 2, 2
    if part == "a":
        return torch.zeros(B, widths[site][0], r)
    if part == "b":
        return torch.zeros(B, r, widths[site][1])
    return {"dw": torch.zeros(B, H, r), "db": torch.zeros(B, r), "uw": torch.zeros(B, r, H), "ub": torch.zeros(B, H)}[
        part
    ]


class OnnxRuntime:
    name = "onnx"

    def __init__(self, backbone, threads: int = 1, int8: bool = False, cache: str = ""):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise RuntimeError(f"onnxruntime is not installed ({e}); pip install onnxruntime") from e
        if backbone.dtype != torch.float32:
            raise RuntimeError(f"the onnx runtime runs float32 (or int8), not {backbone.dtype}")
        if int8 and (why := int8_capable()):
            raise RuntimeError(f"ADAPTERSERVE_DTYPE=int8 cannot run here: {why}")
        self.backbone, self.threads, self._ort, self.int8 = backbone, threads, ort, int8
        self.name = "onnx-int8" if int8 else "onnx"
        cfg = backbone.model.config
        folder = cache_root(cache) / backbone_key(backbone.info.name)
        self.paths = export(backbone, folder)
        if int8:
            self.paths = quantize(self.paths, cfg.intermediate_size)
        self._layers, self._hidden = cfg.num_hidden_layers, cfg.hidden_size
        self._widths = _widths(cfg.hidden_size, cfg.intermediate_size)
        self._names = input_names(self._layers)
        self._local = threading.local()
        self._session("plain")  # fail now, at start-up, if the runtime cannot load the graph
        self.graph_batches = self.torch_batches = 0  # how batches ran, for tests and the benchmark

    def _session(self, name: str):
        sessions = getattr(self._local, "sessions", None)
        if sessions is None:
            sessions = self._local.sessions = {}
        if name not in sessions:
            so = self._ort.SessionOptions()
            so.intra_op_num_threads = max(1, torch.get_num_threads() if self.threads == 0 else self.threads)
            so.inter_op_num_threads = 1
            so.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sessions[name] = self._ort.InferenceSession(str(self.paths[name]), so, providers=["CPUExecutionProvider"])
        return sessions[name]

    def encode(self, ids, mask, types, adapters: AdapterBatch):
        if not in_graph(adapters):
            self.torch_batches += 1
            return self.backbone.encode(ids, mask, types, adapters=adapters)
        self.graph_batches += 1
        feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}
        plain = all(s.adapter is None for s in adapters.segments)
        if not plain:
            tensors = per_row_inputs(adapters, self._layers, self._hidden, self._widths, torch.float32)
            feed.update({n: t.contiguous().numpy() for n, t in zip(self._names[3:], tensors)})
        (hidden,) = self._session("plain" if plain else "delta").run(None, feed)
        hidden = torch.from_numpy(hidden)
        pooled = None
        if adapters.needs_pooler:
            pooler = self.backbone._pooler
            if pooler is None:
                raise ValueError("a head needs the pooler, which this backbone checkpoint does not have")
            pooled = adapters.pooler(hidden, pooler.dense)
        return hidden, pooled
