"""Client WebSockets to a signalling hub, over TCP (driver; wsproto does the protocol).

:func:`open_websocket` connects to ``ws://host:port`` with ``target`` (``/signal`` or an
``/ice?…`` from :func:`~a2al_mcp.signal.rooms.ice_target`), offers subprotocol
``a2al.ice.v1`` and returns a :class:`WebSocket`: whole binary messages in and out, pings,
close. Pings from the hub are answered inside :meth:`WebSocket.receive`; a message longer
than ``max_message_bytes`` closes the socket with 1009 and raises
:class:`~a2al_mcp.signal.frames.FrameTooLarge`. Only ``ws://`` exists (no TLS yet).
"""

from __future__ import annotations

import urllib.parse
from typing import Final

import anyio
import anyio.abc
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..errors import ConnectionClosed, DecodeError, HandshakeFailed, Unreachable
from .frames import DEFAULT_MAX_FRAME_BYTES, FrameTooLarge
from .rooms import SUBPROTOCOL

__all__ = ["WebSocket", "open_websocket", "parse_hub_url"]

_READ: Final = 65536


def parse_hub_url(url: str) -> tuple[str, int]:
    """``ws://host:port`` (any path ignored) as ``(host, port)``.

    Raises:
        DecodeError: not a ``ws://`` URL with a host and a port.
    """
    parts = urllib.parse.urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "ws" or not parts.hostname or port is None:
        raise DecodeError(f"signalling hub URL must be ws://host:port, got {url[:80]!r}")
    return parts.hostname, port


class WebSocket:
    """One open client WebSocket (see the module docstring). One task receives; any may send."""

    def __init__(
        self, stream: anyio.abc.ByteStream, ws: WSConnection, subprotocol: str | None,
        max_message_bytes: int,
    ) -> None:  # fmt: skip
        self._stream = stream
        self._ws = ws
        self._lock = anyio.Lock()
        self._max = max_message_bytes
        self.max_message_bytes = max_message_bytes
        self._closed = False
        self.subprotocol = subprotocol
        """What the hub accepted (a2ald: ``a2al.ice.v1``)."""

    async def send(self, payload: bytes) -> None:
        """Send one binary message."""
        await self._write(BytesMessage(data=payload))

    async def ping(self, payload: bytes = b"") -> None:
        await self._write(Ping(payload=payload))

    async def receive(self) -> bytes:
        """The next binary message (text messages are skipped).

        Raises:
            ConnectionClosed: the hub closed the socket or the connection ended.
            FrameTooLarge: a message over the cap (the socket is then closed, 1009).
        """
        parts: list[bytes] = []
        size = 0
        while True:
            for event in self._ws.events():
                if isinstance(event, BytesMessage):
                    size += len(event.data)
                    if size > self._max:
                        await self.aclose(1009, "message too large")
                        raise FrameTooLarge(size, self._max)
                    parts.append(bytes(event.data))
                    if event.message_finished:
                        return b"".join(parts)
                elif isinstance(event, TextMessage):
                    continue
                elif isinstance(event, Ping):
                    await self._write(event.response())
                elif isinstance(event, CloseConnection):
                    await self._reply_close(event)
                    raise ConnectionClosed(
                        f"hub closed the socket ({event.code})", error_code=event.code
                    )
            if self._closed:
                raise ConnectionClosed("socket closed")
            try:
                data = await self._stream.receive(_READ)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    OSError) as exc:  # fmt: skip
                self._closed = True
                await self._stream.aclose()
                raise ConnectionClosed("hub connection ended") from exc
            try:
                self._ws.receive_data(data)
            except RemoteProtocolError as exc:
                await self.aclose(1002, "protocol error")
                raise ConnectionClosed(f"WebSocket protocol error: {exc}") from exc

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket (closing frame if still open, then the connection)."""
        if not self._closed:
            self._closed = True
            try:
                with anyio.move_on_after(2.0):
                    async with self._lock:
                        await self._stream.send(self._ws.send(CloseConnection(code, reason)))
            except (LocalProtocolError, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    OSError):  # fmt: skip
                pass
        await self._stream.aclose()

    async def _reply_close(self, event: CloseConnection) -> None:
        if not self._closed:
            self._closed = True
            try:
                async with self._lock:
                    await self._stream.send(self._ws.send(event.response()))
            except (LocalProtocolError, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    OSError):  # fmt: skip
                pass
            await self._stream.aclose()

    async def _write(self, event: BytesMessage | Ping | object) -> None:
        if self._closed:
            raise ConnectionClosed("socket closed")
        try:
            async with self._lock:
                await self._stream.send(self._ws.send(event))  # type: ignore[arg-type]
        except (LocalProtocolError, anyio.BrokenResourceError, anyio.ClosedResourceError,
                OSError) as exc:  # fmt: skip
            self._closed = True
            await self._stream.aclose()
            raise ConnectionClosed(f"cannot send to the hub: {exc}") from exc


async def _close(stream: anyio.abc.ByteStream) -> None:
    """Close ``stream`` even while the caller is being cancelled (else the socket is left
    to the garbage collector, with a ResourceWarning)."""
    with anyio.CancelScope(shield=True):
        await stream.aclose()


async def open_websocket(
    url: str,
    target: str,
    *,
    connect_timeout_s: float = 10.0,
    max_message_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> WebSocket:
    """Connect to the hub at ``url`` (``ws://host:port``) and upgrade for ``target``.

    Raises:
        DecodeError: a bad URL.
        Unreachable: the TCP connection failed or timed out.
        HandshakeFailed: the hub refused the upgrade (its HTTP status is in the message).
    """
    host, port = parse_hub_url(url)
    try:
        with anyio.fail_after(connect_timeout_s):
            stream = await anyio.connect_tcp(host, port)
    except (OSError, TimeoutError) as exc:
        raise Unreachable(f"cannot connect to signalling hub {url}: {exc}") from exc
    ws = WSConnection(ConnectionType.CLIENT)
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        with anyio.fail_after(connect_timeout_s):
            await stream.send(ws.send(Request(host=authority, target=target,
                                              subprotocols=[SUBPROTOCOL])))  # fmt: skip
            while True:
                data = await stream.receive(_READ)
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        return WebSocket(stream, ws, event.subprotocol, max_message_bytes)
                    if isinstance(event, RejectConnection | RejectData):
                        status = getattr(event, "status_code", 0)
                        raise HandshakeFailed(f"signalling hub {url} refused {target[:64]}: "
                                              f"HTTP {status}")  # fmt: skip
    except (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError,
            RemoteProtocolError) as exc:  # fmt: skip
        await _close(stream)
        raise HandshakeFailed(f"WebSocket upgrade to {url} failed: {exc!r}") from exc
    except BaseException:  # refused, or cancelled mid-upgrade (a losing hub, a closing node)
        await _close(stream)
        raise
