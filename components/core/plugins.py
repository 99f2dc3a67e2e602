"""Registries of swappable parts by name: architectures, losses, optimizers, feature extractors.

Adding a part is one function and one `@REGISTRY.register("name")` line; the config's allowed values are the
registry's names, so a new part is selectable at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, Literal, TypeVar

from components.core.errors import ConfigError

T = TypeVar("T")


class UnknownPart(ConfigError, ValueError):
    """A name that no part is registered under; the message lists the registered names."""


class Registry(Generic[T]):
    """An ordered name -> part table. The first registered name is the default."""

    def __init__(self, kind: str):
        self.kind = kind
        self._parts: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(part: T) -> T:
            self.add(name, part)
            return part

        return add

    def add(self, name: str, part: T) -> None:
        if name in self._parts:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._parts[name] = part

    def __getitem__(self, name: str) -> T:
        try:
            return self._parts[name]
        except KeyError:
            raise UnknownPart(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._parts)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._parts

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)

    def names(self) -> tuple[str, ...]:
        return tuple(self._parts)

    def literal(self) -> Any:
        """A typing.Literal of the registered names, for a pydantic field."""
        return Literal[self.names()]
