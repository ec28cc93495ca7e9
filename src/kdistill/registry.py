"""One generic registry: refuses duplicates, suggests close names for typos."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from kdistill.errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories (or classes) of one kind, e.g. data sources or methods."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise RegistryError(f"duplicate {self.kind} name {name!r}: already registered by {self._items[name]!r}")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            raise RegistryError(f"unknown {self.kind} {name!r}{self.suggest(name)}")
        return self._items[name]

    def suggest(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._items, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        return f"{hint} (known: {', '.join(sorted(self._items))})"

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
