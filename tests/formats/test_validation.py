"""Config validation: the folders the issue found (500s, or accepted although the library refuses them) and
their neighbours, each refused with a 4xx naming the key, and compared with what the REFERENCE library does
with the same folder (tests/formats/reference_load.py in the side environments; skipped without them).

`lib` says what the library does with the folder: "refuses" (we mirror it), "loads" (we accept it too),
"ignores" (the library loads it but silently drops weights or reads the key as something else, so its logits
would not be what was trained: we refuse, saying why), or "stricter" (a value of the wrong type that the library
happens to tolerate, such as leave_out=["x"], which it reads as "no layer left out": we refuse it by type).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from adapterserve.errors import AdapterServeError, InvalidAdapter
from adapterserve.formats import load_adapter

from ..conftest import TINY, backbone_for, golden
from .mutate import copy_case

HERE = Path(__file__).parent
REF_ENVS = Path(os.environ.get("ADAPTERSERVE_REF_ENVS", Path.home() / ".cache/adapterserve/ref-envs"))
LIBS = {"ah": "adapters", "peft": "peft"}


def edit(file: str, path: str, value=None, delete: bool = False):
    def apply(folder: Path) -> None:
        data = json.loads((folder / file).read_text())
        *parents, last = path.split("/")
        node = data
        for k in parents:
            node = node[k]
        if delete:
            del node[last]
        else:
            node[last] = value
        (folder / file).write_text(json.dumps(data))

    return apply


AC, HC = "adapter_config.json", "head_config.json"
# (id, golden case, edit, key the error must name (None: accepted), what the library does)
ROWS = [
    ("ah-leave_out-int", "ah_seq_bn", edit(AC, "config/leave_out", 7), "config.leave_out", "refuses"),
    ("ah-leave_out-str", "ah_seq_bn", edit(AC, "config/leave_out", ["x"]), "config.leave_out[0]", "stricter"),
    ("ah-leave_out-all", "ah_seq_bn", edit(AC, "config/leave_out", [0, 1]), "output", "ignores"),
    ("ah-head-layers-str", "ah_seq_bn", edit(HC, "config/layers", "two"), "config.layers", "refuses"),
    ("ah-head-layers-3", "ah_seq_bn", edit(HC, "config/layers", 3), "heads.ah_seq_bn.4.weight", "refuses"),
    ("ah-head-num_labels", "ah_seq_bn", edit(HC, "config/num_labels", 5), "config.num_labels", "refuses"),
    ("ah-rf-zero", "ah_seq_bn", edit(AC, "config/reduction_factor", 0), "config.reduction_factor", "refuses"),
    ("ah-rf-denormal", "ah_seq_bn", edit(AC, "config/reduction_factor", 1e-320), "config.reduction_factor", "refuses"),
    ("ah-rf-4", "ah_seq_bn", edit(AC, "config/reduction_factor", 4), "adapter_down.0.weight", "refuses"),
    ("ah-act-unknown", "ah_seq_bn", edit(AC, "config/non_linearity", "nope"), "config.non_linearity", "refuses"),
    ("ah-dropout-2", "ah_seq_bn", edit(AC, "config/dropout", 2), "config.dropout", "refuses"),
    (
        "ah-head-act",
        "ah_seq_bn",
        edit(HC, "config/activation_function", "nope"),
        "config.activation_function",
        "refuses",
    ),
    ("ah-no-mh_adapter", "ah_seq_bn", edit(AC, "config/mh_adapter", delete=True), "config.mh_adapter", "refuses"),
    ("ah-extra-key", "ah_seq_bn", edit(AC, "config/zz_extra", 1), None, "loads"),
    ("peft-alpha_pattern-regex", "peft_lora_list", edit(AC, "alpha_pattern", {"(((": 3}), "alpha_pattern", "refuses"),
    ("peft-lora_alpha-null", "peft_lora_list", edit(AC, "lora_alpha", None), "lora_alpha", "refuses"),
    ("peft-r-0", "peft_lora_list", edit(AC, "r", 0), "r", "refuses"),
    ("peft-r-str", "peft_lora_list", edit(AC, "r", "4"), "r", "refuses"),
    ("peft-r-8", "peft_lora_list", edit(AC, "r", 8), "rank_pattern", "refuses"),
    ("peft-rank_pattern-0", "peft_lora_list", edit(AC, "rank_pattern", {"query": 0}), "rank_pattern", "refuses"),
    ("peft-targets-none", "peft_lora_list", edit(AC, "target_modules", ["nothing"]), "target_modules", "refuses"),
    ("peft-targets-regex-none", "peft_lora_list", edit(AC, "target_modules", "nothing"), "target_modules", "refuses"),
    (
        "peft-targets-layernorm",
        "peft_lora_list",
        edit(AC, "target_modules", ["LayerNorm"]),
        "target_modules",
        "refuses",
    ),
    ("peft-targets-fewer", "peft_lora_list", edit(AC, "target_modules", ["query"]), "target_modules", "ignores"),
    ("peft-layers-out", "peft_lora_list", edit(AC, "layers_to_transform", [5]), "target_modules", "refuses"),
    ("peft-pattern-alone", "peft_lora_list", edit(AC, "layers_pattern", "layer"), "layers_pattern", "refuses"),
    ("peft-dropout-2", "peft_lora_list", edit(AC, "lora_dropout", 2), "lora_dropout", "refuses"),
    ("peft-bias-bad", "peft_lora_list", edit(AC, "bias", "sometimes"), "bias", "refuses"),
    ("peft-bias-none", "peft_lora_bias_all", edit(AC, "bias", "none"), "bias", "ignores"),
    ("peft-extra-key", "peft_lora_list", edit(AC, "zz_extra", 1), None, "loads"),
    ("peft-no-lora_alpha", "peft_lora_list", edit(AC, "lora_alpha", delete=True), None, "loads"),
]


def _folder(tmp_path: Path, row) -> Path:
    name, case, apply, *_ = row
    folder = copy_case(case, tmp_path / name)
    apply(folder)
    return folder


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_refused_with_the_key_named(row, tmp_path):
    name, case, _, key, _ = row
    folder = _folder(tmp_path, row)
    shape = backbone_for("tiny-bert").shape
    if key is None:
        assert load_adapter(folder, shape).head.num_labels > 0
        return
    with pytest.raises(AdapterServeError) as e:
        load_adapter(folder, shape)
    err = e.value
    assert isinstance(err, InvalidAdapter) and 400 <= err.status_code < 500 and not err.details.get("unexpected")
    assert key in str(err.details.get("key", "")) or key in err.message, (err.message, err.details)


def _reference_python(lib: str) -> Path | None:
    env = REF_ENVS / lib
    return env / "bin" / "python" if (env / ".ready").is_file() else None


@pytest.mark.slow
@pytest.mark.parametrize("prefix", sorted(LIBS))
def test_the_reference_library_agrees(prefix, tmp_path):
    """Each row's folder, loaded by the real library: it refuses what we mirror-refuse and loads the rest."""
    lib = LIBS[prefix]
    python = _reference_python(lib)
    if python is None:
        pytest.skip(f"no side environment for {lib} (tests/fixtures/ref_envs.sh {lib})")
    rows = [r for r in ROWS if r[1].startswith(prefix + "_")]
    items = []
    for row in rows:
        folder = _folder(tmp_path, row)
        exp = golden(row[1])[1]
        items.append({"folder": str(folder), "task": exp["task"], "num_labels": len(exp["logits_single"][0])})
    (tmp_path / "req.json").write_text(json.dumps({"backbone": str(TINY), "folders": items}))
    run = subprocess.run(
        [str(python), str(HERE / "reference_load.py"), "--lib", lib, str(tmp_path / "req.json")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    mismatches = [
        (row[0], row[4], res["error"]) for row, res in zip(rows, results) if res["loaded"] != (row[4] != "refuses")
    ]
    assert not mismatches, mismatches
