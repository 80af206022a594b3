"""The p99 model (benchmarks/queueing.py) against queueing theory: it must be right before it explains anything."""

from __future__ import annotations

import statistics

import pytest

from benchmarks.queueing import Model, explain_half_load, half_load_ratio, quantile, simulate
from benchmarks.report import why_queue


def test_a_lone_request_costs_one_pass_plus_the_latency_outside_it():
    m = Model(ms_per_token=0.25, per_pass_ms=2.0, latency_ms=3.0, workers=1)
    lat = simulate(m, [40], rate=0.5, requests=300)  # one every 2 s: almost nobody waits
    alone = 2.0 + 0.25 * 40 + 3.0
    assert min(lat) == pytest.approx(alone)
    assert quantile(lat, 0.9) == pytest.approx(alone)


def test_one_worker_one_row_per_pass_matches_pollaczek_khinchine():
    """M/D/1: with service D at utilization rho the mean wait is rho * D / (2 (1 - rho))."""
    d, rho = 10.0, 0.6
    m = Model(ms_per_token=d / 20, workers=1, max_batch_size=1)
    lat = simulate(m, [20], rate=rho / d * 1000, requests=200_000, seed=1)
    assert statistics.fmean(lat) == pytest.approx(d + rho * d / (2 * (1 - rho)), rel=0.03)


def test_batching_serves_a_load_one_row_per_pass_could_not():
    """Past one-row capacity (rate x pass > workers) only batches keep the queue finite: the share rule batches."""
    m = Model(ms_per_token=0.1, per_pass_ms=8.0, workers=2)  # one row of 20 tokens: 10 ms, 200 rows/s at most
    lat = simulate(m, [20], rate=300, requests=30_000)
    assert quantile(lat, 0.99) < 200  # rows queued behind each other would wait seconds by the end


def test_the_peak_runs_passes_as_full_as_the_token_limit():
    m = Model(ms_per_token=0.2, per_pass_ms=3.0, workers=2, pass_tokens=512)
    assert m.capacity([32]) == pytest.approx(1000 * 2 * 16 / (3.0 + 0.2 * 512))


def test_inflation_under_load_slows_the_loaded_passes_but_not_the_idle_request():
    lengths = [20, 30, 40, 60]
    fast = half_load_ratio(Model(0.2, 3.0, 1.0, 4.0), lengths, rate=100, requests=40_000)
    slow = half_load_ratio(Model(0.2, 3.0, 1.3, 4.0), lengths, rate=100, requests=40_000)
    assert slow["idle_p50_ms"] == fast["idle_p50_ms"]
    assert slow["p99_ms"] > fast["p99_ms"] * 1.1


def test_explaining_a_half_load_phase_fits_the_idle_request_and_the_passes_measured():
    lengths = [30] * 10
    half = {"mean_batch": 1.0, "ms_per_batch": 18.0, "offered_rps": 60.0}  # a 1-row pass: 9 ms in-process
    q = explain_half_load(3.0, 0.2, lengths, half, idle_p50_ms=14.0, requests=20_000)
    assert q["latency_ms"] == pytest.approx(5.0)  # 14 ms idle = a 9-ms pass + 5 ms outside it
    assert q["alone"]["idle_p50_ms"] == pytest.approx(14.0) and q["loaded"]["idle_p50_ms"] == pytest.approx(14.0)
    assert q["inflation"] == pytest.approx(2.0)
    assert q["loaded"]["p99_ms"] > q["alone"]["p99_ms"] + 9.0  # every loaded pass takes 9 ms more
    assert q["loaded"]["ratio"] == pytest.approx(q["loaded"]["p99_ms"] / 14.0)


def test_the_report_says_what_the_queue_alone_would_give():
    q = explain_half_load(3.0, 0.2, [30] * 10, {"mean_batch": 1.0, "ms_per_batch": 18.0, "offered_rps": 60.0}, 14.0)
    line = why_queue(q)
    assert f"{q['alone']['ratio']:.2f}x" in line and f"{q['loaded']['ratio']:.2f}x" in line and "2.00x slower" in line
    assert "beyond both" in why_queue(q, q["loaded"]["ratio"] + 1) and "beyond both" not in line
    assert why_queue(None) == ""
