"""``dataclasses.dataclass`` that costs less to import: the same classes, built faster.

On Python 3.11, ``dataclasses.dataclass`` writes each method it adds as source text and
compiles it when the class is created: about 0.1 ms per method, six methods for a frozen
class (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``,
``__delattr__``). A node imports ~150 dataclasses, and that compiling was about half of a
fresh process's imports (issue 15). This :func:`dataclass` lets the standard one build
``__init__`` and the frozen ``__setattr__``/``__delattr__`` (so construction, keyword-only
arguments, defaults, slots and :exc:`dataclasses.FrozenInstanceError` are exactly the
standard ones) and adds ``__eq__``, ``__hash__`` and ``__repr__`` as closures, with the
standard behaviour: equal only to an instance of the very same class with equal compared
fields, the hash of the tuple of hashed fields (frozen classes; a mutable one with ``eq`` is
unhashable), ``Name(field=value, ...)`` over the ``repr`` fields. A method the class defines
itself is kept, as the standard decorator does. :func:`dataclasses.fields`,
:func:`dataclasses.replace`, :func:`dataclasses.asdict` and ``match`` work as on any
dataclass (``__dataclass_params__`` says ``eq=False, repr=False``: the methods come from
here). ``order=True`` and ``unsafe_hash=True`` are not supported: use the standard one.

Type checkers see ``dataclasses.dataclass`` itself.
"""

from __future__ import annotations

import dataclasses
import operator
import reprlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

__all__ = ["dataclass"]


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """``obj -> (obj.a, obj.b, ...)``, a tuple whatever the number of names."""
    if len(names) >= 2:
        return operator.attrgetter(*names)
    if names:
        one = operator.attrgetter(names[0])
        return lambda obj: (one(obj),)
    return lambda obj: ()


def _eq(names: tuple[str, ...]) -> Callable[[Any, object], Any]:
    key = _getter(names)

    def __eq__(self: Any, other: object) -> Any:
        if other.__class__ is self.__class__:
            return key(self) == key(other)
        return NotImplemented

    return __eq__


def _hash(names: tuple[str, ...]) -> Callable[[Any], int]:
    key = _getter(names)

    def __hash__(self: Any) -> int:
        return hash(key(self))

    return __hash__


def _repr(names: tuple[str, ...]) -> Callable[[Any], str]:
    @reprlib.recursive_repr()
    def __repr__(self: Any) -> str:
        parts = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{self.__class__.__qualname__}({parts})"

    return __repr__


def _finish(cls: type, own: set[str], *, eq: bool, repr: bool, frozen: bool) -> type:
    fields = dataclasses.fields(cls)
    if repr and "__repr__" not in own:
        method: Any = _repr(tuple(f.name for f in fields if f.repr))
        method.__qualname__ = f"{cls.__qualname__}.__repr__"
        type.__setattr__(cls, "__repr__", method)
    if eq:
        if "__eq__" not in own:
            method = _eq(tuple(f.name for f in fields if f.compare))
            method.__qualname__ = f"{cls.__qualname__}.__eq__"
            type.__setattr__(cls, "__eq__", method)
        if "__hash__" not in own:
            if frozen:
                hashed = (f.name for f in fields if (f.compare if f.hash is None else f.hash))
                method = _hash(tuple(hashed))
                method.__qualname__ = f"{cls.__qualname__}.__hash__"
                type.__setattr__(cls, "__hash__", method)
            else:
                type.__setattr__(cls, "__hash__", None)
    return cls


def _dataclass(
    cls: type | None = None,
    /,
    *,
    repr: bool = True,
    eq: bool = True,
    frozen: bool = False,
    **options: Any,
) -> Any:
    if options.get("order") or options.get("unsafe_hash"):
        raise TypeError("a2al_mcp._dataclass: use dataclasses.dataclass for order/unsafe_hash")

    def wrap(c: type) -> type:
        # What the class defines itself, read as the standard decorator reads it: a class
        # that defines __eq__ gets __hash__ = None from Python, which is not its own.
        body = c.__dict__
        own = {n for n in ("__repr__", "__eq__") if n in body}
        if "__hash__" in body and not (body["__hash__"] is None and "__eq__" in body):
            own.add("__hash__")
        built: type = dataclasses.dataclass(c, repr=False, eq=False, frozen=frozen, **options)
        return _finish(built, own, eq=eq, repr=repr, frozen=frozen)

    return wrap if cls is None else wrap(cls)


if TYPE_CHECKING:
    from dataclasses import dataclass as dataclass
else:
    dataclass = _dataclass
