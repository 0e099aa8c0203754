"""Which paths a dial starts, and when: a pure decision from both sides' facts, and what worked.

A dial has two kinds of path (issue 18): **direct** (QUIC to the URLs of the target's endpoint
record, Happy Eyeballs in :class:`~a2al_mcp.node.connect.Connector`) and **punched** (a call
through every hub the record names, the ICE ``cred`` and the hole punch as initiator from the
main socket, :mod:`a2al_mcp.node.punch_paths`). :func:`plan_dial` says when the hub path
starts relative to the direct one:

* no hub named: never (direct only);
* the target is behind a restricting NAT (record ``nat_type`` 2, 3 or 4), or what worked last
  time for this peer was the punch: **at once**, in parallel with direct. A cold direct dial
  into a restricted or port-restricted NAT is doomed (its NAT drops our Initial until the
  target sent to us), and a2ald 0.3.5 loses ~2 s exactly there by waiting a fixed stagger;
* we are behind a restricting NAT ourselves (our ``nat_type`` 2-4) and the target says
  unknown (0) or public/full cone (1): **at once** too. A ``1`` is no evidence: a2ald 0.3.5
  publishes a port-restricted NAT as 1 (NAT testbed README D5), and two NATs in between make
  a cold direct dial unlikely; a target that really is public still answers direct within a
  round trip, and the spare call costs one room at the hub;
* otherwise (we are public, full cone or do not know yet): direct is likely and answers
  within one round trip (the QUIC Initial/Handshake flight); the hub starts only if it has not
  answered within a **head start** of 3 RTTs (the last RTT to this peer, when the cache knows
  one), at least 150 ms, at most 500 ms (no RTT known: 500 ms, above an intercontinental RTT),
  so a lost Initial does not yet ring the hub but a stale record costs well under a second.
  A direct dial that fails outright (every address refused) ends the head start at once.

The winner's path (kind, address, RTT) is remembered per peer in :class:`PathCache`, bounded
and expiring, so the next cold dial tries that address first (direct) or rings the hub at
once (punched).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Final, Literal

from .._types import Addr
from ..identity.aid import Aid

__all__ = [
    "DIRECT",
    "PUNCHED",
    "DialPlan",
    "PathCache",
    "PathKind",
    "PathTry",
    "UsedPath",
    "head_start_s",
    "plan_dial",
]

PathKind = Literal["direct", "punched"]
DIRECT: Final = "direct"
PUNCHED: Final = "punched"

HEAD_START_MIN_S: Final = 0.15
HEAD_START_MAX_S: Final = 0.5
HEAD_START_RTTS: Final = 3
RESTRICTED: Final = frozenset({2, 3, 4})
"""Record ``nat_type`` values whose NAT drops a cold inbound dial (restricted,
port-restricted, symmetric)."""


@dataclasses.dataclass(frozen=True, slots=True)
class UsedPath:
    """The path a connection came up on."""

    kind: PathKind
    addr: Addr
    """The peer's address on that path."""
    rtt_s: float
    """From the start of the dial to the verified connection (an upper bound of the RTT);
    the QUIC stack's smoothed RTT would need the transport to expose it."""
    took_s: float
    """From the start of the dial (resolve excluded) to the connection."""


@dataclasses.dataclass(frozen=True, slots=True)
class PathTry:
    """One path a dial tried, and how it ended."""

    kind: PathKind
    started_s: float
    """Seconds after the dial started."""
    took_s: float
    outcome: str
    """``won``, ``lost`` (another path won first), or the reason it failed."""

    def describe(self) -> str:
        return f"{self.kind} (+{self.started_s:.2f} s, {self.took_s:.2f} s: {self.outcome})"


@dataclasses.dataclass(frozen=True, slots=True)
class DialPlan:
    """What :func:`plan_dial` decided."""

    direct_first: Addr | None
    """Dial this address of the record before the others (it worked last time)."""
    hub_after_s: float | None
    """Start the hub path this long after the direct one (0: together); None: no hub path."""
    reason: str


def head_start_s(rtt_s: float | None) -> float:
    """How long direct runs alone before the hub is rung, for a target believed reachable."""
    if rtt_s is None:
        return HEAD_START_MAX_S
    return min(max(HEAD_START_RTTS * rtt_s, HEAD_START_MIN_S), HEAD_START_MAX_S)


def plan_dial(
    *,
    target_nat: int,
    hubs: tuple[str, ...],
    own_nat: int,
    has_direct: bool,
    cached: UsedPath | None = None,
) -> DialPlan:
    """See the module docstring. ``has_direct``: the record has a URL we can dial."""
    first = cached.addr if cached is not None and cached.kind == DIRECT else None
    if not hubs:
        return DialPlan(first, None, "no hub in the record: direct only")
    if not has_direct:
        return DialPlan(None, 0.0, "no dialable URL: the hub only")
    if cached is not None and cached.kind == PUNCHED:
        return DialPlan(None, 0.0, "the punch worked last time: hub at once")
    if target_nat in RESTRICTED:
        return DialPlan(first, 0.0, f"target behind a NAT (type {target_nat}): hub at once")
    rtt = cached.rtt_s if cached is not None else None
    if own_nat in RESTRICTED:
        return DialPlan(first, 0.0, f"we are behind a NAT (type {own_nat}) and the target's "
                        f"type {target_nat} proves nothing: hub at once")  # fmt: skip
    wait = head_start_s(rtt)
    return DialPlan(first, wait, f"target type {target_nat}: hub after {wait:.2f} s")


class PathCache:
    """The last path that worked per peer: at most ``capacity`` peers, each for ``ttl_s``."""

    def __init__(self, *, capacity: int = 512, ttl_s: float = 600.0) -> None:
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._paths: OrderedDict[Aid, tuple[float, UsedPath]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._paths)

    def get(self, peer: Aid, now: float) -> UsedPath | None:
        """What worked for ``peer`` within ``ttl_s`` before ``now``, if anything."""
        held = self._paths.get(peer)
        if held is None:
            return None
        if now - held[0] > self.ttl_s:
            del self._paths[peer]
            return None
        return held[1]

    def put(self, peer: Aid, path: UsedPath, now: float) -> None:
        """Remember ``path`` for ``peer`` (the least recently stored goes beyond capacity)."""
        self._paths.pop(peer, None)
        self._paths[peer] = (now, path)
        while len(self._paths) > self.capacity:
            self._paths.popitem(last=False)

    def forget(self, peer: Aid) -> None:
        """The remembered path failed."""
        self._paths.pop(peer, None)
