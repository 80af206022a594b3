"""Logits -> answers: ranked labels for classification, tokens or entities for tagging."""

from __future__ import annotations

import torch

from .. import tasks
from .tokenize import Encoded

SCORE_FUNCTIONS = {
    "softmax": lambda x: torch.softmax(x, dim=-1),
    "sigmoid": torch.sigmoid,
    "none": lambda x: x,
}


def rank_labels(
    logits: torch.Tensor, labels: list[str], task: str, top_k: int | None, function: str | None = None
) -> list[dict]:
    """Labels best first. `function` (softmax, sigmoid, none) overrides the task's own scores, as the
    Hugging Face `function_to_apply` parameter does."""
    scores = tasks.get(task).scores(logits) if function is None else SCORE_FUNCTIONS[function](logits)
    # Ranked in Python, not with torch.argsort: this runs on the event loop, and a torch op releases the GIL, so
    # under load the loop waited for an inference thread to hand it back (argsort: 0.16 ms a call, 5 us alone).
    values = scores.tolist()
    order = sorted(range(len(values)), key=values.__getitem__, reverse=True)
    if top_k is not None:
        order = order[:top_k]
    return [{"label": labels[i], "score": values[i]} for i in order]


# Tagging follows transformers' TokenClassificationPipeline (postprocess, aggregate, group_entities), so Hugging
# Face clients get the answers they would get from the pipeline: the same strategies, grouping and scores.


def _pieces(text: str, enc: Encoded, logits: torch.Tensor, tokenizer) -> list[dict]:
    """One entry per non-special token: its probabilities, span, and whether it continues a word."""
    probs = torch.softmax(logits.float(), dim=-1)
    tokens = tokenizer.convert_ids_to_tokens(enc.input_ids)
    word_aware = bool(
        getattr(getattr(getattr(tokenizer, "_tokenizer", None), "model", None), "continuing_subword_prefix", None)
    )
    out = []
    for i, tok in enumerate(tokens):
        if enc.special and enc.special[i]:
            continue
        start, end = (int(x) for x in enc.offsets[i])
        ref = text[start:end]
        if word_aware:
            is_subword = len(tok) != len(ref)
        else:
            is_subword = start > 0 and " " not in text[start - 1 : start + 1]
        if enc.input_ids[i] == tokenizer.unk_token_id:
            tok, is_subword = ref, False
        out.append({"index": i, "word": tok, "probs": probs[i], "start": start, "end": end, "is_subword": is_subword})
    return out


def _token_entity(p: dict, labels: list[str]) -> dict:
    best = int(p["probs"].argmax())
    return {
        "entity": labels[best],
        "score": float(p["probs"][best]),
        "index": p["index"],
        "word": p["word"],
        "start": p["start"],
        "end": p["end"],
    }


def _word_entity(group: list[dict], labels: list[str], strategy: str, tokenizer) -> dict:
    if strategy == "first":
        probs = group[0]["probs"]
    elif strategy == "max":
        probs = max(group, key=lambda p: float(p["probs"].max()))["probs"]
    else:  # average
        probs = torch.stack([p["probs"] for p in group]).mean(dim=0)
    best = int(probs.argmax())
    return {
        "entity": labels[best],
        "score": float(probs[best]),
        "word": tokenizer.convert_tokens_to_string([p["word"] for p in group]),
        "start": group[0]["start"],
        "end": group[-1]["end"],
    }


def _bi_tag(label: str) -> tuple[str, str]:
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label  # not B-/I-: a continuation, as transformers reads it


def _group(entities: list[dict], tokenizer) -> list[dict]:
    groups: list[list[dict]] = []
    for e in entities:
        bi, tag = _bi_tag(e["entity"])
        if groups and bi != "B" and tag == _bi_tag(groups[-1][-1]["entity"])[1]:
            groups[-1].append(e)
        else:
            groups.append([e])
    return [
        {
            "entity_group": g[0]["entity"].split("-", 1)[-1],
            "score": sum(e["score"] for e in g) / len(g),
            "word": tokenizer.convert_tokens_to_string([e["word"] for e in g]),
            "start": g[0]["start"],
            "end": g[-1]["end"],
        }
        for g in groups
    ]


def tag(
    text: str, enc: Encoded, logits: torch.Tensor, labels: list[str], tokenizer, strategy: str, ignore: list[str]
) -> list[dict]:
    """Tokens (strategy "none") or entities for one input, without the labels in `ignore`."""
    pieces = _pieces(text, enc, logits, tokenizer)
    if strategy in ("none", "simple"):
        entities = [_token_entity(p, labels) for p in pieces]
    else:
        words: list[list[dict]] = []
        for p in pieces:
            if words and p["is_subword"]:
                words[-1].append(p)
            else:
                words.append([p])
        entities = [_word_entity(w, labels, strategy, tokenizer) for w in words]
    if strategy == "none":
        return [
            {
                "token": e["word"],
                "label": e["entity"],
                "score": e["score"],
                "start": e["start"],
                "end": e["end"],
                "entity": e["entity"],
                "word": e["word"],
                "index": e["index"],
            }
            for e in entities
            if e["entity"] not in ignore
        ]
    return [
        {
            "label": g["entity_group"],
            "score": g["score"],
            "start": g["start"],
            "end": g["end"],
            "text": text[g["start"] : g["end"]],
            "entity_group": g["entity_group"],
            "word": g["word"],
        }
        for g in _group(entities, tokenizer)
        if g["entity_group"] not in ignore
    ]
