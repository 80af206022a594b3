"""One contract, every backend: the local directory and S3 (a real S3 API on loopback) behave the same."""

from __future__ import annotations

import threading

import pytest

from adapterserve.errors import AdapterNotFound, InvalidName
from adapterserve.store import open_store
from adapterserve.store.base import content_hash

from ..conftest import GOLDEN

SRC = GOLDEN / "ah_seq_bn" / "adapter"
SRC2 = GOLDEN / "ah_double_seq_bn" / "adapter"
CASES = ["ah_seq_bn", "ah_double_seq_bn", "ah_act_tanh", "ah_act_relu"]


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store_url(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_url")


def test_publish_versions_rollback_delete(store_url):
    s = open_store(store_url, keep_versions=2)
    assert s.names() == [] and s.manifest() == {} and s.current("x") is None
    v1 = s.publish("x", SRC)
    assert v1.sha256 == content_hash(SRC) and v1.version == v1.sha256[:16] and v1.size > 0
    assert s.publish("x", SRC).version == v1.version  # same content, same version
    v2 = s.publish("x", SRC2)
    assert s.current("x").version == v2.version and s.names() == ["x"]
    assert [v.version for v in s.versions("x")] == [v2.version, v1.version]
    assert content_hash(s.fetch("x", v1.version)) == v1.sha256
    assert s.set_current("x", v1.version).version == v1.version
    assert s.current("x").version == v1.version
    assert s.manifest() == {"x": v1.version} == s.reconcile()
    with pytest.raises(AdapterNotFound):
        s.set_current("x", "0" * 16)
    with pytest.raises(AdapterNotFound):
        s.fetch("x", "0" * 16)
    s.delete("x")
    assert s.names() == [] and s.current("x") is None and s.manifest() == {}
    with pytest.raises(AdapterNotFound):
        s.delete("x")


def test_keeps_last_n_versions(store_url):
    s = open_store(store_url, keep_versions=2)
    published = [s.publish("x", GOLDEN / c / "adapter") for c in CASES]
    assert [v.version for v in s.versions("x")] == [published[-1].version, published[-2].version]
    assert s.current("x").version == published[-1].version
    with pytest.raises(AdapterNotFound):
        s.set_current("x", published[0].version)  # pruned versions are gone, not half-there


@pytest.mark.parametrize("name", ["../x", "A", "", ".x", "a/b", "a..b", "x" * 200, "a b", "x/../../y"])
def test_names_with_path_tricks_are_refused(store_url, name):
    s = open_store(store_url)
    with pytest.raises(InvalidName):
        s.publish(name, SRC)
    with pytest.raises(InvalidName):
        s.current(name)


def test_versions_with_path_tricks_are_refused(store_url):
    s = open_store(store_url)
    s.publish("y", SRC)
    v = s.publish("x", SRC).version
    for version in ["../../y/versions/" + v, "/etc", "..", "a/b", "", "x\\..\\y"]:
        for call in (s.fetch, s.set_current):
            with pytest.raises(InvalidName):
                call("x", version)


def test_two_handles_racing_on_one_name_leave_index_and_pointer_agreeing(store_url):
    """Two replicas (two store handles) publish and roll back one name at once: the last `current` write
    wins, and the manifest the other replicas poll agrees with it."""
    a, b = open_store(store_url, keep_versions=10), open_store(store_url, keep_versions=10)
    errors = []

    def work(store, cases):
        try:
            for c in cases:
                store.publish("race", GOLDEN / c / "adapter")
                store.publish(f"solo-{c}", GOLDEN / c / "adapter")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(a, CASES)), threading.Thread(target=work, args=(b, CASES[::-1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    truth = {n: a.current(n).version for n in ["race"] + [f"solo-{c}" for c in CASES]}
    assert a.manifest() == truth == b.manifest()
    assert truth["race"] in {content_hash(GOLDEN / c / "adapter")[:16] for c in CASES}
