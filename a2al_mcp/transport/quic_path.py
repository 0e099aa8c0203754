"""One QUIC connection of the node's :class:`~a2al_mcp.transport.peer.QuicService` over another
datagram path than the shared socket (driver): an ICE pair, a TURN relay, anything that can
``send`` and ``receive`` datagrams.

The :class:`~a2al_mcp.transport.quic_host.QuicHost` knows the path by a synthetic address
(:mod:`~a2al_mcp.transport.quic_paths`) and keeps the connection bound to it apart from the
socket's; :class:`QuicPath` is the path's driver, the part of
:class:`~a2al_mcp.transport.endpoint.UdpEndpoint`'s role that differs: it hands what the link
receives to the host (:meth:`~a2al_mcp.transport.quic_host.QuicHost.receive_path_datagram`)
and sends what the host queued for the path. Timers and the host's other output stay with
the endpoint, whose flush the service's ``flush`` is: the connection is one of the node's,
with its TLS identities, handlers, limits, admission and statistics.

A path carries one connection in its life. It ends when:

* its connection is gone (closed by either side, timed out): the path sends what is still
  queued (the CONNECTION_CLOSE), then stops;
* :meth:`QuicPath.close` is called: its connection is closed (the CONNECTION_CLOSE goes out on
  the path), then as above;
* the link fails (``receive`` or ``send`` raises — :class:`~a2al_mcp.errors.ConnectionClosed`
  when consent is lost or the ICE session closed): counted in
  ``TransportCounters.paths_failed``, and the connection is forgotten at once (it has no way
  left to send) and reported gone with the reason.

Then the link is released (``on_close``, e.g. the ICE session's ``close``), and
:attr:`QuicPath.closed` is set. The loops (receive, send) run in one task the service spawns
into the node's task group; what the link or the host raises is contained there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import anyio

from .._containment import containable
from .._dataclass import dataclass
from .._types import Addr
from ..errors import ConnectionClosed

if TYPE_CHECKING:
    from .budget import TransportCounters
    from .peer_connection import PeerConnection
    from .quic_host import QuicHost

__all__ = ["DatagramLink", "PathStatistics", "QuicPath"]

logger = logging.getLogger(__name__)


class DatagramLink(Protocol):
    """One connected datagram path to one peer (an :class:`~a2al_mcp.ice.IceSession`).
    ``receive`` raises when the link is closed (:class:`~a2al_mcp.errors.ConnectionClosed`
    for an ICE session; any exception ends the path)."""

    async def send(self, data: bytes) -> None: ...

    async def receive(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class PathStatistics:
    received: int
    """Datagrams the link delivered (handed to the host)."""
    sent: int
    """Datagrams handed to the link."""
    core_errors: int
    """Exceptions the host raised for a datagram of this path (contained)."""
    failed: bool
    """The link failed under the path (rather than the path being closed)."""


class QuicPath:
    """The driver of one datagram path of a :class:`~a2al_mcp.transport.peer.QuicService`.
    Made by :meth:`~a2al_mcp.transport.peer.QuicService.open_path` (which runs it)."""

    connection: PeerConnection | None
    """The connection on this path: the one dialled over it, or the one it accepted."""

    def __init__(
        self,
        link: DatagramLink,
        addr: Addr,
        *,
        host: QuicHost,
        counters: TransportCounters,
        now: Callable[[], float],
        flush: Callable[[], None],
        remote: Addr | None = None,
        label: str = "path",
        on_close: Callable[[], Awaitable[None]] | None = None,
        on_end: Callable[[QuicPath], None] | None = None,
    ) -> None:
        self._link = link
        self.addr = addr
        """The synthetic address the host knows the path by (``PeerConnection.addr``)."""
        self.remote = remote
        """The peer's address as the path reaches it (the ICE pair's remote address), for
        reports and the acceptor's ObservedAddr; None if the link has none to give."""
        self.label = label
        """What the path is (``"ice"``, ``"relay"``, …), for reports."""
        self._host = host
        self._counters = counters
        self._now = now
        self._flush = flush
        self._on_close = on_close
        self._on_end = on_end
        self.connection = None
        self.close_reason = ""
        self.closed = anyio.Event()
        """Set when the path has ended and its link was released."""
        self._connected = anyio.Event()
        self._wake = anyio.Event()
        self._scope = anyio.CancelScope()
        self._finishing = False
        self._failed = False
        self._received = self._sent = self._core_errors = 0

    def statistics(self) -> PathStatistics:
        return PathStatistics(received=self._received, sent=self._sent,
                              core_errors=self._core_errors, failed=self._failed)  # fmt: skip

    # -- the connection ------------------------------------------------------------------

    def bind(self, pc: PeerConnection) -> None:
        """``pc`` is this path's connection (transport-internal: the service calls it)."""
        self.connection = pc
        pc.path = self
        self._connected.set()

    async def wait_connection(self) -> PeerConnection:
        """The connection on this path, once there is one (an accepting path: once a peer's
        INITIAL opened it; wait for it to be ready with ``wait_ready``).

        Raises:
            ConnectionClosed: the path ended first.
        """
        if self.connection is None and not self.closed.is_set():
            async with anyio.create_task_group() as tg:

                async def ended() -> None:
                    await self.closed.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(ended)
                await self._connected.wait()
                tg.cancel_scope.cancel()
        if self.connection is None:
            raise ConnectionClosed(f"the datagram path ended: {self.close_reason or 'closed'}")
        return self.connection

    def close(self, reason: str = "path closed") -> None:
        """Close the connection on this path (its CONNECTION_CLOSE goes out on the path),
        then end the path and release its link. Idempotent."""
        pc = self.connection
        if pc is not None and not pc.closed:
            pc.close(0, reason)
        self.finish(reason)

    def finish(self, reason: str) -> None:
        """Send what is queued, then end (transport-internal: the connection is gone)."""
        if not self._finishing:
            self._finishing = True
            self.close_reason = self.close_reason or reason
        self._wake.set()

    def wake(self) -> None:
        """Datagrams wait for this path (transport-internal: the host's ``on_path_output``)."""
        self._wake.set()

    # -- the loops -----------------------------------------------------------------------

    async def run(self) -> None:
        """Drive the path until it ends, then release the link (the service spawns it)."""
        try:
            with self._scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._receive_loop)
                    await self._send_loop()
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._end()

    async def _receive_loop(self) -> None:
        link, host, addr = self._link, self._host, self.addr
        while True:
            try:
                data = await link.receive()
            except Exception as exc:
                if not containable(exc):
                    raise
                self._fail(f"path failed: {exc or type(exc).__name__}", exc)
                return
            self._received += 1
            try:
                host.receive_path_datagram(data, addr, self._now())
            except Exception as exc:
                if not containable(exc):
                    raise
                self._core_errors += 1
                logger.warning("quic_path.core_error path=%s error=%r", addr[0], exc,
                               exc_info=True)  # fmt: skip
            self._flush()

    async def _send_loop(self) -> None:
        link, host, addr = self._link, self._host, self.addr
        while True:
            self._wake = wake = anyio.Event()  # before taking: no wake-up can be lost
            batch = host.take_path_datagrams(addr)
            if not batch:
                if self._finishing:
                    return
                await wake.wait()
                continue
            for data in batch:
                try:
                    await link.send(data)
                except Exception as exc:
                    if not containable(exc):
                        raise
                    self._fail(f"path failed on send: {exc or type(exc).__name__}", exc)
                    return
                self._sent += 1

    def _fail(self, reason: str, exc: BaseException) -> None:
        if not self._finishing:
            self._failed = True
            self._counters.paths_failed += 1
            logger.info("quic_path.failed path=%s remote=%s: %r", self.addr[0], self.remote, exc)
        self.finish(reason)
        self._scope.cancel()

    async def _end(self) -> None:
        reason = self.close_reason or "path closed"
        self._host.detach_path(self.addr, reason)
        if self._on_end is not None:
            self._on_end(self)
        try:
            self._flush()  # the connection's end reaches the service
        except Exception as exc:
            if not containable(exc):
                raise
            logger.debug("quic_path.flush_on_end path=%s error=%r", self.addr[0], exc)
        if self._on_close is not None:
            try:
                await self._on_close()
            except Exception as exc:
                if not containable(exc):
                    raise
                logger.info("quic_path.release_failed path=%s error=%r", self.addr[0], exc)
        self.closed.set()
