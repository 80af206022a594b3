import json

import pytest
import torch

from ..conftest import GOLDEN


def test_classify_single_string_answers_one_ranked_list(client):
    r = client.post("/classify?adapter=sentiment", json={"inputs": "I love it"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body) == 1 and len(body[0]) == 3
    scores = [x["score"] for x in body[0]]
    assert scores == sorted(scores, reverse=True)
    assert abs(sum(scores) - 1) < 1e-5
    assert r.headers["X-Adapter-Version"]
    assert r.headers["x-request-id"]


def _assert_golden_through_http(client, adapter: str, case: str):
    exp = json.loads((GOLDEN / case / "expected.json").read_text())
    r = client.post(f"/classify?adapter={adapter}", json={"inputs": exp["texts"], "raw_scores": True})
    assert r.status_code == 200, r.text
    for got, want in zip(r.json(), exp["logits_batched"]):
        by_label = {x["label"]: x["score"] for x in got}
        assert torch.allclose(torch.tensor([by_label[name] for name in exp["labels"]]), torch.tensor(want), atol=1e-4)


def test_classify_matches_golden_logits_through_http(client):
    _assert_golden_through_http(client, "sentiment", "ah_seq_bn")


def test_top_k_and_multilabel_sigmoid(client):
    """Multi-label scores are the sigmoid of the reference library's raw logits, best k first."""
    exp = json.loads((GOLDEN / "ah_multilabel" / "expected.json").read_text())
    r = client.post("/classify?adapter=multi", json={"inputs": exp["texts"], "top_k": 2})
    assert r.status_code == 200, r.text
    assert len(r.json()) == len(exp["texts"])
    for got, logits in zip(r.json(), exp["logits_batched"]):
        want = torch.sigmoid(torch.tensor(logits))
        top = torch.argsort(want, descending=True)[:2].tolist()
        assert [x["label"] for x in got] == [exp["labels"][i] for i in top]
        assert torch.allclose(torch.tensor([x["score"] for x in got]), want[top], atol=1e-5)


def test_text_pairs(client):
    _assert_golden_through_http(client, "pairs", "ah_text_pair")


def test_lora_adapter(client):
    r = client.post("/classify?adapter=lora", json={"inputs": ["hello there"]})
    assert r.status_code == 200, r.text
    assert [x["label"] for x in r.json()[0]][0].startswith("LABEL_")


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({"inputs": []}, "must not be empty"),
        ({"inputs": 5}, "inputs"),
        ({}, "inputs"),
        ({"inputs": [["a"]]}, "pair"),
        ({"inputs": ["a", ["b", "c"]]}, "mix"),
        ({"inputs": "x", "top_k": 0}, "top_k"),
        ({"inputs": "x", "unknown": 1}, "unknown"),
    ],
)
def test_malformed_bodies_are_422_with_a_message(client, body, fragment):
    r = client.post("/classify?adapter=sentiment", json=body)
    assert r.status_code == 422, r.text
    assert fragment in r.json()["message"]


def test_not_json_is_422(client):
    r = client.post("/classify?adapter=sentiment", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_unknown_adapter_is_404_naming_the_closest_ones_not_the_whole_store(client):
    r = client.post("/classify?adapter=sentimnt", json={"inputs": "x"})
    assert r.status_code == 404
    assert "did you mean 'sentiment'" in r.json()["message"], r.text
    r = client.post("/classify?adapter=nope", json={"inputs": "x"})
    assert r.status_code == 404
    message = r.json()["message"]
    assert "6 adapters in the store" in message and "lora-ner" not in message and "sentiment" not in message


@pytest.mark.parametrize("name", ["../etc", "UPPER", ".hidden", "a/b", "a..b", ""])
def test_bad_adapter_names_are_refused(client, name):
    r = client.post("/classify", params={"adapter": name}, json={"inputs": "x"})
    assert r.status_code in (404, 422), r.text
    assert r.status_code != 500


def test_missing_adapter_param_is_422(client):
    assert client.post("/classify", json={"inputs": "x"}).status_code == 422


def test_wrong_route_for_task_says_which_route(client):
    r = client.post("/classify?adapter=ner", json={"inputs": "x"})
    assert r.status_code == 422 and "/tag?adapter=ner" in r.json()["message"]
    r = client.post("/tag?adapter=sentiment", json={"inputs": "x"})
    assert r.status_code == 422 and "/classify?adapter=sentiment" in r.json()["message"]


def test_limits(client, settings):
    n = settings.max_inputs_per_request + 1
    assert client.post("/classify?adapter=sentiment", json={"inputs": ["x"] * n}).status_code == 413
    long = "word " * (settings.max_input_chars // 5 + 1)
    assert client.post("/classify?adapter=sentiment", json={"inputs": long}).status_code == 413
    big = b'{"inputs": "' + b"a" * (settings.max_body_bytes + 1) + b'"}'
    r = client.post("/classify?adapter=sentiment", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_truncation(client):
    text = "word " * 200  # over the tiny backbone's 128 positions
    ok = client.post("/classify?adapter=sentiment", json={"inputs": text})
    assert ok.status_code == 200, ok.text
    r = client.post("/classify?adapter=sentiment", json={"inputs": text, "truncate": False})
    assert r.status_code == 422 and "truncate" in r.json()["message"]


def test_many_inputs_split_across_batches_keep_order(client):
    texts = [f"text number {i} " * (1 + i % 5) for i in range(100)]
    r = client.post("/classify?adapter=sentiment", json={"inputs": texts, "raw_scores": True})
    assert r.status_code == 200
    one = [
        client.post("/classify?adapter=sentiment", json={"inputs": t, "raw_scores": True}).json()[0] for t in texts[:5]
    ]
    for a, b in zip(r.json()[:5], one):
        assert a[0]["label"] == b[0]["label"] and abs(a[0]["score"] - b[0]["score"]) < 1e-4
