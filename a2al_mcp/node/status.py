"""What the node reports: pure data, no behaviour.

:class:`NodeStatus` (with :class:`ContainedErrors`) is the snapshot ``Node.status()`` returns;
:class:`ResolvedEndpoint` and :class:`ServiceEntry` are what ``Node.resolve`` and
``Node.discover`` find.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._dataclass import dataclass
from .._types import Addr
from ..dht.core import DhtStats
from ..identity.aid import Aid
from ..protocol.records import SignedRecord
from ..transport.peer import QuicStats
from .dial_strategy import UsedPath
from .mailbox import MailboxStats

if TYPE_CHECKING:  # the signalling bricks load only when traversal is configured
    from .traversal import TraversalStats

__all__ = [
    "ConnectionPath",
    "ContainedErrors",
    "NatStatus",
    "NodeStatus",
    "ResolvedEndpoint",
    "ServiceEntry",
    "TraversalStatus",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedEndpoint:
    """Where an AID can be reached, from its verified endpoint record."""

    aid: Aid
    endpoints: tuple[str, ...]
    nat_type: int
    seq: int
    timestamp: int
    ttl: int
    record: SignedRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceEntry:
    """One registration found by :meth:`Node.discover`."""

    aid: Aid
    service: str
    name: str
    brief: str
    protocols: tuple[str, ...]
    tags: tuple[str, ...]
    meta: dict[str, Any]
    seq: int
    timestamp: int
    ttl: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainedErrors:
    """Exceptions that ended only one task, datagram or event, never the node (each kind
    logged at most once per 30 s)."""

    tasks: int = 0
    """Peer-driven tasks (stream handlers, mailbox stores, route deadlines, tunnel
    connections) that raised."""
    loops: int = 0
    """Failures of a background loop (republish, rejoin, keep-alive, mailbox poll); it is
    started again a second later."""
    core: int = 0
    """Exceptions a DHT or QUIC core raised on a datagram, timer or send (the datagram, or
    the rest of its batch, is dropped), and QUIC connections whose stack raised (each closed
    and forgotten; ``quic.counters.connections_failed``)."""
    callbacks: int = 0
    """Exceptions raised while handling a core's event."""
    last: str = ""
    """The type of the most recent one (empty if none)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NatStatus:
    """Where the node stands behind a NAT, in the words ``status`` shows."""

    public_addrs: tuple[Addr, ...] = ()
    """Our addresses as the internet sees them (peers' consensus, STUN, the UPnP mapping),
    best first; empty while nothing is known."""
    nat_type: int = 0
    """What endpoint records carry (a2al-wire §3.6): 0 unknown, 1 full cone or public,
    2 restricted, 3 port-restricted, 4 symmetric."""
    nat_type_words: str = "unknown"
    """``nat_type`` for humans (``public`` when there is no NAT)."""
    upnp_mapping: Addr | None = None
    """The port mapping the gateway granted (UPnP IGD or NAT-PMP/PCP), if any."""
    reachable_directly: bool = False
    """A peer that never sent to us can reach us at ``public_addrs``: public, full cone or
    a gateway mapping."""
    published_endpoints: tuple[str, ...] = ()
    """The URLs an endpoint record would carry now (empty: nothing to publish yet)."""
    evidence: tuple[str, ...] = ()
    """Why, in short sentences."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionPath:
    """A pooled connection we dialled, and the path it came up on."""

    peer: Aid
    local: Aid
    path: UsedPath


@dataclass(frozen=True, slots=True, kw_only=True)
class TraversalStatus:
    """Both sides of NAT traversal: the hubs we are reachable through and what each side
    did."""

    live_hubs: tuple[str, ...] = ()
    """The hubs that acknowledged our registrations (what our endpoint records name)."""
    callee: TraversalStats | None = None
    """The callee's counters (None: no ``[signal]`` hubs and no hub served)."""
    direct_wins: int = 0
    """Dials won by the direct path."""
    punch_wins: int = 0
    """Dials won by a punch through the target's hubs."""
    hub_dials: int = 0
    """Dials that started the hub path (the target's record named hubs)."""
    dial_failures: int = 0
    """Dials where every path failed."""
    paths: tuple[ConnectionPath, ...] = ()
    """The pooled connections we dialled, with their paths."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatus:
    """A snapshot for status displays and the MCP ``status`` tool."""

    aid: Aid
    listen: Addr
    peers: int
    ready: bool
    """At least one peer is known."""
    published: tuple[Aid, ...]
    """Identities whose endpoint record we keep published."""
    dht: DhtStats
    observed_addrs: tuple[tuple[Addr, int], ...] = ()
    """Our address as peers report it, most reported first, with counts."""
    connections: int = 0
    """Live QUIC connections."""
    serving: tuple[Aid, ...] = ()
    """Local identities that answer inbound service streams."""
    mailbox: MailboxStats | None = None
    """Notes sent, received, duplicates, refused (forged, misaddressed, garbage), polls."""
    contained_errors: ContainedErrors = ContainedErrors()
    """Exceptions contained to one task, datagram or event (a hostile peer or a bug)."""
    quic: QuicStats | None = None
    """QUIC connections, buffered bytes, and what each transport limit refused."""
    joining: bool = False
    """The network join still runs (a node opened with ``join_in_background``)."""
    nat: NatStatus = NatStatus()
    """Public address, NAT type, gateway mapping, direct reachability."""
    traversal: TraversalStatus = TraversalStatus()
    """Live hubs, the callee's counters, which paths our dials took."""
