import torch

from adapterserve.engine.postprocess import rank_labels, tag_entities
from adapterserve.engine.tokenize import Encoded


def test_rank_labels_softmax_and_raw():
    logits = torch.tensor([0.0, 2.0, 1.0])
    out = rank_labels(logits, ["a", "b", "c"], "classification", None, False)
    assert [x["label"] for x in out] == ["b", "c", "a"]
    assert abs(sum(x["score"] for x in out) - 1) < 1e-6
    raw = rank_labels(logits, ["a", "b", "c"], "classification", 1, True)
    assert raw == [{"label": "b", "score": 2.0}]
    sig = rank_labels(torch.tensor([0.0]), ["x"], "multilabel", None, False)
    assert sig[0]["score"] == 0.5


def test_entities_merge_wordpieces_and_bio_spans():
    text = "Jo Smithson went to New York"
    # [CLS] jo smith ##son went to new york [SEP]
    offsets = [(0, 0), (0, 2), (3, 8), (8, 11), (12, 16), (17, 19), (20, 23), (24, 28), (0, 0)]
    words = [None, 0, 1, 1, 2, 3, 4, 5, None]
    special = [1, 0, 0, 0, 0, 0, 0, 0, 1]
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    tags = [0, 1, 2, 2, 0, 0, 3, 4, 0]
    logits = torch.full((9, 5), -5.0)
    for i, t in enumerate(tags):
        logits[i, t] = 5.0
    enc = Encoded(list(range(9)), None, offsets, special, words)
    ents = tag_entities(text, enc, logits, labels)
    assert [(e["label"], e["text"]) for e in ents] == [("PER", "Jo Smithson"), ("LOC", "New York")]
