"""One error shape for every status: ours, validation, Starlette's 404/405, chunked over-limit bodies, crashes."""

import pytest
from fastapi.testclient import TestClient

from adapterserve.main import create_app
from adapterserve.state import build_state

from ..conftest import backbone_for
from .conftest import make_settings, publish_golden


def _is_error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) <= {"error", "message", "details"} and body["error"] == code and body["message"], body
    assert r.headers["x-request-id"]
    return body


def test_unknown_route_and_method(client):
    _is_error(client.get("/nope"), 404, "not_found")
    body = _is_error(r := client.get("/classify?adapter=sentiment"), 405, "method_not_allowed")
    assert r.headers["allow"] == "POST" and "POST" in body["message"]
    r = client.request("PATCH", "/admin/adapters/x")  # two routes (PUT, DELETE) share this path
    assert _is_error(r, 405, "method_not_allowed") and r.headers["allow"] == "PUT, DELETE"


def test_malformed_json_is_a_validation_error_not_detail(client):
    r = client.post("/classify?adapter=sentiment", content=b"{not json", headers={"content-type": "application/json"})
    _is_error(r, 422, "validation_error")


@pytest.fixture
def small_limits(tmp_path):
    s = make_settings(tmp_path, max_body_bytes=1024, max_upload_bytes=2048)
    publish_golden(s.store)
    app = create_app(s, lambda s: build_state(s, backbone=backbone_for("tiny-bert")))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


JSON = {"content-type": "application/json"}


def _chunks(n: int, prefix: bytes = b'{"inputs": "'):
    yield prefix
    for _ in range(n):
        yield b"x" * 100


def test_over_limit_bodies_are_413_with_and_without_content_length(small_limits, admin):
    big = b'{"inputs": "' + b"x" * 2000 + b'"}'
    _is_error(small_limits.post("/classify?adapter=sentiment", content=big), 413, "payload_too_large")
    # Chunked (no Content-Length): the limit is found while the body is read, and the answer is still 413.
    r = small_limits.post("/classify?adapter=sentiment", content=_chunks(30), headers=JSON)
    assert "content-length" not in r.request.headers
    _is_error(r, 413, "payload_too_large")
    r = small_limits.put(
        "/admin/adapters/big",
        content=_chunks(50, b"--b\r\n"),
        headers={**admin, "content-type": "multipart/form-data; boundary=b"},
    )
    _is_error(r, 413, "payload_too_large")
    # Under the limit, chunked bodies are served as usual.
    ok = small_limits.post("/classify?adapter=sentiment", content=iter([b'{"inputs": ', b'"fine"}']), headers=JSON)
    assert ok.status_code == 200, ok.text


def test_unexpected_exception_is_a_500_with_the_request_id_and_no_traceback(small_limits, monkeypatch):
    router = small_limits.app.state.adapterserve.router

    async def broken(*a, **k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(router, "tokenize", broken)
    r = small_limits.post("/classify?adapter=sentiment", json={"inputs": "x"}, headers={"X-Request-ID": "req-42"})
    body = _is_error(r, 500, "internal_error")
    assert body["details"]["request_id"] == "req-42" and "req-42" in body["message"]
    assert "secret" not in r.text and "Traceback" not in r.text
    assert r.headers["x-request-id"] == "req-42"


def test_unexpected_exception_is_answered_not_raised_to_the_server(tmp_path, monkeypatch):
    """An exception that reached uvicorn would make it close the keep-alive connection after the 500, and a
    client already sending its next request on it would see a reset (the second soak met one): the
    middleware answers it instead. TestClient re-raises whatever reaches the server, so this fails if it does."""
    s = make_settings(tmp_path)
    publish_golden(s.store)
    app = create_app(s, lambda s: build_state(s, backbone=backbone_for("tiny-bert")))
    with TestClient(app) as c:  # raise_server_exceptions=True

        async def broken(*a, **k):
            raise RuntimeError("boom")

        monkeypatch.setattr(app.state.adapterserve.router, "tokenize", broken)
        _is_error(c.post("/classify?adapter=sentiment", json={"inputs": "x"}), 500, "internal_error")
        monkeypatch.undo()
        assert c.post("/classify?adapter=sentiment", json={"inputs": "still serving"}).status_code == 200


def test_overloaded_carries_retry_after(small_limits, monkeypatch):
    from adapterserve.errors import Overloaded, StoreUnavailable

    router = small_limits.app.state.adapterserve.router
    for exc, status in ((Overloaded("queue full", retry_after_s=2.6), 429), (StoreUnavailable("s3 down"), 503)):

        async def fail(*a, exc=exc, **k):
            raise exc

        monkeypatch.setattr(router, "resolve", fail)
        r = small_limits.post("/classify?adapter=sentiment", json={"inputs": "x"})
        _is_error(r, status, exc.code)
        assert int(r.headers["retry-after"]) >= 1
