"""The task registry: every task answers every question the rest of the package asks."""

from __future__ import annotations

import pytest
import torch

from adapterserve import tasks
from adapterserve.tasks.base import IGNORE, Columns, Task


def test_builtin_tasks_and_their_routes():
    assert tasks.names() == ["classification", "multilabel", "tagging", "qa"]
    assert {n: tasks.get(n).route for n in tasks.names()} == {
        "classification": "classify",
        "multilabel": "classify",
        "tagging": "tag",
        "qa": "answer",
    }
    assert tasks.by_adapterhub_head_type() == {
        "classification": "classification",
        "multilabel_classification": "multilabel",
        "tagging": "tagging",
        "question_answering": "qa",
    }


def test_unknown_task_names_the_known_ones():
    with pytest.raises(KeyError, match="classification"):
        tasks.get("summarization")


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        tasks.register(tasks.get("tagging"))


def test_scores_softmax_and_sigmoid():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    assert torch.allclose(tasks.get("classification").scores(logits), torch.softmax(logits, -1))
    assert torch.allclose(tasks.get("multilabel").scores(logits), torch.sigmoid(logits))
    assert torch.allclose(tasks.get("tagging").scores(logits), torch.softmax(logits, -1))


def test_stack_targets_pads_per_token_targets_with_ignore():
    out = tasks.get("tagging").stack_targets([[1, 2], [3]], 3)
    assert out.tolist() == [[1, 2, IGNORE], [3, IGNORE, IGNORE]]
    assert tasks.get("multilabel").stack_targets([[1.0, 0.0]], 1).dtype == torch.float32
    assert tasks.get("classification").stack_targets([2, 0], 1).tolist() == [2, 0]


def test_required_columns_per_task():
    cols = Columns(text="t", label="y", labels="ys", tokens="w", tags="n", pair="p")
    assert tasks.get("classification").required_columns(cols) == ["t", "y", "p"]
    assert tasks.get("multilabel").required_columns(cols) == ["t", "ys", "p"]
    assert tasks.get("tagging").required_columns(cols) == ["w", "n"]


def test_a_new_task_registers_in_one_place():
    class Echo(Task):
        name, route = "echo-test", "classify"
        adapterhub_head_type, peft_task_type = "echo", "SEQ_CLS"

    try:
        tasks.register(Echo())
        assert tasks.get("echo-test").route == "classify"
        assert tasks.by_adapterhub_head_type()["echo"] == "echo-test"
    finally:
        tasks.REGISTRY.unregister("echo-test")
