"""Metric names, labels, and bounded adapter-label cardinality."""

from adapterserve.metrics import AdapterLabels, Metrics


def test_adapter_label_is_bounded_and_folds_into_other():
    labels = AdapterLabels(max_adapters=3)
    assert [labels(f"a{i}") for i in range(5)] == ["a0", "a1", "a2", "other", "other"]
    assert labels("a1") == "a1"  # seen names keep their series
    assert labels("zzz", known=False) == "unknown"
    assert labels(None) == "none"


def test_all_metrics_carry_the_prefix_and_render():
    m = Metrics(max_adapters=2)
    m.requests.labels("x", "classify", "200").inc()
    text = m.render().decode()
    ours = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert all(n.startswith(("adapterserve_", "process_", "python_")) for n in ours), ours
    assert "adapterserve_requests_total" in text


def test_http_series_stay_bounded(tmp_path):
    from fastapi.testclient import TestClient

    from adapterserve.main import create_app
    from adapterserve.state import build_state

    from .api.conftest import make_settings, publish_golden
    from .conftest import backbone_for

    s = make_settings(tmp_path, metrics_max_adapters=2)
    publish_golden(s.store)
    app = create_app(s, lambda st: build_state(st, backbone=backbone_for("tiny-bert")))
    with TestClient(app) as c:
        for name in ("sentiment", "multi", "lora", "pairs"):
            assert c.post(f"/classify?adapter={name}", json={"inputs": "x"}).status_code == 200
        for i in range(20):
            assert c.post(f"/classify?adapter=missing{i}", json={"inputs": "x"}).status_code == 404
        text = c.get("/metrics").text
    series = {
        line.split('adapter="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("adapterserve_requests_total{")
    }
    assert series == {"sentiment", "multi", "other", "unknown"}, series
