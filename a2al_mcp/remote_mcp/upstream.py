"""Keep-alive HTTP/1.1 connections to one plain-HTTP server on this machine (h11 over anyio
TCP): what :func:`~.expose.http_forwarder` sends each request of an exposed server through.

It is the smallest client that forwards faithfully: one request at a time per connection,
connections kept for the next request when both sides allow it (at most
:data:`IDLE_MAX` idle; one whose server closed it while idle is noticed before reuse and
dropped, and a request on a kept connection that closes before a byte of its answer came
is sent once more on a new one, as HTTP clients do), the response head returned once it
has arrived and the body read as it comes. No redirects, cookies or decoding: the answer
is passed on as the server gave it.
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Final

import anyio
import h11
from anyio.abc import SocketAttribute, SocketStream

from ..errors import DecodeError, Unreachable

__all__ = ["IDLE_MAX", "Upstream", "UpstreamResponse"]

IDLE_MAX: Final = 16
"""Idle connections kept per server."""
CONNECT_TIMEOUT_S: Final = 30.0
_READ: Final = 65536


class _Connection:
    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)
        self.reused = False
        """It carried a request before the one under way."""
        self.heard = False
        """Something of the answer under way arrived."""

    def stale(self) -> bool:
        """Whether the idle connection has something to read (the server closed it, or
        sent what it should not have): it cannot carry another request."""
        sock: socket.socket | None = self.stream.extra(SocketAttribute.raw_socket, None)
        if sock is None or sock.fileno() < 0:
            return True
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)

    async def next_event(self) -> Any:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise DecodeError(f"bad HTTP from the exposed server: {exc}") from exc
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self.stream.receive(_READ)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                data = b""
            self.heard = self.heard or bool(data)
            self.h11.receive_data(data)


class UpstreamResponse:
    """A response whose head has arrived: :attr:`status`, :attr:`headers` (lowercase names,
    as bytes); iterate :meth:`chunks` for the body, then it is done (or :meth:`aclose`)."""

    def __init__(self, upstream: Upstream, conn: _Connection, head: h11.Response) -> None:
        self.status: int = head.status_code
        self.headers: list[tuple[bytes, bytes]] = [(k, v) for k, v in head.headers]
        self._upstream = upstream
        self._conn: _Connection | None = conn

    async def chunks(self) -> AsyncGenerator[tuple[bytes, bool]]:
        """Body chunks as they come, each with whether more follows; the last one (maybe
        empty) says none. Data already in hand is joined into one chunk."""
        conn = self._conn
        if conn is None:
            return
        pending = bytearray()
        try:
            while True:
                event = conn.h11.next_event() if pending else await conn.next_event()
                if event is h11.NEED_DATA:  # nothing more in hand: pass on what is
                    yield bytes(pending), True
                    pending.clear()
                    continue
                if isinstance(event, h11.Data):
                    pending += event.data
                    continue
                if isinstance(event, h11.EndOfMessage):
                    self._conn = None
                    await self._upstream.release(conn)
                    yield bytes(pending), False
                    return
                raise DecodeError("the exposed server's answer ended before its body did")
        finally:
            if self._conn is not None:  # not released: not reusable
                await self.aclose()

    async def aclose(self) -> None:
        """Drop the connection (a body not read to its end)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close(conn)


async def _close(conn: _Connection) -> None:
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
        await conn.stream.aclose()


class Upstream:
    """Connections to the HTTP server at ``host:port``; :meth:`aclose` closes the idle ones."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._idle: list[_Connection] = []
        self._closed = False

    async def _connection(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.stale():
                return conn
            await _close(conn)
        return await self._connect()

    async def _connect(self) -> _Connection:
        try:
            with anyio.fail_after(CONNECT_TIMEOUT_S):
                stream = await anyio.connect_tcp(self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise Unreachable(f"the exposed server at {self.host}:{self.port} does not accept "
                              f"connections ({exc!r})", operation="expose") from exc  # fmt: skip
        return _Connection(stream)

    async def request(self, method: str, target: str, headers: Sequence[tuple[bytes, bytes]],
                      body: bytes) -> UpstreamResponse:  # fmt: skip
        """Send one request and return once the response head is in.

        Raises:
            Unreachable: no connection, or it broke before the head came.
            DecodeError: the answer is not HTTP/1.1.
        """
        conn = await self._connection()
        try:
            return await self._send(conn, method, target, headers, body)
        except (Unreachable, DecodeError):
            if not conn.reused or conn.heard:
                raise
        # a kept connection the server closed while idle, as the request left (nothing of an
        # answer came): once more on a new connection, as HTTP clients do
        return await self._send(await self._connect(), method, target, headers, body)

    async def _send(self, conn: _Connection, method: str, target: str,
                    headers: Sequence[tuple[bytes, bytes]],
                    body: bytes) -> UpstreamResponse:  # fmt: skip
        conn.heard = False
        try:
            out = conn.h11.send(h11.Request(method=method, target=target, headers=list(headers)))
            if body:
                out = (out or b"") + (conn.h11.send(h11.Data(data=body)) or b"")
            out = (out or b"") + (conn.h11.send(h11.EndOfMessage()) or b"")
            await conn.stream.send(out)
            event = await conn.next_event()
            while isinstance(event, h11.InformationalResponse):
                event = await conn.next_event()
        except BaseException as exc:
            await _close(conn)
            if isinstance(exc, anyio.BrokenResourceError | anyio.ClosedResourceError | OSError):
                raise Unreachable(f"the exposed server at {self.host}:{self.port} dropped the "
                                  f"connection ({exc!r})", operation="expose") from exc  # fmt: skip
            raise
        if not isinstance(event, h11.Response):
            await _close(conn)
            raise Unreachable(f"the exposed server at {self.host}:{self.port} closed the "
                              "connection without answering", operation="expose")  # fmt: skip
        return UpstreamResponse(self, conn, event)

    async def release(self, conn: _Connection) -> None:
        """Keep ``conn`` for the next request if both sides allow it; else close it."""
        if (
            not self._closed
            and len(self._idle) < IDLE_MAX
            and conn.h11.our_state is h11.DONE
            and conn.h11.their_state is h11.DONE
        ):
            conn.h11.start_next_cycle()
            conn.reused = True
            self._idle.append(conn)
            return
        await _close(conn)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close(conn)
