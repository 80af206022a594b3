"""Accuracy and F1, written out (no sklearn); each task's `metrics` picks the ones it reports.

Conventions (the same as scikit-learn's where they exist):
- F1 of a label = 2 TP / (2 TP + FP + FN).
- macro-F1 = the unweighted mean of per-label F1 over the labels that occur in the truth or in the
  predictions of the split evaluated (a label that occurs in neither has no defined F1 and is left out).
- classification: accuracy = share of rows whose arg-max label is the true one.
- multilabel: a label is predicted when its sigmoid is >= 0.5 (logit >= 0); `accuracy` is exact-match
  (every label of the row right), plus micro-F1 over all (row, label) decisions and macro-F1 over labels.
- tagging: token level, over the first word piece of each word (the tokens that carry a tag);
  `accuracy` over all those tokens, `macro_f1` over the tags other than "O" (all tags if there is no "O"),
  `micro_f1` over the same tags.
Targets equal to -100 (a label not seen in training, a continuation word piece) are not scored.
"""

from __future__ import annotations

from .base import IGNORE


def _f1(tp: int, fp: int, fn: int) -> float:
    d = 2 * tp + fp + fn
    return 2 * tp / d if d else 0.0


def _per_label(counts: dict[int, list[int]], labels: list[str]) -> dict[str, dict]:
    out = {}
    for i, (tp, fp, fn) in sorted(counts.items()):
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        out[labels[i]] = {"precision": p, "recall": r, "f1": _f1(tp, fp, fn), "support": tp + fn}
    return out


def single_label(y_true: list[int], y_pred: list[int], labels: list[str], exclude: set[int] = frozenset()) -> dict:
    """Accuracy over all scored items; macro-F1 over the present labels not in `exclude`."""
    pairs = [(t, p) for t, p in zip(y_true, y_pred) if t != IGNORE]
    n = len(pairs)
    correct = sum(1 for t, p in pairs if t == p)
    counts: dict[int, list[int]] = {}
    for t, p in pairs:
        for c in {t, p}:
            counts.setdefault(c, [0, 0, 0])
        if t == p:
            counts[t][0] += 1
        else:
            counts[p][1] += 1
            counts[t][2] += 1
    scored = {c: v for c, v in counts.items() if c not in exclude}
    f1s = [_f1(*v) for v in scored.values()]
    tp = sum(v[0] for v in scored.values())
    fp = sum(v[1] for v in scored.values())
    fn = sum(v[2] for v in scored.values())
    return {
        "accuracy": correct / n if n else 0.0,
        "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
        "micro_f1": _f1(tp, fp, fn),
        "n": n,
        "per_label": _per_label(counts, labels),
    }


def multilabel(y_true: list[list[float]], y_pred: list[list[int]], labels: list[str]) -> dict:
    n = len(y_true)
    exact = sum(1 for t, p in zip(y_true, y_pred) if all(int(a) == b for a, b in zip(t, p)))
    counts: dict[int, list[int]] = {}
    for t, p in zip(y_true, y_pred):
        for j, (a, b) in enumerate(zip(t, p)):
            a = int(a)
            if not (a or b):
                continue
            c = counts.setdefault(j, [0, 0, 0])
            c[0 if a and b else (1 if b else 2)] += 1
    f1s = [_f1(*v) for v in counts.values()]
    tp, fp, fn = (sum(v[k] for v in counts.values()) for k in range(3))
    return {
        "accuracy": exact / n if n else 0.0,
        "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
        "micro_f1": _f1(tp, fp, fn),
        "n": n,
        "per_label": _per_label(counts, labels),
    }


def summary(m: dict) -> str:
    return f"accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  (n={m['n']})"
