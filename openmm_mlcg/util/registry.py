"""Name -> class registries (the generators, the score terms): one way to add to them and to look names up."""
from __future__ import annotations

from typing import Dict, Type

__all__ = ["add_to_registry", "lookup"]


def add_to_registry(registry: Dict[str, type], key: str, cls: type, what: str) -> type:
    """Add ``cls`` under ``key`` and return it (a class decorator's body).

    Raises:
        ValueError: an empty key, or the key taken by another class.
    """
    if not key:
        raise ValueError(f"{cls.__name__}: a {what} needs a non-empty name")
    if registry.get(key, cls) is not cls:
        raise ValueError(f"{what} name {key!r} is registered already by {registry[key].__name__}")
    registry[key] = cls
    return cls


def lookup(registry: Dict[str, type], key, what: str, kind: str, known) -> Type:
    """The class under ``key``.

    Raises:
        ValueError: naming ``what`` (the argument), the ``kind`` of thing, the ``known`` names (in the order to
        show) and the given key.
    """
    if not isinstance(key, str) or key not in registry:
        raise ValueError(f"{what}: expected one of the {kind} {list(known)}, got {key!r}")
    return registry[key]
