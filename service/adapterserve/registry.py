"""One registry mechanism for every dimension that grows by registration (tasks, adapter kinds, training kinds).

A `Registry` is a read-only mapping from name to item, filled by `register`; a lookup of an unknown name says
which names exist. It imports nothing from the package, so any module may use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    def __init__(self, what: str, on_change: Callable[[], None] | None = None):
        self.what = what  # "task", "adapter kind", ...: named in errors
        self._items: dict[str, T] = {}
        self._on_change = on_change

    def register(self, item: T) -> T:
        name = item.name  # every registered item carries its own name
        if name in self._items:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._items[name] = item
        if self._on_change is not None:
            self._on_change()
        return item

    def unregister(self, name: str) -> None:
        """Forget `name` (tests that register a throwaway item clean up with it)."""
        self._items.pop(name, None)
        if self._on_change is not None:
            self._on_change()

    def get(self, name: str) -> T:  # unlike Mapping.get: an unknown name is an error that lists the known ones
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.what} {name!r}; known: {self.names()}") from None

    def names(self) -> list[str]:
        return list(self._items)

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
