"""The runtime registry: choice, fallback, int8's refusals, the export cache key. (Parity of the onnx runtime
with torch is in tests/formats/test_parity.py, on every golden case.)"""

from __future__ import annotations

import logging
import shutil

import pytest
import torch

from adapterserve.adapters.batch import AdapterBatch
from adapterserve.engine import onnx_graph, onnx_inputs
from adapterserve.engine import runtime as rt
from adapterserve.engine.backbone import resolve_dtype
from adapterserve.engine.onnx_runtime import backbone_key
from adapterserve.engine.runner import pad
from adapterserve.engine.tokenize import tokenize

from ..conftest import TINY


def test_auto_is_onnx_on_cpu_and_unknown_names_are_refused(tiny_backbone, tmp_path):
    assert rt.make_runtime("auto", tiny_backbone, cache=str(tmp_path)).name == "onnx"
    assert rt.DEFAULT["cuda"] == "torch"
    with pytest.raises(RuntimeError, match="unknown runtime 'tvm'"):
        rt.make_runtime("tvm", tiny_backbone)


def test_a_runtime_that_cannot_load_falls_back_to_torch_with_a_log_line(tiny_backbone, monkeypatch, caplog):
    def broken(backbone, threads=1, int8=False, cache=""):
        raise ImportError("no module named onnxruntime")

    monkeypatch.setitem(rt.RUNTIMES, "onnx", broken)
    with caplog.at_level(logging.WARNING, logger="adapterserve.engine.runtime"):
        chosen = rt.make_runtime("onnx", tiny_backbone)
    assert chosen.name == "torch"
    assert "runtime onnx cannot load (no module named onnxruntime); falling back to the PyTorch runtime" in caplog.text


def test_int8_never_falls_back(tiny_backbone, monkeypatch):
    def broken(backbone, threads=1, int8=False, cache=""):
        raise RuntimeError("ADAPTERSERVE_DTYPE=int8 cannot run here: this CPU has no AVX2")

    monkeypatch.setitem(rt.RUNTIMES, "onnx", broken)
    with pytest.raises(RuntimeError, match="no AVX2"):
        rt.make_runtime("auto", tiny_backbone, int8=True)
    with pytest.raises(RuntimeError, match="runs on the onnx runtime"):
        rt.make_runtime("torch", tiny_backbone, int8=True)
    with pytest.raises(RuntimeError, match="CPU only"):
        resolve_dtype("int8", torch.device("cuda"))
    assert resolve_dtype("int8", torch.device("cpu")) == torch.float32  # adapters and heads stay float


def _two_rows(backbone):
    """A padded batch of two texts of different lengths: (ids, mask, types)."""
    rows = tokenize(backbone.tokenizer, ["a short text", "another one, a little longer"], None, 64, True)
    return pad(rows, 0, backbone.device)


def test_int8_graph_runs_and_stays_close_to_fp32(tiny_backbone, tmp_path):
    int8 = rt.make_runtime("auto", tiny_backbone, int8=True, cache=str(tmp_path))
    assert int8.name == "onnx-int8" and all(".int8v" in p.name for p in int8.paths.values())
    ids, mask, types = _two_rows(tiny_backbone)
    plan = AdapterBatch.from_row_adapters([None, None])
    with torch.inference_mode():
        want, _ = tiny_backbone.encode(ids, mask, types, plan)
        got, _ = int8.encode(ids, mask, types, plan)
    assert int8.graph_batches == 1
    cos = torch.nn.functional.cosine_similarity(got[mask.bool()], want[mask.bool()], dim=-1)
    assert cos.min() > 0.95, cos.min()  # a random tiny BERT; MiniLM's figures are in docs/runtimes.md
    # the scheme: every MatMul with a weight is int8 but the first layer's FFN output projection
    import onnx

    inter = tiny_backbone.model.config.intermediate_size
    for path in int8.paths.values():
        model = onnx.load(str(path))
        weights = {i.name: tuple(i.dims) for i in model.graph.initializer}
        float_matmuls = [n for n in model.graph.node if n.op_type == "MatMul" and any(x in weights for x in n.input)]
        assert len(float_matmuls) == 1, [n.name for n in float_matmuls]
        assert any(weights.get(x, (0,))[0] == inter for x in float_matmuls[0].input)
        assert any(n.op_type == "DynamicQuantizeLinear" or n.op_type == "MatMulInteger" for n in model.graph.node)


def test_unpad_index_picks_the_real_tokens_and_puts_them_back():
    import numpy as np

    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
    tokens, slots = onnx_graph.unpad_index(mask)
    assert tokens.tolist() == [0, 1, 2, 4, 5]  # flat positions of the real tokens
    assert slots.tolist() == [[0, 1, 2, 0], [3, 4, 0, 0]]  # padding: token 0, masked or dropped in the graph
    flat = np.arange(8.0) + 1
    assert flat[tokens][slots].tolist() == [[1, 2, 3, 1], [5, 6, 1, 1]]


def test_onnx_pads_cost_attention_only(tiny_backbone, tmp_path):
    onnx = rt.make_runtime("onnx", tiny_backbone, cache=str(tmp_path))
    torch_rt = rt.make_runtime("torch", tiny_backbone)
    cfg = tiny_backbone.model.config
    assert torch_rt.pad_cost(32) == 1.0
    assert onnx.pad_cost(32) == pytest.approx(32 / (2 * cfg.hidden_size + cfg.intermediate_size + 32))
    assert onnx.pad_cost(8) < onnx.pad_cost(512) < 1.0  # attention's share grows with the padded length


def test_export_cache_key_follows_the_backbone_files(tmp_path):
    copy = tmp_path / "bb"
    shutil.copytree(TINY, copy)
    before = backbone_key(str(copy))
    assert backbone_key(str(copy)) == before
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ")
    assert backbone_key(str(copy)) != before


def test_onnx_packs_each_adapter_once_and_forgets_it_with_the_adapter(tiny_backbone, tmp_path, monkeypatch):
    import gc

    from adapterserve.engine import onnx_runtime
    from adapterserve.formats import load_adapter

    from ..conftest import golden

    runtime = rt.make_runtime("onnx", tiny_backbone, cache=str(tmp_path))
    calls = []
    monkeypatch.setattr(onnx_runtime, "pack", lambda a: calls.append(id(a)) or onnx_inputs.pack(a))
    adapter = load_adapter(golden("ah_seq_bn")[0], tiny_backbone.shape)
    ids, mask, types = _two_rows(tiny_backbone)
    plan = AdapterBatch.from_row_adapters([adapter, None])
    with torch.inference_mode():
        first, _ = runtime.encode(ids, mask, types, plan)
        again, _ = runtime.encode(ids, mask, types, plan)
        want, _ = tiny_backbone.encode(ids, mask, types, plan)
    assert len(calls) == 1 and runtime.by_graph["bno"] == 2  # packed once, reused by the second batch
    real = mask.bool()
    assert torch.equal(first, again) and torch.allclose(first[real], want[real], atol=1e-4)
    assert not first[~real].any()  # the unpadded graph leaves zeros at the padding, which nothing reads
    assert len(runtime._packs) == 1
    del adapter, plan
    gc.collect()
    assert runtime._packs == {}  # a dropped adapter (an evicted or replaced version) leaves nothing behind


def test_a_batch_of_one_adapter_runs_its_weights_as_stored_on_the_one_adapter_graph(tiny_backbone, tmp_path):
    """Every row with one adapter: the "1" variant, fed the adapter's own weight tensors (no copy per batch, none
    kept beyond the pack), with the per-row graph's results; rows of two adapters go back to the per-row graph."""
    import numpy as np

    from adapterserve.formats import load_adapter

    from ..conftest import golden

    runtime = rt.make_runtime("onnx", tiny_backbone, cache=str(tmp_path))
    bn = load_adapter(golden("ah_seq_bn")[0], tiny_backbone.shape)
    lora = load_adapter(golden("peft_lora_all_dense")[0], tiny_backbone.shape)
    ids, mask, types = _two_rows(tiny_backbone)
    real = mask.bool()
    for adapter, graph in ((bn, "bno1"), (lora, "delta1")):
        plan = AdapterBatch.from_row_adapters([adapter, adapter])
        assert onnx_graph.variant(plan) == graph
        with torch.inference_mode():
            got, _ = runtime.encode(ids, mask, types, plan)
            want, _ = tiny_backbone.encode(ids, mask, types, plan)
        assert runtime.by_graph[graph] == 1
        assert torch.allclose(got[real], want[real], atol=1e-4), (got[real] - want[real]).abs().max()
    feed = runtime._cached(bn)["bno1"]
    site = bn.bottleneck[(0, "output")]
    assert np.shares_memory(feed["l0.output.dw"], site.down_weight.numpy())  # the stored tensor itself
    mixed = AdapterBatch.from_row_adapters([bn, lora])
    assert onnx_graph.variant(mixed) == "delta"
    with torch.inference_mode():
        got, _ = runtime.encode(ids, mask, types, mixed)
        want, _ = tiny_backbone.encode(ids, mask, types, mixed)
    assert runtime.by_graph["delta"] == 1 and torch.allclose(got[real], want[real], atol=1e-4)


def test_an_unwritable_graph_cache_falls_back_to_torch_with_a_log_line(tiny_backbone, tmp_path, caplog):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should go")  # like a read-only or full volume
    with caplog.at_level(logging.WARNING, logger="adapterserve.engine.runtime"):
        chosen = rt.make_runtime("auto", tiny_backbone, cache=str(blocker))
    assert chosen.name == "torch"
    assert "runtime onnx cannot load" in caplog.text and "falling back to the PyTorch runtime" in caplog.text


def test_a_mixed_batch_feeds_weights_per_segment_and_matches_torch(tiny_backbone, tmp_path):
    """The per-row graphs take each segment's weights once, stacked, and an `owner` row -> segment index; ranks
    that differ between the batch's adapters are padded with zeros, and a row without an adapter gets zeros."""
    from adapterserve.formats import load_adapter

    from ..conftest import golden

    runtime = rt.make_runtime("onnx", tiny_backbone, cache=str(tmp_path))
    seq, double, swish, leave_out, patterns, ffn, rslora = (
        load_adapter(golden(case)[0], tiny_backbone.shape)
        for case in (
            "ah_seq_bn",  # rank 2
            "ah_double_seq_bn",  # rank 2, the bottleneck's input is h (bn.pre 0)
            "ah_act_swish",  # rank 8, another activation (bn.act)
            "ah_rf_dict_leave_out",  # rank 8, some layers without a bottleneck
            "peft_lora_patterns",  # LoRA ranks 2, 4 and 8 by site (query and value)
            "peft_lora_ffn",  # LoRA rank 4 on the FFN only
            "peft_lora_rslora",  # LoRA on query and value, rank-stabilized scaling
        )
    )
    rows = tokenize(tiny_backbone.tokenizer, ["a", "b c", "d e f", "g h i j", "k l m n o"], None, 64, True)
    ids, mask, types = pad(rows, 0, tiny_backbone.device)
    real = mask.bool()
    cases = (
        ([seq, seq, None, swish, double], "bn"),
        ([seq, None, swish, swish, seq], "bno"),  # output sites only: the graph without the "mh" inputs
        ([seq, None, patterns, ffn, leave_out], "delta"),
        ([patterns, patterns, None, rslora, rslora], "lqv"),  # LoRA at query and value only: no other site's inputs
    )
    for row_adapters, graph in cases:
        plan = AdapterBatch.from_row_adapters(row_adapters)
        assert onnx_graph.variant(plan) == graph
        feed = runtime._adapter_feed(plan, graph)
        assert feed["owner"].tolist() == [i for i, s in enumerate(plan.segments) for _ in range(s.stop - s.start)]
        weights = [a for name, a in feed.items() if name.startswith("l")]
        assert len({id(a.base) for a in weights}) == 1  # views of one buffer: one torch.cat per batch
        lora_sites, sites = onnx_graph.VARIANTS[graph][:2]
        assert graph == "bno" or sites == ("mh", "output") or graph == "lqv" and sites == ()
        assert not any(".mh." in name for name in feed) if graph == "bno" else graph == "lqv" or "l0.mh.dw" in feed
        assert {n.split(".", 1)[1].rsplit(".", 1)[0] for n in feed if n.endswith((".a", ".b"))} == set(lora_sites)
        for site in ((i, s) for i in range(tiny_backbone.shape.num_layers) for s in sites):
            dw = feed[f"l{site[0]}.{site[1]}.dw"]
            ranks = [
                s.adapter.bottleneck[site].down_weight.shape[0]
                for s in plan.segments
                if s.adapter and site in s.adapter.bottleneck
            ]
            assert dw.shape[:2] == (len(plan.segments), max(ranks, default=1))
            for j, seg in enumerate(plan.segments):
                if seg.adapter is None or site not in seg.adapter.bottleneck:
                    assert not dw[j].any()  # zeros: the sub-layer is the pretrained one
        with torch.inference_mode():
            got, _ = runtime.encode(ids, mask, types, plan)
            want, _ = tiny_backbone.encode(ids, mask, types, plan)
        assert runtime.by_graph[graph] == 1
        assert torch.allclose(got[real], want[real], atol=1e-4), (got[real] - want[real]).abs().max()
    assert any(site not in leave_out.bottleneck for site in seq.bottleneck)  # a segment without a site was fed
