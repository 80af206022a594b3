"""Logits -> answers: ranked labels for classification, tokens or entities for tagging."""

from __future__ import annotations

import torch

from .. import tasks
from .tokenize import Encoded


def rank_labels(logits: torch.Tensor, labels: list[str], task: str, top_k: int | None, raw_scores: bool) -> list[dict]:
    values = logits if raw_scores else tasks.get(task).scores(logits)
    order = torch.argsort(values, descending=True).tolist()
    if top_k is not None:
        order = order[:top_k]
    return [{"label": labels[i], "score": float(values[i])} for i in order]


def _entity_type(label: str) -> tuple[str, str]:
    """('B'|'I'|'', type) for IOB labels; plain labels are their own type; 'O' is outside."""
    if label == "O":
        return "O", ""
    if len(label) > 2 and label[1] in "-_" and label[0] in "BIES":
        return label[0], label[2:]
    return "", label


def tag_tokens(enc: Encoded, logits: torch.Tensor, labels: list[str], tokenizer) -> list[dict]:
    probs = torch.softmax(logits, dim=-1)
    best = probs.max(dim=-1)
    out = []
    tokens = tokenizer.convert_ids_to_tokens(enc.input_ids)
    for i, tok in enumerate(tokens):
        if enc.special and enc.special[i]:
            continue
        start, end = enc.offsets[i]
        out.append(
            {
                "token": tok,
                "label": labels[int(best.indices[i])],
                "score": float(best.values[i]),
                "start": int(start),
                "end": int(end),
            }
        )
    return out


def tag_entities(text: str, enc: Encoded, logits: torch.Tensor, labels: list[str]) -> list[dict]:
    """Word pieces merge into words (a word takes its first piece's label), then B-/I- spans merge."""
    probs = torch.softmax(logits, dim=-1)
    best = probs.max(dim=-1)
    words: list[tuple[str, float, int, int]] = []  # label, score, start, end
    last_word = object()
    for i in range(len(enc.input_ids)):
        if enc.special and enc.special[i]:
            continue
        wid = enc.word_ids[i] if enc.word_ids else i
        start, end = enc.offsets[i]
        if wid == last_word and words:
            label, score, s, _ = words[-1]
            words[-1] = (label, score, s, int(end))
        else:
            words.append((labels[int(best.indices[i])], float(best.values[i]), int(start), int(end)))
        last_word = wid
    entities: list[dict] = []
    current: dict | None = None
    for label, score, start, end in words:
        prefix, etype = _entity_type(label)
        if prefix == "O":
            current = None
            continue
        if current is not None and current["label"] == etype and prefix in ("I", "E", ""):
            current["end"] = end
            current["_scores"].append(score)
            continue
        current = {"label": etype, "start": start, "end": end, "_scores": [score]}
        entities.append(current)
    for e in entities:
        s = e.pop("_scores")
        e["score"] = sum(s) / len(s)
        e["text"] = text[e["start"] : e["end"]]
    return [{k: e[k] for k in ("label", "score", "start", "end", "text")} for e in entities]
