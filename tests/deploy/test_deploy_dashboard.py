"""The Grafana dashboard (docker/grafana/dashboards/adapterserve.json): it
parses, every PromQL expression parses (promql-parser, the Rust parser's Python
binding) and references only metrics that adapterserve exposes, and the panels
cover what operators need."""

from __future__ import annotations

import json
import re

import promql_parser
import pytest
from deploy_helpers import DOCKER, allowed_series_names

DASHBOARD = DOCKER / "grafana" / "dashboards" / "adapterserve.json"

# Grafana's interval variables become a duration, other variables a plain value.
_INTERVALS = re.compile(r"\$(?:__rate_interval|__interval|__range)\b|\$\{(?:__rate_interval|__interval|__range)\}")
_VARIABLES = re.compile(r"\$\{\w+(?::\w+)?\}|\$\w+")


def substitute(expr: str) -> str:
    return _VARIABLES.sub("x", _INTERVALS.sub("5m", expr))


def metric_names(expr: str) -> list[str]:
    names: list[str] = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            names.append(node.name)

    promql_parser.walk(promql_parser.parse(substitute(expr)), visit)
    return names


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict) -> list[dict]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def exprs(dashboard: dict) -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in all_panels(dashboard) for target in panel.get("targets", [])]


def test_dashboard_shape(dashboard):
    assert dashboard["uid"] == "adapterserve"
    assert dashboard["title"]
    ids = [panel["id"] for panel in all_panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in all_panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}"
                assert target["refId"]


def test_every_expression_parses_and_uses_known_metrics(dashboard):
    allowed = allowed_series_names()
    seen = 0
    for title, expr in exprs(dashboard):
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        for name in names:
            assert name is not None, f"{title}: selector without a metric name"
            assert name in allowed, f"{title}: unknown metric {name!r}"
        seen += 1
    assert seen >= 15


def test_metric_check_rejects_unknown_names():
    assert metric_names('sum(rate(adapterserve_requests_total{adapter=~"$adapter"}[$__rate_interval]))') == [
        "adapterserve_requests_total"
    ]
    assert "adapterserve_request_total" not in allowed_series_names()
    with pytest.raises(Exception):  # noqa: B017 (the parser raises its own, unexported error type)
        promql_parser.parse(substitute("sum(rate(adapterserve_requests_total[5m])"))


def test_template_variables_use_known_metrics(dashboard):
    allowed = allowed_series_names()
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, query
        assert set(metric_names(match[1])) <= allowed, query


def _panels_using(dashboard: dict, *fragments: str) -> list[str]:
    return [title for title, expr in exprs(dashboard) if all(fragment in expr for fragment in fragments)]


@pytest.mark.parametrize(
    "what, fragments",
    [
        ("throughput by adapter/status", ("rate(adapterserve_requests_total", "adapter, status")),
        ("latency p50", ("histogram_quantile(0.5,", "adapterserve_request_duration_seconds_bucket")),
        ("latency p95", ("histogram_quantile(0.95,", "adapterserve_request_duration_seconds_bucket")),
        ("latency p99", ("histogram_quantile(0.99,", "adapterserve_request_duration_seconds_bucket")),
        ("batch size distribution", ("adapterserve_batch_size_bucket", "by (le)")),
        ("batch tokens", ("adapterserve_batch_tokens_",)),
        ("padding ratio", ("adapterserve_batch_padding_ratio_",)),
        ("queue depth requests", ("adapterserve_queue_requests",)),
        ("queue depth tokens", ("adapterserve_queue_tokens",)),
        ("queue wait", ("adapterserve_queue_wait_seconds_bucket",)),
        ("tokenize time", ("adapterserve_tokenize_seconds_bucket",)),
        ("inference time", ("adapterserve_inference_seconds_bucket",)),
        ("adapter residency by tier", ("adapterserve_adapters_resident", "tier")),
        ("cache hits", ("adapterserve_adapter_cache_hits_total",)),
        ("cache misses", ("adapterserve_adapter_cache_misses_total",)),
        ("cache evictions", ("adapterserve_adapter_cache_evictions_total",)),
        ("adapter load time", ("adapterserve_adapter_load_seconds_bucket",)),
        ("GPU memory", ("adapterserve_gpu_memory_bytes",)),
    ],
)
def test_required_panels_present(dashboard, what, fragments):
    assert _panels_using(dashboard, *fragments), f"no panel shows {what}"


def test_batch_size_heatmap(dashboard):
    heatmaps = [p for p in all_panels(dashboard) if p["type"] == "heatmap"]
    assert heatmaps
    for panel in heatmaps:
        for target in panel["targets"]:
            assert target["format"] == "heatmap"
            assert "_bucket" in target["expr"]


def test_dashboard_metrics_exist_in_the_service_registry(dashboard):
    """Cross-check against the metrics the service really registers ."""
    from prometheus_client import generate_latest

    from adapterserve import metrics

    text = generate_latest(metrics.Metrics().registry).decode()
    exposed: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        if kind == "histogram":
            exposed |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "counter":
            exposed |= {name if name.endswith("_total") else f"{name}_total"}
        else:
            exposed.add(name)
    used = {name for _, expr in exprs(dashboard) for name in metric_names(expr)}
    assert used <= exposed, sorted(used - exposed)
