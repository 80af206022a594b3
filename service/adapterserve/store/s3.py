"""An S3-compatible object store (AWS S3, MinIO, ...): `s3://bucket/prefix`.

Layout under the prefix is the local store's: <name>/versions/<version>/<files>, <name>/versions/<version>.json
and <name>/current, plus one small index, manifest.json = {"adapters": {name: version}}, that replicas poll
with If-None-Match (a 304 costs no listing and no body).

Commit protocol for a new version: upload its files, read them back and compare the content hash, write the
metadata object, and only then write <name>/current: that object is the commit point and the truth (the
manifest follows it, see s3_manifest.py). Endpoint, region and credentials come from the standard AWS variables
(`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...), which boto3 reads itself; any failure to talk to the store
becomes StoreUnavailable (503, with the reason) and never a half-served adapter.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from ..errors import AdapterNotFound, StoreUnavailable
from .base import AdapterStore, VersionInfo, content_hash, validate_name, validate_version
from .registry import register_store
from .s3_manifest import CAS_FAILED, ManifestIndex

log = logging.getLogger(__name__)
_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3Store(ManifestIndex, AdapterStore):
    def __init__(
        self, url: str, keep_versions: int = 5, cache_dir: str | None = None, cache_max_bytes: int = 2 * 1024**3
    ):
        import boto3  # imported here so only S3 users need boto3, and nothing connects at import time
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        parsed = urlparse(url)
        prefix = parsed.path.strip("/")
        if not parsed.netloc or any(p in ("", ".", "..") for p in prefix.split("/") if prefix):
            raise ValueError(f"bad S3 store URL {url!r}: expected s3://bucket or s3://bucket/prefix")
        self.url, self.bucket, self.keep_versions = url, parsed.netloc, keep_versions
        self.prefix = f"{prefix}/" if prefix else ""
        self._client_error, self._errors = ClientError, (ClientError, BotoCoreError)
        session = boto3.session.Session()
        # Short timeouts and few retries: a dead endpoint must become a prompt 503, not a hung admin call.
        options = dict(connect_timeout=3, read_timeout=15, retries={"max_attempts": 3, "mode": "standard"})
        if "request_checksum_calculation" in Config.OPTION_DEFAULTS:
            # Checksums only where S3 requires them: several S3-compatible servers reject the newer defaults,
            # and every version is verified end to end by its sha256 anyway.
            options.update(request_checksum_calculation="when_required", response_checksum_validation="when_required")
        self._s3 = session.client("s3", region_name=session.region_name or "us-east-1", config=Config(**options))
        root = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "adapterserve-s3-cache"
        self.cache_root = root / self.bucket / (prefix or "_root")
        self.cache_max_bytes = cache_max_bytes  # the download cache (on Kubernetes: the pod's emptyDir)
        self.cache_grace_s = 60.0  # a copy used this recently is kept (a load may be reading it)
        self._init_manifest()

    # ---- one place that talks to S3 and translates its failures ---------------------------------------
    def _call(self, op: str, missing_ok: bool = False, **kw):
        try:
            return getattr(self._s3, op)(Bucket=self.bucket, **kw)
        except self._client_error as e:
            err = e.response.get("Error", {})
            code = str(err.get("Code", ""))
            if missing_ok and code in _MISSING:
                return None
            if code in CAS_FAILED or code == "304":  # conditional requests: the caller decides
                raise
            raise StoreUnavailable(
                f"adapter store {self.url} refused {op}: {code} {err.get('Message', '')}".strip(), store=self.url
            ) from None
        except self._errors as e:
            raise StoreUnavailable(f"adapter store {self.url} is unreachable: {e}", store=self.url) from None

    def _code(self, e: Exception) -> str:
        return str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))

    def _get(self, key: str) -> bytes | None:
        r = self._call("get_object", missing_ok=True, Key=key)
        return None if r is None else self._read_body(r)

    def _read_body(self, r) -> bytes:
        try:
            return r["Body"].read()
        except self._errors as e:
            raise StoreUnavailable(f"adapter store {self.url} failed mid-read: {e}", store=self.url) from None

    def _keys(self, prefix: str, delimiter: str | None = None) -> tuple[list[str], list[str]]:
        """(object keys, common prefixes) under prefix, all pages."""
        keys, dirs, token = [], [], None
        while True:
            kw = {
                "Prefix": prefix,
                **({"Delimiter": delimiter} if delimiter else {}),
                **({"ContinuationToken": token} if token else {}),
            }
            r = self._call("list_objects_v2", **kw)
            keys += [o["Key"] for o in r.get("Contents", [])]
            dirs += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
            if not r.get("IsTruncated"):
                return keys, dirs
            token = r["NextContinuationToken"]

    def _delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            self._call("delete_objects", Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True})

    def _base(self, name: str) -> str:
        return f"{self.prefix}{validate_name(name)}/"

    # ---- reads -----------------------------------------------------------------------------------------
    def _current_version(self, name: str) -> str | None:
        body = self._get(self._base(name) + "current")
        return body.decode().strip() if body else None

    def _info(self, name: str, version: str) -> VersionInfo:
        body = self._get(f"{self._base(name)}versions/{validate_version(version)}.json")
        if body is None:
            raise AdapterNotFound(f"adapter {name!r} has no version {version!r}", name=name, version=version)
        return VersionInfo(**json.loads(body))

    def names(self) -> list[str]:
        return sorted(self.manifest())  # the index: one conditional GET instead of a listing

    def current(self, name: str) -> VersionInfo | None:
        version = self._current_version(name)
        return None if version is None else self._info(name, version)

    def versions(self, name: str) -> list[VersionInfo]:
        keys, _ = self._keys(self._base(name) + "versions/", delimiter="/")
        infos = []
        for key in keys:
            if key.endswith(".json") and (body := self._get(key)) is not None:
                infos.append(VersionInfo(**json.loads(body)))
        return sorted(infos, key=lambda v: v.created, reverse=True)

    def fetch(self, name: str, version: str) -> Path:
        local = self.cache_root / validate_name(name) / validate_version(version)
        try:  # versions are immutable, and a local copy only ever appears complete (renamed into place)
            os.utime(local)  # recently used: _trim_local leaves it alone
            return local
        except FileNotFoundError:
            pass
        return self._download(name, version, self._info(name, version).sha256)

    def local_copy(self, name: str, version: str) -> Path | None:
        local = self.cache_root / validate_name(name) / validate_version(version)
        return local if local.is_dir() else None  # complete when present: copies are renamed into place

    def _download(self, name: str, version: str, sha256: str) -> Path:
        local = self.cache_root / name / version
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=local.parent, prefix=".incoming-"))
        try:
            src = f"{self._base(name)}versions/{version}/"
            for key in self._keys(src)[0]:
                rel = PurePosixPath(key[len(src) :])
                if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                    raise StoreUnavailable(f"refusing object {key!r}: not a plain relative path", store=self.url)
                r = self._call("get_object", missing_ok=True, Key=key)
                if r is None:
                    break  # deleted or pruned while we read: the hash check below says so
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                with (tmp / rel).open("wb") as out:
                    try:
                        for chunk in r["Body"].iter_chunks(1 << 20):
                            out.write(chunk)
                    except self._errors as e:
                        raise StoreUnavailable(f"adapter store {self.url} failed mid-read: {e}") from None
            if content_hash(tmp) != sha256:
                if self._get(f"{self._base(name)}versions/{version}.json") is None:
                    raise AdapterNotFound(f"adapter {name!r} has no version {version!r}", name=name, version=version)
                raise StoreUnavailable(
                    f"{name}@{version} in {self.url} does not match its recorded sha256; "
                    "it is incomplete or corrupt in the store",
                    store=self.url,
                )
            try:
                os.rename(tmp, local)
            except OSError:  # a local copy exists already (same content: versions are content-addressed)
                shutil.rmtree(tmp, ignore_errors=True)
            self._trim_local(name, keep=self.keep_versions + 1)
            self._trim_bytes(keep=local)
            return local
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    # ---- writes ----------------------------------------------------------------------------------------
    def publish(self, name: str, folder: Path) -> VersionInfo:
        base = self._base(name)
        digest = content_hash(folder)
        version = digest[:16]
        meta_key = f"{base}versions/{version}.json"
        if self._call("head_object", missing_ok=True, Key=meta_key) is None:  # else: identical, complete version
            files = sorted(p for p in folder.rglob("*") if p.is_file())
            for path in files:
                with path.open("rb") as body:
                    self._call(
                        "put_object", Key=f"{base}versions/{version}/{path.relative_to(folder).as_posix()}", Body=body
                    )
            self._download(name, version, digest)  # read back every byte from the store; raises unless identical
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        info = VersionInfo(version, digest, time.time(), size)
        self._call("put_object", Key=meta_key, Body=json.dumps(info.to_dict()).encode())
        self._call("put_object", Key=base + "current", Body=version.encode())  # the commit point
        self._after_change(name)
        self._prune(name, keep=version)
        return info

    def set_current(self, name: str, version: str) -> VersionInfo:
        info = self._info(name, version)
        self._call("put_object", Key=self._base(name) + "current", Body=version.encode())
        self._after_change(name)
        return info

    def delete(self, name: str) -> None:
        base = self._base(name)
        if self._current_version(name) is None:
            raise AdapterNotFound(f"adapter {name!r} is not in the store", name=name)
        self._call("delete_object", Key=base + "current")  # the commit point: from here on it is gone
        self._after_change(name)
        try:
            self._delete_keys(self._keys(base)[0])
        except StoreUnavailable as e:  # unreferenced leftovers are never served; a re-upload overwrites them
            log.warning("deleted %s, but removing its objects failed: %s", name, e.message)
        self._trim_local(name, keep=0)

    def _trim_local(self, name: str, keep: int, grace_s: float = 60.0) -> None:
        """Bound this host's copies of name's versions. Only copies idle for grace_s go, so a load that is
        reading one right now (a request racing a delete or a rollback) is never pulled from under it."""
        folder = self.cache_root / name
        copies = (
            sorted((p for p in folder.glob("[!.]*") if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
            if folder.is_dir()
            else []
        )
        for old in copies[keep:]:
            if time.time() - old.stat().st_mtime > grace_s:
                shutil.rmtree(old, ignore_errors=True)

    def _trim_bytes(self, keep: Path) -> None:
        """Bound the download cache by bytes: the least recently used copies go first (fetch touches a
        copy's mtime), except the one just fetched and any used within cache_grace_s (a load may be reading it;
        once loaded, an adapter needs no files). A copy evicted here is downloaded again when next needed."""
        copies = []
        for path in self.cache_root.glob("*/[!.]*"):
            if path.is_dir():
                size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                copies.append((path.stat().st_mtime, size, path))
        total = sum(size for _, size, _ in copies)
        for mtime, size, path in sorted(copies, key=lambda c: c[0]):
            if total <= self.cache_max_bytes:
                return
            if path == keep or time.time() - mtime < self.cache_grace_s:
                continue
            shutil.rmtree(path, ignore_errors=True)
            total -= size
            log.info("evicted %s from the download cache", path.relative_to(self.cache_root))

    def _prune(self, name: str, keep: str) -> None:
        try:
            current = self._current_version(name)
            for info in self.versions(name)[self.keep_versions :]:
                if info.version in (keep, current):
                    continue
                vkey = f"{self._base(name)}versions/{info.version}"
                self._call("delete_object", Key=vkey + ".json")  # first: the version stops existing
                self._delete_keys(self._keys(vkey + "/")[0])
        except StoreUnavailable as e:
            log.warning("pruning old versions of %s failed (retried on the next upload): %s", name, e.message)


register_store("s3", S3Store)
