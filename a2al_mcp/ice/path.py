"""A datagram core over one ICE pair (driver): what :class:`UdpEndpoint` is, for one peer.

a2al-wire §6.3: once ICE has selected a pair, QUIC runs over it (the caller is the QUIC
client).  :class:`IceDatagramPath` drives any :class:`~a2al_mcp._types.DatagramCore` — the
QUIC host of a :class:`~a2al_mcp.transport.peer.QuicService` — over a :class:`DatagramLink`
(a connected :class:`~a2al_mcp.ice.session.IceSession`: ``send``/``receive`` over aioice's
``sendto``/``recvfrom``), exactly as :class:`~a2al_mcp.transport.endpoint.UdpEndpoint` drives
it over a socket::

    path: list[IceDatagramPath] = []
    service = QuicService(..., flush=lambda: path[0].flush(), ...)
    async with IceDatagramPath(ice, peer=pair.remote, clock=clock, core=service.host,
                               on_events=lambda _core, e: service.on_event(e)) as p:
        path.append(p)
        pc = service.dial(cert, expected_aid, pair.remote)   # caller = QUIC client

Every datagram the core hands in is taken as meant for the one peer: the core's address is
the pair's remote address (``peer``), given to the core for every received datagram, and a
datagram the core addresses elsewhere is dropped and counted.  Sends go through a bounded
queue to a sender task (aioice's send is a coroutine: through TURN it may wait for a channel
binding); when the queue is full the datagram is dropped and counted, as a full socket
buffer drops it.

Three loops (receive, timer, send) run in a task group the path owns; ``__aexit__`` stops
them.  Remote garbage and core bugs never stop the loops: what the core raises for one
datagram or timer is caught (as :func:`~a2al_mcp._containment.containable` allows), counted
and logged.  The link closing (consent lost, the session closed) ends the loops and sets
:attr:`IceDatagramPath.closed`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from types import TracebackType
from typing import TYPE_CHECKING, Final, Protocol, Self

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._containment import containable
from .._types import Addr, DatagramCore
from ..errors import ConnectionClosed, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._clock import Clock

__all__ = ["DatagramLink", "IceDatagramPath", "PathStatistics"]

logger = logging.getLogger(__name__)

SEND_QUEUE: Final = 256
"""Datagrams waiting for the sender task at most (a QUIC flight is far smaller)."""


class DatagramLink(Protocol):
    """One connected datagram path to one peer (an :class:`~.session.IceSession`)."""

    async def send(self, data: bytes) -> None: ...

    async def receive(self) -> bytes: ...


@dataclasses.dataclass(frozen=True, slots=True)
class PathStatistics:
    received: int
    sent: int
    dropped_full: int
    """Datagrams dropped because the send queue was full."""
    dropped_misaddressed: int
    """Datagrams the core addressed to someone else than the peer."""
    core_errors: int


class IceDatagramPath:
    """Drives ``core`` over ``link`` (an async context manager; loops in its task group)."""

    def __init__(
        self,
        link: DatagramLink,
        *,
        peer: Addr,
        clock: Clock,
        core: DatagramCore[object],
        on_events: Callable[[str, object], None] | None = None,
        name: str = "quic",
        send_queue: int = SEND_QUEUE,
    ) -> None:
        self._link = link
        self.peer: Addr = (peer[0], peer[1])
        self._clock = clock
        self._core = core
        self._on_events = on_events
        self._name = name
        self._send_queue = send_queue
        self._tg: anyio.abc.TaskGroup | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._out: MemoryObjectSendStream[bytes] | None = None
        self._wake: anyio.Event | None = None
        self._flushing = False
        self._flush_again = False
        self.closed: anyio.Event | None = None
        """Set when the link closed under the path (not when the path was left)."""
        self._received = self._sent = self._dropped_full = self._misaddressed = 0
        self._core_errors = 0

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise UsageError("an ICE datagram path is entered once")
        self._wake = anyio.Event()
        self.closed = anyio.Event()
        async with contextlib.AsyncExitStack() as stack:
            send, receive = anyio.create_memory_object_stream[bytes](self._send_queue)
            stack.enter_context(send)
            stack.enter_context(receive)
            self._out = send
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)  # runs first on exit
            tg.start_soon(self._receive_loop)
            tg.start_soon(self._timer_loop)
            tg.start_soon(self._send_loop, receive)
            self._tg = tg
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        if stack is None:
            return None
        return await stack.__aexit__(exc_type, exc, tb)

    def statistics(self) -> PathStatistics:
        return PathStatistics(
            received=self._received,
            sent=self._sent,
            dropped_full=self._dropped_full,
            dropped_misaddressed=self._misaddressed,
            core_errors=self._core_errors,
        )

    # ------------------------------------------------------------------ flush

    def flush(self) -> None:
        """Deliver the core's events, queue its datagrams, re-arm the timer (synchronous,
        as :meth:`UdpEndpoint.flush`; call after every command issued on the core)."""
        if self._flushing:  # an on_events callback issued a command: flush once more
            self._flush_again = True
            return
        self._flushing = True
        try:
            while True:
                self._flush_again = False
                self._flush_once(self._clock.monotonic())
                if not self._flush_again:
                    break
        finally:
            self._flushing = False
        if self._wake is not None:
            self._wake.set()

    def _flush_once(self, now: float) -> None:
        core = self._core
        while True:
            try:
                event = core.next_event()
            except Exception as exc:
                if not containable(exc):
                    raise
                self._core_failed(exc)
                break
            if event is None:
                break
            if self._on_events is not None:
                try:
                    self._on_events(self._name, event)
                except Exception as exc:
                    if not containable(exc):
                        raise
                    self._core_failed(exc)
        try:
            datagrams = core.datagrams_to_send(now)
        except Exception as exc:
            if not containable(exc):
                raise
            self._core_failed(exc)
            return
        for data, addr in datagrams:
            if (addr[0], addr[1]) != self.peer:
                self._misaddressed += 1
                continue
            if self._out is None:
                self._dropped_full += 1
                continue
            try:
                self._out.send_nowait(data)
            except anyio.WouldBlock:
                self._dropped_full += 1
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._dropped_full += 1

    def _core_failed(self, exc: BaseException) -> None:
        self._core_errors += 1
        logger.warning("ice.path core error: %r", exc, exc_info=exc)

    # ------------------------------------------------------------------ loops

    async def _receive_loop(self) -> None:
        assert self.closed is not None
        try:
            while True:
                data = await self._link.receive()
                self._received += 1
                try:
                    self._core.receive_datagram(data, self.peer, self._clock.monotonic())
                except Exception as exc:
                    if not containable(exc):
                        raise
                    self._core_failed(exc)
                self.flush()
        except ConnectionClosed as exc:
            logger.debug("ice.path link closed: %s", exc)
            self.closed.set()
            if self._tg is not None:
                self._tg.cancel_scope.cancel()

    async def _timer_loop(self) -> None:
        while True:
            assert self._wake is not None
            deadline = self._core.get_timer()
            now = self._clock.monotonic()
            if deadline is None or deadline > now:
                delay = math.inf if deadline is None else deadline - now
                with anyio.move_on_after(delay):
                    await self._wake.wait()
                self._wake = anyio.Event()
                now = self._clock.monotonic()
            if deadline is not None and now >= deadline:
                try:
                    self._core.handle_timer(now)
                except Exception as exc:
                    if not containable(exc):
                        raise
                    self._core_failed(exc)
                self.flush()

    async def _send_loop(self, queue: MemoryObjectReceiveStream[bytes]) -> None:
        assert self.closed is not None
        async for data in queue:
            try:
                await self._link.send(data)
            except ConnectionClosed as exc:
                logger.debug("ice.path link closed on send: %s", exc)
                self.closed.set()
                if self._tg is not None:
                    self._tg.cancel_scope.cancel()
                return
            self._sent += 1
