import json

import pytest
import torch
from transformers import AutoTokenizer

from ..conftest import GOLDEN, TINY

GOLDEN_TAGGING = json.loads((GOLDEN / "ah_tagging" / "expected.json").read_text())


def _golden_pieces(i: int) -> list[tuple[str, str, float]]:
    """(word piece, label, score) per non-special token of golden text i, from the reference library's logits."""
    exp = GOLDEN_TAGGING
    probs = torch.softmax(torch.tensor(exp["logits_batched"][i]), -1)[1:-1]  # [CLS] ... [SEP]
    pieces = AutoTokenizer.from_pretrained(str(TINY)).convert_ids_to_tokens(exp["input_ids"][i][1:-1])
    return [(tok, exp["labels"][int(p.argmax())], float(p.max())) for tok, p in zip(pieces, probs)]


def test_tag_none_gives_the_reference_label_of_every_wordpiece(client):
    texts = GOLDEN_TAGGING["texts"]
    r = client.post("/tag?adapter=ner", json={"inputs": texts, "aggregation": "none"})
    assert r.status_code == 200, r.text
    for i, (text, tokens) in enumerate(zip(texts, r.json())):
        want = _golden_pieces(i)
        assert [(t["token"], t["label"]) for t in tokens] == [(tok, label) for tok, label, _ in want]
        assert [t["score"] for t in tokens] == pytest.approx([s for _, _, s in want], abs=1e-5)
        for t in tokens:
            assert text[t["start"] : t["end"]].lower() == t["token"].removeprefix("##")


def _known_entities(i: int) -> list[tuple[str, str]]:
    """(type, text) spans of golden text i: a word takes its first piece's label; B- opens a span, I- of the
    same type extends it, O closes it."""
    text = GOLDEN_TAGGING["texts"][i]
    enc = AutoTokenizer.from_pretrained(str(TINY))(text, return_offsets_mapping=True)
    assert enc["input_ids"] == GOLDEN_TAGGING["input_ids"][i]
    labels = [label for _, label, _ in _golden_pieces(i)]
    spans: list[list] = []  # [type, start, end]
    last_word = None
    for label, word, (start, end) in zip(labels, enc.word_ids()[1:-1], enc["offset_mapping"][1:-1]):
        if word == last_word:
            if spans and spans[-1] is not None:
                spans[-1][2] = end
            continue
        last_word = word
        prefix, _, kind = label.partition("-")
        if prefix == "O":
            spans.append(None)
        elif prefix == "I" and spans and spans[-1] is not None and spans[-1][0] == kind:
            spans[-1][2] = end
        else:
            spans.append([kind, start, end])
    return [(kind, text[start:end]) for kind, start, end in filter(None, spans)]


def test_tag_simple_gives_the_known_entities(client):
    texts = GOLDEN_TAGGING["texts"]
    r = client.post("/tag?adapter=ner", json={"inputs": texts})
    assert r.status_code == 200, r.text
    assert len(r.json()) == len(texts)
    known = [_known_entities(i) for i in range(len(texts))]
    assert sum(map(len, known)) > 0  # the golden logits do tag something
    for text, ents, want in zip(texts, r.json(), known):
        assert [(e["label"], e["text"]) for e in ents] == want
        for e in ents:
            assert e["text"] == text[e["start"] : e["end"]] and 0 < e["score"] <= 1


def test_tag_peft_token_classification(client):
    r = client.post("/tag?adapter=lora-ner", json={"inputs": ["some words here"], "aggregation": "none"})
    assert r.status_code == 200, r.text
    assert len(r.json()[0]) == 3


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": []},
        {"inputs": "x", "aggregation": "maximum"},
        {"inputs": "x", "parameters": {"stride": 4}},
        {"inputs": [["a", "b"]]},
    ],
)
def test_tag_bad_bodies(client, body):
    assert client.post("/tag?adapter=ner", json=body).status_code == 422
