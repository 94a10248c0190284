"""Name -> class maps filled by a decorator where each class is defined (after BasicSR's registry),
so a config names an architecture or a loss term and adding one is a new class, not a new branch
in the code that builds it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from edge_affectsr.errors import UserError

C = TypeVar("C", bound=type)


class RegistryError(UserError, ValueError):
    """A name no class is registered under (a ValueError too, so pydantic validators report it
    at the config key that holds the name)."""


class Registry:
    """``@REG.register("name")`` on a class; ``REG.get("name")`` returns it, or raises a
    :class:`RegistryError` listing every known name. Names are config vocabulary: one class each."""

    def __init__(self, what: str) -> None:
        self.what = what  # "architecture", "loss": how error messages call an entry
        self._classes: dict[str, type] = {}

    def register(self, name: str) -> Callable[[C], C]:
        def deco(cls: C) -> C:
            if name in self._classes:
                raise ValueError(f"{self.what} {name!r} is registered twice: "
                                 f"{self._classes[name].__qualname__} and {cls.__qualname__}")
            self._classes[name] = cls
            return cls

        return deco

    def get(self, name: str) -> type:
        try:
            return self._classes[name]
        except KeyError:
            raise RegistryError(f"unknown {self.what} {name!r} (known: {', '.join(self)})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        """The registered names, sorted."""
        return iter(sorted(self._classes))
