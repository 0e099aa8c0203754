"""Connections of the :class:`~a2al_mcp.transport.quic_host.QuicHost` bound to another datagram
path than the shared socket (an ICE pair, a relay), and their output. Core: pure.

A path is known to the host by a **synthetic address**, ``("100::<n>", 0)``: an address of
the IPv6 discard-only prefix ``100::/64`` (RFC 6666) with port 0 (the QUIC stacks want an IP
literal). No UDP datagram can be sent to port 0: the endpoint's sender refuses it (counted,
never sent, :class:`~a2al_mcp.transport.udp_addr.SendTargets`), so a synthetic address cannot
leave on the socket even by mistake, and the host drops every socket datagram that claims
a source of port 0 while it has paths (such a sender could never be answered anyway).

At most one connection is bound to a path: the one dialled over it, or the first one an
INITIAL arriving on it opened (a path that accepts). The host enforces the separation both
ways by connection, not by address alone: a datagram read from the socket never reaches a
bound connection, and a datagram read from a path reaches only the connection bound to it
(or opens it). What a bound connection sends is taken out of the host's socket output and
queued here, per path (bounded: a full queue drops, as a full socket buffer does), for the
path's driver to send (:mod:`~a2al_mcp.transport.quic_path`).

For the per-source admission limits (``connections_per_ip``, ``half_open_per_ip``) each path
is a source of its own (:class:`~a2al_mcp.transport.quic_admission.InboundGate`): every
synthetic address lies in the one /64 ``100::/64``, the unit those limits count for IPv6, so
counted by it all the connections accepted over paths shared one budget and, past
``connections_per_ip`` of them, every INITIAL arriving on a path was refused in silence. A
path carries one connection, and who may open one is bounded before it exists (the callee
answers a bounded number of calls per caller and in all); the limits in total still apply.
"""

from __future__ import annotations

import dataclasses
from typing import Final, Generic, TypeVar

from .._dataclass import dataclass
from .._types import Addr
from ..errors import UsageError
from .budget import TransportCounters

__all__ = ["PATH_PREFIX", "PATH_QUEUE", "PathTable", "is_path_addr"]

PATH_PREFIX: Final = "100::"
"""The host part of every synthetic path address starts so (RFC 6666 discard prefix)."""
PATH_QUEUE: Final = 256
"""Datagrams queued for one path's driver at most (a QUIC flight is far smaller)."""

C = TypeVar("C")


def is_path_addr(addr: Addr) -> bool:
    """``addr`` is a synthetic path address (never a socket's)."""
    return addr[1] == 0 and addr[0].startswith(PATH_PREFIX)


@dataclass(slots=True)
class _Slot(Generic[C]):
    accept: bool
    conn: C | None = None
    outbox: list[bytes] = dataclasses.field(default_factory=list)
    used: bool = False
    """A connection was bound once (a path carries one connection in its life)."""


class PathTable(Generic[C]):
    """The paths of one host, the connection bound to each, and what waits to be sent."""

    __slots__ = ("_by_conn", "_counters", "_next", "_queue", "_slots")

    def __init__(self, counters: TransportCounters, *, queue: int = PATH_QUEUE) -> None:
        self._slots: dict[Addr, _Slot[C]] = {}
        self._by_conn: dict[C, Addr] = {}
        self._next = 0
        self._queue = queue
        self._counters = counters

    def __bool__(self) -> bool:
        return bool(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def attach(self, *, accept: bool) -> Addr:
        """A new path; its synthetic address. ``accept``: an INITIAL arriving on it may open
        the (one) connection bound to it."""
        self._next += 1
        addr = (f"{PATH_PREFIX}{self._next:x}", 0)
        self._slots[addr] = _Slot(accept)
        return addr

    def detach(self, addr: Addr) -> C | None:
        """Forget the path; the connection still bound to it, if any (the caller ends it)."""
        slot = self._slots.pop(addr, None)
        if slot is None or slot.conn is None:
            return None
        self._by_conn.pop(slot.conn, None)
        return slot.conn

    def known(self, addr: Addr) -> bool:
        return addr in self._slots

    def can_accept(self, addr: Addr) -> bool:
        """An INITIAL on ``addr`` may open a connection (the path accepts and never had one)."""
        slot = self._slots.get(addr)
        return slot is not None and slot.accept and not slot.used

    def bind(self, addr: Addr, conn: C) -> None:
        """Bind ``conn`` to the path at ``addr``.

        Raises:
            UsageError: no such path, or it already carried a connection.
        """
        slot = self._slots.get(addr)
        if slot is None:
            raise UsageError(f"no datagram path at {addr[0]}")
        if slot.used:
            raise UsageError(f"the datagram path {addr[0]} already carried a connection")
        slot.conn, slot.used = conn, True
        self._by_conn[conn] = addr

    def unbind(self, conn: C) -> None:
        """``conn`` is gone (its path stays until detached: its last words may be queued)."""
        addr = self._by_conn.pop(conn, None)
        if addr is not None:
            slot = self._slots.get(addr)
            if slot is not None and slot.conn is conn:
                slot.conn = None

    def bound(self, conn: C) -> Addr | None:
        """The path ``conn`` is bound to, or None (it uses the socket)."""
        return self._by_conn.get(conn) if self._by_conn else None

    def conn(self, addr: Addr) -> C | None:
        slot = self._slots.get(addr)
        return None if slot is None else slot.conn

    def queue(self, addr: Addr, data: bytes) -> bool:
        """Queue ``data`` for the path at ``addr``; True if the queue was empty before (its
        driver must be woken). A full queue or an unknown path drops it (counted)."""
        slot = self._slots.get(addr)
        if slot is None:
            self._counters.path_misrouted += 1
            return False
        if len(slot.outbox) >= self._queue:
            self._counters.path_dropped_full += 1
            return False
        slot.outbox.append(data)
        return len(slot.outbox) == 1

    def take(self, addr: Addr) -> list[bytes]:
        """What waits to be sent on the path at ``addr`` (emptied)."""
        slot = self._slots.get(addr)
        if slot is None or not slot.outbox:
            return []
        out, slot.outbox = slot.outbox, []
        return out
