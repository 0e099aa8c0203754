"""Our registrations with signalling hubs, run over real sockets (driver of :class:`SignalClient`).

:class:`SignalService` keeps the ``/signal`` sockets :class:`SignalClient` asks for, feeds it
what they receive, and hands its :class:`~a2al_mcp.signal.effects.IncomingCall` notices to
whoever reads :meth:`SignalService.incoming`. Every socket lives in a task of the task group
given to :meth:`SignalService.run`. :func:`call` and :func:`answer` open the ``/ice`` socket
of a room, as the caller (the hub wakes the target, or answers ``noagent``;
a2ald's caller then tries again twice, 3 s apart: that is the session's to do, next) and as
the callee; a :class:`RoomSocket` carries frames to and from the partner.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Final

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._clock import Clock, SystemClock
from ..config import SignalConfig
from ..errors import ConnectionClosed, DecodeError, NetworkError
from . import frames
from .client_core import SignalClient
from .effects import (
    Connect,
    Disconnect,
    IncomingCall,
    Ping,
    Registered,
    SendFrame,
    SignalEffect,
)
from .room_socket import RoomSocket
from .rooms import SIGNAL_PATH, ice_target, room_id
from .ws_client import WebSocket, open_websocket

__all__ = ["SignalService", "answer", "call"]

log = logging.getLogger(__name__)

_OUTBOX: Final = 64


class SignalService:
    """See the module docstring."""

    def __init__(
        self,
        config: SignalConfig,
        *,
        hubs: Iterable[str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.core = SignalClient(config, hubs)
        self._config = config
        self._clock = clock or SystemClock()
        self._outboxes: dict[str, MemoryObjectSendStream[bytes | tuple[str, bytes]]] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._incoming_send, self._incoming_receive = anyio.create_memory_object_stream[
            IncomingCall
        ](64)
        self._acked = anyio.Event()
        self._wake = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None

    @property
    def incoming(self) -> MemoryObjectReceiveStream[IncomingCall]:
        """Incoming calls for our identities (one per room); read it, or calls are dropped
        when 64 are waiting. Closed when :meth:`run` ends."""
        return self._incoming_receive

    def set_identities(self, aids: Iterable[str]) -> None:
        """Make exactly ``aids`` reachable through every hub."""
        self._apply(self.core.set_identities(aids, self._clock.monotonic()))

    async def wait_registered(self) -> None:
        """Return once some hub acknowledged a ``reg``."""
        await self._acked.wait()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep the sockets until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self._apply(self.core.start(self._clock.monotonic()))
            task_status.started()
            try:
                await self._timer()
            finally:
                self._tg = None
                tg.cancel_scope.cancel()
                self._incoming_send.close()
                self._incoming_receive.close()

    # ---- effects

    def _apply(self, effects: list[SignalEffect]) -> None:
        for effect in effects:
            if isinstance(effect, Connect):
                if self._tg is not None:
                    self._tg.start_soon(self._hub, effect.hub)
            elif isinstance(effect, Disconnect):
                scope = self._scopes.pop(effect.hub, None)
                self._outboxes.pop(effect.hub, None)
                if scope is not None:
                    scope.cancel()
            elif isinstance(effect, SendFrame):
                self._queue(effect.hub, effect.payload)
            elif isinstance(effect, Ping):
                self._queue(effect.hub, ("ping", effect.payload))
            elif isinstance(effect, Registered):
                self._acked.set()
            elif isinstance(effect, IncomingCall):
                try:
                    self._incoming_send.send_nowait(effect)
                except anyio.WouldBlock:
                    log.debug("signalling: incoming call for room %s dropped", effect.room)
        self._wake.set()

    def _queue(self, hub: str, item: bytes | tuple[str, bytes]) -> None:
        outbox = self._outboxes.get(hub)
        if outbox is None:
            return
        try:
            outbox.send_nowait(item)
        except anyio.WouldBlock:  # the hub does not read: drop it, reconnect later
            scope = self._scopes.get(hub)
            if scope is not None:
                scope.cancel()

    # ---- one hub

    async def _hub(self, url: str) -> None:
        send, receive = anyio.create_memory_object_stream[bytes | tuple[str, bytes]](_OUTBOX)
        scope = anyio.CancelScope()
        self._scopes[url] = scope
        requested_close = True
        try:
            with scope:
                ws = await open_websocket(
                    url, SIGNAL_PATH, max_message_bytes=self._config.max_frame_bytes
                )
                try:
                    self._outboxes[url] = send
                    self._apply(self.core.connected(url, self._clock.monotonic()))
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._writer, ws, receive, tg.cancel_scope)
                        await self._reader(url, ws)
                        tg.cancel_scope.cancel()
                finally:
                    with anyio.CancelScope(shield=True):
                        await ws.aclose()
            requested_close = self._scopes.get(url) is not scope
        except (NetworkError, DecodeError, frames.FrameTooLarge) as exc:
            log.debug("signalling hub %s: %s", url, exc)
            requested_close = False
        finally:
            send.close()
            receive.close()
            if self._scopes.get(url) is scope:
                del self._scopes[url]
                self._outboxes.pop(url, None)
        if not requested_close:
            self._apply(self.core.disconnected(url, self._clock.monotonic()))

    async def _reader(self, url: str, ws: WebSocket) -> None:
        """Feed the core until the socket ends (raising nothing: the caller reconnects)."""
        try:
            while True:
                payload = await ws.receive()
                self._apply(self.core.received(url, payload, self._clock.monotonic()))
        except (ConnectionClosed, frames.FrameTooLarge) as exc:
            log.debug("signalling hub %s: %s", url, exc)

    @staticmethod
    async def _writer(
        ws: WebSocket,
        outbox: MemoryObjectReceiveStream[bytes | tuple[str, bytes]],
        scope: anyio.CancelScope,
    ) -> None:
        try:
            async for item in outbox:
                if isinstance(item, tuple):
                    await ws.ping(item[1])
                else:
                    await ws.send(item)
        except ConnectionClosed:
            pass
        scope.cancel()

    async def _timer(self) -> None:
        while True:
            deadline = self.core.next_deadline()
            delay = math.inf if deadline is None else deadline - self._clock.monotonic()
            if delay > 0:
                self._wake = anyio.Event()
                with anyio.move_on_after(delay):
                    await self._wake.wait()
                continue
            self._apply(self.core.tick(self._clock.monotonic()))


async def call(
    hub: str,
    caller: str,
    target: str,
    *,
    max_message_bytes: int = frames.DEFAULT_MAX_FRAME_BYTES,
) -> RoomSocket:
    """Open the room of ``caller`` and ``target`` on ``hub`` as the caller; the hub tells the
    target (``incoming``), or answers ``noagent``, which the room's first
    :meth:`RoomSocket.receive` raises as :class:`~a2al_mcp.errors.NotFound`.

    Raises:
        NetworkError: the hub could not be reached or refused the socket.
    """
    path = ice_target(room_id(caller, target), caller=caller, target=target)
    ws = await open_websocket(hub, path, max_message_bytes=max_message_bytes)
    return RoomSocket(ws, target=target, hub=hub)


async def answer(
    hub: str, room: str, *, max_message_bytes: int = frames.DEFAULT_MAX_FRAME_BYTES
) -> RoomSocket:
    """Join ``room`` on ``hub`` as the callee (after an :class:`IncomingCall`)."""
    ws = await open_websocket(hub, ice_target(room), max_message_bytes=max_message_bytes)
    return RoomSocket(ws, hub=hub)
