"""A core's place in the simulated network: its virtual address, liveness, timer and counters."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from a2al_mcp._types import Addr, DatagramCore

__all__ = ["DEFAULT_PORT", "NetState", "NodeStats", "SimNode", "fmt_addr", "virtual_addr"]

E = TypeVar("E")

DEFAULT_PORT: Final = 4121
"""The UDP port of auto-assigned virtual addresses."""


@dataclass(frozen=True, slots=True)
class NodeStats:
    """Counters of one node."""

    sent: int
    """Datagrams the core handed out (every copy decision comes after this)."""
    received: int
    """Datagrams handed to the core, duplicates included."""
    dropped_out: int
    """Datagrams from this node that were dropped, for any reason."""
    dropped_in: int
    """Datagrams to this node that were dropped (lost, router, killed)."""
    timers_fired: int
    """Calls of ``handle_timer``."""
    events: int
    """Events drained from the core (the bounded :attr:`SimNode.events` may hold fewer)."""


class NetState:
    """The network's bookkeeping for one :class:`SimNode` (written by :class:`SimNetwork`
    only; read it through :attr:`SimNode.alive`, :meth:`SimNode.timer` and
    :meth:`SimNode.stats`)."""

    __slots__ = (
        "alive",
        "dropped_in",
        "dropped_out",
        "events",
        "received",
        "sent",
        "timer_at",
        "timer_gen",
        "timers_fired",
    )

    def __init__(self) -> None:
        self.alive = True
        self.timer_at: float | None = None
        """The deadline scheduled for the node's timer, if any."""
        self.timer_gen = 0
        """Bumped whenever the scheduled deadline changes: older timer entries are stale."""
        self.sent = 0
        self.received = 0
        self.dropped_out = 0
        self.dropped_in = 0
        self.timers_fired = 0
        self.events = 0


class SimNode(Generic[E]):
    """A core attached to a :class:`SimNetwork` at a virtual address.

    Created by :meth:`SimNetwork.add_node`; do not build one yourself.
    """

    __slots__ = ("addr", "core", "events", "net", "on_event")

    def __init__(
        self,
        core: DatagramCore[E],
        addr: Addr,
        max_events: int,
        on_event: Callable[[E], None] | None,
    ) -> None:
        self.core: DatagramCore[E] = core
        """The core, to call commands on (then :meth:`SimNetwork.poke` this node)."""
        self.addr: Addr = addr
        """The node's virtual address; peers see datagrams coming from it."""
        self.events: deque[E] = deque(maxlen=max_events)
        """Events drained from the core, oldest first; the oldest fall out when full."""
        self.on_event: Callable[[E], None] | None = on_event
        """Called with each event as it is drained, after it is appended to :attr:`events`."""
        self.net = NetState()
        """The network's bookkeeping for this node (liveness, timer, counters)."""

    @property
    def alive(self) -> bool:
        """False once killed or removed (until revived)."""
        return self.net.alive

    def timer(self) -> float | None:
        """The deadline the network has scheduled for this node, if any.

        (A method, not a property, so type checkers do not narrow it across calls.)
        """
        return self.net.timer_at

    def stats(self) -> NodeStats:
        """A snapshot of this node's counters."""
        c = self.net
        return NodeStats(
            sent=c.sent,
            received=c.received,
            dropped_out=c.dropped_out,
            dropped_in=c.dropped_in,
            timers_fired=c.timers_fired,
            events=c.events,
        )

    def __repr__(self) -> str:
        state = "alive" if self.net.alive else "dead"
        return f"<SimNode {fmt_addr(self.addr)} {state} {type(self.core).__name__}>"


def virtual_addr(n: int) -> Addr:
    """The ``n``-th auto-assigned virtual address: 10.0.0.1 .. 10.0.0.254, 10.0.1.1 .. (x.0 and
    x.255 are skipped), port :data:`DEFAULT_PORT`.

    Raises:
        ValueError: ``n`` is past the last address.
    """
    host_byte = n % 254 + 1
    n //= 254
    if n >= 1 << 16:
        raise ValueError("out of auto-assigned virtual addresses")
    return (f"10.{(n >> 8) & 0xFF}.{n & 0xFF}.{host_byte}", DEFAULT_PORT)


def fmt_addr(addr: Addr) -> str:
    """``host:port``, with the host in brackets when it is IPv6."""
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
