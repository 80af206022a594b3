"""GET /adapters: sizes from safetensors headers (no tensor is loaded, nothing is downloaded), and a broken
adapter in the store changes only its own entry: the listing and the other adapters keep working."""

from __future__ import annotations

import shutil

import pytest

from adapterserve.formats import load_adapter

from ..conftest import GOLDEN, backbone_for
from .conftest import PUBLISHED


def _listing(client) -> dict[str, dict]:
    r = client.get("/adapters")
    assert r.status_code == 200, r.text
    return {a["name"]: a for a in r.json()["adapters"]}


def test_listing_reads_sizes_from_headers_without_loading_tensors(client, monkeypatch):
    import safetensors.torch
    import torch

    shape = backbone_for("tiny-bert").shape
    expected = {name: load_adapter(GOLDEN / case / "adapter", shape) for name, case in PUBLISHED.items()}

    def forbidden(*a, **k):
        raise AssertionError("the listing loaded tensors")

    monkeypatch.setattr(safetensors.torch, "load_file", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    listing = _listing(client)
    for name, adapter in expected.items():
        entry = listing[name]
        assert entry["residency"] == "store" and not entry["warnings"], entry
        assert entry["parameters"] == adapter.num_parameters, (name, entry["parameters"], adapter.num_parameters)
        assert entry["bytes"] == adapter.nbytes and entry["stored_bytes"] > 0
        assert (entry["kind"], entry["task"], entry["format"]) == (adapter.kind, adapter.task, adapter.format)
        if entry["labels"] is not None:
            assert entry["labels"] == adapter.labels


def test_listing_never_downloads_a_non_resident_adapter(client, monkeypatch):
    store = client.app.state.adapterserve.store

    def forbidden(*a, **k):
        raise AssertionError("the listing fetched an adapter")

    monkeypatch.setattr(store, "fetch", forbidden)
    monkeypatch.setattr(store, "local_copy", lambda name, version: None)  # as for S3 before any download
    listing = _listing(client)
    for name in PUBLISHED:
        entry = listing[name]
        assert entry["version"] and entry["stored_bytes"] > 0 and entry["parameters"] is None, entry
    monkeypatch.undo()
    resident = client.post("/classify?adapter=sentiment", json={"inputs": "fine"})
    assert resident.status_code == 200
    assert _listing(client)["sentiment"]["parameters"] > 0  # resident: described from memory


@pytest.mark.parametrize(
    "name,make,says",
    [
        ("garbage", lambda d: (d / "adapter_config.json").write_bytes(b"{nope"), "not valid JSON"),
        ("rank-zero", lambda d: _peft_with(d, '"r": 0'), "r must be at least 1"),
        ("no-weights", lambda d: (d / "adapter.safetensors").unlink(), "no adapter weights"),
        ("lying-header", lambda d: (d / "adapter.safetensors").write_bytes(b"\xff" * 8 + b"{}"), "header claims"),
    ],
)
def test_a_broken_folder_in_the_store_breaks_only_itself(client, settings, name, make, says):
    from pathlib import Path

    folder = Path(settings.store) / name
    case = "peft_lora_list" if name == "rank-zero" else "ah_seq_bn"
    shutil.copytree(GOLDEN / case / "adapter", folder)  # a plain folder dropped into the local store
    make(folder)
    listing = _listing(client)
    assert any(says in w for w in listing[name]["warnings"]), listing[name]
    assert set(PUBLISHED) <= set(listing) and not listing["sentiment"]["warnings"]
    one = client.get(f"/adapters/{name}")
    assert one.status_code == 200 and one.json()["warnings"]
    r = client.post(f"/classify?adapter={name}", json={"inputs": "x"})
    assert r.status_code == 422 and says in r.json()["message"], r.text
    assert client.post("/classify?adapter=sentiment", json={"inputs": "x"}).status_code == 200
    assert client.post("/classify?adapter=lora", json={"inputs": "x"}).status_code == 200


def _peft_with(folder, replacement: str) -> None:
    import re

    path = folder / "adapter_config.json"
    path.write_text(re.sub(r'"r": \d+', replacement, path.read_text()))


def test_unreadable_store_metadata_is_an_entry_warning_not_a_failed_listing(client, settings):
    from pathlib import Path

    d = Path(settings.store) / "corrupt"
    (d / "versions").mkdir(parents=True)
    (d / "current").write_text("0123456789abcdef")
    (d / "versions" / "0123456789abcdef.json").write_text("{nope")
    listing = _listing(client)
    assert listing["corrupt"]["warnings"] and "cannot be described" in listing["corrupt"]["warnings"][0]
    assert not listing["sentiment"]["warnings"]


def test_unknown_adapter_names_close_matches_only(client):
    r = client.get("/adapters/sentimen")
    assert r.status_code == 404
    body = r.json()
    assert "did you mean 'sentiment'" in body["message"] and "lora-ner" not in body["message"]
