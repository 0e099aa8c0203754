"""One QUIC stream to or from a verified peer, as an :class:`anyio.abc.ByteStream` (driver).

:class:`PeerStream` holds what arrived until the application reads it (counted in its
connection's :class:`~a2al_mcp.transport.budget.ReceiveBudget`; the reads give flow-control
credit back) and has real back-pressure on the way out: :meth:`PeerStream.send` waits while
more than ``send_buffer`` bytes sit unsent in the stack's (otherwise unbounded) send buffer,
woken by its connection's progress, not by a polling tick. Its writes are transmitted once
per call (see :meth:`~a2al_mcp.transport.peer_connection.PeerConnection.transmit`).
Made and fed by :class:`~a2al_mcp.transport.peer.QuicService`; re-exported by
:mod:`a2al_mcp.transport.peer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import anyio
import anyio.abc
from anyio import BrokenResourceError, ClosedResourceError, EndOfStream

from ..identity.aid import Aid
from . import session as ss

if TYPE_CHECKING:
    from .peer_connection import PeerConnection

__all__ = ["ERR_RESOURCE", "PeerStream"]

ERR_RESOURCE: Final = 0x44
"""Stream reset code when the node's unread bytes would pass ``limits.receive_buffer_total``
(ours: a2ald's codes stop at 0x43; any peer treats an unknown code as a plain reset)."""


class PeerStream(anyio.abc.ByteStream):
    """One QUIC stream to or from a verified peer."""

    def __init__(self, conn: PeerConnection, stream_id: int) -> None:
        self.connection = conn
        self.stream_id = stream_id
        self._buf = bytearray()
        self._eof = False
        self._reset: int | None = None
        self._readable = anyio.Event()
        self._write_closed = False
        self._closed = False
        self._stopped: int | None = None
        """The peer sent STOP_SENDING with this code: we write nothing more."""

    @property
    def peer(self) -> Aid:
        """The verified AID at the other end (a caller AID for inbound streams)."""
        return self.connection.peer_aid

    # -- fed by the service ---------------------------------------------------------------

    def feed(self, data: bytes, end: bool) -> None:
        """Bytes (and maybe the FIN) arrived for this stream (transport-internal)."""
        if self._closed:
            return  # closed locally: nobody will read it (and it is not held)
        if data:
            conn = self.connection
            if conn.budget.over_total(len(data), conn.service.limits.receive_buffer_total):
                conn.service.counters.reset_memory += 1
                self._abort(ERR_RESOURCE)
                return
            self._buf += data
            conn.budget.hold(self.stream_id, len(data))
        self._eof = self._eof or end
        self._readable.set()

    def mark_stopped(self, error_code: int) -> None:
        """The peer sent STOP_SENDING (transport-internal)."""
        self._stopped = error_code

    def fail(self, error_code: int) -> None:
        """The stream was reset or its connection ended: wake the reader (transport-internal)."""
        self._reset = error_code
        self._readable.set()

    # -- ByteStream -----------------------------------------------------------------------

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while not self._buf:
            if self._closed:
                raise ClosedResourceError
            if self._reset is not None:
                raise BrokenResourceError(f"stream reset by peer (code {self._reset:#x})")
            if self._eof:
                raise EndOfStream
            self._readable = anyio.Event()
            await self.connection.wait_event(self._readable)
        data = bytes(self._buf[:max_bytes])
        del self._buf[:max_bytes]
        self.connection.after_read(self.stream_id, len(data))
        return data

    @property
    def buffered(self) -> int:
        """Received bytes not read yet."""
        return len(self._buf)

    async def send(self, item: bytes) -> None:
        if self._closed or self._write_closed:
            raise ClosedResourceError
        if self._reset is not None:
            raise BrokenResourceError(f"stream reset by peer (code {self._reset:#x})")
        if self._stopped is not None:
            raise BrokenResourceError(f"the peer stopped reading (code {self._stopped:#x})")
        pc = self.connection
        pc.last_active = pc.service.now()
        limit = pc.service.send_buffer
        view = memoryview(item)
        chunk = 64 * 1024
        queued = False  # written to the connection, not transmitted yet
        for start in range(0, len(view), chunk):
            while pc.conn.pending_send_bytes(self.stream_id) > limit:
                if queued:  # what fits leaves now; maybe that is enough
                    pc.transmit()
                    queued = False
                    continue
                await pc.wait_progress()
                if self._reset is not None or pc.closed:
                    raise BrokenResourceError("the connection or stream went away")
            pc.session.send(self.stream_id, bytes(view[start : start + chunk]))
            queued = True
        if queued:  # one transmit for the whole write (aioquic's _transmit_soon)
            pc.transmit()

    async def send_eof(self) -> None:
        if self._write_closed or self._closed:
            return
        self._write_closed = True
        if not self.connection.closed:
            self.connection.session.send(self.stream_id, b"", end_stream=True)
            self.connection.transmit()

    async def aclose(self) -> None:
        """Close both ways: FIN our side; if the peer has not finished, ask it to stop
        (STOP_SENDING, code 0) — nobody will read what it sends. Never raises for a stream
        the peer stopped or reset."""
        if self._closed:
            return
        await self.send_eof()
        if not self._eof and self._reset is None and not self.connection.closed:
            self.connection.session.stop_reading(self.stream_id, 0)
            self.connection.transmit()
        self._release()

    def reset(self, error_code: int = ss.ERR_ACCESS_DENIED) -> None:
        """Abort the stream in both directions."""
        if not self.connection.closed and not self._closed:
            self.connection.session.refuse(self.stream_id, error_code)
            self.connection.transmit()
        self._release()

    def _abort(self, error_code: int) -> None:
        """Reset by us for the node's sake (not by the application): both directions are
        reset, the unread bytes dropped, and the reader sees a broken stream."""
        conn = self.connection
        if not conn.closed:
            conn.session.refuse(self.stream_id, error_code)
            conn.transmit()
        self.fail(error_code)
        self._forget()

    def _release(self) -> None:
        """Closed locally: forget the unread bytes and the stream."""
        self._closed = True
        self._readable.set()
        self._forget()

    def _forget(self) -> None:
        unread = len(self._buf)
        self._buf = bytearray()
        self.connection.streams.pop(self.stream_id, None)
        self.connection.after_read(self.stream_id, unread, gone=True)
