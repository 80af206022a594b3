"""Mixed-adapter batches give the same results as serving each row alone (within 1e-5), on both the
per-segment path and the row-wise path (each row with its own adapter's stacked weights), with every
adapter kind (bottleneck, LoRA, IA3, prefix, prompt) and embedding rows in one batch."""

import pytest
import torch

from adapterserve.engine.runner import run_rows
from adapterserve.engine.tokenize import tokenize
from adapterserve.formats import load_adapter

from ..conftest import GOLDEN, backbone_for

# Repeated cases load as distinct adapters, so same-config groups form for the row-wise path; the rest
# mix every kind of site, head and bias override in one batch.
CASES = [
    "ah_seq_bn",
    "ah_seq_bn",
    "ah_seq_bn_bin",
    "ah_act_relu",
    "ah_static_head",
    "ah_head_pooler",
    "ah_scaling_learned",
    "ah_scaling_channel",
    "ah_rf_dict_leave_out",
    "ah_double_seq_bn",
    "ah_double_seq_bn",
    "ah_ln_before_after",
    "ah_ln_before_after",
    "ah_tagging",
    "peft_lora_list",
    "peft_lora_list",
    "peft_lora_rslora",
    "peft_lora_patterns",
    "peft_lora_layers_to_transform",
    "peft_lora_bias_all",
    "peft_token_cls",
    "peft_lora_all_dense",
    "peft_lora_ffn",  # LoRA at attention.output.dense, where peft_ia3 scales the input
    # IA3, prefix and prompt rows: per-row scales, prefixes of lengths 3-7 (or none) padded and masked in
    # one attention, prompt rows with their virtual tokens, PEFT prefixes shifting positions
    "ah_ia3",
    "ah_ia3",
    "ah_ia3_output_alpha",
    "ah_ia3_tagging",
    "peft_ia3",
    "peft_ia3_custom",
    "peft_ia3_token_cls",
    "ah_prefix",
    "ah_prefix_flat",
    "ah_prefix_leave_out",
    "ah_prefix_tagging",
    "peft_prefix",
    "peft_prefix_projection",
    "peft_prefix_token_cls",
    "peft_prompt_text",
    "peft_prompt_random",
]
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


@pytest.mark.parametrize("group_min", [2, 10**6], ids=["row-wise", "per-segment"])
def test_mixed_batch_equals_one_by_one(group_min, monkeypatch):
    import adapterserve.adapters.batch as batch_mod

    monkeypatch.setattr(batch_mod, "GROUP_MIN", group_min)
    bb = backbone_for("tiny-bert")
    rows, row_adapters, tagging = _batch(bb)
    mixed, stats = run_rows(bb, rows, row_adapters, tagging)
    assert stats.segments == len(CASES) + 1
    for i, row in enumerate(rows):
        (alone,), _ = run_rows(bb, [row], [row_adapters[i]], [tagging[i]])
        assert alone.shape == mixed[i].shape
        assert torch.allclose(alone, mixed[i], atol=1e-5), (i, (alone - mixed[i]).abs().max())


def test_row_wise_path_is_really_taken(monkeypatch):
    import adapterserve.adapters.batch as batch_mod
    import adapterserve.adapters.grouped as grouped

    calls = []
    original = grouped.RowSet.__init__

    def spy(self, spans, *a):
        calls.append(len(spans))
        original(self, spans, *a)

    monkeypatch.setattr(grouped.RowSet, "__init__", spy)
    bb = backbone_for("tiny-bert")
    assert batch_mod.GROUP_MIN == 2
    run_rows(bb, *_batch(bb))
    assert calls and max(calls) >= 4


def test_row_wise_group_covering_every_row_skips_the_pretrained_sublayer():
    """Two bottleneck adapters on all rows: the group's block is the output (no gather, no scatter)."""
    bb = backbone_for("tiny-bert")
    a1 = load_adapter(GOLDEN / "ah_seq_bn" / "adapter", bb.shape)
    a2 = load_adapter(GOLDEN / "ah_seq_bn" / "adapter", bb.shape)
    rows = tokenize(bb.tokenizer, TEXTS[:4], None, 128, True)
    adapters = [a1, a1, a2, a2]
    mixed, _ = run_rows(bb, rows, adapters, [False] * 4)
    for i, row in enumerate(rows):
        (alone,), _ = run_rows(bb, [row], [adapters[i]], [False])
        assert torch.allclose(alone, mixed[i], atol=1e-5)


def test_heads_with_different_label_counts_stack_and_keep_their_own_labels(monkeypatch):
    from adapterserve.adapters.batch import AdapterBatch, Segment
    from adapterserve.adapters.grouped import head_signature
    from adapterserve.adapters.model import Head

    g = torch.Generator().manual_seed(0)

    def head(labels):
        return Head(
            "classification",
            "cls",
            [
                (torch.randn(8, 8, generator=g), torch.randn(8, generator=g)),
                (torch.randn(labels, 8, generator=g), torch.randn(labels, generator=g)),
            ],
            "tanh",
            [str(i) for i in range(labels)],
        )

    heads = [head(2), head(5), head(3)]
    assert len({head_signature(h) for h in heads}) == 1

    from adapterserve.adapters.model import Adapter

    def A(h):
        return Adapter("bottleneck", h, 8)

    hidden = torch.randn(5, 4, 8, generator=g)
    segs = [Segment(0, 2, A(heads[0])), Segment(2, 3, A(heads[1])), Segment(3, 5, A(heads[2]))]
    stacked = AdapterBatch(segs, group_min=2).heads(hidden, None)
    looped = AdapterBatch(segs, group_min=10**6).heads(hidden, None)
    for s, lp, seg in zip(stacked, looped, segs):
        assert s.shape == lp.shape == (seg.stop - seg.start, seg.adapter.head.num_labels)
        assert torch.allclose(s, lp, atol=1e-6)

    # by default a CPU batch loops over its heads (each head's weights read once, not copied per row)
    import adapterserve.adapters.batch as batch_mod

    calls = []
    real_stacked = batch_mod.stacked_heads
    monkeypatch.setattr(batch_mod, "stacked_heads", lambda *a: calls.append(1) or real_stacked(*a))
    default = AdapterBatch(segs).heads(hidden, None)
    assert calls == []
    AdapterBatch(segs, group_min=2).heads(hidden, None)  # an explicit threshold (benchmarks, tests) still stacks
    assert calls == [1]
    for d, lp in zip(default, looped):
        assert torch.equal(d, lp)


def test_rows_without_adapter_are_the_plain_backbone():
    bb = backbone_for("tiny-bert")
    enc = tokenize(bb.tokenizer, ["hello world"], None, 128, True)
    ids = torch.tensor([enc[0].input_ids])
    with torch.inference_mode():
        ours, _ = bb.encode(ids, torch.ones_like(ids), torch.zeros_like(ids))
        ref = bb.model(input_ids=ids).last_hidden_state
    assert torch.allclose(ours, ref, atol=1e-5)
