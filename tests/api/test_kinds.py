"""IA3, prefix and prompt adapters through the HTTP API: published like any adapter, listed with their kind,
answering with the reference library's logits; malformed folders are refused with a 422 naming the problem
while the previous version keeps serving."""

import io
import json

import pytest
import torch
from safetensors.torch import load_file, save

from ..conftest import GOLDEN, golden
from .conftest import golden_files

KINDS = [
    ("ah_ia3", "ia3", "classify"),
    ("ah_prefix", "prefix", "classify"),
    ("ah_prefix_flat", "prefix", "classify"),
    ("peft_ia3", "ia3", "classify"),
    ("peft_prefix", "prefix", "classify"),
    ("peft_prompt_text", "prompt", "classify"),
    ("ah_ia3_tagging", "ia3", "tag"),
    ("ah_prefix_tagging", "prefix", "tag"),
    ("peft_prompt_random", "prompt", "tag"),
    ("peft_prefix_token_cls", "prefix", "tag"),
]


@pytest.mark.parametrize("case,kind,route", KINDS, ids=[k[0] for k in KINDS])
def test_kind_is_served_with_reference_logits_and_listed(client, admin, case, kind, route):
    r = client.put(f"/admin/adapters/{case.replace('_', '-')}", files=golden_files(case), headers=admin)
    assert r.status_code == 201, r.text
    name = case.replace("_", "-")
    _, exp = golden(case)
    info = client.get(f"/adapters/{name}").json()
    assert info["kind"] == kind and info["task"] == exp["task"]
    if route == "classify":
        r = client.post(f"/classify?adapter={name}", json={"inputs": exp["texts"], "raw_scores": True})
        assert r.status_code == 200, r.text
        for got, want in zip(r.json(), exp["logits_single"]):
            by_label = {x["label"]: x["score"] for x in got}
            assert torch.allclose(torch.tensor([by_label[lb] for lb in exp["labels"]]), torch.tensor(want), atol=1e-4)
    else:
        r = client.post(f"/tag?adapter={name}", json={"inputs": exp["texts"], "aggregation": "none"})
        assert r.status_code == 200, r.text
        for tokens, want, ids in zip(r.json(), exp["logits_single"], exp["input_ids"]):
            want = torch.tensor(want)[1 : len(ids) - 1]  # the answer leaves out [CLS] and [SEP]
            assert len(tokens) == want.shape[0]
            best = torch.softmax(want, -1).max(-1)
            assert [t["label"] for t in tokens] == [exp["labels"][i] for i in best.indices.tolist()]
            assert torch.allclose(torch.tensor([t["score"] for t in tokens]), best.values, atol=1e-4)


def test_prompt_tokens_count_against_the_position_limit(client, admin):
    """tiny-bert has 128 positions; a 6-token prompt leaves 122 for the text."""
    client.put("/admin/adapters/prompt", files=golden_files("peft_prompt_text"), headers=admin)
    long_text = " ".join(["word"] * 124)  # 126 tokens with [CLS]/[SEP]: fits the backbone, not beside the prompt
    r = client.post("/classify?adapter=prompt", json={"inputs": long_text, "truncate": False})
    assert r.status_code == 422 and "prompt/prefix" in r.json()["message"], r.text
    assert client.post("/classify?adapter=sentiment", json={"inputs": long_text, "truncate": False}).status_code == 200
    assert client.post("/classify?adapter=prompt", json={"inputs": long_text}).status_code == 200  # truncated


def _replace(case: str, name: str, data: bytes):
    return [f if f[1][0] != name else ("files", (name, data)) for f in golden_files(case)]


def _config(case: str, **changes) -> bytes:
    cfg = json.loads((GOLDEN / case / "adapter" / "adapter_config.json").read_text())
    target = cfg.get("config", cfg)
    target.update(changes)
    return json.dumps(cfg).encode()


def _safetensors(case: str, file: str, edit) -> bytes:
    t = load_file(str(GOLDEN / case / "adapter" / file))
    edit(t)
    return save(t)


def _bin(case: str, edit) -> bytes:
    t = torch.load(str(GOLDEN / case / "adapter" / "pytorch_adapter.bin"), weights_only=True)
    edit(t)
    buf = io.BytesIO()
    torch.save(t, buf)
    return buf.getvalue()


def _first(t: dict, suffix: str) -> str:
    return next(k for k in sorted(t) if k.endswith(suffix))


BAD = [
    (
        "ah prefix_length contradicts weights",
        lambda: _replace("ah_prefix", "adapter_config.json", _config("ah_prefix", prefix_length=6)),
        "wte.weight",
    ),
    (
        "ah flat prefix of the wrong size",
        lambda: _replace(
            "ah_prefix_flat",
            "pytorch_adapter.bin",
            _bin("ah_prefix_flat", lambda t: [t.__setitem__(k, t[k][:-32]) for k in list(t)]),
        ),
        "control_trans",
    ),
    (
        "ah prefix with gating",
        lambda: _replace("ah_prefix", "adapter_config.json", _config("ah_prefix", use_gating=True)),
        "use_gating",
    ),
    (
        "ah ia3 vector of the wrong shape",
        lambda: _replace(
            "ah_ia3",
            "adapter.safetensors",
            _safetensors(
                "ah_ia3", "adapter.safetensors", lambda t: t.__setitem__(_first(t, "lora_B"), torch.ones(7, 1))
            ),
        ),
        "shape",
    ),
    (
        "ah ia3 weights the config does not place",
        lambda: _replace("ah_ia3", "adapter_config.json", _config("ah_ia3", intermediate_lora=False)),
        "intermediate.dense",
    ),
    (
        "ah lora (additive) is not ia3",
        lambda: _replace("ah_ia3", "adapter_config.json", _config("ah_ia3", composition_mode="add")),
        "composition_mode",
    ),
    (
        "peft ia3 vector of the wrong shape",
        lambda: _replace(
            "peft_ia3",
            "adapter_model.safetensors",
            _safetensors(
                "peft_ia3", "adapter_model.safetensors", lambda t: t.__setitem__(_first(t, "ia3_l"), torch.ones(2, 2))
            ),
        ),
        "ia3_l",
    ),
    (
        "peft prefix for another depth",
        lambda: _replace("peft_prefix", "adapter_config.json", _config("peft_prefix", num_layers=3)),
        "num_layers",
    ),
    (
        "peft prompt without its embeddings",
        lambda: _replace(
            "peft_prompt_text",
            "adapter_model.safetensors",
            _safetensors("peft_prompt_text", "adapter_model.safetensors", lambda t: t.pop("prompt_embeddings")),
        ),
        "prompt_embeddings",
    ),
    (
        "peft prompt count contradicts weights",
        lambda: _replace("peft_prompt_text", "adapter_config.json", _config("peft_prompt_text", num_virtual_tokens=9)),
        "prompt_embeddings",
    ),
]


@pytest.mark.parametrize("case,files_fn,needle", BAD, ids=[b[0] for b in BAD])
def test_malformed_kind_folders_are_422_and_previous_version_keeps_serving(client, admin, case, files_fn, needle):
    body = {"inputs": ["one text", "another"], "raw_scores": True}
    before = client.post("/classify?adapter=sentiment", json=body)
    r = client.put("/admin/adapters/sentiment", files=files_fn(), headers=admin)
    assert r.status_code == 422, (case, r.status_code, r.text)
    assert needle in r.json()["message"], r.json()["message"]
    after = client.post("/classify?adapter=sentiment", json=body)
    assert after.status_code == 200
    assert after.headers["X-Adapter-Version"] == before.headers["X-Adapter-Version"]
    assert after.json() == before.json()
