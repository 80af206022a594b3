"""An S3-compatible object store (AWS S3, MinIO, ...): `s3://bucket/prefix`.

Layout under the prefix is the local store's: <name>/versions/<version>/<files>, <name>/versions/<version>.json
and <name>/current, plus one small index, manifest.json = {"adapters": {name: version}}, that replicas poll
with If-None-Match (a 304 costs no listing and no body).

Commit protocol for a new version: upload its files, read them back and compare the content hash, write the
metadata object, and only then write <name>/current. The `current` object is the commit point and the truth;
the manifest is derived from it with compare-and-swap writes (If-Match on its ETag, retried), re-reading the
`current` objects inside each attempt, so racing writers from several replicas leave it agreeing with the last
`current` write. A writer that dies between the two leaves the index stale until `reconcile()` (a listing the
replicas run now and then) repairs it. Endpoint, region and credentials come from the standard AWS variables
(`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...), which boto3 reads itself; any failure to talk to the store
becomes StoreUnavailable (503, with the reason) and never a half-served adapter.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from ..errors import AdapterNotFound, StoreUnavailable
from .base import NAME_RE, AdapterStore, VersionInfo, content_hash, validate_name, validate_version
from .registry import register_store

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
_MISSING = {"NoSuchKey", "404", "NotFound"}
_CAS_FAILED = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


class S3Store(AdapterStore):
    def __init__(self, url: str, keep_versions: int = 5, cache_dir: str | None = None):
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
        self._s3 = session.client("s3", region_name=session.region_name or "us-east-1", config=Config(
            connect_timeout=3, read_timeout=15, retries={"max_attempts": 3, "mode": "standard"}))
        root = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "adapterserve-s3-cache"
        self.cache_root = root / self.bucket / (prefix or "_root")
        self._manifest_lock = threading.Lock()
        self._manifest_seen: tuple[str | None, dict[str, str]] = (None, {})

    # ---- one place that talks to S3 and translates its failures ---------------------------------------
    def _call(self, op: str, missing_ok: bool = False, **kw):
        try:
            return getattr(self._s3, op)(Bucket=self.bucket, **kw)
        except self._client_error as e:
            err = e.response.get("Error", {})
            code = str(err.get("Code", ""))
            if missing_ok and code in _MISSING:
                return None
            if code in _CAS_FAILED or code == "304":
                raise
            raise StoreUnavailable(f"adapter store {self.url} refused {op}: {code} {err.get('Message', '')}".strip(),
                                   store=self.url) from None
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
            kw = {"Prefix": prefix, **({"Delimiter": delimiter} if delimiter else {}),
                  **({"ContinuationToken": token} if token else {})}
            r = self._call("list_objects_v2", **kw)
            keys += [o["Key"] for o in r.get("Contents", [])]
            dirs += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
            if not r.get("IsTruncated"):
                return keys, dirs
            token = r["NextContinuationToken"]

    def _delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            self._call("delete_objects", Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})

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
        if local.is_dir():  # versions are immutable and a local copy only appears complete (renamed in)
            return local
        return self._download(name, version, self._info(name, version).sha256)

    def _download(self, name: str, version: str, sha256: str) -> Path:
        local = self.cache_root / name / version
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=local.parent, prefix=".incoming-"))
        try:
            src = f"{self._base(name)}versions/{version}/"
            for key in self._keys(src)[0]:
                rel = PurePosixPath(key[len(src):])
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
                raise StoreUnavailable(f"{name}@{version} in {self.url} does not match its recorded sha256; "
                                       "it is incomplete or corrupt in the store", store=self.url)
            try:
                os.rename(tmp, local)
            except OSError:  # another process on this host finished the same immutable version first
                shutil.rmtree(tmp, ignore_errors=True)
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
                    self._call("put_object", Key=f"{base}versions/{version}/{path.relative_to(folder).as_posix()}",
                               Body=body)
            local = self.cache_root / name / version
            if local.is_dir():  # a stale local copy must not stand in for the read-back
                shutil.rmtree(local, ignore_errors=True)
            self._download(name, version, digest)  # read back every byte; raises unless identical
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
        shutil.rmtree(self.cache_root / name, ignore_errors=True)

    def _prune(self, name: str, keep: str) -> None:
        try:
            current = self._current_version(name)
            for info in self.versions(name)[self.keep_versions:]:
                if info.version in (keep, current):
                    continue
                vkey = f"{self._base(name)}versions/{info.version}"
                self._call("delete_object", Key=vkey + ".json")  # first: the version stops existing
                self._delete_keys(self._keys(vkey + "/")[0])
                shutil.rmtree(self.cache_root / name / info.version, ignore_errors=True)
        except StoreUnavailable as e:
            log.warning("pruning old versions of %s failed (retried on the next upload): %s", name, e.message)

    # ---- the manifest: a derived index that replicas can poll cheaply -----------------------------------
    def _read_manifest(self) -> tuple[dict[str, str], str | None]:
        r = self._call("get_object", missing_ok=True, Key=self.prefix + MANIFEST)
        if r is None:
            return {}, None
        return json.loads(self._read_body(r)).get("adapters", {}), r["ETag"]

    def _write_manifest(self, adapters: dict[str, str], etag: str | None) -> bool:
        """Compare-and-swap; False when someone else wrote first. Stores without conditional writes
        (NotImplemented) fall back to a plain write: reconcile() then bounds how long the index can lag."""
        body = json.dumps({"adapters": dict(sorted(adapters.items())), "updated": time.time()}).encode()
        cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self._call("put_object", Key=self.prefix + MANIFEST, Body=body, ContentType="application/json", **cond)
        except self._client_error as e:
            if self._code(e) in _CAS_FAILED:
                return False
            raise
        except StoreUnavailable as e:
            if "NotImplemented" not in e.message:
                raise
            self._call("put_object", Key=self.prefix + MANIFEST, Body=body, ContentType="application/json")
        return True

    def _after_change(self, name: str) -> None:
        """Bring the manifest's entry for name in line with <name>/current. Best effort: the change itself is
        already committed, so a failure here only delays other replicas until the next reconcile."""
        try:
            for attempt in range(20):
                # Read the manifest *before* the pointer: a write that lands after our read changes the ETag
                # and fails our swap, so we can never overwrite a newer entry with an older one.
                adapters, etag = self._read_manifest()
                if etag is None:
                    adapters = self._scan()
                new = dict(adapters)
                version = self._current_version(name)
                if version is None:
                    new.pop(name, None)
                else:
                    new[name] = version
                if (new == adapters and etag is not None) or self._write_manifest(new, etag):
                    return
                time.sleep(random.uniform(0.01, 0.05 * (attempt + 1)))
            log.warning("manifest update for %s kept conflicting; reconcile will repair it", name)
        except StoreUnavailable as e:
            log.warning("manifest update for %s failed (reconcile will repair it): %s", name, e.message)

    def _scan(self) -> dict[str, str]:
        """The truth, by listing: every name with a `current` object."""
        _, dirs = self._keys(self.prefix, delimiter="/")
        out = {}
        for d in dirs:
            name = d[len(self.prefix):].rstrip("/")
            if NAME_RE.match(name) and ".." not in name and (version := self._current_version(name)):
                out[name] = version
        return out

    def manifest(self) -> dict[str, str]:
        with self._manifest_lock:
            etag, seen = self._manifest_seen
        try:
            r = self._call("get_object", missing_ok=True, Key=self.prefix + MANIFEST,
                           **({"IfNoneMatch": etag} if etag else {}))
        except self._client_error as e:
            if self._code(e) in ("304", "NotModified"):
                return dict(seen)
            raise StoreUnavailable(f"adapter store {self.url}: reading the manifest failed: {e}") from None
        if r is None:  # a fresh bucket, or objects written by other tools: build the index once
            return self.reconcile()
        adapters = json.loads(self._read_body(r)).get("adapters", {})
        with self._manifest_lock:
            self._manifest_seen = (r["ETag"], adapters)
        return dict(adapters)

    def reconcile(self) -> dict[str, str]:
        adapters, etag = self._read_manifest()  # first, for the same reason as in _after_change
        truth = self._scan()
        if truth != adapters or etag is None:
            if self._write_manifest(truth, etag):
                log.info("manifest repaired", extra={"store": self.url, "was": adapters, "now": truth})
        return truth


register_store("s3", S3Store)
