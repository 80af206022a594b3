"""Typed reads of a config file's fields: every key checked for type and range, every refusal naming it.

A loader wraps the JSON object it read in `Fields(data, "adapter_config.json")` and asks for each key it
uses with the type it needs: `f.int("r", 8, min=1)`, `f.choice("bias", "none", ["none", "all"])`,
`f.regex_map("alpha_pattern")`. A wrong type, a value out of range or a missing required key raises
InvalidAdapter (422) whose message names the file and the key and says what was expected, with the key and
file in the details. Nested objects are read with `f.sub("config")`, whose keys are reported as
"config.<key>". Keys a loader does not ask for are left alone: the reference libraries ignore unknown keys.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import InvalidAdapter

REQUIRED: Any = object()  # default for keys that must be present
MAX_REGEX_LENGTH = 1000  # patterns come from uploads: bound what re.compile is asked to do


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


class Fields:
    def __init__(self, data: Any, source: str, prefix: str = ""):
        self.source, self.prefix = source, prefix
        if not isinstance(data, dict):
            raise InvalidAdapter(
                f"{source}: {prefix.rstrip('.') or 'the file'} must be a JSON object, got {_show(data)}", file=source
            )
        self.data = data

    # ---- plumbing ---------------------------------------------------------------------------------
    def name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, what: str, value: Any = REQUIRED, **details) -> InvalidAdapter:
        """The error for key: '<file>: <key> must be <what>, got <value>'."""
        got = "" if value is REQUIRED else f", got {_show(value)}"
        return InvalidAdapter(
            f"{self.source}: {self.name(key)} {what}{got}", file=self.source, key=self.name(key), **details
        )

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def _get(self, key: str, default: Any, nullable: bool) -> tuple[bool, Any]:
        """(present, value): absent keys, and null where null is allowed, give the default."""
        if key not in self.data:
            if default is REQUIRED:
                raise self.fail(key, "is required but missing")
            return False, default
        value = self.data[key]
        if value is None and nullable:
            return False, None if default is REQUIRED else default
        return True, value

    def require(self, *keys: str) -> None:
        for key in keys:
            if key not in self.data:
                raise self.fail(key, "is required but missing")

    # ---- scalars ----------------------------------------------------------------------------------
    def bool(self, key: str, default: Any = REQUIRED, *, nullable: bool = False) -> bool | None:
        present, value = self._get(key, default, nullable)
        if present and not isinstance(value, bool):
            raise self.fail(key, "must be true or false", value)
        return value

    def int(self, key: str, default: Any = REQUIRED, *, min: int | None = None, max: int | None = None,
            nullable: bool = False) -> int | None:  # fmt: skip
        present, value = self._get(key, default, nullable)
        if present:
            if not _is_int(value):
                raise self.fail(key, "must be an integer", value)
            self._range(key, value, min, max)
        return value

    def number(self, key: str, default: Any = REQUIRED, *, min: float | None = None, max: float | None = None,
               above: float | None = None, nullable: bool = False) -> float | None:  # fmt: skip
        """A finite int or float; `above` is an exclusive lower bound (e.g. above=0 for 'positive')."""
        present, value = self._get(key, default, nullable)
        if present:
            self.check_number(key, value, min=min, max=max, above=above)
        return value

    def check_number(self, key: str, value: Any, *, min=None, max=None, above=None) -> float:
        if not _is_number(value):
            raise self.fail(key, "must be a finite number", value)
        if above is not None and not value > above:
            raise self.fail(key, f"must be greater than {above}", value)
        self._range(key, value, min, max)
        return value

    def _range(self, key: str, value, min, max) -> None:
        if min is not None and value < min:
            raise self.fail(key, f"must be at least {min}", value)
        if max is not None and value > max:
            raise self.fail(key, f"must be at most {max}", value)

    def str(self, key: str, default: Any = REQUIRED, *, nullable: bool = False, nonempty: bool = False) -> str | None:
        present, value = self._get(key, default, nullable)
        if present and (not isinstance(value, str) or (nonempty and not value)):
            raise self.fail(key, "must be a non-empty string" if nonempty else "must be a string", value)
        return value

    def choice(self, key: str, default: Any, choices: Iterable[Any], *, nullable: bool = False) -> Any:
        """One of a fixed set of JSON values (compared with their type: true is not 1)."""
        choices = list(choices)
        present, value = self._get(key, default, nullable)
        if present and not any(type(value) is type(c) and value == c for c in choices):
            raise self.fail(key, f"must be one of {choices}", value)
        return value

    # ---- collections ------------------------------------------------------------------------------
    def list(self, key: str, default: Any, item: Callable[[str, Any], Any], *, nullable: bool = False,
             scalar: bool = False) -> list | None:  # fmt: skip
        """A list whose items pass item(key_of_item, value) (which returns the item or raises);
        scalar=True also accepts one bare item for a one-element list (as several PEFT fields do)."""
        present, value = self._get(key, default, nullable)
        if not present:
            return value
        if scalar and not isinstance(value, list):
            return [item(key, value)]
        if not isinstance(value, list):
            raise self.fail(key, "must be a list", value)
        return [item(f"{key}[{i}]", v) for i, v in enumerate(value)]

    def dict(self, key: str, default: Any, item: Callable[[str, Any], Any], *, nullable: bool = False) -> dict | None:
        """An object whose values pass item(key_of_value, value); its keys are strings by JSON's rules."""
        present, value = self._get(key, default, nullable)
        if not present:
            return value
        if not isinstance(value, dict):
            raise self.fail(key, "must be an object", value)
        return {k: item(f"{key}[{k!r}]", v) for k, v in value.items()}

    def sub(self, key: str, default: Any = REQUIRED) -> Fields:
        present, value = self._get(key, default, False)
        return Fields(value if present else {}, self.source, f"{self.name(key)}.")

    def declared(self, types: dict[str, str]) -> None:
        """Type-check keys the forward pass does not use against the library's declared types, so a file the
        library did not write is caught: {"phm_dim": "int", "phm_c_init": "str?"} ('?': null allowed).
        Types: bool, int, number, str, list, object. Absent keys are fine (the library has defaults)."""
        for key, kind in types.items():
            nullable = kind.endswith("?")
            check = _DECLARED[kind.rstrip("?")]
            check(self, key, None, nullable=nullable)

    # ---- item checkers for list() / dict() ---------------------------------------------------------
    def an_int(self, *, min: int | None = None, max: int | None = None) -> Callable[[str, Any], int]:
        def check(key: str, value: Any) -> int:
            if not _is_int(value):
                raise self.fail(key, "must be an integer", value)
            self._range(key, value, min, max)
            return value

        return check

    def a_number(self, *, min=None, max=None, above=None) -> Callable[[str, Any], float]:
        return lambda key, value: self.check_number(key, value, min=min, max=max, above=above)

    def a_str(self, *, nonempty: bool = False) -> Callable[[str, Any], str]:
        def check(key: str, value: Any) -> str:
            if not isinstance(value, str) or (nonempty and not value):
                raise self.fail(key, "must be a non-empty string" if nonempty else "must be a string", value)
            return value

        return check

    def a_regex(self, key: str, value: Any, template: str = "{}") -> str:
        """A string that compiles as a Python regular expression once placed in template (the library builds
        its pattern from it that way: a fragment may only be valid inside that pattern, or only alone)."""
        if not isinstance(value, str):
            raise self.fail(key, "must be a string (a regular expression)", value)
        compile_regex(template.replace("{}", value), lambda what: self.fail(key, what, value))
        return value

    def regex(self, key: str, default: Any = None, *, nullable: bool = True, template: str = "{}") -> str | None:
        present, value = self._get(key, default, nullable)
        return self.a_regex(key, value, template) if present else value

    def regex_map(self, key: str, item: Callable[[str, Any], Any], *, template: str = "{}",
                  nullable: bool = True) -> dict[str, Any]:  # fmt: skip
        """{pattern: value}, every key a valid regular expression in template (PEFT's rank_pattern)."""
        out = self.dict(key, {}, item, nullable=nullable) or {}
        for pattern in out:
            self.a_regex(f"{key}[{pattern!r}]", pattern, template)
        return out


_DECLARED: dict[str, Callable[..., Any]] = {
    "bool": Fields.bool,
    "int": Fields.int,
    "number": Fields.number,
    "str": Fields.str,
    "list": lambda f, key, default, nullable: f.list(key, default, lambda k, v: v, nullable=nullable),
    "object": lambda f, key, default, nullable: f.dict(key, default, lambda k, v: v, nullable=nullable),
}


def compile_regex(pattern: str, fail: Callable[[str], Exception]) -> re.Pattern:
    if len(pattern) > MAX_REGEX_LENGTH:
        raise fail(f"is a regular expression longer than {MAX_REGEX_LENGTH} characters")
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError) as e:
        raise fail(f"is not a valid regular expression ({e})") from None
