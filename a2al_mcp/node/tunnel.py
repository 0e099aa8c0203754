"""TCP ↔ A2AL stream bridges: ``tunnel`` (local listener → remote agent) and ``service_tcp``
(inbound stream → local TCP service), as a2ald does them (§5.5).

Bytes are copied both ways; when one side reaches EOF the other is half-closed (a stream gets
FIN, never a reset), and the bridge ends when both directions are done.

A tunnel runs in the node's task group, so nothing one of its connections does may escape it:
each connection's handler contains every exception :func:`~a2al_mcp._containment.containable`
allows (as ``Node.spawn`` does), and so does accepting (e.g. out of file descriptors: the
listener backs off and accepts again); counted in :attr:`Tunnel.errors`, logged at most once
per 30 s per tunnel.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import anyio.abc
from anyio import BrokenResourceError, ClosedResourceError, EndOfStream

from .._containment import containable
from .._types import Addr
from ..errors import A2ALError, NetworkError
from ..identity.aid import Aid
from ..transport.peer import PeerStream

__all__ = ["Tunnel", "bridge", "bridge_to_tcp"]

logger = logging.getLogger(__name__)

_CHUNK: Final = 65536
LOG_INTERVAL_S: Final = 30.0
CLOSE_TIMEOUT_S: Final = 5.0
"""Longest a bridge waits for its two streams to close (neither ever blocks today)."""
ACCEPT_BACKOFF_S: Final = 0.5
"""Pause before accepting again after the listener failed (EMFILE and the like)."""


async def _pump(src: anyio.abc.ByteStream, dst: anyio.abc.ByteStream) -> None:
    try:
        while True:
            try:
                data = await src.receive(_CHUNK)
            except (EndOfStream, ClosedResourceError):
                break
            await dst.send(data)
    except (BrokenResourceError, ClosedResourceError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            await dst.send_eof()


async def bridge(a: anyio.abc.ByteStream, b: anyio.abc.ByteStream) -> None:
    """Copy both ways until both directions ended; then close both."""
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_pump, a, b)
            tg.start_soon(_pump, b, a)
    finally:  # shielded: a cancelled bridge (tunnel or node closing) still closes both
        with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
            for stream in (a, b):
                with contextlib.suppress(Exception):
                    await stream.aclose()


async def bridge_to_tcp(stream: PeerStream, target: Addr, *, timeout_s: float = 10.0) -> None:
    """Serve an inbound stream by connecting to a local TCP service (``service_tcp``)."""
    try:
        with anyio.fail_after(timeout_s):
            tcp = await anyio.connect_tcp(target[0], target[1])
    except (OSError, TimeoutError) as exc:
        logger.warning("service_tcp.unreachable target=%s:%s error=%s", *target, exc)
        stream.reset(0x43)  # a2ald: "inbound unreachable"
        return
    await bridge(stream, tcp)


class Tunnel:
    """A local TCP listener whose every accepted connection becomes a stream to ``remote``.

    Use as an async context manager, or :meth:`aclose` it. ``addr`` is where to connect.
    """

    def __init__(
        self,
        remote: Aid,
        open_stream: Callable[[], Awaitable[PeerStream]],
        *,
        listen: Addr = ("127.0.0.1", 0),
    ) -> None:
        self.remote = remote
        self._open = open_stream
        self._listen = listen
        self._listener: anyio.abc.Listener[anyio.abc.SocketStream] | None = None
        self._scope: anyio.CancelScope | None = None
        self._done = anyio.Event()
        self.connections = 0
        self.failures = 0
        """Connections whose stream could not be opened (the remote was unreachable...)."""
        self.errors = 0
        """Exceptions contained to one connection, or to one failed accept."""
        self.addr: Addr = listen
        self._stopping = False
        self._last_log: float | None = None

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Bind and start accepting in ``tg`` (the node's task group)."""
        listener = await anyio.create_tcp_listener(
            local_host=self._listen[0], local_port=self._listen[1]
        )
        self._listener = listener
        sockname = listener.extra(anyio.abc.SocketAttribute.local_address)
        self.addr = (str(sockname[0]), int(sockname[1]))
        await tg.start(self._serve)

    async def _serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        listener = self._listener
        assert listener is not None
        with anyio.CancelScope() as scope:
            self._scope = scope
            task_status.started()
            try:
                async with listener, anyio.create_task_group() as handlers:
                    while not self._stopping:
                        try:
                            await listener.serve(self._contained, handlers)
                        except BaseException as exc:
                            if self._stopping or not containable(exc):
                                raise
                            self._failed("accept", exc)
                            await anyio.sleep(ACCEPT_BACKOFF_S)
            except BaseException as exc:
                if not (self._stopping and containable(exc)):
                    raise  # our own aclose() closed the listener under serve(): done
            finally:
                self._done.set()

    async def _contained(self, client: anyio.abc.SocketStream) -> None:
        try:
            await self._one(client)
        except BaseException as exc:
            if not containable(exc):
                raise
            self._failed("connection", exc)
            with contextlib.suppress(Exception):
                await anyio.aclose_forcefully(client)

    def _failed(self, where: str, exc: BaseException) -> None:
        self.errors += 1
        now = anyio.current_time()
        if self._last_log is None or now - self._last_log >= LOG_INTERVAL_S:
            self._last_log = now
            logger.warning("tunnel.contained remote=%s where=%s error=%r (counted; logged at "
                           "most every %.0f s)", self.remote.short(), where, exc, LOG_INTERVAL_S,
                           exc_info=exc)  # fmt: skip

    async def _one(self, client: anyio.abc.SocketStream) -> None:
        self.connections += 1
        try:
            stream = await self._open()
        except (A2ALError, NetworkError) as exc:
            self.failures += 1
            logger.info("tunnel.open_failed remote=%s error=%s", self.remote.short(), exc)
            await client.aclose()
            return
        await bridge(client, stream)

    @property
    def closed(self) -> bool:
        return self._done.is_set()

    async def aclose(self) -> None:
        self._stopping = True
        if self._scope is not None:
            self._scope.cancel()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.aclose()

    async def __aenter__(self) -> Tunnel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
