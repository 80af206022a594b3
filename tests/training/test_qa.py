"""`adapterserve train --task qa` on SQuAD-shaped JSON / JSONL: windows, targets, export in both layouts."""

from __future__ import annotations

import json
import random

import pytest

from adapterserve.formats import load_adapter
from adapterserve.training.data import Columns as DataColumns
from adapterserve.training.data import DataError, load_examples

CITIES = ["Paris", "Rome", "Madrid", "Berlin", "Vienna", "Lisbon", "Prague", "Dublin"]
FILLER = "The weather there is often mild and many visitors come every year to see the old town. "


def _squad_rows(n: int, seed: int = 0):
    rng = random.Random(seed)
    for i in range(n):
        country, city = f"country{i % 17}", rng.choice(CITIES)
        pre = FILLER * rng.choice([0, 1, 12])  # some contexts exceed the tiny backbone's 128 tokens
        context = f"{pre}The capital of {country} is {city}. {FILLER}"
        yield f"What is the capital of {country}?", context, city, context.index(f"is {city}") + 3


@pytest.fixture(scope="module")
def qa_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("qa")
    with open(d / "squad.jsonl", "w") as f:
        for q, c, a, s in _squad_rows(60):
            f.write(json.dumps({"question": q, "context": c, "answers": {"text": [a], "answer_start": [s]}}) + "\n")
        f.write(json.dumps({"question": "Where?", "context": "Here.", "answers": {"text": ["x"], "answer_start": [0]}}))
        f.write("\nnot json\n")
    paragraphs = [
        {"context": c, "qas": [{"id": str(i), "question": q, "answers": [{"text": a, "answer_start": s}]}]}
        for i, (q, c, a, s) in enumerate(_squad_rows(60, 1))
    ]
    paragraphs.append({"context": "Nothing.", "qas": [{"question": "Who?", "answers": [], "is_impossible": True}]})
    (d / "squad.json").write_text(json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": paragraphs}]}))
    with open(d / "flat.jsonl", "w") as f:
        for q, c, a, s in _squad_rows(30, 2):
            f.write(json.dumps({"q": q, "ctx": c, "answer": a, "start": s}) + "\n")
    return d


def test_squad_shapes_load_and_bad_rows_are_counted(qa_dir):
    ex, report = load_examples(str(qa_dir / "squad.jsonl"), "qa", DataColumns())
    assert len(ex) == 60 and report.skipped_reasons == {
        "answer text is not at answer_start in the context": 1,
        "invalid JSON line": 1,
    }
    assert ex[0].pair[ex[0].answer_start :].startswith(ex[0].label)
    ex, report = load_examples(str(qa_dir / "squad.json"), "qa", DataColumns())
    assert len(ex) == 60 and report.skipped_reasons == {"unanswerable question": 1}
    cols = DataColumns(question="q", context="ctx", answer="answer", answer_start="start")
    ex, _ = load_examples(str(qa_dir / "flat.jsonl"), "qa", cols)
    assert len(ex) == 30


def test_csv_and_wrong_json_are_data_errors(qa_dir, tmp_path):
    (tmp_path / "x.csv").write_text("question,context\nq,c\n")
    with pytest.raises(DataError, match="SQuAD"):
        load_examples(str(tmp_path / "x.csv"), "qa", DataColumns())
    (tmp_path / "x.json").write_text("5")
    with pytest.raises(DataError, match="list of records"):
        load_examples(str(tmp_path / "x.json"), "qa", DataColumns())
    with pytest.raises(DataError, match="not found"):
        load_examples(str(qa_dir / "flat.jsonl"), "qa", DataColumns())  # default column names absent


def test_window_targets_point_at_the_answer_tokens(qa_dir, tiny_backbone):
    from adapterserve.training.features import TrainingRow, encode

    examples, _ = load_examples(str(qa_dir / "squad.jsonl"), "qa", DataColumns())
    tok = tiny_backbone.tokenizer
    windows = encode(examples, tok, "qa", ["start", "end"], 128)
    assert len(windows) > len(examples)  # long contexts gave several windows
    inside = [w for w in windows if w.target[:2] != (0, 0)]
    assert len(inside) >= len(examples)
    for w in inside:
        s, e, _ = w.target
        text = tok.decode(w.input_ids[s : e + 1])
        assert text.lower() in [c.lower() for c in CITIES], text
    assert all(isinstance(w, TrainingRow) for w in windows)


@pytest.mark.parametrize("kind,data", [("seq_bn", "squad.jsonl"), ("lora", "squad.json")])
def test_train_qa_exports_a_folder_the_service_answers_with(train_cli, qa_dir, tmp_path, tiny_backbone, kind, data):
    out = tmp_path / "out"
    argv = ["--data", str(qa_dir / data), "--task", "qa", "--kind", kind, "--reduction-factor", "4", "--lora-r", "4"]
    rc, report = train_cli(argv, out)
    assert rc == 0
    assert report["task"] == "qa" and report["servable"] is True and report["self_check_max_abs_diff"] <= 1e-5
    for split in ("validation", "test"):
        m = report[split]
        assert m["n"] > 0 and 0 <= m["exact_match"] <= 1 and 0 <= m["f1"] <= 1
    adapter = load_adapter(out, tiny_backbone.shape)
    assert adapter.task == "qa" and adapter.head.num_labels == 2
    config = json.loads((out / "adapter_config.json").read_text())
    if kind == "lora":
        assert config["task_type"] == "QUESTION_ANS" and config["modules_to_save"] == ["qa_outputs"]
    else:
        assert json.loads((out / "head_config.json").read_text())["config"]["head_type"] == "question_answering"


def test_head_only_baseline_on_qa(train_cli, qa_dir, tmp_path):
    rc, report = train_cli(["--data", str(qa_dir / "squad.jsonl"), "--task", "qa", "--kind", "head"], tmp_path / "o")
    assert rc == 0 and report["servable"] is False and report["test"]["n"] > 0


@pytest.mark.slow  # trains for several epochs
def test_trained_qa_adapter_learns_and_answers_through_http(train_cli, tmp_path, tiny_path):
    """The whole path: SQuAD JSONL -> train --task qa -> publish -> POST /answer finds the capital."""
    from fastapi.testclient import TestClient

    from adapterserve.main import create_app
    from adapterserve.state import build_state
    from adapterserve.store import open_store

    from ..api.conftest import make_settings
    from ..conftest import backbone_for

    data = tmp_path / "squad.jsonl"
    with open(data, "w") as f:
        for q, c, a, s in _squad_rows(200, 5):
            f.write(json.dumps({"question": q, "context": c, "answers": {"text": [a], "answer_start": [s]}}) + "\n")
    argv = ["--data", str(data), "--task", "qa", "--epochs", "8", "--lr", "1e-2", "--reduction-factor", "4"]
    rc, report = train_cli([*argv, "--batch-size", "16", "--patience", "0"], tmp_path / "out")
    assert rc == 0 and report["validation"]["f1"] >= 0.8, report["training"]["history"]
    settings = make_settings(tmp_path)
    open_store(settings.store).publish("capitals", tmp_path / "out")
    app = create_app(settings, lambda s: build_state(s, backbone=backbone_for("tiny-bert")))
    context = "The capital of country5 is Lisbon. " + FILLER
    with TestClient(app) as client:
        r = client.post(
            "/answer?adapter=capitals",
            json={"inputs": {"question": "What is the capital of country5?", "context": context}},
        )
    assert r.status_code == 200, r.text
    assert r.json()[0]["answer"] == "Lisbon", r.json()
