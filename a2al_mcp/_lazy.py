"""A module imported on first use, safely from any thread.

``sqlite3 = lazy_module("sqlite3")`` binds a stand-in that imports the real module the first
time one of its attributes is read (``sqlite3.connect``, or ``sqlite3.Error`` when an
``except`` clause is reached) and then hands out the real module's attributes. A node that
never opens a database never loads SQLite (~1.3 MiB of a fresh node's memory, issue 15).
Annotations name the real module under ``TYPE_CHECKING``.

Why not :class:`importlib.util.LazyLoader`: it puts a half-made module in ``sys.modules`` and,
on Python 3.11, two threads touching it first at the same moment can see it without its
attributes (seen: ``module 'sqlite3' has no attribute 'Error'`` with nodes on several event
loop threads). :func:`importlib.import_module` holds the import lock, so the first use from
any thread gets the whole module, and ``sys.modules`` only ever holds the real one.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["lazy_module"]


class _Deferred:
    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, imported on first use>"


def lazy_module(name: str) -> Any:
    """A stand-in for module ``name`` that imports it on first attribute access."""
    return _Deferred(name)
