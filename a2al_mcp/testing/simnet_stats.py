"""What the simulated network records: datagram verdicts (the trace) and its counters."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, TypeAlias

from a2al_mcp._types import Addr

from .simnet_nodes import NodeStats, SimNode, fmt_addr

__all__ = ["SimRecorder", "SimStats", "TraceEntry", "Verdict"]

Verdict: TypeAlias = Literal["delivered", "duplicate", "lost", "router", "killed", "unroutable"]
"""What happened to one datagram.

``delivered``: handed to the destination core. ``duplicate``: an extra copy, made by the link's
``duplicate`` probability, handed to the destination core. ``lost``: dropped by the link's
``loss`` probability. ``router``: dropped by the router hook. ``killed``: the source or the
destination was killed or removed (checked when sent and again when it arrives).
``unroutable``: no node holds the destination address.
"""


class TraceEntry(NamedTuple):
    """One line of the trace: what happened to one datagram, and when."""

    time: float
    """Virtual time of the verdict: arrival for deliveries, the moment of the drop otherwise."""
    src: Addr
    """Source address."""
    dst: Addr
    """Destination address."""
    length: int
    """Datagram size in bytes."""
    verdict: Verdict
    """What happened."""


@dataclass(frozen=True, slots=True)
class SimStats:
    """A snapshot of the network's counters. ``dropped`` is the sum of the four ``dropped_*``."""

    now: float
    """Virtual time of the snapshot."""
    sent: int
    """Datagrams handed out by all cores."""
    delivered: int
    """Datagrams handed to cores, duplicates included."""
    dropped: int
    """All drops."""
    dropped_loss: int
    """Drops by link loss."""
    dropped_router: int
    """Drops by the router hook."""
    dropped_killed: int
    """Drops because an end was killed or removed."""
    dropped_unroutable: int
    """Drops because no node held the destination address."""
    duplicated: int
    """Extra copies made by link duplication."""
    timers_fired: int
    """``handle_timer`` calls on all nodes."""
    events: int
    """Events drained from all cores."""
    nodes: Mapping[Addr, NodeStats]
    """Per-node counters of the nodes currently in the network, in insertion order."""


class SimRecorder:
    """The trace and the network-wide counters of one :class:`~a2al_mcp.testing.simnet.SimNetwork`
    (written by it only; read them through its ``stats()``, ``trace`` and ``format_trace()``)."""

    __slots__ = (
        "delivered",
        "drops",
        "duplicated",
        "events",
        "sent",
        "timers_fired",
        "trace",
        "trace_total",
    )

    def __init__(self, trace_size: int) -> None:
        self.trace: deque[TraceEntry] = deque(maxlen=trace_size)
        """The last ``trace_size`` verdicts."""
        self.trace_total = 0
        """Verdicts recorded since the start, including those that fell out of :attr:`trace`."""
        self.sent = 0
        self.delivered = 0
        self.duplicated = 0
        self.timers_fired = 0
        self.events = 0
        self.drops: dict[Verdict, int] = {"lost": 0, "router": 0, "killed": 0, "unroutable": 0}

    def record(self, now: float, src: Addr, dst: Addr, size: int, verdict: Verdict) -> None:
        """Append one verdict to the trace."""
        self.trace.append(TraceEntry(now, src, dst, size, verdict))
        self.trace_total += 1

    def snapshot(self, now: float, nodes: Mapping[Addr, SimNode[Any]]) -> SimStats:
        """All counters at ``now``, with a per-node snapshot of ``nodes``."""
        drops = self.drops
        return SimStats(
            now=now,
            sent=self.sent,
            delivered=self.delivered,
            dropped=sum(drops.values()),
            dropped_loss=drops["lost"],
            dropped_router=drops["router"],
            dropped_killed=drops["killed"],
            dropped_unroutable=drops["unroutable"],
            duplicated=self.duplicated,
            timers_fired=self.timers_fired,
            events=self.events,
            nodes=MappingProxyType({a: n.stats() for a, n in nodes.items()}),
        )

    def format_trace(self, seed: int, now: float, last: int) -> str:
        """The seed and the last ``last`` trace entries, one per line."""
        entries = list(self.trace)[-last:] if last > 0 else []
        lines = [
            f"# SimNetwork seed={seed} now={now:.6f}: "
            f"last {len(entries)} of {self.trace_total} datagram verdicts"
        ]
        lines.extend(
            f"{e.time:14.6f}  {fmt_addr(e.src):>21} -> {fmt_addr(e.dst):<21} "
            f"{e.length:5d} B  {e.verdict}"
            for e in entries
        )
        return "\n".join(lines)
