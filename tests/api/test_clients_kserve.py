"""KServe v2 / Open Inference Protocol with the real tritonclient.http client against a real server."""

import json

import numpy as np
import pytest
import torch

from ..conftest import GOLDEN
from .conftest import PUBLISHED, TOKEN

pytestmark = pytest.mark.slow
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def triton(live_server):
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(url=live_server.url.removeprefix("http://"))


def _text_input(name, texts, binary):
    import tritonclient.http as httpclient

    t = httpclient.InferInput(name, [len(texts)], "BYTES")
    t.set_data_from_numpy(np.array([s.encode() for s in texts], dtype=np.object_), binary_data=binary)
    return t


def test_health_and_metadata(triton):
    assert triton.is_server_live() and triton.is_server_ready()
    meta = triton.get_server_metadata()
    assert meta["name"] == "adapterserve" and "model_repository" in meta["extensions"]
    assert triton.is_model_ready("sentiment")
    assert not triton.is_model_ready("no-such-adapter")
    model = triton.get_model_metadata("sentiment")
    assert [i["name"] for i in model["inputs"]] == ["text", "text_pair"]
    assert {o["name"]: o["datatype"] for o in model["outputs"]} == {"labels": "BYTES", "scores": "FP32"}
    assert triton.is_model_ready("sentiment", model_version=model["versions"][0])


@pytest.mark.parametrize("binary", [True, False])
def test_infer_matches_golden_logits(triton, binary):
    import tritonclient.http as httpclient

    exp = json.loads((GOLDEN / "ah_seq_bn" / "expected.json").read_text())
    result = triton.infer(
        "sentiment",
        [_text_input("text", exp["texts"], binary)],
        parameters={"function_to_apply": "none"},
        outputs=[httpclient.InferRequestedOutput("labels"), httpclient.InferRequestedOutput("scores")],
    )
    labels, scores = result.as_numpy("labels"), result.as_numpy("scores")
    assert labels.shape == scores.shape == (len(exp["texts"]), len(exp["labels"]))
    assert scores.dtype == np.float32
    for row_labels, row_scores, want in zip(labels, scores, exp["logits_batched"]):
        got = {(lb.decode() if isinstance(lb, bytes) else lb): s for lb, s in zip(row_labels, row_scores)}
        assert [got[name] for name in exp["labels"]] == pytest.approx(want, abs=1e-4)
        assert list(row_scores) == sorted(row_scores, reverse=True)


def test_infer_text_pairs_and_top_k(triton):
    exp = json.loads((GOLDEN / "ah_text_pair" / "expected.json").read_text())
    texts = exp["texts"]
    firsts, seconds = [t[0] for t in texts], [t[1] for t in texts]
    result = triton.infer(
        "pairs", [_text_input("text", firsts, True), _text_input("text_pair", seconds, True)], parameters={"top_k": 1}
    )
    best = [lb.decode() if isinstance(lb, bytes) else lb for lb in result.as_numpy("labels")[:, 0]]
    want = [exp["labels"][int(torch.tensor(lg).argmax())] for lg in exp["logits_batched"]]
    assert best == want


def test_infer_tagging_answers_entities(triton):
    result = triton.infer("ner", [_text_input("text", ["Angela Merkel visited Paris"], True)])
    (entities,) = result.as_numpy("entities")
    parsed = json.loads(entities)
    assert isinstance(parsed, list) and all({"label", "start", "end", "score"} <= set(e) for e in parsed)


def test_errors_reach_the_client(triton):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as e:
        triton.infer("no-such-adapter", [_text_input("text", ["x"], True)])
    assert e.value.status() == "404"
    with pytest.raises(InferenceServerException) as e:
        triton.get_model_metadata("sentiment", model_version="not-the-current-one")
    assert e.value.status() == "404"


def test_repository_extension_behind_the_admin_token(triton):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as e:
        triton.get_model_repository_index()
    assert e.value.status() == "401"
    index = {m["name"]: m for m in triton.get_model_repository_index(headers=ADMIN)}
    assert set(index) == set(PUBLISHED)
    triton.load_model("lora", headers=ADMIN)
    assert {m["name"]: m for m in triton.get_model_repository_index(headers=ADMIN)}["lora"]["state"] == "READY"
    triton.unload_model("lora", headers=ADMIN)
    assert {m["name"]: m for m in triton.get_model_repository_index(headers=ADMIN)}["lora"]["state"] == "UNAVAILABLE"
