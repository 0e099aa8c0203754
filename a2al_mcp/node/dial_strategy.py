"""Which paths a dial starts, and when: a pure decision from both sides' facts, and what worked.

A dial has two ways to a target (issue 18): **direct** (QUIC to the URLs of the target's
endpoint record, Happy Eyeballs in :class:`~a2al_mcp.node.connect.Connector`) and **through
the hubs** the record names (:mod:`a2al_mcp.node.punch_paths`: in each hub's room the hole
punch as initiator from the main socket and ICE with QUIC over its selected pair). A
connection that came up reports its :data:`PathKind`: ``direct``, ``punched`` (the punch),
``ice`` (an ICE pair, host or server-reflexive) or ``relay`` (an ICE pair through a TURN
relay). :func:`plan_dial` says when the hub path starts relative to the direct one:

* no hub named: never (direct only);
* no URL we can dial: the hubs only;
* the target is behind a restricting NAT (record ``nat_type`` 2, 3 or 4), we are (our
  ``nat_type`` 2-4), or the hub worked last time for this peer: **at once**, in parallel
  with direct;
* otherwise (the target says unknown (0) or public/full cone (1)) **at once** too, unless
  what worked last time for this peer (:class:`PathCache`) was direct. A record's
  ``nat_type`` cannot be trusted to say that a cold direct dial will work: a2ald 0.3.5
  publishes a port-restricted NAT as 1 (NAT testbed README D5), where a cold direct dial is
  doomed (the NAT drops our Initial until the target sent to us) and a2ald itself loses ~2 s
  waiting for a fixed stagger; a target that really is public still answers direct within a
  round trip, and the spare call costs one room at the hub;
* direct worked last time: direct is likely and answers within one round trip; the hub
  starts only if it has not answered within a **head start** of 3 RTTs (the last RTT to this
  peer), at least 150 ms, at most 500 ms, so a lost Initial does not yet ring the hub but a
  stale cache entry costs well under a second. A direct dial that fails outright (every
  address refused) ends the head start at once.

The winner's path (kind, address, RTT) is remembered per peer in :class:`PathCache`, bounded
and expiring, so the next cold dial tries that address first (direct) or rings the hub at
once (punched, ICE, relay).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final, Literal

from .._dataclass import dataclass
from .._types import Addr
from ..identity.aid import Aid

__all__ = [
    "DIRECT",
    "HUB_KINDS",
    "ICE",
    "PUNCHED",
    "RELAY",
    "DialPlan",
    "PathCache",
    "PathKind",
    "PathTry",
    "UsedPath",
    "head_start_s",
    "plan_dial",
]

PathKind = Literal["direct", "punched", "ice", "relay"]
DIRECT: Final = "direct"
PUNCHED: Final = "punched"
ICE: Final = "ice"
RELAY: Final = "relay"
HUB_KINDS: Final = frozenset({PUNCHED, ICE, RELAY})
"""The kinds of path a call through a hub brings up."""

HEAD_START_MIN_S: Final = 0.15
HEAD_START_MAX_S: Final = 0.5
HEAD_START_RTTS: Final = 3
RESTRICTED: Final = frozenset({2, 3, 4})
"""Record ``nat_type`` values whose NAT drops a cold inbound dial (restricted,
port-restricted, symmetric)."""


@dataclass(frozen=True, slots=True)
class UsedPath:
    """The path a connection came up on."""

    kind: PathKind
    addr: Addr
    """The peer's address on that path."""
    rtt_s: float
    """From the start of the dial to the verified connection (an upper bound of the RTT,
    what the path cache's head start uses); the live connection's smoothed RTT is
    :meth:`~a2al_mcp.transport.peer_connection.PeerConnection.smoothed_rtt_s` (the
    ``rtt_ms`` that ``status``, ``resolve`` and ``connect`` report)."""
    took_s: float
    """From the start of the dial (resolve excluded) to the connection."""


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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
    if cached is not None and cached.kind in HUB_KINDS:
        return DialPlan(None, 0.0, f"the hub ({cached.kind}) worked last time: hub at once")
    if target_nat in RESTRICTED:
        return DialPlan(first, 0.0, f"target behind a NAT (type {target_nat}): hub at once")
    if own_nat in RESTRICTED:
        return DialPlan(first, 0.0, f"we are behind a NAT (type {own_nat}) and the target's "
                        f"type {target_nat} proves nothing: hub at once")  # fmt: skip
    if cached is None:
        return DialPlan(None, 0.0, f"target type {target_nat} proves nothing and direct has "
                        "not worked before: hub at once")  # fmt: skip
    wait = head_start_s(cached.rtt_s)
    return DialPlan(first, wait, f"direct worked last time: hub after {wait:.2f} s")


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
