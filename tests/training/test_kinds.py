"""The training kinds registry and the typed training config."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from adapterserve.training import kinds
from adapterserve.training.cli import add_arguments
from adapterserve.training.config import DEFAULTS, TrainConfig
from adapterserve.training.model import Spec


def test_registered_kinds_and_what_they_export():
    assert kinds.names() == ["seq_bn", "double_seq_bn", "lora", "ia3", "prefix", "head", "full"]
    assert [k for k in kinds.names() if kinds.get(k).servable] == ["seq_bn", "double_seq_bn", "lora", "ia3", "prefix"]
    assert kinds.get("full").trains_backbone and kinds.get("head").head_only
    assert kinds.get("full").default_lr == 5e-5 and kinds.get("seq_bn").default_lr == 1e-3


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(KeyError, match="seq_bn"):
        kinds.get("prompt")
    with pytest.raises(KeyError, match="known"):
        TrainConfig(kind="prompt")


def test_argparse_defaults_are_the_config_defaults():
    p = argparse.ArgumentParser()
    add_arguments(p)
    for action in p._actions:
        if action.option_strings and action.dest not in ("help", "data"):
            assert action.default == getattr(DEFAULTS, action.dest), action.dest
    dests = {a.dest for a in p._actions}
    assert {f.name for f in fields(TrainConfig)} - dests == {"command_line"}


def test_peak_lr_falls_back_to_the_kind_default():
    assert TrainConfig(kind="full").peak_lr == 5e-5
    assert TrainConfig(kind="full", lr=0.01).peak_lr == 0.01


def test_lora_head_layout_and_pooler_refusal(tiny_backbone):
    sh = tiny_backbone.shape
    spec = Spec(kind="lora", task="classification", labels=["a", "b"], head_layers=3, lora_r=2)
    adapter = kinds.build_adapter(spec, sh.hidden_size, sh.num_layers, sh.linear_shapes, True, seed=0)
    assert adapter.head.pooling == "pooler" and len(adapter.head.layers) == 1  # PEFT's classifier: one Linear
    with pytest.raises(ValueError, match="pooler"):
        kinds.build_adapter(spec, sh.hidden_size, sh.num_layers, sh.linear_shapes, False, seed=0)
    seq = Spec(kind="seq_bn", task="tagging", labels=["O", "B"], reduction_factor=4)
    adapter = kinds.build_adapter(seq, sh.hidden_size, sh.num_layers, sh.linear_shapes, False, seed=0)
    assert adapter.head.pooling == "tokens" and len(adapter.head.layers) == 1
