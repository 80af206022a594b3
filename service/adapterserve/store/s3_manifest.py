"""The S3 store's manifest: a derived index, {name: current version}, that replicas poll cheaply.

The per-name `current` objects are the truth. The manifest follows them with compare-and-swap writes
(If-Match on its ETag; If-None-Match: * to create it), and each attempt reads the manifest *before* the
pointers, so a write that lands in between changes the ETag and fails the swap: racing writers on several
replicas can never leave an older entry over a newer one. Readers poll it with If-None-Match (a 304 costs
no body and no listing). A writer that dies between pointer and manifest leaves the index stale until
reconcile(), which lists the pointers and repairs it; replicas call it now and then. Servers without
conditional writes (NotImplemented) get plain writes, and then reconcile() alone bounds the lag.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time

from ..errors import StoreUnavailable
from .base import NAME_RE

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
CAS_FAILED = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


class ManifestIndex:
    """Mixed into S3Store; uses its _call, _read_body, _keys, _current_version, prefix and url."""

    def _init_manifest(self) -> None:
        self._manifest_lock = threading.Lock()
        self._manifest_seen: tuple[str | None, dict[str, str]] = (None, {})

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
            if self._code(e) in CAS_FAILED:
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
            name = d[len(self.prefix) :].rstrip("/")
            if NAME_RE.match(name) and ".." not in name and (version := self._current_version(name)):
                out[name] = version
        return out

    def manifest(self) -> dict[str, str]:
        with self._manifest_lock:
            etag, seen = self._manifest_seen
        try:
            r = self._call(
                "get_object", missing_ok=True, Key=self.prefix + MANIFEST, **({"IfNoneMatch": etag} if etag else {})
            )
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
        if (truth != adapters or etag is None) and self._write_manifest(truth, etag):
            log.info("manifest repaired", extra={"store": self.url, "was": adapters, "now": truth})
        return truth
