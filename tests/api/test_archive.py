"""Safe archive extraction: path tricks, links, devices, bombs and lies about sizes are refused."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile

import pytest

from adapterserve.api.archive import extract_archive, is_archive_name
from adapterserve.errors import BadRequest, PayloadTooLarge

from ..conftest import GOLDEN

SRC = GOLDEN / "ah_seq_bn" / "adapter"
LIMITS = dict(max_bytes=1 << 20, max_files=16)


def make_tar(path, entries, mode="w:gz"):
    """entries: (name, bytes) for a file, (name, None) for a folder, (name, None, type[, linkname]) otherwise."""
    with tarfile.open(path, mode) as tf:
        for name, data, *special in entries:
            info = tarfile.TarInfo(name)
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                continue
            info.type = special[0] if special else tarfile.DIRTYPE
            info.linkname = special[1] if len(special) > 1 else ""
            tf.addfile(info)
    return path


def make_zip(path, entries):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, *mode in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode:
                info.external_attr = mode[0] << 16
            zf.writestr(info, data)
    return path


def golden_entries(prefix=""):
    return [(prefix + p.name, p.read_bytes()) for p in sorted(SRC.iterdir())]


@pytest.mark.parametrize(
    "name,yes",
    [
        ("a.tar.gz", True),
        ("A.TGZ", True),
        ("a.zip", True),
        ("a.tar", True),
        ("adapter.safetensors", False),
        ("x.gz", False),
        (None, False),
    ],
)
def test_is_archive_name(name, yes):
    assert is_archive_name(name) is yes


@pytest.mark.parametrize("kind", ["tar.gz", "tar", "zip"])
@pytest.mark.parametrize("prefix", ["", "./", "my-adapter/"])
def test_extracts_flat_or_one_top_folder(tmp_path, kind, prefix):
    entries = golden_entries(prefix) + [(prefix + ".gitattributes", b"x"), ("__MACOSX/._a", b"x")]
    if kind == "zip":
        archive = make_zip(tmp_path / "a.zip", entries)
    else:
        archive = make_tar(tmp_path / f"a.{kind}", entries, "w:gz" if kind == "tar.gz" else "w")
    dest = tmp_path / "out"
    dest.mkdir()
    n = extract_archive(archive, dest, **LIMITS)
    assert n == len(list(SRC.iterdir()))
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in SRC.iterdir())
    for p in SRC.iterdir():
        assert (dest / p.name).read_bytes() == p.read_bytes()


BAD_NAMES = [
    "../evil",
    "/etc/passwd",
    "a/../../evil",
    "C:/evil",
    "a\\..\\evil",
    "a/b/c/d/e/f/g/h/i/deep",
    "bad name",
    "a/$(x)",
]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_path_tricks_are_refused(tmp_path, name, kind):
    entries = [("adapter_config.json", b"{}"), (name, b"x")]
    if kind == "zip":
        archive = make_zip(tmp_path / "a.zip", entries)
    else:
        archive = make_tar(tmp_path / "a.tar", entries, "w")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BadRequest):
        extract_archive(archive, dest, **LIMITS)
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize(
    "entry",
    [
        ("link", None, tarfile.SYMTYPE, "/etc/passwd"),
        ("hard", None, tarfile.LNKTYPE, "adapter_config.json"),
        ("dev", None, tarfile.CHRTYPE),
        ("blk", None, tarfile.BLKTYPE),
        ("fifo", None, tarfile.FIFOTYPE),
    ],
)
def test_tar_links_and_devices_are_refused(tmp_path, entry):
    archive = make_tar(tmp_path / "a.tgz", [("adapter_config.json", b"{}"), entry])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BadRequest, match="link or special"):
        extract_archive(archive, dest, **LIMITS)


def test_zip_symlink_is_refused(tmp_path):
    archive = make_zip(
        tmp_path / "a.zip", [("adapter_config.json", b"{}"), ("link", "/etc/passwd", stat.S_IFLNK | 0o777)]
    )
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BadRequest, match="link or special"):
        extract_archive(archive, dest, **LIMITS)


def test_tar_entry_repeated_cannot_overwrite(tmp_path):
    archive = make_tar(tmp_path / "a.tgz", [("a.json", b"{}"), ("a.json", b"evil")])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BadRequest, match="twice"):
        extract_archive(archive, dest, **LIMITS)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_compression_bomb_is_413_before_filling_the_disk(tmp_path, kind):
    zeros = b"\0" * (8 << 20)  # 8 MiB compresses to a few KiB; the limit is 1 MiB
    if kind == "zip":
        archive = make_zip(tmp_path / "bomb.zip", [("a.bin", zeros)])
    else:
        archive = make_tar(tmp_path / "bomb.tgz", [("a.bin", zeros)])
    assert archive.stat().st_size < 100_000
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(PayloadTooLarge):
        extract_archive(archive, dest, **LIMITS)
    assert sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) <= LIMITS["max_bytes"]


def test_zip_that_lies_about_its_size_is_stopped_by_bytes_written(tmp_path):
    archive = make_zip(tmp_path / "liar.zip", [("a.bin", b"\0" * (4 << 20))])
    data = bytearray(archive.read_bytes())
    # Shrink the declared uncompressed size (local header and central directory) to 10 bytes.
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        i = data.index(sig)
        data[i + off : i + off + 4] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises((PayloadTooLarge, BadRequest)):
        extract_archive(archive, dest, **LIMITS)
    assert sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) <= LIMITS["max_bytes"]


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_too_many_files_is_413(tmp_path, kind):
    entries = [(f"f{i}.txt", b"x") for i in range(LIMITS["max_files"] + 1)]
    archive = make_zip(tmp_path / "a.zip", entries) if kind == "zip" else make_tar(tmp_path / "a.tgz", entries)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(PayloadTooLarge, match="files"):
        extract_archive(archive, dest, **LIMITS)


def test_folder_entry_flood_is_413(tmp_path):
    archive = make_tar(tmp_path / "a.tgz", [(f"d{i}", None) for i in range(100)])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(PayloadTooLarge, match="entries"):
        extract_archive(archive, dest, **LIMITS)


@pytest.mark.parametrize("data", [b"", b"not an archive at all", b"\x1f\x8b\x08\x00garbage-gzip"])
def test_garbage_is_a_clear_400ish(tmp_path, data):
    archive = tmp_path / "a.tgz"
    archive.write_bytes(data)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BadRequest):
        extract_archive(archive, dest, **LIMITS)


def test_truncated_archive_is_refused(tmp_path):
    archive = make_tar(tmp_path / "a.tgz", golden_entries())
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BadRequest, match="corrupt"):
        extract_archive(archive, dest, **LIMITS)


def test_empty_archive_is_refused(tmp_path):
    archive = make_tar(tmp_path / "a.tgz", [("only-a-folder", None)])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BadRequest, match="no files"):
        extract_archive(archive, dest, **LIMITS)
