"""Mixed-adapter batches give the same results as serving each row alone (within 1e-5)."""

import torch

from service.engine.runner import run_rows
from service.engine.tokenize import tokenize
from service.formats import load_adapter

from ..conftest import GOLDEN, backbone_for

CASES = ["ah_seq_bn", "ah_double_seq_bn", "peft_lora_list", "peft_lora_bias_all", "ah_head_pooler", "ah_tagging",
         "peft_token_cls", "ah_ln_before_after", "peft_lora_all_dense"]


def test_mixed_batch_equals_one_by_one():
    bb = backbone_for("tiny-bert")
    adapters = {c: load_adapter(GOLDEN / c / "adapter", bb.shape) for c in CASES}
    texts = ["short", "a somewhat longer text with more words", "mid length text", "x y z", "one more here"]
    rows, row_adapters, tagging = [], [], []
    for k, c in enumerate(CASES + [None]):  # None: an embedding row riding along
        enc = tokenize(bb.tokenizer, [texts[k % len(texts)], texts[(k + 2) % len(texts)]], None, 128, True)
        rows += enc
        row_adapters += [adapters.get(c)] * 2
        tagging += [c is not None and adapters[c].task == "tagging"] * 2
    mixed, stats = run_rows(bb, rows, row_adapters, tagging)
    assert stats.segments == len(CASES) + 1
    for i, row in enumerate(rows):
        (alone,), _ = run_rows(bb, [row], [row_adapters[i]], [tagging[i]])
        assert alone.shape == mixed[i].shape
        assert torch.allclose(alone, mixed[i], atol=1e-5), (i, (alone - mixed[i]).abs().max())


def test_rows_without_adapter_are_the_plain_backbone():
    bb = backbone_for("tiny-bert")
    enc = tokenize(bb.tokenizer, ["hello world"], None, 128, True)
    ids = torch.tensor([enc[0].input_ids])
    with torch.inference_mode():
        ours, _ = bb.encode(ids, torch.ones_like(ids), torch.zeros_like(ids))
        ref = bb.model(input_ids=ids).last_hidden_state
    assert torch.allclose(ours, ref, atol=1e-5)
