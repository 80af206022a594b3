"""A local directory store.

Layout: <root>/<name>/versions/<version>/<files>, <root>/<name>/versions/<version>.json (metadata) and
<root>/<name>/current (the current version id). Versions are written to a temporary directory and renamed
into place, and `current` is replaced atomically, so a reader never sees half an adapter. A plain adapter
folder dropped in as <root>/<name>/ (no versions/) is served as one implicit version.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..errors import AdapterNotFound, Conflict
from .base import AdapterStore, VersionInfo, content_hash, validate_name, validate_version
from .registry import register_store


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600: other users (a container's server) must read it
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class LocalStore(AdapterStore):
    def __init__(self, url: str, keep_versions: int = 5, cache_max_bytes: int | None = None):
        # cache_max_bytes bounds a remote store's download cache; a local store reads in place and has none
        self.url = url
        self.root = Path(url.removeprefix("file://")).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep_versions = keep_versions
        self._plain_cache: dict[Path, tuple[tuple, VersionInfo]] = {}

    def _dir(self, name: str) -> Path:
        return self.root / validate_name(name)

    def _is_plain(self, d: Path) -> bool:
        return (d / "adapter_config.json").is_file() and not (d / "versions").is_dir()

    def names(self) -> list[str]:
        out = []
        for d in sorted(self.root.iterdir()):
            if d.is_dir() and not d.name.startswith(".") and ((d / "current").is_file() or self._is_plain(d)):
                out.append(d.name)
        return out

    def _plain_info(self, d: Path) -> VersionInfo:
        # Replicas poll manifest() every few seconds: re-hash a plain folder only when its files changed.
        stats = tuple(sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in d.rglob("*") if p.is_file()))
        cached = self._plain_cache.get(d)
        if cached is None or cached[0] != stats:
            digest = content_hash(d)
            cached = (
                stats,
                VersionInfo(digest[:16], digest, (d / "adapter_config.json").stat().st_mtime, _folder_size(d)),
            )
            self._plain_cache[d] = cached
        return cached[1]

    def _info(self, d: Path, version: str) -> VersionInfo:
        meta = d / "versions" / f"{validate_version(version)}.json"
        try:  # read, not check-then-read: a delete or prune may remove it at any moment
            return VersionInfo(**json.loads(meta.read_text()))
        except FileNotFoundError:
            raise AdapterNotFound(
                f"adapter {d.name!r} has no version {version!r}", name=d.name, version=version
            ) from None

    def current(self, name: str) -> VersionInfo | None:
        d = self._dir(name)
        if self._is_plain(d):
            return self._plain_info(d)
        for attempt in range(3):  # a publish may prune the version `current` named between our two reads
            try:
                version = (d / "current").read_text().strip()
            except FileNotFoundError:
                return None  # not in the store, or deleted while we read it
            try:
                return self._info(d, version)
            except AdapterNotFound:
                if attempt == 2:
                    raise

    def versions(self, name: str) -> list[VersionInfo]:
        d = self._dir(name)
        if self._is_plain(d):
            return [self._plain_info(d)]
        vdir = d / "versions"
        if not vdir.is_dir():
            return []
        infos = []
        for p in vdir.glob("*.json"):
            try:
                infos.append(VersionInfo(**json.loads(p.read_text())))
            except FileNotFoundError:  # pruned while we listed
                continue
        return sorted(infos, key=lambda v: v.created, reverse=True)

    def fetch(self, name: str, version: str) -> Path:
        d = self._dir(name)
        if self._is_plain(d):
            return d
        folder = d / "versions" / validate_version(version)
        if not folder.is_dir():
            raise AdapterNotFound(f"adapter {name!r} has no version {version!r}", name=name, version=version)
        return folder

    def local_copy(self, name: str, version: str) -> Path | None:
        try:
            return self.fetch(name, version)
        except AdapterNotFound:
            return None

    def publish(self, name: str, folder: Path) -> VersionInfo:
        d = self._dir(name)
        if self._is_plain(d):
            raise Conflict(f"{d} is a plain adapter folder; move it aside to manage {name!r} through the store")
        digest = content_hash(folder)
        version = digest[:16]
        vdir = d / "versions"
        vdir.mkdir(parents=True, exist_ok=True)
        target = vdir / version
        if not target.is_dir():
            tmp = Path(tempfile.mkdtemp(dir=vdir, prefix=".incoming-"))
            try:
                shutil.copytree(folder, tmp, dirs_exist_ok=True)
                for p in [tmp, *tmp.rglob("*")]:  # readable by any server user, whatever the upload's modes
                    p.chmod(0o755 if p.is_dir() else 0o644)
                if content_hash(tmp) != digest:  # read back what we wrote
                    raise OSError(f"read-back of {name}@{version} does not match what was uploaded")
                os.replace(tmp, target)
            except OSError as e:
                shutil.rmtree(tmp, ignore_errors=True)
                # A racing identical upload won (same content): renaming onto its folder fails with EEXIST
                # or, for a non-empty folder, ENOTEMPTY.
                if not (e.errno in (errno.EEXIST, errno.ENOTEMPTY) and target.is_dir()):
                    raise
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        meta = vdir / f"{version}.json"
        info = VersionInfo(version, digest, time.time(), _folder_size(target))
        _atomic_write(meta, json.dumps(info.to_dict()))
        _atomic_write(d / "current", version)
        self._prune(d, keep=version)
        return info

    def set_current(self, name: str, version: str) -> VersionInfo:
        d = self._dir(name)
        info = self._info(d, version)
        _atomic_write(d / "current", version)
        return info

    def delete(self, name: str) -> None:
        d = self._dir(name)
        if not d.is_dir():
            raise AdapterNotFound(f"adapter {name!r} is not in the store", name=name)
        # Rename first so readers never see a half-deleted adapter, then remove.
        trash = self.root / f".deleted-{name}-{time.time_ns()}"
        os.replace(d, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def _prune(self, d: Path, keep: str) -> None:
        for info in self.versions(d.name)[self.keep_versions :]:
            if info.version != keep:
                shutil.rmtree(d / "versions" / info.version, ignore_errors=True)
                (d / "versions" / f"{info.version}.json").unlink(missing_ok=True)


register_store("file", LocalStore)
