"""formats/fields.py, the typed reads every loader uses: each refusal names the file and the key."""

from __future__ import annotations

import pytest

from adapterserve.errors import InvalidAdapter
from adapterserve.formats.fields import REQUIRED, Fields


def refusal(fn) -> InvalidAdapter:
    with pytest.raises(InvalidAdapter) as e:
        fn()
    return e.value


def test_types_are_strict_and_named():
    f = Fields({"a": 1, "b": True, "c": float("nan"), "d": "x", "e": None}, "cfg.json")
    assert f.int("a") == 1 and f.bool("b") is True and f.str("d") == "x"
    e = refusal(lambda: f.int("b"))  # true is not an integer
    assert e.message == "cfg.json: b must be an integer, got True" and e.details == {"file": "cfg.json", "key": "b"}
    assert "must be true or false, got 1" in refusal(lambda: f.bool("a")).message
    assert "finite number" in refusal(lambda: f.number("c")).message
    assert "got None" in refusal(lambda: f.str("e")).message
    assert f.str("e", "dflt", nullable=True) == "dflt" and f.int("missing", 3) == 3
    assert "is required but missing" in refusal(lambda: f.int("missing", REQUIRED)).message


def test_ranges_choices_and_nested_keys():
    f = Fields({"config": {"r": 0, "rf": -2.5, "bias": "sometimes", "ids": [1, "x"], "m": {"k": "v"}}}, "a.json")
    c = f.sub("config")
    assert refusal(lambda: c.int("r", min=1)).details["key"] == "config.r"
    assert "greater than 0" in refusal(lambda: c.number("rf", above=0)).message
    assert "must be one of ['none', 'all']" in refusal(lambda: c.choice("bias", "none", ["none", "all"])).message
    assert refusal(lambda: c.list("ids", [], c.an_int())).details["key"] == "config.ids[1]"
    assert refusal(lambda: c.dict("m", {}, c.an_int())).details["key"] == "config.m['k']"
    assert Fields({"x": 1}, "a.json").list("x", None, lambda k, v: v, scalar=True) == [1]


def test_regexes_compile_as_the_library_builds_them():
    f = Fields({"p": {"(((": 3, "ok": 1}, "s": ")(", "t": "a|b"}, "a.json")
    e = refusal(lambda: f.regex_map("p", f.an_int()))
    assert e.details["key"] == "p['(((']" and "not a valid regular expression" in e.message
    assert "not a valid regular expression" in refusal(lambda: f.regex("s")).message
    assert f.regex("s", template="(.*\\.)?({})$") == ")("  # valid inside PEFT's own pattern
    assert f.regex("t") == "a|b"


def test_declared_types_of_unused_fields():
    f = Fields({"phm_dim": "4", "seed": None, "name": "n"}, "a.json")
    f.declared({"seed": "int?", "name": "str"})
    assert refusal(lambda: f.declared({"phm_dim": "int"})).details["key"] == "phm_dim"
