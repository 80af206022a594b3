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
from pathlib import Path

import torch

from ..adapters.batch import AdapterBatch
from .onnx_graph import DeltaEncoder, in_graph, input_names, per_row_inputs

log = logging.getLogger(__name__)

GRAPH_VERSION = "1"


def cache_root() -> Path:
    return Path(os.environ.get("ADAPTERSERVE_RUNTIME_CACHE") or Path.home() / ".cache" / "adapterserve" / "onnx")


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
    ids = torch.tensor([[101, 2000, 2001, 102], [101, 2002, 102, 0]])
    mask = (ids != 0).long()
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
        with torch.inference_mode(False), torch.no_grad():
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

    def __init__(self, backbone, threads: int = 1):
        import onnxruntime as ort

        if backbone.dtype != torch.float32:
            raise RuntimeError(f"the onnx runtime runs float32 only, not {backbone.dtype}")
        self.backbone, self.threads, self._ort = backbone, threads, ort
        folder = cache_root() / backbone_key(backbone.info.name)
        self.paths = export(backbone, folder)
        cfg = backbone.model.config
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
