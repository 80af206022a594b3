"""Mixed-adapter batches give the same results as serving each row alone (within 1e-5), on both the
per-segment path and the stacked (gathered) path."""

import pytest
import torch

from service.engine.runner import run_rows
from service.engine.tokenize import tokenize
from service.formats import load_adapter

from ..conftest import GOLDEN, backbone_for

# Repeated cases load as distinct adapters, so same-config groups form for the stacked path; the rest
# mix every kind of site, head and bias override in one batch.
CASES = ["ah_seq_bn", "ah_seq_bn", "ah_seq_bn_bin", "ah_act_relu", "ah_static_head", "ah_head_pooler",
         "ah_scaling_learned", "ah_scaling_channel", "ah_rf_dict_leave_out", "ah_double_seq_bn",
         "ah_double_seq_bn", "ah_ln_before_after", "ah_ln_before_after", "ah_tagging",
         "peft_lora_list", "peft_lora_list", "peft_lora_rslora", "peft_lora_patterns",
         "peft_lora_layers_to_transform", "peft_lora_bias_all", "peft_token_cls", "peft_lora_all_dense"]
TEXTS = ["short", "a somewhat longer text with more words", "mid length text", "x y z", "one more here"]


def _batch(bb):
    rows, row_adapters, tagging = [], [], []
    for k, case in enumerate(CASES + [None]):  # None: an embedding row riding along
        adapter = None if case is None else load_adapter(GOLDEN / case / "adapter", bb.shape)
        n = 1 + k % 3
        rows += tokenize(bb.tokenizer, [TEXTS[(k + j) % len(TEXTS)] for j in range(n)], None, 128, True)
        row_adapters += [adapter] * n
        tagging += [adapter is not None and adapter.task == "tagging"] * n
    return rows, row_adapters, tagging


@pytest.mark.parametrize("group_min", [2, 10**6], ids=["stacked", "per-segment"])
def test_mixed_batch_equals_one_by_one(group_min, monkeypatch):
    import service.adapters.batch as batch_mod

    monkeypatch.setattr(batch_mod, "GROUP_MIN_CPU", group_min)
    bb = backbone_for("tiny-bert")
    rows, row_adapters, tagging = _batch(bb)
    mixed, stats = run_rows(bb, rows, row_adapters, tagging)
    assert stats.segments == len(CASES) + 1
    for i, row in enumerate(rows):
        (alone,), _ = run_rows(bb, [row], [row_adapters[i]], [tagging[i]])
        assert alone.shape == mixed[i].shape
        assert torch.allclose(alone, mixed[i], atol=1e-5), (i, (alone - mixed[i]).abs().max())


def test_stacked_path_is_really_taken(monkeypatch):
    import service.adapters.batch as batch_mod
    import service.adapters.grouped as grouped

    monkeypatch.setattr(batch_mod, "GROUP_MIN_CPU", batch_mod.GROUP_MIN_CUDA)  # as on a GPU
    calls = []
    original = grouped.RowGroups.__init__

    def spy(self, spans, *a):
        calls.append(len(spans))
        original(self, spans, *a)

    monkeypatch.setattr(grouped.RowGroups, "__init__", spy)
    bb = backbone_for("tiny-bert")
    run_rows(bb, *_batch(bb))
    assert calls and max(calls) >= 4


def test_rows_without_adapter_are_the_plain_backbone():
    bb = backbone_for("tiny-bert")
    enc = tokenize(bb.tokenizer, ["hello world"], None, 128, True)
    ids = torch.tensor([enc[0].input_ids])
    with torch.inference_mode():
        ours, _ = bb.encode(ids, torch.ones_like(ids), torch.zeros_like(ids))
        ref = bb.model(input_ids=ids).last_hidden_state
    assert torch.allclose(ours, ref, atol=1e-5)
