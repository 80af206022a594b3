import json
import logging

from adapterserve.logs import JsonFormatter


def test_json_lines_carry_extra_fields():
    rec = logging.makeLogRecord(
        {
            "msg": "request",
            "levelname": "INFO",
            "name": "adapterserve.access",
            "request_id": "abc",
            "adapter": "sentiment",
            "status": 200,
            "latency_ms": 3.2,
        }
    )
    line = json.loads(JsonFormatter().format(rec))
    assert line["message"] == "request" and line["request_id"] == "abc" and line["status"] == 200


def test_access_log_has_request_id_and_no_text(client, caplog):
    caplog.set_level(logging.INFO, logger="adapterserve.access")
    client.post("/classify?adapter=sentiment", json={"inputs": "my secret sentence"}, headers={"X-Request-ID": "req-1"})
    records = [r for r in caplog.records if r.name == "adapterserve.access"]
    assert any(
        getattr(r, "request_id", None) == "req-1" and r.adapter == "sentiment" and r.status == 200 for r in records
    )
    assert all("my secret sentence" not in JsonFormatter().format(r) for r in caplog.records)


def test_request_text_is_logged_only_when_asked(tmp_path, caplog):
    from adapterserve.api.common import check_texts

    from .conftest import make_settings

    caplog.set_level(logging.DEBUG, logger="adapterserve.requests")
    check_texts(make_settings(tmp_path), ["private"])
    assert not caplog.records
    check_texts(make_settings(tmp_path, log_request_text=True), ["shown"])
    assert caplog.records[0].texts == ["shown"]
