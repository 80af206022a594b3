"""Uploads stream into place: the limit holds while reading (chunked bodies included), nothing is left on
disk after a refusal, and a refused upload leaves the previous version serving."""

from __future__ import annotations

import tempfile

import pytest
from fastapi.testclient import TestClient

from adapterserve.main import create_app
from adapterserve.state import build_state

from ..conftest import backbone_for
from .conftest import golden_files, make_settings, publish_golden

BOUNDARY = "adapterserve-test-boundary"


def body_of(parts: list[tuple[str, str, bytes]]) -> bytes:
    out = b""
    for field, filename, data in parts:
        out += (
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{BOUNDARY}--\r\n".encode()


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_chunked_upload_over_the_limit_is_413(tmp_path, admin, private_tmp):
    settings = make_settings(tmp_path, max_upload_bytes=256 * 1024)
    publish_golden(settings.store)
    client = TestClient(create_app(settings, lambda s: build_state(s, backbone=backbone_for("tiny-bert"))))
    limit = settings.max_upload_bytes
    chunk = b"x" * 65536
    sent = 0

    def stream():  # no Content-Length: the limit can only be enforced while reading
        nonlocal sent
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="adapter.safetensors"\r\n\r\n'
        ).encode()
        yield head
        while sent < limit * 8:
            sent += len(chunk)
            yield chunk

    with client:
        before_after(client, admin, stream, private_tmp)


def before_after(client, admin, stream, private_tmp):
    before = client.post("/classify?adapter=sentiment", json={"inputs": ["x"]}).headers["X-Adapter-Version"]
    r = client.put(
        "/admin/adapters/sentiment",
        content=stream(),
        headers={**admin, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert r.status_code == 413, r.text
    assert list(private_tmp.glob("adapterserve-upload-*")) == []  # nothing left behind
    after = client.post("/classify?adapter=sentiment", json={"inputs": ["x"]}).headers["X-Adapter-Version"]
    assert after == before


def test_streamed_upload_writes_each_file_once(client, admin, private_tmp):
    files = golden_files("ah_seq_bn")
    body = body_of([(f, name, data) for f, (name, data) in files])
    r = client.put(
        "/admin/adapters/streamed",
        content=body,
        headers={**admin, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert r.status_code == 201, r.text
    assert list(private_tmp.glob("adapterserve-upload-*")) == []
    assert client.post("/classify?adapter=streamed", json={"inputs": ["x"]}).status_code == 200


@pytest.mark.parametrize(
    "parts,status",
    [
        ([("other", "a.json", b"{}")], 422),
        ([("files", "../evil.json", b"{}")], 422),
        ([("files", "adapter_config.json", b"{}"), ("files", "adapter_config.json", b"{}")], 422),
    ],
)
def test_bad_parts_are_4xx(client, admin, private_tmp, parts, status):
    r = client.put(
        "/admin/adapters/sentiment",
        content=body_of(parts),
        headers={**admin, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert r.status_code == status, r.text
    assert list(private_tmp.glob("adapterserve-upload-*")) == []


def test_not_multipart_is_422(client, admin):
    r = client.put("/admin/adapters/sentiment", content=b"{}", headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 422 and "multipart" in r.json()["message"]
