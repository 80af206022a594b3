"""Safe extraction of an uploaded adapter archive (.tar.gz, .tgz, .tar, .zip) into a folder.

An archive is hostile until proven otherwise: entries may name absolute paths or climb out with `..`, be
links or device files, lie about their sizes, or expand a thousandfold. So entries are read one at a time,
only plain files and folders are written (with exclusive creation, into a fresh folder), their names must be
plain relative paths, and the bytes actually written and the number of entries are bounded as we go.
Hidden files and macOS metadata (`.gitattributes`, `__MACOSX/`, `._*`) are skipped; a single top-level
folder is unwrapped.
"""

from __future__ import annotations

import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ..errors import BadRequest, PayloadTooLarge

SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
PART_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
MAX_DEPTH = 8
_SKIP = ("__MACOSX",)


def is_archive_name(filename: str | None) -> bool:
    return bool(filename) and filename.lower().endswith(SUFFIXES)


class _Budget:
    def __init__(self, max_bytes: int, max_files: int):
        self.max_bytes, self.max_files = max_bytes, max_files
        self.bytes = self.files = self.entries = 0

    def entry(self) -> None:
        self.entries += 1  # folders count too (with headroom), so a flood of empty entries stops early
        if self.entries > self.max_files * 2 + 16:
            raise PayloadTooLarge(f"the archive has more than {self.max_files * 2 + 16} entries")

    def file(self, declared: int) -> None:
        self.files += 1
        if self.files > self.max_files:
            raise PayloadTooLarge(f"the archive has more than {self.max_files} files")
        if self.bytes + max(declared, 0) > self.max_bytes:
            raise PayloadTooLarge(f"the archive expands to more than {self.max_bytes} bytes")

    def wrote(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.max_bytes:  # the declared size may lie: count what is really written
            raise PayloadTooLarge(f"the archive expands to more than {self.max_bytes} bytes")


def _relative(name: str) -> PurePosixPath | None:
    """The entry's safe relative path, or None for entries we skip (the root, macOS metadata)."""
    if "\\" in name or "\0" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise BadRequest(f"archive entry {name!r} is not allowed: absolute or non-POSIX path")
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if ".." in parts:
        raise BadRequest(f"archive entry {name!r} is not allowed: '..' in path")
    if not parts or parts[0] in _SKIP or any(p.startswith(".") for p in parts):
        return None  # hidden files (.gitattributes, ._AppleDouble, .DS_Store) are not part of an adapter
    if len(parts) > MAX_DEPTH or not all(PART_RE.match(p) for p in parts):
        raise BadRequest(
            f"archive entry {name!r} is not allowed: use plain names [A-Za-z0-9._-], at most {MAX_DEPTH} levels deep"
        )
    return PurePosixPath(*parts)


def _write(dest: Path, rel: PurePosixPath, src: BinaryIO, budget: _Budget) -> None:
    target = dest.joinpath(*rel.parts)
    if not target.resolve().is_relative_to(dest.resolve()):  # defence in depth; _relative already refused
        raise BadRequest(f"archive entry {str(rel)!r} escapes the upload folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        out = target.open("xb")  # exclusive: a repeated entry cannot overwrite (or follow) an earlier one
    except FileExistsError:
        raise BadRequest(f"archive entry {str(rel)!r} appears twice") from None
    with out:
        while chunk := src.read(1 << 20):
            budget.wrote(len(chunk))
            out.write(chunk)


def _tar(archive: Path, dest: Path, budget: _Budget) -> None:
    with tarfile.open(archive, "r:*") as tf:
        for member in tf:  # streamed: a member-count bomb stops at the limit, not after reading all headers
            budget.entry()
            rel = _relative(member.name)
            if rel is None:
                continue
            if member.isdir():
                dest.joinpath(*rel.parts).mkdir(parents=True, exist_ok=True)
                continue
            if not member.isfile():
                raise BadRequest(
                    f"archive entry {member.name!r} is a link or special file; only regular files "
                    "and folders are allowed"
                )
            budget.file(member.size)
            src = tf.extractfile(member)
            _write(dest, rel, src, budget)


def _zip(archive: Path, dest: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > budget.max_files * 2 + 16:  # the central directory says so before we extract a byte
            raise PayloadTooLarge(f"the archive has more than {budget.max_files * 2 + 16} entries")
        if sum(i.file_size for i in infos) > budget.max_bytes:
            raise PayloadTooLarge(f"the archive expands to more than {budget.max_bytes} bytes")
        for info in infos:
            budget.entry()
            rel = _relative(info.filename)
            if rel is None:
                continue
            mode = info.external_attr >> 16
            if info.is_dir():
                dest.joinpath(*rel.parts).mkdir(parents=True, exist_ok=True)
                continue
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # zipfile itself writes bare permissions (0)
                raise BadRequest(
                    f"archive entry {info.filename!r} is a link or special file; only regular files "
                    "and folders are allowed"
                )
            if info.flag_bits & 0x1:
                raise BadRequest(f"archive entry {info.filename!r} is encrypted")
            budget.file(info.file_size)
            with zf.open(info) as src:
                _write(dest, rel, src, budget)


def extract_archive(archive: Path, dest: Path, *, max_bytes: int, max_files: int) -> int:
    """Extract into the empty folder dest; returns the number of files. BadRequest / PayloadTooLarge on refusal
    (the caller discards dest then)."""
    budget = _Budget(max_bytes, max_files)
    try:
        if zipfile.is_zipfile(archive):
            _zip(archive, dest, budget)
        else:
            _tar(archive, dest, budget)
    except (BadRequest, PayloadTooLarge):
        raise
    except (
        tarfile.TarError,
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        NotImplementedError,
        RuntimeError,
        ValueError,
    ) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise  # the disk, not the archive (bad gzip/bz2 data raises OSError without an errno)
        raise BadRequest(f"the archive is corrupt, truncated or not a .tar.gz/.tgz/.tar/.zip: {e}") from None
    if budget.files == 0:
        raise BadRequest("the archive holds no files")
    _unwrap_single_folder(dest)
    return budget.files


def _unwrap_single_folder(dest: Path) -> None:
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        inner = entries[0].rename(dest / ".unwrap")
        for child in inner.iterdir():
            child.rename(dest / child.name)
        shutil.rmtree(inner)
