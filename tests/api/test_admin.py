"""Admin API: upload, versions, rollback, delete, auth; a failed upload leaves the previous version serving."""

import io
import pickle

import pytest
import torch

from .conftest import TOKEN, golden_files


def _classify(client, name="sentiment"):
    r = client.post(f"/classify?adapter={name}", json={"inputs": ["one text", "another"], "raw_scores": True})
    return r


def test_admin_refuses_without_configured_token(tmp_path):
    from fastapi.testclient import TestClient

    from adapterserve.main import create_app
    from adapterserve.state import build_state

    from ..conftest import backbone_for
    from .conftest import make_settings

    s = make_settings(tmp_path, admin_token=None)
    app = create_app(s, lambda st: build_state(st, backbone=backbone_for("tiny-bert")))
    with TestClient(app) as c:
        r = c.put("/admin/adapters/x", files=golden_files("ah_seq_bn"), headers={"Authorization": "Bearer x"})
        assert r.status_code == 403 and "ADAPTERSERVE_ADMIN_TOKEN" in r.json()["message"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}, {"Authorization": f"Token {TOKEN}"}],
)
def test_admin_needs_the_right_bearer_token(client, headers):
    r = client.put("/admin/adapters/x", files=golden_files("ah_seq_bn"), headers=headers)
    assert r.status_code == 401


def test_upload_serves_new_adapter_and_lists_it(client, admin):
    r = client.put("/admin/adapters/fresh", files=golden_files("ah_double_seq_bn"), headers=admin)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "fresh" and len(body["sha256"]) == 64 and body["sha256"].startswith(body["version"])
    c = _classify(client, "fresh")
    assert c.status_code == 200 and c.headers["X-Adapter-Version"] == body["version"]
    listing = client.get("/adapters").json()["adapters"]
    info = {a["name"]: a for a in listing}["fresh"]
    assert info["kind"] == "bottleneck" and info["task"] == "classification" and info["parameters"] > 0
    assert info["residency"] == "device"
    one = client.get("/adapters/fresh").json()
    assert one["version"] == body["version"] and one["labels"] == info["labels"]


def test_new_version_replaces_and_rollback_restores(client, admin):
    before = _classify(client)
    v1 = before.headers["X-Adapter-Version"]
    r = client.put("/admin/adapters/sentiment", files=golden_files("ah_head_one_layer"), headers=admin)
    assert r.status_code == 201, r.text
    after = _classify(client)
    assert after.headers["X-Adapter-Version"] == r.json()["version"] != v1
    assert after.json() != before.json()
    versions = client.get("/admin/adapters/sentiment/versions", headers=admin).json()
    assert versions["current"] == r.json()["version"] and len(versions["versions"]) == 2
    rb = client.post("/admin/adapters/sentiment/rollback", headers=admin)
    assert rb.status_code == 200 and rb.json()["version"] == v1
    again = _classify(client)
    assert again.headers["X-Adapter-Version"] == v1 and again.json() == before.json()
    rb2 = client.post("/admin/adapters/sentiment/rollback", json={"version": r.json()["version"]}, headers=admin)
    assert rb2.status_code == 200 and _classify(client).headers["X-Adapter-Version"] == r.json()["version"]
    assert client.post("/admin/adapters/sentiment/rollback", json={"version": "nope"}, headers=admin).status_code == 404


def _files_with(case, name, data):
    return [f if f[1][0] != name else ("files", (name, data)) for f in golden_files(case)]


def _evil_pickle() -> bytes:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    return pickle.dumps({"x": Evil()})


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    "case,files_fn,status",
    [
        (
            "truncated safetensors",
            lambda: _files_with("ah_seq_bn", "adapter.safetensors", golden_files("ah_seq_bn")[0][1][1][:100]),
            422,
        ),
        ("garbage config", lambda: _files_with("ah_seq_bn", "adapter_config.json", b"{nope"), 422),
        ("code-carrying pickle", lambda: _files_with("ah_seq_bn_bin", "pytorch_adapter.bin", _evil_pickle()), 422),
        (
            "torch-saved non-tensor",
            lambda: _files_with("ah_seq_bn_bin", "pytorch_adapter.bin", _torch_bytes({"a": [1, 2]})),
            422,
        ),
        ("wrong backbone", lambda: golden_files("ah_minilm_seq_bn"), 422),
        ("no head", lambda: golden_files("ah_plain_no_head"), 422),
        ("dora", lambda: golden_files("peft_dora_refuse"), 422),
        ("path in file name", lambda: [("files", ("../adapter_config.json", b"{}"))], 422),
        ("not a form", None, 422),
        ("no files", lambda: [("other", ("x.json", b"{}"))], 422),
    ],
)
def test_bad_uploads_are_4xx_and_previous_version_keeps_serving(client, admin, case, files_fn, status):
    before = _classify(client)
    if files_fn is None:
        r = client.put("/admin/adapters/sentiment", content=b"raw", headers={**admin, "content-type": "text/plain"})
    else:
        r = client.put("/admin/adapters/sentiment", files=files_fn(), headers=admin)
    assert r.status_code == status, (case, r.status_code, r.text)
    assert r.json()["message"]
    after = _classify(client)
    assert after.status_code == 200
    assert after.headers["X-Adapter-Version"] == before.headers["X-Adapter-Version"]
    assert after.json() == before.json()


def test_nan_weights_are_refused(client, admin, tmp_path):
    from safetensors.torch import load_file, save_file

    from ..conftest import GOLDEN

    t = load_file(str(GOLDEN / "ah_seq_bn" / "adapter" / "adapter.safetensors"))
    k = sorted(t)[0]
    t[k] = t[k].clone()
    t[k][0] = float("nan")
    save_file(t, str(tmp_path / "a.safetensors"))
    r = client.put(
        "/admin/adapters/sentiment",
        headers=admin,
        files=_files_with("ah_seq_bn", "adapter.safetensors", (tmp_path / "a.safetensors").read_bytes()),
    )
    assert r.status_code == 422 and "NaN" in r.json()["message"]


def test_wrong_shape_names_key_and_shapes(client, admin, tmp_path):
    from safetensors.torch import load_file, save_file

    from ..conftest import GOLDEN

    t = load_file(str(GOLDEN / "ah_seq_bn" / "adapter" / "adapter.safetensors"))
    k = next(x for x in sorted(t) if x.endswith("adapter_up.weight"))
    t[k] = torch.zeros(t[k].shape[0], t[k].shape[1] + 1)
    save_file(t, str(tmp_path / "a.safetensors"))
    r = client.put(
        "/admin/adapters/sentiment",
        headers=admin,
        files=_files_with("ah_seq_bn", "adapter.safetensors", (tmp_path / "a.safetensors").read_bytes()),
    )
    assert r.status_code == 422
    msg = r.json()["message"]
    assert "adapter_up.weight" in msg and "shape" in msg


def test_oversized_upload_is_413(client, admin, settings):
    big = b"x" * (settings.max_upload_bytes + 10)
    r = client.put("/admin/adapters/sentiment", files=[("files", ("adapter_config.json", big))], headers=admin)
    assert r.status_code == 413


def test_peft_upload_with_labels_and_extra_readme(client, admin):
    files = golden_files("peft_lora_list")
    assert "README.md" in [f[1][0] for f in files]  # PEFT writes a model card: extra files are ignored
    files.append(("labels", (None, '["neg", "neu", "pos"]')))
    r = client.put("/admin/adapters/peft-labelled", files=files, headers=admin)
    assert r.status_code == 201, r.text
    labels = {x["label"] for x in _classify(client, "peft-labelled").json()[0]}
    assert labels == {"neg", "neu", "pos"}
    bad = golden_files("peft_lora_list") + [("labels", (None, '["only-one"]'))]
    r = client.put("/admin/adapters/peft-labelled", files=bad, headers=admin)
    assert r.status_code == 422 and "labels" in r.json()["message"]


def test_delete(client, admin):
    assert client.delete("/admin/adapters/sentiment", headers=admin).status_code == 200
    r = _classify(client)
    assert r.status_code == 404
    assert client.delete("/admin/adapters/sentiment", headers=admin).status_code == 404
    assert "sentiment" not in [a["name"] for a in client.get("/adapters").json()["adapters"]]


def test_load_and_unload(client, admin):
    r = client.post("/admin/adapters/multi/load", headers=admin)
    assert r.status_code == 200 and r.json()["pinned"]
    assert client.get("/adapters/multi").json()["pinned"]
    r = client.post("/admin/adapters/multi/unload", headers=admin)
    assert r.status_code == 200 and r.json()["residency"] == "store"
    assert client.post("/admin/adapters/nope/load", headers=admin).status_code == 404
