"""benchmarks/train_kinds.py: the page it renders from a run's results (the run itself takes an hour)."""

from benchmarks.train_kinds import KINDS, PRESETS, render


def _row(kind: str, servable: bool, f1: float) -> dict:
    return {
        "kind": kind,
        "servable": servable,
        "test": {"accuracy": f1 + 0.02, "macro_f1": f1, "n": 100},
        "trainable_parameters": 1000,
        "backbone_parameters": 100000,
        "train_s": 120.0,
        "size_bytes": 4000,
        "training": {"steps": 10, "best_step": 8, "epochs_run": 1.0, "stopped_early": False, "lr": 1e-3},
        "splits": {"train": 80, "validation": 10, "test": 10},
        **({"served_rps": 150.0} if servable else {}),
    }


def test_render_has_one_row_per_kind_and_names_what_cannot_be_served():
    rows = [_row(k, k not in ("head", "full"), 0.5 + i / 100) for i, k in enumerate(KINDS)]
    config = {"epochs": 3, "eval_steps": 0, "patience": 2, "threads": 2, "seconds": 20, "warmup": 3}
    result = {"commit": "abc", "machine": "test", "preset": "topic", "command": "python -m benchmarks.train_kinds"}
    page = render(result | {"config": config | {"connections": 32, "max_train_rows": 0}, "rows": rows, "best": "ia3"})
    table = [line for line in page.splitlines() if line.startswith("| ") and "%" in line]
    assert len(table) == len(KINDS)
    assert sum("not servable" in line for line in table) == 2 and "| **ia3** (shipped) |" in page
    assert "after every epoch" in page and PRESETS["topic"].what in page and "`adapters_store/topic`" in page
