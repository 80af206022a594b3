"""Settings: an unknown ADAPTERSERVE_* variable or an invalid value stops start-up, naming it and the valid
choices; renamed settings keep working."""

from __future__ import annotations

import subprocess
import sys

import pytest

from adapterserve.settings import Settings, SettingsError, load_settings


def test_unknown_variable_names_it_and_suggests(monkeypatch):
    monkeypatch.setenv("ADAPTERSERVE_DEVCE", "cpu")
    with pytest.raises(SettingsError) as e:
        load_settings()
    assert "ADAPTERSERVE_DEVCE" in str(e.value) and "did you mean ADAPTERSERVE_DEVICE" in str(e.value)
    assert "ADAPTERSERVE_MAX_BATCH_TOKENS" in str(e.value)  # the valid names are listed


@pytest.mark.parametrize(
    "name,value,expect",
    [
        ("DEVICE", "gpu", "'auto', 'cpu' or 'cuda'"),
        ("BATCHING", "sometimes", "'mixed' or 'per_adapter'"),
        ("LOG_LEVEL", "verbose", "'DEBUG', 'INFO'"),
        ("MAX_BATCH_SIZE", "0", "greater than or equal to 1"),
        ("STORE_POLL_S", "soon", "valid number"),
    ],
)
def test_invalid_value_names_the_variable_and_the_choices(monkeypatch, name, value, expect):
    monkeypatch.setenv("ADAPTERSERVE_" + name, value)
    with pytest.raises(SettingsError) as e:
        load_settings()
    assert f"ADAPTERSERVE_{name}=" in str(e.value) and expect in str(e.value)


def test_unknown_keyword_is_refused():
    with pytest.raises(SettingsError, match="ADAPTERSERVE_DEVCE.*no such setting"):
        load_settings(devce="cpu")


def test_renamed_variable_still_works(monkeypatch):
    monkeypatch.setenv("ADAPTERSERVE_MAX_QUEUE_REQUESTS", "7")
    assert load_settings().max_queue_items == 7
    assert Settings(max_queue_requests=9).max_queue_items == 9


def test_tooling_variables_do_not_stop_the_service(monkeypatch):
    monkeypatch.setenv("ADAPTERSERVE_REF_ENVS", "/tmp/x")
    assert load_settings().log_level == "INFO"


@pytest.mark.slow  # a real `python -m adapterserve serve` process
def test_serve_exits_with_the_message_before_starting(tmp_path):
    env = {"ADAPTERSERVE_MAX_BATCH_TOKENZ": "5", "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    r = subprocess.run(
        [sys.executable, "-m", "adapterserve", "serve"], env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2
    assert "ADAPTERSERVE_MAX_BATCH_TOKENZ" in r.stderr and "did you mean ADAPTERSERVE_MAX_BATCH_TOKENS" in r.stderr
