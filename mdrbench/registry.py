"""A name -> object table shared by datasets, models and frameworks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from mdrbench.errors import name_problem, unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T) -> T:
        problem = name_problem(name)
        if problem:
            raise ValueError(f"{self.kind} name {name!r} {problem}")
        if name in self._items:
            raise ValueError(f"duplicate {self.kind} name '{name}'")
        self._items[name] = obj
        return obj

    def __call__(self, name: str):
        """Decorator form: `@MODELS("mlp")`."""

        def deco(obj: T) -> T:
            return self.register(name, obj)

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise unknown_name(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
