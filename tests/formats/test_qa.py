"""Question answering parity: QA heads (AdapterHub add_qa_head, PEFT QUESTION_ANS) against golden window logits
made by the real libraries (tests/fixtures/make_golden_qa.py), and the answers of the real transformers 4.57
question-answering pipeline reproduced from our own logits."""

from __future__ import annotations

import pytest
import torch

from adapterserve.adapters.batch import AdapterBatch
from adapterserve.adapters.heads import apply_head, head_input
from adapterserve.engine import qa_spans
from adapterserve.engine.runner import pad
from adapterserve.engine.tokenize import Encoded
from adapterserve.errors import InvalidAdapter
from adapterserve.formats import load_adapter

from ..conftest import backbone_for, golden, golden_cases

QA_CASES = [c for c in golden_cases() if golden(c)[1].get("task") == "qa"]
TOL = 1e-4


def test_qa_golden_cases_cover_both_libraries():
    assert {c.split("_")[0] for c in QA_CASES} == {"ah", "peft"}, QA_CASES


def _logits(backbone, adapter, rows):
    ids, mask, types = pad(rows, backbone.tokenizer.pad_token_id or 0, backbone.device)
    plan = AdapterBatch.from_row_adapters([adapter] * len(rows))
    with torch.inference_mode():
        hidden, pooled = backbone.encode(ids, mask, types, adapters=plan)
        logits = apply_head(adapter.head, head_input(adapter.head, hidden, pooled))
    return [logits[i, : len(r)] for i, r in enumerate(rows)]


@pytest.mark.parametrize("case", QA_CASES)
def test_window_logits_match_reference_batched_and_alone(case):
    folder, exp = golden(case)
    backbone = backbone_for(exp["backbone"])
    adapter = load_adapter(folder, backbone.shape)
    assert adapter.task == "qa" and adapter.head.num_labels == 2
    windows = exp["windows"]
    assert max(len(w["input_ids"]) for w in windows) == exp["max_seq_len"]  # long contexts were windowed
    rows = [Encoded(w["input_ids"], w["token_type_ids"]) for w in windows]
    want = [torch.tensor([w["start_logits"], w["end_logits"]]).T for w in windows]
    for i, got in enumerate(_logits(backbone, adapter, rows)):  # every window in one padded batch
        assert torch.allclose(got, want[i], atol=TOL, rtol=0), (i, (got - want[i]).abs().max().item())
    for i in (0, len(rows) - 1):
        (got,) = _logits(backbone, adapter, [rows[i]])
        assert torch.allclose(got, want[i], atol=TOL, rtol=0)


def _as_list(answer):
    return answer if isinstance(answer, list) else [answer]


@pytest.mark.parametrize("case", QA_CASES)
def test_span_selection_on_reference_logits_is_the_pipelines(case):
    """Given the reference model's own logits, our windows and span rules give the pipeline's answers exactly."""
    _, exp = golden(case)
    tokenizer = backbone_for(exp["backbone"]).tokenizer
    for run in exp["runs"]:
        ex = exp["examples"][run["example"]]
        stride = run["doc_stride"] if run["doc_stride"] is not None else qa_spans.default_stride(exp["max_seq_len"])
        windows = qa_spans.make_windows(tokenizer, ex["question"], ex["context"], exp["max_seq_len"], stride, 0)
        ref = [w for w in exp["windows"] if w["example"] == run["example"] and w["doc_stride"] == stride]
        assert [r.input_ids for r in windows.rows] == [w["input_ids"] for w in ref]
        logits = [torch.tensor([w["start_logits"], w["end_logits"]]).T for w in ref]
        got = qa_spans.answers(windows, logits, run["top_k"], run["max_answer_len"])
        assert got == _as_list(run["answer"]), run


def test_answers_are_merged_across_windows_ignoring_case():
    """The long example repeats its context in upper case, over several windows: the pipeline adds the scores
    of answers with the same text, and so must we (the golden runs hold such a merged answer)."""
    _, exp = golden(QA_CASES[0])
    ex3 = [r for r in exp["runs"] if r["example"] == 3 and r["top_k"] > 1]
    texts = [a["answer"] for r in ex3 for a in _as_list(r["answer"])]
    ctx = exp["examples"][3]["context"]
    assert any(ctx.count(t) + ctx.count(t.upper()) > 1 for t in texts if t.strip())


def test_a_qa_head_with_other_than_two_outputs_is_refused(tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    folder, exp = golden("ah_qa_seq_bn")
    bad = shutil.copytree(folder, tmp_path / "bad")
    tensors = load_file(bad / "model_head.safetensors")
    for k in list(tensors):
        tensors[k] = torch.cat([tensors[k], tensors[k][:1]])
    save_file(tensors, bad / "model_head.safetensors")
    with pytest.raises(InvalidAdapter, match="outputs"):
        load_adapter(bad, backbone_for("tiny-bert").shape)
