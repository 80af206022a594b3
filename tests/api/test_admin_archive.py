"""Admin uploads as one archive; the audit trail; the admin API on its own port."""

from __future__ import annotations

import io
import logging
import tarfile
import zipfile

import pytest
from fastapi.testclient import TestClient

from adapterserve.main import create_app
from adapterserve.state import build_state

from ..conftest import GOLDEN, backbone_for
from .conftest import TOKEN, golden_files, make_settings, publish_golden


def tgz(case: str, top: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for p in sorted((GOLDEN / case / "adapter").iterdir()):
            tf.add(p, arcname=top + p.name)
    return buf.getvalue()


def zipped(case: str, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted((GOLDEN / case / "adapter").iterdir()):
            zf.write(p, p.name)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def _classify(client, name="sentiment"):
    return client.post(f"/classify?adapter={name}", json={"inputs": ["one text", "another"], "raw_scores": True})


@pytest.mark.parametrize(
    "part",
    [
        ("files", ("adapter.tar.gz", tgz("ah_double_seq_bn", "my-adapter/"))),
        ("files", ("adapter.tgz", tgz("ah_double_seq_bn"))),
        ("files", ("adapter.zip", zipped("ah_double_seq_bn"))),
        ("archive", ("blob", tgz("ah_double_seq_bn"))),
    ],
)
def test_archive_upload_serves_the_same_version_as_its_files(client, admin, part):
    r = client.put("/admin/adapters/from-archive", files=[part], headers=admin)
    assert r.status_code == 201, r.text
    as_files = client.put("/admin/adapters/from-files", files=golden_files("ah_double_seq_bn"), headers=admin)
    assert r.json()["version"] == as_files.json()["version"]  # the content hash, however it arrived
    c = _classify(client, "from-archive")
    assert c.status_code == 200 and c.headers["X-Adapter-Version"] == r.json()["version"]


def test_archive_with_labels(client, admin):
    r = client.put(
        "/admin/adapters/peft-zip",
        headers=admin,
        files=[("files", ("a.zip", zipped("peft_lora_list"))), ("labels", (None, "neg,neu,pos"))],
    )
    assert r.status_code == 201, r.text
    assert {x["label"] for x in _classify(client, "peft-zip").json()[0]} == {"neg", "neu", "pos"}


@pytest.mark.parametrize(
    "case,files,status",
    [
        ("path trick", lambda: [("files", ("a.zip", zipped("ah_seq_bn", {"../evil.json": b"{}"})))], 422),
        ("absolute", lambda: [("files", ("a.zip", zipped("ah_seq_bn", {"/etc/evil": b"{}"})))], 422),
        ("bomb", lambda: [("files", ("a.zip", zipped("ah_seq_bn", {"zeros.bin": b"\0" * (3 << 20)})))], 413),
        ("garbage", lambda: [("files", ("a.tar.gz", b"\x1f\x8bnot really"))], 422),
        ("archive and files", lambda: [("files", ("a.zip", zipped("ah_seq_bn")))] + golden_files("ah_seq_bn"), 422),
        (
            "two archives",
            lambda: [("files", ("a.zip", zipped("ah_seq_bn"))), ("archive", ("b", tgz("ah_seq_bn")))],
            422,
        ),
        ("wrong backbone", lambda: [("files", ("a.tgz", tgz("ah_minilm_seq_bn")))], 422),
    ],
)
def test_bad_archives_are_4xx_and_change_nothing(tmp_path, admin, case, files, status):
    s = make_settings(tmp_path, max_upload_bytes=2 << 20)
    publish_golden(s.store)
    app = create_app(s, lambda st: build_state(st, backbone=backbone_for("tiny-bert")))
    with TestClient(app) as client:
        before = _classify(client)
        r = client.put("/admin/adapters/sentiment", files=files(), headers=admin)
        assert r.status_code == status, (case, r.text)
        assert r.json()["message"]
        after = _classify(client)
        assert after.headers["X-Adapter-Version"] == before.headers["X-Adapter-Version"]
        assert len(client.get("/admin/adapters/sentiment/versions", headers=admin).json()["versions"]) == 1
    assert not (tmp_path / "evil.json").exists()


def test_one_audit_line_per_admin_action_whatever_the_outcome(client, admin, caplog):
    caplog.set_level(logging.INFO, logger="adapterserve.audit")
    client.put("/admin/adapters/fresh", files=golden_files("ah_seq_bn"), headers=admin)
    client.post("/admin/adapters/fresh/rollback", headers=admin)  # no previous version: 422
    client.delete("/admin/adapters/fresh", headers={"Authorization": "Bearer wrong"})  # 401
    client.delete("/admin/adapters/fresh", headers=admin)
    lines = [r for r in caplog.records if r.name == "adapterserve.audit"]
    got = [(r.action, r.adapter, r.outcome) for r in lines]
    assert got == [
        ("upload", "fresh", "ok"),
        ("rollback", "fresh", "bad_request"),
        ("delete", "fresh", "unauthorized"),
        ("delete", "fresh", "ok"),
    ]
    assert len(lines[0].version) == 16 and lines[2].status == 401 and all(r.audit for r in lines)
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("admin_port,expected", [(80, 200), (9999, 404)])
def test_admin_api_answers_only_on_its_port(tmp_path, admin, admin_port, expected):
    # The test client's requests arrive on port 80: with ADMIN_PORT=80 (main port 8080) it is the admin port.
    s = make_settings(tmp_path, admin_port=admin_port, port=8080)
    publish_golden(s.store)
    app = create_app(s, lambda st: build_state(st, backbone=backbone_for("tiny-bert")))
    with TestClient(app) as client:
        r = client.get("/admin/adapters/sentiment/versions", headers=admin)
        assert r.status_code == expected
        if expected == 404:
            assert r.json()["error"] == "not_found"
        assert _classify(client).status_code == 200  # inference answers either way
