"""ObservedAddresses: our address as peers report it, with how often each was reported.

Fed by DHT answers (PONG, FIND_*) and the QUIC stream-0 ObservedAddr; bounded to the most
reported ``keep`` addresses (when it grows past that, the least reported half goes).
"""

from __future__ import annotations

from typing import Final

from .._types import Addr

__all__ = ["ObservedAddresses"]

KEEP: Final = 64


class ObservedAddresses:
    """A bounded tally of reported addresses."""

    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._counts: dict[Addr, int] = {}

    def note(self, addr: Addr) -> None:
        """One peer reported ``addr``."""
        self._counts[addr] = self._counts.get(addr, 0) + 1
        if len(self._counts) > self._keep:  # keep the most reported
            for a, _ in sorted(self._counts.items(), key=lambda kv: kv[1])[: self._keep // 2]:
                del self._counts[a]

    def ranked(self) -> tuple[tuple[Addr, int], ...]:
        """Every kept address with its count, most reported first."""
        return tuple(sorted(self._counts.items(), key=lambda kv: -kv[1]))
