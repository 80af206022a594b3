"""The real huggingface_hub InferenceClient against a real server: what it sends, and that it parses our answers."""

import json

import pytest
import torch

from ..conftest import GOLDEN

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hf():
    """InferenceClient, allowed to reach our loopback server: HF_HUB_OFFLINE (set for the whole suite, so
    nothing reaches a hub) also blocks the client's requests to any URL."""
    from huggingface_hub import InferenceClient, constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(constants, "HF_HUB_OFFLINE", False)
        yield InferenceClient


def _golden(case):
    return json.loads((GOLDEN / case / "expected.json").read_text())


def test_text_classification_with_parameters(live_server, hf):
    exp = _golden("ah_seq_bn")
    client = hf(model=f"{live_server.url}/classify?adapter=sentiment")
    for text, logits in zip(exp["texts"], exp["logits_batched"]):
        out = client.text_classification(text)
        assert [o.label for o in out] == [exp["labels"][i] for i in torch.tensor(logits).argsort(descending=True)]
        probs = torch.softmax(torch.tensor(logits), -1)
        assert [o.score for o in out] == pytest.approx(sorted(probs.tolist(), reverse=True), abs=1e-4)
        top = client.text_classification(text, top_k=2)
        assert [o.label for o in top] == [o.label for o in out[:2]]
        raw = client.text_classification(text, function_to_apply="none")
        assert {o.label: o.score for o in raw} == pytest.approx(dict(zip(exp["labels"], logits)), abs=1e-4)
        sig = client.text_classification(text, function_to_apply="sigmoid")
        assert {o.label: o.score for o in sig} == pytest.approx(
            dict(zip(exp["labels"], torch.sigmoid(torch.tensor(logits)).tolist())), abs=1e-4
        )


def test_text_classification_multilabel_defaults_to_sigmoid(live_server, hf):
    out = hf(model=f"{live_server.url}/classify?adapter=multi").text_classification("a text")
    assert len(out) >= 2 and all(0 < o.score < 1 for o in out)
    assert sum(o.score for o in out) != pytest.approx(1.0, abs=1e-3)  # independent sigmoids, not a softmax


@pytest.mark.parametrize("strategy", [None, "none", "simple", "first", "average", "max"])
def test_token_classification_strategies(live_server, hf, strategy):
    import httpx

    text = "Angela Merkel visited Paris yesterday"
    client = hf(model=f"{live_server.url}/tag?adapter=ner")
    out = client.token_classification(text, aggregation_strategy=strategy, ignore_labels=[])
    # The same request through our own fields: the HF client's parse must agree with it item by item.
    ours = httpx.post(
        f"{live_server.url}/tag?adapter=ner",
        json={"inputs": [text], "aggregation": strategy or "first", "ignore_labels": []},
    ).json()[0]
    assert len(out) == len(ours) > 0
    for o, e in zip(out, ours):
        assert (o.start, o.end, o.word) == (e["start"], e["end"], e["word"])
        assert o.score == pytest.approx(e["score"])
        if strategy == "none":
            assert o.entity == e["label"] and o.entity_group is None
        else:
            assert o.entity_group == e["label"] and text[o.start : o.end] == e["text"]


def test_token_classification_ignores_o_by_default(live_server, hf):
    client = hf(model=f"{live_server.url}/tag?adapter=ner")
    text = "Angela Merkel visited Paris yesterday and then Berlin"
    every = client.token_classification(text, aggregation_strategy="none", ignore_labels=[])
    default = client.token_classification(text, aggregation_strategy="none")
    assert [o for o in every if o.entity != "O"] == default


def test_feature_extraction(live_server, hf):
    client = hf(model=f"{live_server.url}/embed")
    vec = client.feature_extraction("I love it", normalize=True)
    assert vec.shape[-1] == 32
    assert float((vec.reshape(-1) ** 2).sum()) == pytest.approx(1.0, abs=1e-4)


def test_unsupported_parameters_are_refused_clearly(live_server, hf):
    from huggingface_hub.errors import HfHubHTTPError

    client = hf(model=f"{live_server.url}/tag?adapter=ner")
    with pytest.raises(HfHubHTTPError) as e:
        client.token_classification("some text", stride=8)
    assert e.value.response.status_code == 422
    assert "stride is not supported" in e.value.response.json()["message"]
