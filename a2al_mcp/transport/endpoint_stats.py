"""The counters of the endpoint's UDP socket, as a snapshot (:meth:`UdpEndpoint.statistics`).

:class:`EndpointStatistics` is what :meth:`~a2al_mcp.transport.endpoint.UdpEndpoint.statistics`
returns: frozen, so a caller may keep it and compare it with a later one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from .demux import Kind

__all__ = ["NOTHING_COUNTED", "EndpointStatistics"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointStatistics:
    """A snapshot of the endpoint's counters."""

    received: int
    """Datagrams read from the socket (including empty ones)."""
    received_by_kind: Mapping[Kind, int]
    """Datagrams read, by classification."""
    dropped: Mapping[Kind, int]
    """Received datagrams nobody consumed: no core attached for the kind, echo probes with
    ``echo=False``, and STUN messages (no STUN consumer is attached to the driver)."""
    dropped_empty: int
    """Empty datagrams received."""
    sent: int
    """Datagrams handed to the kernel (each segment of a GSO send counts)."""
    gso_sends: int
    """``sendmsg`` calls that carried several datagrams (GSO)."""
    send_dropped: int
    """Datagrams dropped because the socket's send buffer was full (BlockingIOError)."""
    send_errors: int
    """Datagrams the kernel refused (any other OSError, or an address this socket cannot reach)."""
    recv_errors: int
    """Errors reported by ``recvfrom`` (for example an ICMP error queued on the socket), but
    for those counted in ``recv_resets``."""
    recv_resets: int
    """Reads that failed with an ICMP report about an earlier send (Windows' WSAECONNRESET,
    a ``ConnectionResetError``, or WSAENETRESET, where they could not be turned off); each
    is read past."""
    core_errors: int
    """Exceptions raised by a core (receive, timer, send, get_timer, next_event); each one is
    swallowed (Rust panics included; never cancellation or exit)."""
    callback_errors: int
    """Exceptions raised by the ``on_events`` callback; each one is swallowed."""
    batches: int
    """Wake-ups of the receive loop that read at least one datagram."""
    gro_reads: int
    """Reads that returned several datagrams coalesced by the kernel (UDP GRO)."""
    timer_fires: int
    """Calls of ``handle_timer`` on a core."""


_ZEROS: Final = MappingProxyType(dict.fromkeys(Kind, 0))

NOTHING_COUNTED: Final = EndpointStatistics(
    received=0,
    received_by_kind=_ZEROS,
    dropped=_ZEROS,
    dropped_empty=0,
    sent=0,
    gso_sends=0,
    send_dropped=0,
    send_errors=0,
    recv_errors=0,
    recv_resets=0,
    core_errors=0,
    callback_errors=0,
    batches=0,
    gro_reads=0,
    timer_fires=0,
)
"""The statistics of an endpoint that has not been opened."""
