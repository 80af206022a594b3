"""POST /answer: the question-answering pipeline's answers through HTTP, and clear 4xx for bad input."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from adapterserve.main import create_app
from adapterserve.state import build_state
from adapterserve.store import open_store

from ..conftest import GOLDEN, backbone_for, golden
from .conftest import make_settings, publish_golden

QA = {"qa": "ah_qa_seq_bn", "qa2": "ah_qa_double_2layer", "qa-lora": "peft_qa_lora"}


@pytest.fixture
def qa_client(tmp_path):
    s = make_settings(tmp_path)
    publish_golden(s.store)
    store = open_store(s.store)
    for name, case in QA.items():
        if (GOLDEN / case).is_dir():
            store.publish(name, GOLDEN / case / "adapter")
    app = create_app(s, lambda s: build_state(s, backbone=backbone_for("tiny-bert")))
    with TestClient(app) as c:
        yield c


def _as_list(answer):
    return answer if isinstance(answer, list) else [answer]


def _same(got: list[dict], want: list[dict]) -> bool:
    return len(got) == len(want) and all(
        (g["start"], g["end"], g["answer"]) == (w["start"], w["end"], w["answer"])
        and abs(g["score"] - w["score"]) <= 1e-4 * w["score"] + 1e-7
        for g, w in zip(got, want)
    )


@pytest.mark.parametrize("name", sorted(QA))
def test_answers_equal_the_pipelines(qa_client, name):
    """Every golden run (long contexts windowed with several doc_strides, top_k, max_answer_len), with all the
    examples of a setting in ONE request (their windows are rows of one batch)."""
    if not (GOLDEN / QA[name]).is_dir():
        pytest.skip(f"golden case {QA[name]} not generated")
    _, exp = golden(QA[name])
    settings = sorted({(r["top_k"], r["max_answer_len"], r["doc_stride"]) for r in exp["runs"]}, key=str)
    for top_k, mal, stride in settings:
        runs = [r for r in exp["runs"] if (r["top_k"], r["max_answer_len"], r["doc_stride"]) == (top_k, mal, stride)]
        body = {"inputs": [exp["examples"][r["example"]] for r in runs], "top_k": top_k, "max_answer_len": mal}
        if stride is not None:
            body["doc_stride"] = stride
        r = qa_client.post(f"/answer?adapter={name}", json=body)
        assert r.status_code == 200, r.text
        for run, got in zip(runs, r.json()):
            if top_k == 1:
                assert isinstance(got, dict)
            else:
                assert isinstance(got, list)
            assert _same(_as_list(got), _as_list(run["answer"])), (run, got)
            for a in _as_list(got):
                assert exp["examples"][run["example"]]["context"][a["start"] : a["end"]] == a["answer"]


def test_single_input_object(qa_client):
    ctx = "The Eiffel Tower is a wrought-iron lattice tower in Paris."
    r = qa_client.post("/answer?adapter=qa", json={"inputs": {"question": "Where?", "context": ctx}})
    assert r.status_code == 200, r.text
    (a,) = r.json()
    assert ctx[a["start"] : a["end"]] == a["answer"] and 0 < a["score"] <= 1
    assert r.headers["X-Adapter-Version"]


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({"inputs": {"question": "Where?"}}, "context"),
        ({"inputs": {"context": "Paris."}}, "question"),
        ({"inputs": {"question": "Where?", "context": ""}}, "context is empty"),
        ({"inputs": {"question": "Where?", "context": "   "}}, "context is empty"),
        ({"inputs": {"question": "", "context": "Paris."}}, "question is empty"),
        ({"inputs": []}, "inputs"),
        ({"inputs": "Where?"}, "inputs"),
        ({"inputs": {"question": "q", "context": "c"}, "top_k": 0}, "top_k"),
        ({"inputs": {"question": "q", "context": "c"}, "max_answer_len": 0}, "max_answer_len"),
        ({"inputs": {"question": "q", "context": "c"}, "doc_stride": -1}, "doc_stride"),
        ({"inputs": {"question": "q " * 200, "context": "c"}}, "shorten the question"),
        ({"inputs": {"question": "q " * 100, "context": "word " * 200}, "doc_stride": 64}, "lower doc_stride"),
    ],
)
def test_bad_input_is_a_clear_4xx(qa_client, body, fragment):
    r = qa_client.post("/answer?adapter=qa", json=body)
    assert 400 <= r.status_code < 500, r.text
    assert fragment in r.text


def test_too_many_windows_is_a_413(qa_client):
    body = {"inputs": {"question": "q", "context": "word " * 3000}, "doc_stride": 122}  # a window per 2 tokens
    r = qa_client.post("/answer?adapter=qa", json=body)
    assert r.status_code == 413 and "raise doc_stride" in r.text, r.text
    body["doc_stride"] = 32
    assert qa_client.post("/answer?adapter=qa", json=body).status_code == 200


def test_wrong_task_points_to_the_right_route(qa_client):
    r = qa_client.post("/answer?adapter=sentiment", json={"inputs": {"question": "q", "context": "c"}})
    assert r.status_code == 422 and "/classify" in r.text, r.text
    r = qa_client.post("/classify?adapter=qa", json={"inputs": "hello"})
    assert r.status_code == 422 and "/answer" in r.text, r.text
    r = qa_client.post("/answer?adapter=nope", json={"inputs": {"question": "q", "context": "c"}})
    assert r.status_code == 404


def test_listing_shows_kind_and_task(qa_client):
    r = qa_client.get("/adapters/qa")
    assert r.status_code == 200
    assert r.json()["task"] == "qa" and r.json()["kind"] == "bottleneck"


def test_metrics_count_answer_requests(qa_client):
    qa_client.post("/answer?adapter=qa", json={"inputs": {"question": "q", "context": "some context"}})
    text = qa_client.get("/metrics").text
    assert any('route="answer"' in line and 'adapter="qa"' in line for line in text.splitlines()), text[:2000]


def _files(folder):
    return [("files", (p.name, p.read_bytes())) for p in sorted(folder.iterdir()) if p.is_file()]


@pytest.mark.parametrize("breakage", ["three outputs", "no qa_outputs", "sidecar says classification"])
def test_malformed_qa_folders_are_refused_and_the_previous_version_keeps_serving(qa_client, tmp_path, breakage):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    admin = {"Authorization": "Bearer test-admin-token"}
    body = {"inputs": {"question": "Where?", "context": "The tower is in Paris."}}
    before = qa_client.post("/answer?adapter=qa-lora", json=body).json()
    bad = shutil.copytree(GOLDEN / "peft_qa_lora" / "adapter", tmp_path / "bad")
    weights = bad / "adapter_model.safetensors"
    tensors = load_file(weights)
    if breakage == "three outputs":
        tensors = {k: torch.cat([v, v[:1]]) if "qa_outputs" in k else v for k, v in tensors.items()}
    elif breakage == "no qa_outputs":
        tensors = {k: v for k, v in tensors.items() if "qa_outputs" not in k}
    else:
        (bad / "adapterserve.json").write_text('{"task": "classification"}')
    save_file(tensors, weights)
    r = qa_client.put("/admin/adapters/qa-lora", files=_files(bad), headers=admin)
    assert r.status_code == 422, r.text
    after = qa_client.post("/answer?adapter=qa-lora", json=body)
    assert after.status_code == 200 and after.json() == before
