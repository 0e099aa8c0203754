"""A signalling hub served over WebSocket on TCP (driver of :class:`HubCore`; wsproto).

:class:`HubServer` listens on a TCP address, serves ``/signal`` and ``/ice`` with subprotocol
``a2al.ice.v1`` like a2ald's embedded hub, and does only I/O: every decision is the core's.
Each connection has one reader (which feeds the core) and one writer draining a bounded outbox,
so one slow or silent socket never blocks another: when its outbox is full it is dropped.
Messages are assembled up to ``max_frame_bytes``; a longer one is never held in memory.

Usage::

    async with anyio.create_task_group() as tg:
        server = HubServer(config.signal)
        host, port = await tg.start(server.serve, "0.0.0.0", 4121)
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import socket
from typing import Final

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .._clock import Clock, SystemClock
from ..config import SignalConfig
from .effects import Abort, AcceptUpgrade, Close, HubEffect, RejectUpgrade, Send
from .hub_core import HubCore
from .rooms import SUBPROTOCOL

__all__ = ["HubServer"]

log = logging.getLogger(__name__)

_READ: Final = 16384
_OUTBOX: Final = 256
"""Messages queued for one socket; a socket that lets more pile up is dropped."""
_TIMER_GRAIN_S: Final = 1.0
"""The timer loop looks at the core's deadlines at least this often."""
_ACCEPT_BACKOFF_S: Final = 0.1
"""Pause after an accept that failed for want of descriptors or memory."""
_OUT_OF_RESOURCES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclasses.dataclass(slots=True)
class _Conn:
    ws: WSConnection
    outbox: MemoryObjectSendStream[bytes | None]  # None: flush, then close
    scope: anyio.CancelScope
    offered: bool = False  # the client offered our subprotocol
    done: bool = False  # no more writes


class HubServer:
    """See the module docstring. ``core`` is public for its counters (``core.stats``)."""

    def __init__(self, config: SignalConfig, *, clock: Clock | None = None) -> None:
        self.core = HubCore(config)
        self.accept_errors = 0
        """Accepts that failed for want of descriptors or memory (the hub carried on)."""
        self._clock = clock or SystemClock()
        self._conns: dict[int, _Conn] = {}
        self._wake = anyio.Event()

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: anyio.abc.TaskStatus[tuple[str, int]] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0: any free port) until cancelled; reports the bound
        ``(host, port)`` through ``task_status``."""
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listener, anyio.create_task_group() as tg:
            sockname = listener.extra(SocketAttribute.local_address)
            assert isinstance(sockname, tuple)  # TCP
            tg.start_soon(self._timer)
            for one in listener.listeners:  # one per address ``host`` resolved to
                tg.start_soon(self._accept, one.extra(SocketAttribute.raw_socket), tg)
            task_status.started((str(sockname[0]), int(sockname[1])))

    async def _accept(self, raw: socket.socket, tg: anyio.abc.TaskGroup) -> None:
        """Accept connections on the listening socket ``raw`` until cancelled; each goes to a
        :meth:`_connection` task of ``tg``.

        Not anyio's ``SocketListener.accept``: cancelled while it waits (the hub stopping as a
        client connects), it can leave an accepted socket to the garbage collector. On
        CPython 3.11's asyncio the accept callback that the same loop iteration already
        queued still runs ``sock.accept()`` and cannot hand the socket to the cancelled
        future (InvalidStateError; tests/signal/test_hub_cancel_leak.py forces that order).
        Here the only checkpoint that cancellation can land on is the wait for the listening
        socket to be readable, when nothing is accepted yet; ``accept()`` itself is
        synchronous, and from there the socket is owned by this task (closed on every failure
        while wrapped, the wrap shielded) until the stream is handed to ``_connection`` with
        no checkpoint between. A task started in a cancelled task group still runs up to its
        first checkpoint, so ``_connection``'s ``finally`` closes every stream handed over.
        """
        while True:
            await anyio.wait_readable(raw)
            try:
                client, _ = raw.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue  # taken already, or the client gave up while in the backlog
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                # Out of descriptors or memory: what is pending stays in the kernel's backlog
                # (its clients wait or retry) while the hub serves the sockets it has.
                self.accept_errors += 1
                log.warning("signalling hub: accept failed (%s), retrying in %g s", exc,
                            _ACCEPT_BACKOFF_S)  # fmt: skip
                await anyio.sleep(_ACCEPT_BACKOFF_S)
                continue
            try:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with anyio.CancelScope(shield=True):
                    stream = await anyio.abc.SocketStream.from_socket(client)
            except (OSError, ValueError):  # reset before it was wrapped
                client.close()
                continue
            except BaseException:
                client.close()
                raise
            tg.start_soon(self._connection, stream)

    # ---- one connection

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        remote = stream.extra(SocketAttribute.remote_address)
        ip = str(remote[0]) if isinstance(remote, tuple) else str(remote)
        conn = self.core.connect(ip, self._clock.monotonic())
        if conn is None:
            await stream.aclose()
            return
        send, receive = anyio.create_memory_object_stream[bytes | None](_OUTBOX)
        entry = _Conn(WSConnection(ConnectionType.SERVER), send, anyio.CancelScope())
        self._conns[conn] = entry
        self._wake.set()
        try:
            with entry.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._writer, stream, receive, entry.scope)
                    await self._reader(conn, entry, stream)
                    tg.cancel_scope.cancel()  # the peer is gone: nothing left to flush
        finally:
            self._conns.pop(conn, None)
            entry.done = True
            send.close()
            receive.close()
            try:
                self._apply(self.core.closed(conn, self._clock.monotonic()))
            finally:
                with anyio.CancelScope(shield=True):
                    await stream.aclose()

    async def _reader(self, conn: int, entry: _Conn, stream: anyio.abc.SocketStream) -> None:
        cap = self.core.max_frame_bytes
        size = 0
        parts: list[bytes] = []
        discarding = False
        while True:
            try:
                data = await stream.receive(_READ)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    OSError):  # fmt: skip
                return
            try:
                entry.ws.receive_data(data)
                events = list(entry.ws.events())
            except (RemoteProtocolError, LocalProtocolError):
                self.core.protocol_error(conn)
                return  # garbage before or after the upgrade: drop the connection
            now = self._clock.monotonic()
            for event in events:
                if isinstance(event, Request):
                    entry.offered = SUBPROTOCOL in event.subprotocols
                    self._apply(self.core.request(conn, event.target, now))
                elif isinstance(event, BytesMessage):
                    if discarding:
                        continue
                    size += len(event.data)
                    if size > cap:
                        discarding = True
                        self._apply(self.core.bad_message(conn, now, oversized=True))
                        continue
                    parts.append(bytes(event.data))
                    if event.message_finished:
                        payload = b"".join(parts)
                        parts, size = [], 0
                        self._apply(self.core.message(conn, payload, now))
                elif isinstance(event, TextMessage):
                    if event.message_finished:
                        self._apply(self.core.bad_message(conn, now, oversized=False))
                elif isinstance(event, Ping):
                    self.core.activity(conn, now)
                    self._push(conn, entry, event.response())
                elif isinstance(event, Pong):
                    self.core.activity(conn, now)
                elif isinstance(event, CloseConnection):
                    if entry.ws.state is ConnectionState.OPEN:
                        # wsproto reports a frame breaking the protocol (unmasked, a bad
                        # opcode, invalid UTF-8...) as a close it made up, its state still
                        # OPEN; a close the peer sent has moved it to REMOTE_CLOSING.
                        self.core.protocol_error(conn)
                    self._push(conn, entry, event.response())
                    self._finish(entry)

    @staticmethod
    async def _writer(
        stream: anyio.abc.SocketStream,
        outbox: MemoryObjectReceiveStream[bytes | None],
        scope: anyio.CancelScope,
    ) -> None:
        async with outbox:
            async for data in outbox:
                if data is None:
                    break
                try:
                    await stream.send(data)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    break
        scope.cancel()

    # ---- effects

    def _apply(self, effects: list[HubEffect]) -> None:
        for effect in effects:
            entry = self._conns.get(effect.conn)
            if entry is None or entry.done:
                continue
            if isinstance(effect, Send):
                self._push(effect.conn, entry, BytesMessage(data=effect.payload))
            elif isinstance(effect, AcceptUpgrade):
                sub = SUBPROTOCOL if entry.offered else None
                self._push(effect.conn, entry, AcceptConnection(subprotocol=sub))
            elif isinstance(effect, RejectUpgrade):
                self._push(effect.conn, entry, RejectConnection(status_code=effect.status))
                self._finish(entry)
            elif isinstance(effect, Close):
                self._push(effect.conn, entry, CloseConnection(effect.code, effect.reason))
                self._finish(entry)
            elif isinstance(effect, Abort):
                entry.done = True
                entry.scope.cancel()

    def _push(self, conn: int, entry: _Conn, event: object) -> None:
        if entry.done:
            return
        try:
            data = entry.ws.send(event)  # type: ignore[arg-type]
            entry.outbox.send_nowait(data)
        except LocalProtocolError:
            pass  # e.g. a message after the peer's close: nothing to send
        except anyio.WouldBlock:
            log.debug("signalling hub: dropping socket %d, its outbox is full", conn)
            entry.done = True
            entry.scope.cancel()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # its writer is gone (a failed send, or the hub stopping): it is closing already
            entry.done = True
            entry.scope.cancel()

    @staticmethod
    def _finish(entry: _Conn) -> None:
        """Flush what is queued, then close the connection."""
        if not entry.done:
            entry.done = True
            try:
                entry.outbox.send_nowait(None)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                entry.scope.cancel()

    # ---- timers

    async def _timer(self) -> None:
        """Run the core's timers. Every timer of the hub is seconds long, so instead of being
        woken by each message (``next_deadline`` scans every socket) the loop looks again at
        least every ``_TIMER_GRAIN_S``; only a new connection wakes it."""
        while True:
            deadline = self.core.next_deadline()
            delay = math.inf if deadline is None else deadline - self._clock.monotonic()
            if delay > 0:
                self._wake = anyio.Event()
                with anyio.move_on_after(min(delay, _TIMER_GRAIN_S)):
                    await self._wake.wait()
                continue
            self._apply(self.core.tick(self._clock.monotonic()))
