"""The one registry mechanism the tasks, adapter kinds and training kinds share."""

from dataclasses import dataclass

import pytest

from adapterserve import tasks
from adapterserve.adapters import kinds as adapter_kinds
from adapterserve.registry import Registry
from adapterserve.training import kinds as training_kinds


@dataclass(frozen=True)
class Item:
    name: str


def test_register_get_names_and_refusals():
    changes = []
    reg: Registry[Item] = Registry("widget", on_change=lambda: changes.append(1))
    a = reg.register(Item("a"))
    reg.register(Item("b"))
    assert reg.get("a") is a and reg["b"].name == "b" and reg.names() == ["a", "b"] and "a" in reg and len(reg) == 2
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.register(Item("a"))
    with pytest.raises(KeyError, match=r"unknown widget 'c'; known: \['a', 'b'\]"):
        reg.get("c")
    reg.unregister("a")
    assert reg.names() == ["b"] and len(changes) == 3


def test_every_dimension_uses_it():
    for module in (tasks, adapter_kinds, training_kinds):
        assert isinstance(module.REGISTRY, Registry)
        assert module.names() == module.REGISTRY.names() and module.names()
