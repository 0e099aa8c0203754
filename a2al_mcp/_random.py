"""Randomness. The only module allowed to draw random numbers.

:class:`SystemRng` draws from the operating system's CSPRNG through ``os.urandom`` and
``random.SystemRandom`` (what ``secrets`` itself uses), without importing ``secrets``: that
module imports ``hmac`` and with it OpenSSL's ``_hashlib`` (~5.6 MiB of RSS), and the stdio
proxy imports this package's facade.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import Protocol, TypeVar

__all__ = ["Rng", "SeededRng", "SystemRng"]

T = TypeVar("T")


class Rng(Protocol):
    """A source of random bytes and choices, injected into every core."""

    def bytes(self, n: int) -> bytes:
        """Return ``n`` random bytes."""
        ...

    def randrange(self, stop: int) -> int:
        """Return a random integer in ``[0, stop)``."""
        ...

    def random(self) -> float:
        """Return a random float in ``[0, 1)``."""
        ...


_SYSTEM = random.SystemRandom()


class SystemRng:
    """Cryptographically secure randomness from the operating system."""

    __slots__ = ()

    def bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def randrange(self, stop: int) -> int:
        if stop <= 0:
            raise ValueError("randrange() needs a positive stop")
        return _SYSTEM.randrange(stop)

    def random(self) -> float:
        return _SYSTEM.getrandbits(53) / (1 << 53)


class SeededRng:
    """Deterministic randomness for simulations and tests. Never for keys in production."""

    __slots__ = ("_r",)

    def __init__(self, seed: int) -> None:
        self._r = random.Random(seed)

    def bytes(self, n: int) -> bytes:
        return self._r.randbytes(n)

    def randrange(self, stop: int) -> int:
        return self._r.randrange(stop)

    def random(self) -> float:
        return self._r.random()

    def choice(self, seq: Sequence[T]) -> T:
        """Return one element of a non-empty sequence."""
        return self._r.choice(seq)
