"""Accuracy / F1 on hand-computed examples."""

from __future__ import annotations

import pytest
import torch

from adapterserve import tasks
from adapterserve.tasks import metrics


def test_single_label_hand_computed():
    # truth  a a a b b c ; pred a a b b c c
    # a: tp2 fp0 fn1 -> F1 4/5 ; b: tp1 fp1 fn1 -> 1/2 ; c: tp1 fp1 fn0 -> 2/3
    m = metrics.single_label([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_f1"] == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
    assert m["per_label"]["a"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(0.8),
        "support": 3,
    }
    assert m["n"] == 6


def test_labels_absent_from_truth_and_predictions_are_left_out_and_ignored_targets_not_scored():
    m = metrics.single_label([0, 0, 1, -100], [0, 0, 0, 2], ["a", "b", "never"])
    # a: tp2 fp1 fn0 -> 4/5 ; b: tp0 fp0 fn1 -> 0 ; "never" is in neither -> left out
    assert m["macro_f1"] == pytest.approx((0.8 + 0.0) / 2)
    assert m["accuracy"] == pytest.approx(2 / 3) and m["n"] == 3


def test_multilabel_hand_computed():
    truth = [[1, 0, 1], [0, 1, 0], [1, 1, 0]]
    logits = [torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.1, 3.0, -2.0]), torch.tensor([1.0, -0.1, -1.0])]
    # pred: [1,0,1] exact ; [1,1,0] ; [1,0,0]  -> exact match 1/3
    # label0: tp2 fp1 fn0 -> 4/5 ; label1: tp1 fp0 fn1 -> 2/3 ; label2: tp1 -> 1
    m = tasks.get("multilabel").metrics(truth, logits, ["x", "y", "z"])
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 1.0) / 3)
    assert m["micro_f1"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))


def test_tagging_skips_ignored_tokens_and_excludes_O_from_macro_f1():
    labels = ["B-PER", "O"]
    targets = [[-100, 0, 1, 1, -100], [-100, 1, 0, -100]]
    logits = [
        torch.tensor([[0.0, 9], [1, 0], [0, 1], [1, 0], [1, 0]]),  # pred: -, B, O, B, -
        torch.tensor([[1.0, 0], [0, 1], [0, 1], [0, 1]]),
    ]  # pred: -, O, O, -
    m = tasks.get("tagging").metrics(targets, logits, labels)
    # scored tokens: (B,B) (O,O) (O,B) (O,O) (B,O) -> accuracy 3/5 ; B-PER: tp1 fp1 fn1 -> 1/2 (O excluded)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["macro_f1"] == pytest.approx(0.5)
    assert m["n"] == 5


def test_classification_from_logits():
    m = tasks.get("classification").metrics([1, 0], [torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0])], ["a", "b"])
    assert m["accuracy"] == 0.5
    assert m["macro_f1"] == pytest.approx((0 + 2 / 3) / 2)
