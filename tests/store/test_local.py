from pathlib import Path

import pytest

from adapterserve.errors import AdapterNotFound, InvalidName
from adapterserve.store import open_store, validate_name
from adapterserve.store.base import content_hash

from ..conftest import GOLDEN

SRC = GOLDEN / "ah_seq_bn" / "adapter"
SRC2 = GOLDEN / "ah_double_seq_bn" / "adapter"


@pytest.mark.parametrize("name", ["../x", "A", "", ".x", "a/b", "a..b", "x" * 200, "a b"])
def test_invalid_names(name):
    with pytest.raises(InvalidName):
        validate_name(name)


def test_publish_versions_rollback_delete(tmp_path):
    s = open_store(str(tmp_path), keep_versions=2)
    v1 = s.publish("x", SRC)
    assert v1.sha256 == content_hash(SRC) and v1.version == v1.sha256[:16]
    assert s.publish("x", SRC).version == v1.version  # same content, same version
    v2 = s.publish("x", SRC2)
    assert s.current("x").version == v2.version
    assert [v.version for v in s.versions("x")][0] == v2.version
    assert content_hash(s.fetch("x", v1.version)) == v1.sha256
    s.set_current("x", v1.version)
    assert s.current("x").version == v1.version
    assert s.manifest() == {"x": v1.version}
    with pytest.raises(AdapterNotFound):
        s.set_current("x", "0" * 16)
    s.delete("x")
    assert s.names() == [] and s.current("x") is None


def test_keeps_last_n_versions(tmp_path):
    s = open_store(str(tmp_path), keep_versions=2)
    cases = ["ah_seq_bn", "ah_double_seq_bn", "ah_act_tanh", "ah_act_relu"]
    for c in cases:
        last = s.publish("x", GOLDEN / c / "adapter")
    assert len(s.versions("x")) == 2 and s.current("x").version == last.version


def test_plain_folder_is_served_as_one_version(tmp_path):
    import shutil

    shutil.copytree(SRC, tmp_path / "plain")
    s = open_store(str(tmp_path))
    assert s.names() == ["plain"]
    info = s.current("plain")
    assert info.sha256 == content_hash(SRC)
    assert s.fetch("plain", info.version) == tmp_path / "plain"


def test_published_files_are_world_readable(tmp_path):
    import os
    import shutil
    import stat

    src = tmp_path / "src"
    shutil.copytree(SRC, src)
    for p in src.iterdir():
        p.chmod(0o600)
    s = open_store(str(tmp_path / "store"))
    info = s.publish("x", src)
    root = tmp_path / "store" / "x"
    for p in [root / "current", root / "versions" / f"{info.version}.json", *s.fetch("x", info.version).iterdir()]:
        assert stat.S_IMODE(os.stat(p).st_mode) & 0o044 == 0o044, p


def test_local_copy_is_the_version_folder(tmp_path):
    from adapterserve.store import open_store

    from ..conftest import GOLDEN

    s = open_store(str(tmp_path / "store"))
    info = s.publish("x", GOLDEN / "ah_seq_bn" / "adapter")
    assert s.local_copy("x", info.version) == s.fetch("x", info.version)
    assert s.local_copy("x", "0123456789abcdef") is None


def test_publish_that_loses_a_race_to_an_identical_upload_succeeds(tmp_path, monkeypatch):
    """Between our existence check and our rename another process publishes the same content: renaming onto
    its non-empty folder fails with ENOTEMPTY, and the publish still succeeds with that version."""
    import os
    import shutil

    from adapterserve.store import local

    store = open_store(str(tmp_path / "store"))
    real_replace = os.replace

    def racing_replace(src, dst):
        if Path(src).is_dir() and Path(dst).parent.name == "versions" and not Path(dst).exists():
            shutil.copytree(src, dst)  # the other upload lands first
        return real_replace(src, dst)

    monkeypatch.setattr(local.os, "replace", racing_replace)
    info = store.publish("race", GOLDEN / "ah_seq_bn" / "adapter")
    monkeypatch.undo()
    assert store.current("race").version == info.version
    assert not [p for p in (tmp_path / "store" / "race" / "versions").iterdir() if p.name.startswith(".incoming")]


def test_current_of_an_adapter_deleted_between_its_two_reads_is_none(tmp_path, monkeypatch):
    """`current` names a version, then the adapter is deleted before its metadata is read: the adapter is
    not in the store (None -> 404), not an error (the 30-minute soak met this as a 500)."""
    from adapterserve.store.local import LocalStore

    store = open_store(str(tmp_path / "store"))
    store.publish("gone", SRC)
    real_info = LocalStore._info

    def deleting_info(self, d, version):
        store.delete("gone")
        return real_info(self, d, version)

    monkeypatch.setattr(LocalStore, "_info", deleting_info)
    assert store.current("gone") is None


def test_current_reads_again_when_its_version_is_pruned_between_reads(tmp_path, monkeypatch):
    from adapterserve.store.local import LocalStore

    store = open_store(str(tmp_path / "store"), keep_versions=1)
    store.publish("moving", SRC)
    real_info, calls = LocalStore._info, []

    def publishing_info(self, d, version):
        if not calls:
            calls.append(version)
            store.publish("moving", SRC2)  # keep_versions=1: prunes `version`
        return real_info(self, d, version)

    monkeypatch.setattr(LocalStore, "_info", publishing_info)
    info = store.current("moving")
    assert info.version != calls[0] and info.version == content_hash(SRC2)[:16]
