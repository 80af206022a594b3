"""Small training files (with bad bytes) and a runner for `adapterserve train` on the tiny random BERT."""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

import pytest

from tests.conftest import TINY

POS = ["good", "great", "love", "nice", "happy"]
NEG = ["bad", "awful", "hate", "terrible", "sad"]
NEU = ["table", "car", "blue", "paper", "walk"]


def _rows(n: int, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(n):
        label = rng.choice(["positive", "negative", "neutral"])
        words = {"positive": POS, "negative": NEG, "neutral": NEU}[label]
        yield label, [rng.choice(words + NEU) for _ in range(5)]


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory) -> str:
    """The tiny BERT fixture; built here (random weights + MiniLM's tokenizer) if the shared one is absent."""
    if (TINY / "model.safetensors").is_file():
        return str(TINY)
    import torch
    from transformers import BertConfig, BertModel

    from adapterserve.settings import default_backbone

    out = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    ).save_pretrained(out)
    for fn in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(Path(default_backbone()) / fn, out / fn)
    return str(out)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    with open(d / "cls.csv", "wb") as f:  # CRLF, a few lines with bytes that are not UTF-8
        f.write(b"sentiment,tweet\r\n")
        for i, (label, words) in enumerate(_rows(120)):
            f.write(f"{label},{' '.join(words)}".encode() + (b" \xd5\xa2_\x8a" if i % 10 == 0 else b"") + b"\r\n")
    with open(d / "cls.jsonl", "w") as f:
        for label, words in _rows(120, 1):
            f.write(json.dumps({"sentence": " ".join(words), "y": label}) + "\n")
    with open(d / "ml.jsonl", "w") as f:
        for label, words in _rows(120, 2):
            labels = [label] + (["blue"] if "blue" in words else [])
            f.write(json.dumps({"text": " ".join(words), "labels": labels}) + "\n")
    with open(d / "tag.jsonl", "w") as f:
        for _, words in _rows(120, 3):
            tags = ["POS" if w in POS else "NEG" if w in NEG else "O" for w in words]
            f.write(json.dumps({"tokens": words, "tags": tags}) + "\n")
    return d


DATA_ARGS = {
    "classification": lambda d: ["--data", str(d / "cls.csv"), "--label-column", "sentiment", "--text-column", "tweet"],
    "multilabel": lambda d: ["--data", str(d / "ml.jsonl"), "--task", "multilabel"],
    "tagging": lambda d: ["--data", str(d / "tag.jsonl"), "--task", "tagging"],
}


def parse(argv: list[str]) -> argparse.Namespace:
    from adapterserve.training import add_parser

    parser = argparse.ArgumentParser(prog="adapterserve")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


@pytest.fixture
def train_cli(tiny_path):
    """Run `adapterserve train` in-process on the tiny backbone; returns (exit code, eval.json or None)."""

    def run(argv: list[str], output: Path):
        from adapterserve.training import run as run_train

        args = parse(["--backbone", tiny_path, "--output", str(output), "--no-progress", "--epochs", "1", *argv])
        rc = run_train(args)
        report = output / "eval.json"
        return rc, json.loads(report.read_text()) if report.is_file() else None

    return run
