"""Shared type aliases and the datagram-core contract."""

from __future__ import annotations

from typing import Protocol, TypeAlias, TypeVar

__all__ = ["Addr", "Datagram", "DatagramCore", "Seconds"]

Addr: TypeAlias = tuple[str, int]
"""A UDP address: host and port."""

Datagram: TypeAlias = tuple[bytes, Addr]
"""A datagram and the address it came from or goes to."""

Seconds: TypeAlias = float
"""A duration or instant in seconds."""

E_co = TypeVar("E_co", covariant=True)


class DatagramCore(Protocol[E_co]):
    """A sans-I/O protocol core fed with datagrams (aioquic's QuicConnection shape).

    The driver (or the simulator) owns the socket and the clock: it hands every received
    datagram to :meth:`receive_datagram`, calls :meth:`handle_timer` when the deadline of
    :meth:`get_timer` passes, drains :meth:`next_event`, and after *any* call — including
    a core's own command methods — sends what :meth:`datagrams_to_send` returns. ``now``
    is a monotonic time in seconds; cores never read a clock.
    """

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """Process one received datagram. Never raises for remote garbage."""
        ...

    def handle_timer(self, now: float) -> None:
        """Run whatever was due at or before ``now``."""
        ...

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """Take the datagrams queued for sending."""
        ...

    def get_timer(self) -> float | None:
        """The next absolute deadline (monotonic seconds), or None."""
        ...

    def next_event(self) -> E_co | None:
        """Pop the oldest event, or None."""
        ...
