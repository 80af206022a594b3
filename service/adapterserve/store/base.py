"""The store interface. Stores move files; they know nothing of torch or of adapter formats."""

from __future__ import annotations

import difflib
import hashlib
import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import AdapterNotFound, AdapterServeError, InvalidName

SUGGESTIONS = 5  # how many close names an unknown-adapter error offers

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
# The same rule (with "no ..", and max_length=128 beside it) as one regex without look-around, for the OpenAPI
# document and FastAPI's validation.
NAME_PATTERN = r"^[a-z0-9]([a-z0-9_-]|\.[a-z0-9_-])*\.?$"
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
VERSION_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_-]|\.[A-Za-z0-9_-])*\.?$"  # VERSION_RE without "..", for OpenAPI


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise InvalidName(
            f"invalid adapter name {name!r}: use 1-128 characters [a-z0-9._-], starting with a "
            "letter or digit, without '..'",
            name=name,
        )
    return name


def validate_version(version: str) -> str:
    """Version ids come from clients too (rollback): they must never become a path outside the adapter."""
    if not isinstance(version, str) or not VERSION_RE.match(version) or ".." in version:
        raise InvalidName(
            f"invalid version {version!r}: versions are the ids listed by GET /admin/adapters/{{name}}/versions",
            version=version,
        )
    return version


def content_hash(folder: Path) -> str:
    """sha256 over the sorted file names and contents: the same files always give the same version."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        h.update(rel.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class VersionInfo:
    version: str  # the first 16 hex digits of sha256
    sha256: str
    created: float  # unix time
    size: int

    def to_dict(self) -> dict:
        return asdict(self)


class AdapterStore(ABC):
    """Immutable versions per adapter name, and a pointer to the current one."""

    url: str

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def current(self, name: str) -> VersionInfo | None: ...

    @abstractmethod
    def versions(self, name: str) -> list[VersionInfo]:
        """Newest first."""

    @abstractmethod
    def fetch(self, name: str, version: str) -> Path:
        """A local folder holding that version's files (read-only for the caller)."""

    @abstractmethod
    def publish(self, name: str, folder: Path) -> VersionInfo:
        """Write the folder as a new version (or reuse an identical one) and make it current."""

    @abstractmethod
    def set_current(self, name: str, version: str) -> VersionInfo: ...

    @abstractmethod
    def delete(self, name: str) -> None: ...

    def local_copy(self, name: str, version: str) -> Path | None:
        """That version's folder if it is on local disk already (no download), else None: for cheap reads
        such as the listing's, which must never pull a whole store over the network."""
        return None

    def manifest(self) -> dict[str, str]:
        """name -> current version, for replicas to poll cheaply (backends may override with one read)."""
        out = {}
        for n in self.names():
            cur = self.current(n)
            if cur is not None:
                out[n] = cur.version
        return out

    def reconcile(self) -> dict[str, str]:
        """Like manifest(), but from the authoritative per-name pointers, repairing any index the backend
        keeps. Replicas call it now and then, so a stale index can only delay convergence, never stall it."""
        return self.manifest()


def not_found(store: AdapterStore, name: str) -> AdapterNotFound:
    """The error for an unknown name: the few closest names in the store, not the whole store."""
    try:
        names = store.names()  # a directory listing, or S3's manifest (a conditional GET)
    except AdapterServeError:
        names = []
    close = difflib.get_close_matches(name, names, n=SUGGESTIONS, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(n) for n in close)}?" if close else ""
    return AdapterNotFound(
        f"adapter {name!r} not found{hint} ({len(names)} adapters in the store; GET /adapters lists them)",
        name=name,
        suggestions=close,
    )
