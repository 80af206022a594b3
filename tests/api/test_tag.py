import pytest


def test_tag_none_gives_one_item_per_wordpiece(client):
    text = "Angela Merkel visited Paris yesterday"
    r = client.post("/tag?adapter=ner", json={"inputs": text, "aggregation": "none"})
    assert r.status_code == 200, r.text
    (tokens,) = r.json()
    assert len(tokens) >= 5
    for t in tokens:
        assert text[t["start"] : t["end"]].lower().replace(" ", "") == t["token"].removeprefix("##")
        assert t["label"] in {"B-PER", "I-PER", "B-LOC", "I-LOC", "O"}
        assert 0 < t["score"] <= 1


def test_tag_simple_merges_spans(client):
    texts = ["Angela Merkel visited Paris yesterday", "no entities here perhaps"]
    r = client.post("/tag?adapter=ner", json={"inputs": texts})
    assert r.status_code == 200, r.text
    assert len(r.json()) == 2
    for text, ents in zip(texts, r.json()):
        for e in ents:
            assert e["text"] == text[e["start"] : e["end"]]
            assert e["label"] in {"PER", "LOC"}
            assert "B-" not in e["label"]


def test_tag_peft_token_classification(client):
    r = client.post("/tag?adapter=lora-ner", json={"inputs": ["some words here"], "aggregation": "none"})
    assert r.status_code == 200, r.text
    assert len(r.json()[0]) == 3


@pytest.mark.parametrize("body", [{"inputs": []}, {"inputs": "x", "aggregation": "max"}, {"inputs": [["a", "b"]]}])
def test_tag_bad_bodies(client, body):
    assert client.post("/tag?adapter=ner", json=body).status_code == 422
