"""The benchmark harness's pieces on the tiny backbone: structure only (counts, keys, signs), never timings."""

from __future__ import annotations

import json
import threading
import time

import pytest

from adapterserve.formats.registry import load_adapter
from benchmarks import load as L
from benchmarks.adapters import AdapterSpec, adapter_names, build_store, write_adapter
from benchmarks.corpus import load_texts, long_texts
from benchmarks.report import _find, render, summary_table, targets
from benchmarks.run import Config, _scrape_once, batch_stats, cold_spec, phase_record
from benchmarks.server import (
    Histogram,
    adapterserve_process,
    cpu_seconds,
    free_port,
    histogram,
    parse_metrics,
    proc_status,
)

from ..conftest import TINY


def test_texts_are_fixed_and_nonempty():
    a, source = load_texts(50, seed=3)
    b, _ = load_texts(50, seed=3)
    assert a == b and len(a) == 50 and all(isinstance(t, str) and t for t in a)
    assert source
    longs = long_texts(a, min_words=40, n=3)
    assert len(longs) == 3 and all(len(t.split()) >= 40 for t in longs)


def test_generated_adapter_loads_and_is_distinct(tiny_backbone, tmp_path):
    spec = AdapterSpec(tiny_backbone.info.hidden_size, tiny_backbone.info.num_layers, 16, head_layers=2)
    write_adapter(tmp_path / "x", "x", spec, seed=1)
    write_adapter(tmp_path / "y", "y", spec, seed=2)
    x, y = load_adapter(tmp_path / "x", tiny_backbone.shape), load_adapter(tmp_path / "y", tiny_backbone.shape)
    assert x.kind == "bottleneck" and len(x.bottleneck) == spec.layers and len(x.head.layers) == 2
    assert x.num_parameters == spec.parameters
    assert x.head.labels == ["negative", "neutral", "positive"]
    site = (0, "output")
    assert float(x.bottleneck[site].down_weight.abs().sum()) > 0
    assert not bool((x.bottleneck[site].down_weight == y.bottleneck[site].down_weight).all())


def test_cold_spec_is_near_the_target_size():
    spec = cold_spec(384, 6, 4 * 1024 * 1024)
    assert 3e6 < spec.nbytes < 5.5e6


def test_build_store_publishes_every_adapter(tmp_path):
    from adapterserve.store.local import LocalStore

    sizes = build_store(tmp_path / "store", adapter_names(3), AdapterSpec(32, 2), extra={"big": AdapterSpec(32, 2, 2)})
    assert set(sizes) == {"a000", "a001", "a002", "big"} and all(s > 0 for s in sizes.values())
    assert LocalStore(str(tmp_path / "store")).names() == ["a000", "a001", "a002", "big"]


def test_requests_uniform_and_zipf():
    texts = ["one", "two", "three"]
    names = adapter_names(8)
    reqs = L.make_requests(texts, names, "zipf", 2000, seed=0)
    assert len(reqs) == 2000 and all(r.path.startswith("/classify?adapter=a00") for r in reqs)
    counts = {n: sum(r.path.endswith(n) for r in reqs) for n in names}
    assert counts["a000"] == max(counts.values())
    assert json.loads(reqs[0].body) == {"inputs": "one"}
    multi = L.make_requests(texts, names, "uniform", 5, inputs_per_request=4)
    assert json.loads(multi[0].body)["inputs"] == ["one", "two", "three", "one"]
    assert abs(sum(L.zipf_weights(64, 1.1)) - 1) < 1e-9


def test_metrics_parsing_and_histogram_difference():
    text = "\n".join(
        [
            "# HELP x_batch_size Rows per batch",
            "# TYPE x_batch_size histogram",
            'x_batch_size_bucket{le="1.0"} 2.0',
            'x_batch_size_bucket{le="4.0"} 5.0',
            'x_batch_size_bucket{le="+Inf"} 6.0',
            "x_batch_size_sum 30.0",
            "x_batch_size_count 6.0",
            'x_requests_total{adapter="a",status="200"} 3.0',
        ]
    )
    now = parse_metrics(text)
    before = parse_metrics(
        text.replace(" 2.0", " 1.0")
        .replace("_sum 30.0", "_sum 10.0")
        .replace("_count 6.0", "_count 3.0")
        .replace(" 5.0", " 2.0")
        .replace('"+Inf"} 6.0', '"+Inf"} 3.0')
    )
    h = histogram(now, "x_batch_size") - histogram(before, "x_batch_size")
    assert isinstance(h, Histogram) and h.count == 3 and h.sum == 20 and h.mean == pytest.approx(20 / 3)
    assert sum(share for _, share in h.distribution()) == pytest.approx(1.0)
    assert h.quantile(0.5) >= 1


def test_proc_status_reads_this_process():
    import os

    mem = proc_status(os.getpid())
    assert mem.get("VmRSS", 0) > 0 and mem.get("VmHWM", 0) >= mem["VmRSS"] // 2


def test_cpu_seconds_reads_a_process_from_proc_without_psutil(monkeypatch):
    import os
    import sys

    end = time.process_time() + 0.2
    while time.process_time() < end:  # burn some CPU, so both readings are well above a clock tick
        pass
    monkeypatch.setitem(sys.modules, "psutil", None)  # an import of psutil would now fail
    assert abs(cpu_seconds(os.getpid()) - time.process_time()) < 0.1


@pytest.fixture
def inprocess_server(tmp_path):
    """adapterserve on the tiny backbone in a thread, with 4 generated adapters."""
    import uvicorn

    from adapterserve.main import create_app
    from adapterserve.settings import Settings

    build_store(tmp_path / "store", adapter_names(4), AdapterSpec(32, 2))
    settings = Settings(
        backbone=str(TINY),
        store=str(tmp_path / "store"),
        warmup=False,
        log_json=False,
        log_level="WARNING",
        max_wait_ms=1.0,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    else:
        pytest.fail("in-process server did not become ready")
    yield url
    server.should_exit = True
    thread.join(timeout=30)


def _check_phase(res: L.PhaseResult, mode: str):
    s = res.summary()
    assert s["mode"] == mode and s["ok"] > 0 and s["errors"] == {}
    for key in ("req_per_s", "seq_per_s", "p50_ms", "p95_ms", "p99_ms", "duration_s"):
        assert s[key] >= 0, key
    assert s["p50_ms"] <= s["p99_ms"]
    stats = batch_stats(res)
    assert stats["batches"] > 0 and stats["mean_batch"] >= 1
    assert 0 <= stats["padding_ratio"] <= 1 and stats["adapters_per_batch"] >= 1
    assert abs(sum(share for _, share in stats["batch_dist"]) - 1) < 1e-2
    return s, stats


def test_closed_open_and_idle_phases_against_the_app(inprocess_server):
    texts, _ = load_texts(64)
    reqs = L.make_requests(texts, adapter_names(4), "uniform", 200, seed=0)
    closed = L.run(L.closed_loop(inprocess_server, reqs, concurrency=4, duration=1.0, warmup=0.3))
    s, stats = _check_phase(closed, "closed")
    assert s["concurrency"] == 4
    rec = phase_record("4 uniform", "mixed", 4, "uniform", closed, None, Config())
    assert rec["adapters"] == 4 and "mean_batch" in rec
    opened = L.run(L.open_loop(inprocess_server, reqs, rate=30, duration=1.0, warmup=0.3))
    _check_phase(opened, "open")
    idle = L.run(L.sequential(inprocess_server, reqs, 5, warmup=1))
    assert idle.ok == 5 and len(idle.latencies) == 5
    scraped = L.run(_scrape_once(inprocess_server))  # what run.py reads the cold-load histogram from
    assert histogram(scraped, "adapterserve_request_duration_seconds").count > 0
    # 2 s, not 0.5: with about seven test suites sharing the 2 cores, a 0.5 s window sometimes saw no answer
    via_httpx = L.run(L.closed_loop(inprocess_server, reqs, concurrency=2, duration=2.0, warmup=0.2, client="httpx"))
    assert via_httpx.ok > 0 and via_httpx.errors == {}


def test_batch_aligned_rate_counts_whole_batches():
    done = [k * 1.0 + j * 0.0003 for k in range(1, 20) for j in range(64)]  # a batch of 64 every second
    assert L.batch_aligned_rate(done, 3.0, 13.0) == pytest.approx(64.0)
    assert L.batch_aligned_rate([1.0, 2.0], 0.0, 10.0) is None  # too few boundaries: the caller counts instead


def test_report_renders_from_a_minimal_result():
    phase = {
        "label": "1 adapter",
        "strategy": "mixed",
        "adapters": 1,
        "dist": "single",
        "mode": "closed",
        "duration_s": 1.0,
        "ok": 10,
        "errors": {},
        "req_per_s": 10.0,
        "seq_per_s": 10.0,
        "p50_ms": 5.0,
        "p95_ms": 6.0,
        "p99_ms": 7.0,
        "concurrency": Config().concurrency,
        "mean_batch": 2.0,
        "batch_dist": [[2.0, 1.0]],
        "padding_ratio": 0.1,
        "adapters_per_batch": 1.0,
        "inference_busy": 0.5,
        "rows_per_inference_s": 20.0,
        "ms_per_batch": 3.0,
        "rss_peak": 100 * 1024**2,
    }
    many = dict(phase, label="64 uniform", adapters=64, dist="uniform", seq_per_s=9.0, req_per_s=9.0)
    per = dict(many, strategy="per_adapter", seq_per_s=3.0, req_per_s=3.0)
    results = {
        "config": vars(Config()) | {"quick": True},
        "command": "python -m benchmarks.run --quick",
        "machine": {"nproc": 2, "commit": "abc"},
        "texts": "test",
        "backbone": "tiny",
        "wall_s": 1.0,
        "adapters": {
            "count": 64,
            "bytes_each": 1000,
            "reduction_factor": 16,
            "width": 2,
            "cold_reduction_factor": 2,
            "cold_head_layers": 2,
        },
        "bare": {"batch_size": 64, "seq_per_s": 11.0, "padding_ratio": 0.4, "tokenize_share": 0.05},
        "mixed": {
            "env": {"ADAPTERSERVE_BATCHING": "mixed", "ADAPTERSERVE_MAX_WAIT_MS": "7", "OMP_NUM_THREADS": "1"},
            "phases": [phase, many],
            "idle": {"p50_ms": 4.0, "p95_ms": 5.0, "p99_ms": 6.0, "ok": 5},
            "cold": {
                "bytes": 4e6,
                "adapters": [{"name": "c", "cold_ms": 30.0, "warm_ms": 5.0}],
                "server_load_ms_mean": 10.0,
                "loads": 1,
            },
        },
        "per_adapter": {"env": {"ADAPTERSERVE_BATCHING": "per_adapter", "OMP_NUM_THREADS": "1"}, "phases": [per]},
        "mixed_torch": {
            "phases": [dict(phase, strategy="mixed_torch"), dict(many, strategy="mixed_torch", seq_per_s=9.6)]
        },
        "threads": {
            "helper with default threads": {
                "threads": 2,
                "before": {"passes_per_s": 160.0, "cores": 2.0},
                "after": {"passes_per_s": 110.0, "cores": 1.6},
            }
        },
        "workers": [
            {"workers": 1, "threads": 2, "rows_per_pass": 1, "rows_per_s": 40.0},
            {"workers": 2, "threads": 1, "rows_per_pass": 1, "rows_per_s": 80.0},
        ],
    }
    tg = {t["target"]: t["status"] for t in targets(results)}
    # every runtime's mixed phases are judged: the default (onnx on CPU) and torch
    assert tg["mixed, 64 adapters (uniform) vs 1 adapter, onnx runtime"] == "SHORT"  # 9.0 / 10.0
    assert tg["mixed, 64 adapters (uniform) vs 1 adapter, torch runtime"] == "PASS"  # 9.6 / 10.0
    assert tg["mixed vs per-adapter batches, 64 adapters (uniform)"] == "PASS"
    assert tg["1 adapter served (torch runtime) vs the bare transformers ceiling"] == "PASS"  # 10 / 11 >= 0.9
    assert tg["1 adapter served (onnx runtime) vs the bare transformers ceiling"] == "SHORT"  # 10 / 11 < 1.5
    assert any(s == "N/A" for s in tg.values())  # the GPU target, not run on CPU
    doc = render(results)
    assert doc.startswith("# Benchmarks") and "## Targets" in doc and "| 64 |" in doc
    assert "adapterserve, mixed batches (torch runtime) | 64 |" in doc
    assert "## Inference workers" in doc and "| 1 | 2 x 1 | 80.0 | 2.00x |" in doc
    assert "## CPU threads" in doc and "| helper with default threads | 2 | 160.0 | 110.0 | 2.0 | 1.6 |" in doc
    assert "SHORT" in summary_table(results)
    # the environment the run gave the servers, as recorded (not a fixed description)
    assert "ADAPTERSERVE_BATCHING=mixed|per_adapter, ADAPTERSERVE_MAX_WAIT_MS=7, OMP_NUM_THREADS=1" in doc


def test_mixed_ratios_pool_rounds_each_against_the_single_windows_around_it():
    """Rounds of [mix, 1 adapter] (run.Config.mix_rounds): each mixed window is compared with the single-adapter
    windows right around it, and the target pools the rounds; a drift between rounds cancels."""
    conc = Config().concurrency

    def rec(label, n, dist, seq):
        return {
            "label": label,
            "strategy": "mixed",
            "adapters": n,
            "dist": dist,
            "concurrency": conc,
            "seq_per_s": seq,
            "req_per_s": seq,
        }

    # the machine is 20% faster in round 2; the mixed windows stay at 0.95x the single ones around them
    phases = [
        rec("1 adapter", 1, "single", 100.0),
        rec("1 adapter, C=128", 1, "single", 300.0) | {"concurrency": 128},  # not a reference: another depth
        rec("64 uniform, round 1", 64, "uniform", 95.0),
        rec("1 adapter (after 64, round 1)", 1, "single", 100.0),
        rec("64 uniform, round 2", 64, "uniform", 104.5),
        rec("1 adapter (after 64, round 2)", 1, "single", 120.0),
    ]
    results = {"config": vars(Config()), "mixed": {"phases": phases}}
    (t,) = [t for t in targets(results) if t["target"].startswith("mixed, 64 adapters (uniform)")]
    # against the mean of every single-adapter window it would be 99.75 / 106.7 = 0.935
    assert t["ratio"] == pytest.approx(0.95) and t["status"] == "PASS"
    assert "by round 0.950, 0.950" in t["measured"] and "2 windows" in t["measured"]
    merged = _find(results, "mixed", 64, "uniform")
    assert merged["seq_per_s"] == pytest.approx(99.75)  # the rounds' mean
    assert merged["adapters"] == 64 and isinstance(merged["adapters"], int)  # equal fields stay as they were


@pytest.mark.slow
def test_real_server_subprocess_and_metrics(tmp_path):
    """The harness's ServerProcess: a real `adapterserve.cli serve`, a short closed loop, memory and /metrics."""
    build_store(tmp_path / "store", adapter_names(2), AdapterSpec(32, 2))
    server = adapterserve_process(tmp_path / "store", str(TINY), tmp_path / "server.log", batching="per_adapter")
    with server.start(timeout=120):
        texts, _ = load_texts(32)
        reqs = L.make_requests(texts, adapter_names(2), "zipf", 100)
        res = L.run(L.closed_loop(server.url, reqs, concurrency=2, duration=1.0, warmup=0.3, server_pid=server.pid))
        _, stats = _check_phase(res, "closed")
        assert stats["adapters_per_batch"] == 1.0  # per-adapter batches never mix
        assert server.memory()["VmHWM"] > 0 and server.sampler.peak > 0 and res.server_cpu_s >= 0
    assert server.proc.poll() is not None


def test_kinds_benchmark_runs_every_case_and_keeps_its_section(tmp_path):
    """benchmarks.kinds on the tiny backbone: every case measured, the mixed batch exact, its page section
    written once and carried over when the rest of the page is regenerated (never a timing assertion)."""
    from benchmarks.kinds import SECTION, carry_section
    from benchmarks.kinds import main as kinds_main

    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\n## Other\n\ntext\n")
    args = ["--backbone", str(TINY), "--seconds", "0", "--batch", "4", "--per-kind", "1", "--markdown", str(page)]
    r = kinds_main(args)
    assert set(r["cases"]) == {
        "1 adapter (seq_bn)",
        "1 adapter (lora)",
        "1 adapter (ia3)",
        "1 adapter (prefix)",
        "mixed kinds (4 adapters, 4 kinds)",
    }
    assert r["mixed_vs_alone_max_abs_diff"] <= 1e-5 and r["rounds"] >= 2
    kinds_main(args)  # a second run replaces the section rather than adding another
    doc = page.read_text()
    assert doc.count(SECTION) == 1 and "## Other" in doc and "mixed kinds" in doc
    regenerated = carry_section(page, "# Benchmarks\n\n## Other\n\nnew text\n")
    assert regenerated.count(SECTION) == 1 and "new text" in regenerated


def test_kinds_section_stops_at_the_next_tools_marker_and_states_its_verdict(tmp_path):
    """The soak's section starts with a marker comment before its heading: rewriting the kinds section must
    leave that marker (it once ate it). The verdict follows the figures: both ratios >= 0.9 or short."""
    from benchmarks.kinds import SECTION, reading, write_section

    page = tmp_path / "benchmarks.md"
    page.write_text(f"# B\n\n{SECTION}\n\nold\n\n<!-- soak:start -->\n## Soak\n\nx\n<!-- soak:end -->\n")
    write_section(page, f"{SECTION}\n\nnew\n")
    doc = page.read_text()
    assert "old" not in doc and "new" in doc and "<!-- soak:start -->\n## Soak" in doc

    def run(total, median, others=0.0):
        return {
            "cases": {"mixed kinds": {"vs_ref_total": total, "vs_ref_median_round": median}},
            "others_cpu_cores": others,
        }

    assert "**met**" in reading(run(0.961, 0.965))
    assert "**short**" in reading(run(0.878, 0.997))
    assert "idle machine" in reading(run(0.95, 0.95, others=1.7))
