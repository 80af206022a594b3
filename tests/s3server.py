"""A real S3 API on loopback for the tests: moto's server mode in a subprocess (not an in-process mock), so
the store talks HTTP to it exactly as it would to MinIO or AWS, and tests can stop it to see a dead store."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

from benchmarks.server import ServerProcess, free_port

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


class MotoServer:
    """moto.server as a benchmarks.server.ServerProcess (one server-process helper for the repository)."""

    def __init__(self):
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        log = Path(tempfile.gettempdir()) / f"adapterserve-moto-{port}.log"
        self.process = ServerProcess(["-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], {}, port, log, "moto")

    def start(self, timeout: float = 60) -> MotoServer:
        self.process.start(timeout, ready_path="/moto-api/")
        return self

    def stop(self) -> None:
        self.process.stop(timeout=5)

    def env(self) -> dict[str, str]:
        return {**AWS_ENV, "AWS_ENDPOINT_URL": self.endpoint}

    def new_bucket(self) -> str:
        import boto3

        name = f"t-{uuid.uuid4().hex[:12]}"
        boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_url(moto_server, monkeypatch):
    """s3://<fresh bucket>/adapters, with the AWS variables pointing at the loopback server for this test."""
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for k, v in moto_server.env().items():
        monkeypatch.setenv(k, v)
    return f"s3://{moto_server.new_bucket()}/adapters"
