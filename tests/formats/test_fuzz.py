"""Fuzz: mutated real adapter folders are either loaded or refused with a 4xx service error, never anything else.

Starts from folders the reference libraries saved (tests/fixtures/golden) and applies a few hundred seeded
mutations each (tests/formats/mutate.py). A refusal must be one of the service's own errors with a 4xx status
and a message, and must come from an explicit check: `unexpected` marks the loader's last-resort wrapping of
a stray exception, which this test treats as a bug.
"""

from __future__ import annotations

import pytest

from adapterserve.adapters.model import Adapter
from adapterserve.errors import AdapterServeError
from adapterserve.formats import load_adapter
from adapterserve.formats.describe import describe_folder

from ..conftest import backbone_for
from .mutate import copy_case, mutations

CASES = [
    "ah_seq_bn",
    "ah_double_seq_bn",
    "ah_rf_dict_leave_out",
    "ah_ln_before_after",
    "ah_scaling_learned",
    "ah_static_head",
    "ah_tagging",
    "ah_seq_bn_bin",
    "peft_lora_list",
    "peft_lora_patterns",
    "peft_lora_regex",
    "peft_lora_layers_to_transform",
    "peft_lora_bias_all",
    "peft_token_cls",
    "peft_lora_bin",
    "ah_ia3",
    "ah_prefix",
    "ah_prefix_flat",
    "peft_ia3",
    "peft_prefix",
    "peft_prompt_text",
]
SEED = 20261129


def outcome(folder, shape) -> Adapter | AdapterServeError:
    try:
        return load_adapter(folder, shape)
    except AdapterServeError as e:
        return e


@pytest.mark.parametrize("case", CASES)
def test_mutated_folders_load_or_get_a_4xx_naming_the_problem(case, tmp_path):
    shape = backbone_for("tiny-bert").shape
    muts = mutations(case, SEED)
    assert len(muts) > 30
    refused = 0
    for i, (name, apply) in enumerate(muts):
        folder = copy_case(case, tmp_path / str(i))
        apply(folder)
        result = outcome(folder, shape)  # any other exception fails the test here, naming nothing: see below
        if isinstance(result, AdapterServeError):
            refused += 1
            assert 400 <= result.status_code < 500, (name, result.status_code, result.message)
            assert result.message and len(result.message) < 2000, name
            assert not result.details.get("unexpected"), f"{name}: no explicit check caught it: {result.message}"
        else:
            assert isinstance(result, Adapter), name
        meta = describe_folder(folder)  # the listing's view of the same folder never raises either
        assert isinstance(meta, dict) and (meta.get("warnings") or meta.get("format")), (name, meta)
    assert refused > len(muts) // 3, (refused, len(muts))  # the mutations do bite


def test_the_fuzz_is_deterministic():
    assert [n for n, _ in mutations("peft_lora_list", SEED)] == [n for n, _ in mutations("peft_lora_list", SEED)]
    assert [n for n, _ in mutations("peft_lora_list", SEED)] != [n for n, _ in mutations("peft_lora_list", SEED + 1)]
