"""A module imported on first use: the standard library's :class:`importlib.util.LazyLoader`.

``sqlite3 = lazy_module("sqlite3")`` binds a module object that loads the real module the
first time one of its attributes is read (``sqlite3.connect``, or ``sqlite3.Error`` when an
``except`` clause is reached). A node that never opens a database never loads SQLite
(~1.3 MiB of a fresh node's memory, issue 15). Annotations name the real module under
``TYPE_CHECKING``.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

__all__ = ["lazy_module"]


def lazy_module(name: str) -> ModuleType:
    """``name``, loaded when first used (at once if it is loaded already)."""
    held = sys.modules.get(name)
    if held is not None:
        return held
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
