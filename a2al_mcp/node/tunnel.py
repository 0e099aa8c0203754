"""TCP ↔ A2AL stream bridges: ``tunnel`` (local listener → remote agent) and ``service_tcp``
(inbound stream → local TCP service), as a2ald does them (§5.5).

Bytes are copied both ways; when one side reaches EOF the other is half-closed (a stream gets
FIN, never a reset), and the bridge ends when both directions are done.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import anyio.abc
from anyio import BrokenResourceError, ClosedResourceError, EndOfStream

from .._types import Addr
from ..errors import A2ALError, NetworkError
from ..identity.aid import Aid
from ..transport.peer import PeerStream

__all__ = ["Tunnel", "bridge", "bridge_to_tcp"]

logger = logging.getLogger(__name__)

_CHUNK: Final = 65536


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
    finally:
        with contextlib.suppress(Exception):
            await a.aclose()
        with contextlib.suppress(Exception):
            await b.aclose()


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
        self.addr: Addr = listen

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
        assert self._listener is not None
        with anyio.CancelScope() as scope:
            self._scope = scope
            task_status.started()
            try:
                async with self._listener:
                    await self._listener.serve(self._one)
            finally:
                self._done.set()

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
        if self._scope is not None:
            self._scope.cancel()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.aclose()

    async def __aenter__(self) -> Tunnel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
