"""One small registry shape shared by MODELS, METRICS, PROTOCOLS and DATASETS.

Modelled on stylegan2-ada's ``metric_main`` dict and torch-fidelity's ``registry.py``:
names are validated, duplicates refused, and an unknown name raises an error that
lists the valid ones (the CLI turns it into a one-line message with exit code 2).
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, Generic, Iterator, TypeVar

T = TypeVar("T")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


class UnknownNameError(KeyError):
    """An unknown registry key; ``str()`` is a one-line message naming the valid keys."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want plain text
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, T] = {}
        self._meta: Dict[str, Dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        if not _NAME.match(name):
            raise ValueError(f"invalid {self.kind} name {name!r}: use lower-case letters, digits, '-' and '_'")

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"duplicate {self.kind} name {name!r}")
            self._items[name] = obj
            self._meta[name] = dict(meta)
            return obj

        return deco

    def add(self, name: str, obj: T, **meta: Any) -> T:
        return self.register(name, **meta)(obj)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(sorted(self._items))}")
        return self._items[name]

    def meta(self, name: str) -> Dict[str, Any]:
        self.get(name)
        return self._meta[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
