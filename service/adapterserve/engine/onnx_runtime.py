"""The "onnx" runtime: the encoder graph of onnx_graph.py in ONNX Runtime, exported once per backbone.

The export is cached on disk under a key made of the backbone's files (their names, sizes and bytes hashed), the
torch version and this module's graph version, so a restart loads it in a second and a changed backbone gets a new
one. One graph per variant of onnx_graph.VARIANTS: plain (batches with no adapter rows, such as embeddings),
bottleneck inputs at the output site only, bottleneck inputs at both sites, LoRA inputs at query and value only, and
every site's inputs; all but the first per row, or for a batch whose rows all have one adapter. The inference worker
threads share one session per variant, made when a batch first needs it, each run on the worker's share of the CPU
threads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
import weakref
from pathlib import Path

import torch

from ..adapters.batch import AdapterBatch
from .onnx_graph import ACTS, BASE, VARIANTS, DeltaEncoder, in_graph, input_names, unpad_index, variant
from .onnx_inputs import one_adapter_inputs, pack, per_row_inputs

log = logging.getLogger(__name__)

# 2: graph variants; bottleneck input and activation per row (bn.pre, bn.act). 3: unpadded.
# 4: `slots` [B, T]; weights as stored; bottleneck biases [., 1, .]. 5: per-row variants take them per segment.
# 6: q, k, v to heads from rows [B, T, 3H] again (less peak memory)
GRAPH_VERSION = "6"


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
    for name, (lora, bn, one) in VARIANTS.items():
        path = folder / f"{name}.onnx"
        out[name] = path
        if path.is_file():
            continue
        names = input_names(L, lora, bn, one)
        tokens, slots = (torch.from_numpy(t) for t in unpad_index(mask.numpy()))
        args = [ids, mask, types, tokens, slots]
        dyn = {n: {0: "batch", 1: "tokens"} for n in names[:3]} | {
            "tokens": {0: "real"},
            "slots": {0: "batch", 1: "tokens"},
        }
        for n in names[BASE:]:
            if n == "owner":  # each row's segment: two rows, two segments
                args.append(torch.tensor([0, 1]))
                dyn[n] = {0: "batch"}
                continue
            if n in ("bn.pre", "bn.act"):  # per segment: [S] and [S, len(ACTS)]; one adapter: [1] and [len(ACTS)]
                if one:
                    args.append(torch.ones(1) if n == "bn.pre" else torch.eye(len(ACTS))[0])
                else:
                    args.append(torch.ones(2) if n == "bn.pre" else torch.eye(len(ACTS))[[0, 1]])
                    dyn[n] = {0: "segments"}
                continue
            site = n.split(".", 1)[1].rsplit(".", 1)[0]
            part = n.rsplit(".", 1)[1]
            example, rank_axis = _example(site, part, widths, H, one)
            args.append(example)
            dyn[n] = ({} if one else {0: "segments"}) | (
                {} if rank_axis is None else {rank_axis: f"rank.{n.rsplit('.', 1)[0]}"}
            )
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        log.info("exporting the backbone to ONNX", extra={"graph": name, "path": str(path)})
        # The TorchScript exporter is deprecated in favour of the torch.export one, which needs onnxscript and
        # has not been tried on this graph's 120 dynamic-rank inputs: the warning is known, and only it is muted.
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning
            )
            torch.onnx.export(
                DeltaEncoder(backbone, lora, bn, one).eval(),  # a new module trains by default: dropout would export
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


QUANT_VERSION = "2"  # in the int8 files' names: a new scheme never reuses a cached graph of the old one


def quantize(paths: dict[str, Path], inter: int) -> dict[str, Path]:
    """int8 copies of the graphs (cached beside them): dynamic quantization, int8 weights per output channel,
    activations quantized per batch. The first layer's FFN output projection (the first MatMul whose weight has
    `inter` input rows; layer 0 comes first in any topological order) stays float: its input, after GELU, has the
    outliers that cost the most accuracy. Measured on MiniLM (docs/runtimes.md), embedding cosine to fp32
    mean / min: every MatMul int8 0.991 / 0.954; the first layer's kept float 0.993 / 0.978 at 0.9x that speed;
    every layer's kept float 0.995 / 0.984 at 0.65x. Adapter weights are graph inputs, not initializers, so they
    stay float."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = {}
    for name, src in paths.items():
        dst = src.with_name(f"{name}.int8v{QUANT_VERSION}.onnx")
        out[name] = dst
        if dst.is_file():
            continue
        model = onnx.load(str(src), load_external_data=False)
        rows = {i.name: tuple(i.dims) for i in model.graph.initializer}
        ffn_out = [
            n.name
            for n in model.graph.node
            if n.op_type == "MatMul" and any(rows.get(x, (0,))[0] == inter for x in n.input)
        ]
        skip = ffn_out[:1]
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


def _example(site: str, part: str, widths, H: int, one: bool) -> tuple[torch.Tensor, int | None]:
    """An example input for the export and the axis of its rank: per segment [2, ...] (`per_row_inputs`), or one
    adapter's (`one_adapter_inputs`); both hold the weights as stored."""
    r, B = 2, 2
    fan_in, fan_out = widths.get(site, (H, H))
    shapes = {  # part -> (per-row shape and rank axis, one-adapter shape and rank axis)
        "a": ((B, r, fan_in), 1, (r, fan_in), 0),
        "b": ((B, fan_out, r), 2, (fan_out, r), 1),
        "dw": ((B, r, H), 1, (r, H), 0),
        "db": ((B, 1, r), 2, (r,), 0),
        "uw": ((B, H, r), 2, (H, r), 1),
        "ub": ((B, 1, H), None, (H,), None),
    }
    rows_shape, rows_axis, one_shape, one_axis = shapes[part]
    return (torch.zeros(one_shape), one_axis) if one else (torch.zeros(rows_shape), rows_axis)


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
        self._layers, self._hidden, self._inter = cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size
        self._widths = _widths(cfg.hidden_size, cfg.intermediate_size)
        self._names = {v: input_names(self._layers, lora, bn, one) for v, (lora, bn, one) in VARIANTS.items()}
        self._sessions: dict = {}
        self._packs: dict[int, tuple] = {}  # id(adapter) -> (weakref to it, {"pack": its pack, variant: its inputs})
        self._lock = threading.Lock()  # creates each variant's session once
        self._session("plain")  # fail now, at start-up, if the runtime cannot load the graph
        self.torch_batches = 0  # how batches ran, for tests and the benchmark
        self.by_graph = dict.fromkeys(VARIANTS, 0)

    @property
    def graph_batches(self) -> int:
        return sum(self.by_graph.values())

    def _session(self, name: str):
        """The variant's session, shared by the inference workers: ONNX Runtime runs one session from several
        threads at once, and with one intra-op thread each run stays on its caller's thread; one copy of each
        graph's weights instead of one per worker."""
        session = self._sessions.get(name)
        if session is None:
            with self._lock:
                session = self._sessions.get(name)
                if session is None:
                    so = self._ort.SessionOptions()
                    so.intra_op_num_threads = max(1, torch.get_num_threads() if self.threads == 0 else self.threads)
                    so.inter_op_num_threads = 1
                    so.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                    session = self._ort.InferenceSession(str(self.paths[name]), so, providers=["CPUExecutionProvider"])
                    self._sessions[name] = session
        return session

    def pad_cost(self, tokens: int) -> float:
        """The graph runs the linear layers on the real tokens only (onnx_graph.DeltaEncoder): a padding position
        costs its attention, 2*T*H multiply-adds per layer, against 4*H*H + 2*H*I + 2*T*H for a real token."""
        return tokens / (2 * self._hidden + self._inter + tokens)

    def _cached(self, adapter) -> dict:
        """What this runtime keeps for an adapter while it lives (snapshots are immutable; a new version is a new
        object): its pack (onnx_inputs.pack), and the inputs of each "1" variant it ran on. Mostly views of its
        weights, so the cache costs little memory; it saves re-slicing every adapter of every batch on the
        inference thread."""
        key = id(adapter)
        hit = self._packs.get(key)
        if hit is not None and hit[0]() is adapter:
            return hit[1]
        entry = {"pack": pack(adapter)}
        # the entry goes when the adapter does (before its id can be reused)
        self._packs[key] = (weakref.ref(adapter, lambda _, key=key: self._packs.pop(key, None)), entry)
        return entry

    def _pack(self, adapter) -> dict:
        return self._cached(adapter)["pack"]

    def _adapter_feed(self, adapters: AdapterBatch, graph: str) -> dict:
        lora, bn, one = VARIANTS[graph]
        names = self._names[graph][BASE:]
        if one:  # the batch's one adapter, as stored: no row axis, no copy per batch
            entry = self._cached(adapters.segments[0].adapter)
            if graph not in entry:
                arrays = one_adapter_inputs(entry["pack"], self._layers, self._hidden, self._widths, lora, bn)
                entry[graph] = dict(zip(names, arrays))
            return entry[graph]
        arrays = per_row_inputs(adapters, self._layers, self._hidden, self._widths, lora, bn, self._pack)
        return dict(zip(names, arrays))

    def encode(self, ids, mask, types, adapters: AdapterBatch):
        if not in_graph(adapters):
            self.torch_batches += 1
            return self.backbone.encode(ids, mask, types, adapters=adapters)
        m = mask.numpy()
        tokens, slots = unpad_index(m)
        feed = {"input_ids": ids.numpy(), "attention_mask": m, "token_type_ids": types.numpy()}
        feed |= {"tokens": tokens, "slots": slots}
        graph = variant(adapters)
        self.by_graph[graph] += 1
        if graph != "plain":
            feed |= self._adapter_feed(adapters, graph)
        (hidden,) = self._session(graph).run(None, feed)
        hidden = torch.from_numpy(hidden)
        pooled = None
        if adapters.needs_pooler:
            pooler = self.backbone._pooler
            if pooler is None:
                raise ValueError("a head needs the pooler, which this backbone checkpoint does not have")
            pooled = adapters.pooler(hidden, pooler.dense)
        return hidden, pooled
