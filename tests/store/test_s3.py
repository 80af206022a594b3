"""S3-specific behaviour, against a real S3 API on loopback: the manifest, read-back, corruption, outages."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import boto3
import pytest

from adapterserve.errors import AdapterNotFound, StoreUnavailable
from adapterserve.store import open_store
from adapterserve.store.s3 import S3Store
from benchmarks.server import free_port

from ..conftest import GOLDEN

pytestmark = pytest.mark.s3  # a loopback S3 API (moto) in a subprocess

SRC = GOLDEN / "ah_seq_bn" / "adapter"
SRC2 = GOLDEN / "ah_double_seq_bn" / "adapter"


def raw(url: str):
    """A plain client and (bucket, prefix) to poke at the store's objects behind its back."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return boto3.client("s3"), bucket, prefix + "/"


def spy(store: S3Store) -> list[tuple[str, dict]]:
    calls, inner = [], store._call

    def call(op, missing_ok=False, **kw):
        calls.append((op, kw))
        return inner(op, missing_ok, **kw)

    store._call = call
    return calls


def test_boto3_is_not_imported_until_an_s3_store_is_opened():
    code = (
        "import sys, adapterserve.store.registry, adapterserve.store.local, adapterserve.store.s3; "
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'eager boto3'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_endpoint_comes_from_aws_endpoint_url(s3_url, moto_server):
    s = open_store(s3_url)
    assert isinstance(s, S3Store) and s._s3.meta.endpoint_url == moto_server.endpoint


def test_layout_matches_the_local_store(s3_url):
    s = open_store(s3_url)
    v = s.publish("x", SRC)
    client, bucket, prefix = raw(s3_url)
    keys = {o["Key"].removeprefix(prefix) for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {
        "manifest.json",
        "x/current",
        f"x/versions/{v.version}.json",
        *(f"x/versions/{v.version}/{p.name}" for p in SRC.iterdir()),
    }
    assert client.get_object(Bucket=bucket, Key=prefix + "x/current")["Body"].read().decode() == v.version
    manifest = json.loads(client.get_object(Bucket=bucket, Key=prefix + "manifest.json")["Body"].read())
    assert manifest["adapters"] == {"x": v.version}


def test_polling_the_manifest_is_one_conditional_get(s3_url):
    writer, reader = open_store(s3_url), open_store(s3_url)
    v1 = writer.publish("x", SRC)
    assert reader.manifest() == {"x": v1.version}
    calls = spy(reader)
    for _ in range(3):
        assert reader.manifest() == {"x": v1.version}  # answered 304 Not Modified
    assert [op for op, _ in calls] == ["get_object"] * 3 and all("IfNoneMatch" in kw for _, kw in calls)
    v2 = writer.publish("x", SRC2)
    assert reader.manifest() == {"x": v2.version} and reader.names() == ["x"]


def test_a_stale_or_missing_manifest_is_repaired_by_reconcile(s3_url):
    s = open_store(s3_url)
    v = s.publish("x", SRC)
    client, bucket, prefix = raw(s3_url)
    client.put_object(Bucket=bucket, Key=prefix + "manifest.json", Body=b'{"adapters": {}}')  # a writer died
    assert s.manifest() == {}  # the index lags ...
    assert s.reconcile() == {"x": v.version} == s.manifest()  # ... until the replicas' periodic reconcile
    client.delete_object(Bucket=bucket, Key=prefix + "manifest.json")
    assert open_store(s3_url).manifest() == {"x": v.version}  # rebuilt from the pointers when absent


def test_failed_read_back_changes_nothing(s3_url, monkeypatch):
    s = open_store(s3_url)
    v1 = s.publish("x", SRC)

    def corrupt_read_back(name, version, sha256):
        raise StoreUnavailable("read-back does not match")

    monkeypatch.setattr(s, "_download", corrupt_read_back)
    with pytest.raises(StoreUnavailable):
        s.publish("x", SRC2)
    other = open_store(s3_url)
    assert other.current("x").version == v1.version and other.manifest() == {"x": v1.version}
    assert [v.version for v in other.versions("x")] == [v1.version]  # the half-written one does not exist


def test_corrupt_objects_are_never_served(s3_url, tmp_path):
    v = open_store(s3_url).publish("x", SRC)
    client, bucket, prefix = raw(s3_url)
    key = f"{prefix}x/versions/{v.version}/adapter.safetensors"
    client.put_object(Bucket=bucket, Key=key, Body=b"truncated")
    fresh = open_store(s3_url, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(StoreUnavailable, match="sha256"):
        fresh.fetch("x", v.version)
    assert list((tmp_path / "cache").rglob("*.safetensors")) == []  # nothing half-written left behind


def test_fetch_reuses_the_local_copy_of_an_immutable_version(s3_url, tmp_path):
    v = open_store(s3_url).publish("x", SRC)
    s = open_store(s3_url, cache_dir=str(tmp_path / "cache"))
    first = s.fetch("x", v.version)
    calls = spy(s)
    assert s.fetch("x", v.version) == first and calls == []


def test_the_download_cache_is_bounded_by_bytes(s3_url, tmp_path):
    writer = open_store(s3_url)
    versions = {n: writer.publish(n, SRC).version for n in ("x", "y", "z")}
    s = open_store(s3_url, cache_dir=str(tmp_path / "cache"))
    s.cache_grace_s = 0  # every copy idle: eviction may take any but the one being fetched
    one = sum(f.stat().st_size for f in s.fetch("x", versions["x"]).rglob("*") if f.is_file())
    s.cache_max_bytes = int(one * 1.5)
    for name in ("y", "z"):
        s.fetch(name, versions[name])
        on_disk = sum(f.stat().st_size for f in (tmp_path / "cache").rglob("*") if f.is_file())
        assert on_disk <= s.cache_max_bytes
    assert not (s.cache_root / "x" / versions["x"]).exists()  # least recently used went first
    assert (s.fetch("x", versions["x"]) / "adapter_config.json").is_file()  # and is fetched again when needed


def test_missing_bucket_is_store_unavailable_with_the_reason(moto_server, s3_url):
    s = open_store("s3://no-such-bucket-here/p")
    with pytest.raises(StoreUnavailable, match="NoSuchBucket"):
        s.current("x")


def test_unreachable_endpoint_is_a_prompt_store_unavailable(s3_url, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    s = open_store(s3_url)
    started = time.monotonic()
    for call in (lambda: s.publish("x", SRC), s.manifest, lambda: s.current("x"), lambda: s.delete("x")):
        with pytest.raises(StoreUnavailable, match="unreachable"):
            call()
    assert time.monotonic() - started < 20


def test_delete_is_committed_by_the_pointer(s3_url):
    s = open_store(s3_url)
    s.publish("x", SRC)
    s.delete("x")
    client, bucket, prefix = raw(s3_url)
    left = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix + "x/").get("Contents", [])]
    assert left == [] and s.manifest() == {}
    with pytest.raises(AdapterNotFound):
        s.fetch("x", "0" * 16)


def test_local_copy_is_only_what_is_already_downloaded(s3_url, tmp_path):
    open_store(s3_url).publish("x", SRC)
    s = open_store(s3_url, cache_dir=str(tmp_path / "cache"))
    version = s.current("x").version
    calls = spy(s)
    assert s.local_copy("x", version) is None and calls == []  # the listing's read: no request, no download
    folder = s.fetch("x", version)
    assert s.local_copy("x", version) == folder and (folder / "adapter_config.json").is_file()
