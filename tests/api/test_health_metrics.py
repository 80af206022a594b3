import threading
import time


def test_live_and_ready(client):
    assert client.get("/health/live").json() == {"status": "alive"}
    r = client.get("/health/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_metrics_exposes_the_documented_names(client):
    client.post("/classify?adapter=sentiment", json={"inputs": "x"})
    client.post("/classify?adapter=does-not-exist", json={"inputs": "x"})
    text = client.get("/metrics").text
    for name in (
        "adapterserve_requests_total",
        "adapterserve_request_duration_seconds_bucket",
        "adapterserve_queue_wait_seconds",
        "adapterserve_tokenize_seconds",
        "adapterserve_inference_seconds",
        "adapterserve_batch_size",
        "adapterserve_batch_tokens",
        "adapterserve_batch_padding_ratio",
        "adapterserve_queue_requests",
        "adapterserve_queue_tokens",
        "adapterserve_adapters_resident",
        "adapterserve_adapter_load_seconds",
        "adapterserve_adapter_cache_hits_total",
        "adapterserve_adapter_cache_misses_total",
        "process_resident_memory_bytes",
    ):
        assert name in text, name
    assert 'adapter="sentiment",route="classify",status="200"' in text
    assert 'adapter="does-not-exist"' not in text and 'adapter="unknown"' in text


def test_request_id_is_echoed(client):
    r = client.get("/adapters", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = client.get("/adapters", headers={"X-Request-ID": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces"


def test_openapi_docs(client):
    spec = client.get("/openapi.json").json()
    for path in ("/classify", "/tag", "/embed", "/v1/embeddings", "/adapters", "/admin/adapters/{name}"):
        assert path in spec["paths"], path
    assert client.get("/docs").status_code == 200


def test_ready_is_503_while_draining_but_live_stays_200(client):
    state = client.app.state.adapterserve
    state.draining = True
    try:
        r = client.get("/health/ready")
        assert r.status_code == 503 and r.json()["details"]["status"] == "draining"
        assert r.headers["Retry-After"] == "1"
        assert client.get("/health/live").status_code == 200
    finally:
        state.draining = False


def test_ready_is_503_before_startup():
    from fastapi.testclient import TestClient

    from adapterserve.main import create_app

    app = create_app()
    c = TestClient(app)  # no lifespan: nothing loaded
    assert c.get("/health/ready").status_code == 503
    assert c.get("/health/live").status_code == 200


def test_live_stays_200_when_the_queue_is_full(client):
    b = client.app.state.adapterserve.batcher
    saved = b.queued_requests
    b.queued_requests = b.config.max_queue_items
    try:
        r = client.post("/classify?adapter=sentiment", json={"inputs": "x"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert client.get("/health/live").status_code == 200
    finally:
        b.queued_requests = saved


def test_route_labels_come_from_the_matched_route(client):
    client.post("/tag?adapter=ner", json={"inputs": "x"})
    client.post(
        "/v2/models/sentiment/infer",
        json={"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}]},
    )
    client.get("/adapters/sentiment")
    client.get("/classify-typo")  # no route matched
    client.get("/classify?adapter=sentiment")  # the path matched, the method did not (405)
    text = client.get("/metrics").text
    for series in (
        'adapter="ner",route="tag",status="200"',
        'adapter="sentiment",route="kserve",status="200"',
        'route="adapters",status="200"',
        'adapter="none",route="other",status="404"',
        'adapter="none",route="classify",status="405"',
    ):
        assert series in text, series


def test_a_slow_metrics_render_does_not_stall_other_requests(client):
    """The exposition is pure Python and grows with the adapters: it renders off the event loop, so a scrape
    under load does not hold every other request for its length."""
    metrics = client.app.state.adapterserve.metrics
    render = metrics.render
    rendering = threading.Event()

    def slow_render():
        rendering.set()
        time.sleep(1.0)  # blocks its thread, as a long render does
        return render()

    metrics.render = slow_render
    scrape = {}
    t = threading.Thread(target=lambda: scrape.update(r=client.get("/metrics")))
    t.start()
    assert rendering.wait(5)
    started = time.monotonic()
    assert client.get("/health/live").status_code == 200
    took = time.monotonic() - started
    t.join(10)
    assert scrape["r"].status_code == 200 and "adapterserve_requests_total" in scrape["r"].text
    assert took < 0.5, f"/health/live waited {took:.2f}s for a /metrics render"
