"""Observed-address votes and their consensus (a2al-wire §6.1), with symmetric detection.

Each reporter (a peer's node ID, or an agent's AID on stream 0) has one live vote per address
family: the newest address it reported. Votes older than ``vote_ttl_s`` are ignored; the table
keeps at most ``max_reporters`` votes per family and forgets the oldest first, so a flood of
reporters costs bounded memory and only displaces stale votes.

*Trusted* addresses: at least ``min(min_observed_peers, reporters)`` distinct reporters agree.
*Symmetric*: for one external IP, at least ``symmetric_min_ports`` distinct ports from at least
``symmetric_min_reporters`` reporters, no port held by a strict majority. That fires as soon as
three peers have answered a symmetric NAT (each sees its own mapping) and tolerates several
reporters behind one remote socket (a node and its agents see the same mapping), which defeats
a2ald's "two ports with two reporters each" rule (testbed D6).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable

from .._types import Addr
from .addresses import is_v4, normalise
from .config import NatSenseConfig

__all__ = ["Symmetric", "VoteTable"]

Symmetric = tuple[str, int, int]
"""Evidence of a symmetric NAT: the external IP, its distinct ports, its reporters."""


class VoteTable:
    """The live votes of one node, per address family."""

    __slots__ = ("_cfg", "_votes", "flooded")

    def __init__(self, config: NatSenseConfig) -> None:
        self._cfg = config
        self._votes: tuple[OrderedDict[bytes, tuple[Addr, float]], ...] = (
            OrderedDict(), OrderedDict())  # fmt: skip
        """[v6, v4]: reporter -> (addr, time), oldest vote first."""
        self.flooded = 0
        """Votes forgotten because the table was full."""

    def add(self, reporter: bytes, addr: Addr, now: float) -> bool:
        """Record ``reporter``'s vote for ``addr``; True if the votes changed."""
        addr = normalise(addr)
        table = self._votes[is_v4(addr[0])]
        old = table.pop(reporter, None)
        table[reporter] = (addr, now)
        while len(table) > self._cfg.max_reporters:
            table.popitem(last=False)
            self.flooded += 1
        return old is None or old[0] != addr

    def expire(self, now: float) -> bool:
        """Forget votes older than the TTL; True if any went."""
        gone = False
        cutoff = now - self._cfg.vote_ttl_s
        for table in self._votes:
            while table and next(iter(table.values()))[1] <= cutoff:
                table.popitem(last=False)
                gone = True
        return gone

    def next_expiry(self) -> float | None:
        oldest = [next(iter(t.values()))[1] for t in self._votes if t]
        return min(oldest) + self._cfg.vote_ttl_s if oldest else None

    def clear(self) -> None:
        for table in self._votes:
            table.clear()

    def __len__(self) -> int:
        return sum(len(t) for t in self._votes)

    def addresses(self, v4: bool, keep: Callable[[Addr], bool]) -> list[tuple[Addr, int, float]]:
        """Every voted address of a family that ``keep`` accepts, with its reporters and its
        newest vote's time; most reporters first, then newest."""
        count: Counter[Addr] = Counter()
        newest: dict[Addr, float] = {}
        for addr, t in self._votes[v4].values():
            if keep(addr):
                count[addr] += 1
                newest[addr] = max(t, newest.get(addr, t))
        return sorted(((a, n, newest[a]) for a, n in count.items()), key=lambda x: (-x[1], -x[2]))

    def trusted(self, v4: bool, keep: Callable[[Addr], bool]) -> list[tuple[Addr, int]]:
        """Addresses enough distinct reporters agree on (cold start: as many as there are)."""
        ranked = self.addresses(v4, keep)
        reporters = sum(n for _, n, _ in ranked)
        need = min(self._cfg.min_observed_peers, reporters)
        return [(a, n) for a, n, _ in ranked if n >= need > 0]

    def symmetric(self, v4: bool, keep: Callable[[Addr], bool]) -> Symmetric | None:
        """The evidence of a destination-dependent mapping in this family's votes, if any."""
        ports: dict[str, Counter[int]] = {}
        for addr, n, _ in self.addresses(v4, keep):
            ports.setdefault(addr[0], Counter())[addr[1]] += n
        for ip, by_port in ports.items():
            reporters = sum(by_port.values())
            if (
                len(by_port) >= self._cfg.symmetric_min_ports
                and reporters >= self._cfg.symmetric_min_reporters
                and max(by_port.values()) * 2 <= reporters
            ):
                return (ip, len(by_port), reporters)
        return None
