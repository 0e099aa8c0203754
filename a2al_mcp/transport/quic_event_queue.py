"""The queue of a :class:`~a2al_mcp.transport.quic_host.QuicHost`'s events, where consecutive
in-order data of one stream becomes one event.

aioquic emits one ``StreamDataReceived`` per packet; queued one after the other for the same
stream (nothing between them, no end of stream before the last), they leave the queue as one
event, so the layers above pay per batch of datagrams rather than per datagram.

Sans-I/O: a container.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from aioquic.quic import events as qe

__all__ = ["EventQueue"]

C = TypeVar("C")
E = TypeVar("E")


class _DataRun(Generic[C]):
    """Consecutive ``StreamDataReceived`` of one stream, queued as one event."""

    __slots__ = ("chunks", "conn", "end", "stream_id")

    def __init__(self, conn: C, event: qe.StreamDataReceived) -> None:
        self.conn = conn
        self.stream_id = event.stream_id
        self.chunks = [event.data]
        self.end = event.end_stream

    def event(self) -> qe.StreamDataReceived:
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        return qe.StreamDataReceived(data=data, end_stream=self.end, stream_id=self.stream_id)


class EventQueue(Generic[C, E]):
    """Events first in, first out; a connection's stream data merged on the way in.

    Args:
        merged: builds the event that carries a connection's merged stream data (the
            host's ``ConnectionEvent``).
    """

    __slots__ = ("_events", "_merged")

    def __init__(self, merged: Callable[[C, qe.StreamDataReceived], E]) -> None:
        self._merged = merged
        self._events: deque[E | _DataRun[C]] = deque()

    def append(self, event: E) -> None:
        self._events.append(event)

    def stream_data(self, conn: C, event: qe.StreamDataReceived) -> None:
        """Queue ``conn``'s ``event``, merged into the last queued one if that is data of the
        same stream of ``conn`` without its end."""
        events = self._events
        last = events[-1] if events else None
        if (
            isinstance(last, _DataRun)
            and last.conn is conn
            and last.stream_id == event.stream_id
            and not last.end
        ):
            last.chunks.append(event.data)
            last.end = event.end_stream
        else:
            events.append(_DataRun(conn, event))

    def pop(self) -> E | None:
        """The oldest event, or None."""
        if not self._events:
            return None
        event = self._events.popleft()
        return self._merged(event.conn, event.event()) if isinstance(event, _DataRun) else event
