"""A hole-punch attempt run over a room (driver of :class:`~.punch_core.PunchAttempt`).

The node provides two narrow things, both on its **main** UDP socket (the one its DHT, QUIC
and STUN share, whose external address the ``addrs`` name): :class:`ProbeSender` sends one
probe datagram, :class:`PunchQuic` dials QUIC and routes accepted connections of the
partner's identity to the attempt. :class:`PunchSession` carries the core's effects out and
feeds it the partner's punch frames (:meth:`PunchSession.received`), the node's news of a path
(:meth:`PunchSession.path_up`) and time. :func:`punch_over_room` runs a session on a room
that nothing else reads (through a :class:`~a2al_mcp.signal.room_mux.RoomMux` without ICE);
when ICE shares the room (a2ald interleaves the two, testbed D4), the node runs the session
itself beside a ``RoomMux`` that hands it the ``punch-*`` frames.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import anyio.abc

from .._clock import Clock
from .._types import Addr
from ..errors import ConnectionClosed, NotFound, Unreachable
from .frames import Frame
from .punch_core import (
    Cancel,
    Dial,
    ExpectAccept,
    Fail,
    Finish,
    FrameIn,
    Malformed,
    PathUp,
    PunchAttempt,
    PunchEffect,
    PunchEvent,
    SendFrame,
    SendProbe,
    Start,
    Tick,
)
from .room_mux import RoomMux
from .room_socket import RoomSocket

__all__ = ["ProbeSender", "PunchQuic", "PunchSession", "punch_over_room"]

log = logging.getLogger(__name__)

_EVENTS = 256


class ProbeSender(Protocol):
    """Sends from the node's main UDP socket."""

    def send_probe(self, addr: Addr) -> None:
        """Send one probe datagram to ``addr`` (its content is the node's: something every
        receiver's demultiplexer drops, e.g. one zero byte). Never raises for a send error."""
        ...


class PunchQuic(Protocol):
    """QUIC on the node's main UDP socket, towards the partner's identity."""

    async def dial(self, addr: Addr, timeout_s: float) -> bool:
        """Dial the partner at ``addr`` (TLS expecting the partner's AID, as any dial);
        True once the handshake completed (the node keeps the connection), False when it
        did not within ``timeout_s``. Cancelled when the attempt ends."""
        ...

    def expect_accept(self, until: float) -> None:
        """Until the monotonic time ``until``, a connection accepted from the partner's
        identity (from any address) is this attempt's: the node calls
        :meth:`PunchSession.path_up` with its remote address."""
        ...


class PunchSession:
    """See the module docstring.

    Args:
        attempt: the core (a fresh one).
        send_frame: writes a frame into the room.
        sender: the main socket's probe sender.
        quic: the main socket's QUIC, or None to punch with probes only.
        clock: monotonic time for the core, wall time for ``ts``.
    """

    def __init__(
        self,
        attempt: PunchAttempt,
        *,
        send_frame: Callable[[Frame], Awaitable[None]],
        sender: ProbeSender,
        quic: PunchQuic | None,
        clock: Clock,
    ) -> None:
        self.attempt = attempt
        self._send_frame = send_frame
        self._sender = sender
        self._quic = quic
        self._clock = clock
        self._events_send, self._events_receive = anyio.create_memory_object_stream[PunchEvent](
            _EVENTS
        )

    # ---- fed by the room reader and the node

    def received(self, frame: Frame) -> None:
        """A frame from the partner (non-punch frames are counted and ignored)."""
        self._put(FrameIn(frame, self._clock.monotonic()))

    def malformed(self) -> None:
        """A room message that did not decode."""
        self._put(Malformed(self._clock.monotonic()))

    def path_up(self, addr: Addr) -> None:
        """The node has a path to the partner through ``addr``."""
        self._put(PathUp(addr, self._clock.monotonic()))

    def _put(self, event: PunchEvent) -> None:
        try:
            self._events_send.send_nowait(event)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            log.debug("punch: %s dropped (attempt over or flooded)", type(event).__name__)

    # ---- the loop

    async def run(self) -> Finish:
        """Run the attempt to its end.

        Raises:
            Unreachable: the attempt failed (the reason says why: handshake timed out, no
                ``punch-go``, no path after the rounds, no external address).
        """
        try:
            async with anyio.create_task_group() as tg:
                now = self._clock.monotonic()
                result = await self._apply(
                    tg, self.attempt.advance(Start(now, int(self._clock.wall() * 1000)))
                )
                while result is None:
                    deadline = self.attempt.next_deadline()
                    delay = math.inf if deadline is None else deadline - self._clock.monotonic()
                    event: PunchEvent | None = None
                    if delay > 0:
                        with anyio.move_on_after(delay):
                            event = await self._events_receive.receive()
                    if event is None:
                        event = Tick(self._clock.monotonic())
                    result = await self._apply(tg, self.attempt.advance(event))
                tg.cancel_scope.cancel()  # dials still running
        except BaseException:
            if not self.attempt.done:
                self.attempt.advance(Cancel(self._clock.monotonic()))
            raise
        finally:
            self._events_send.close()
            self._events_receive.close()
        if isinstance(result, Fail):
            raise Unreachable(f"hole punch failed: {result.reason}", operation="punch")
        assert result is not None  # the loop ends with a result, or raises
        return result

    async def _apply(
        self, tg: anyio.abc.TaskGroup, effects: list[PunchEffect]
    ) -> Finish | Fail | None:
        result: Finish | Fail | None = None
        for effect in effects:
            if isinstance(effect, SendFrame):
                try:
                    await self._send_frame(effect.frame)
                except ConnectionClosed as exc:  # the room is gone: the timers end the attempt
                    log.debug("punch: room closed while sending %s: %s", effect.frame.t, exc)
            elif isinstance(effect, SendProbe):
                self._sender.send_probe(effect.addr)
            elif isinstance(effect, Dial):
                if self._quic is not None:
                    tg.start_soon(self._dial, self._quic, effect.addr, effect.timeout_s)
            elif isinstance(effect, ExpectAccept):
                if self._quic is not None:
                    self._quic.expect_accept(effect.until)
            elif isinstance(effect, Finish | Fail):
                result = effect
        return result

    async def _dial(self, quic: PunchQuic, addr: Addr, timeout_s: float) -> None:
        if await quic.dial(addr, timeout_s):
            self.path_up(addr)


async def punch_over_room(
    room: RoomSocket,
    attempt: PunchAttempt,
    *,
    sender: ProbeSender,
    quic: PunchQuic | None,
    clock: Clock,
    on_session: Callable[[PunchSession], None] | None = None,
) -> Finish:
    """Run ``attempt`` on ``room``, reading it for the punch frames (others are counted as
    foreign and dropped). ``on_session`` gets the session first (to wire :meth:`path_up`).

    Raises:
        Unreachable: the attempt failed.
        NotFound: the hub answered ``noagent`` (the target is not registered there).
    """
    session = PunchSession(attempt, send_frame=room.send, sender=sender, quic=quic, clock=clock)
    if on_session is not None:
        on_session(session)
    mux = RoomMux(room, punch=session, ice=False)
    gone: list[NotFound] = []

    async def read(scope: anyio.CancelScope) -> None:
        try:
            await mux.run()  # returns when the partner left: the core's timers end the attempt
        except NotFound as exc:
            gone.append(exc)
            scope.cancel()

    result: Finish | None = None
    failed: list[Unreachable] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(read, tg.cancel_scope)
        try:
            result = await session.run()
        except Unreachable as exc:  # raised as itself, not inside an exception group
            failed.append(exc)
        tg.cancel_scope.cancel()
    if failed:
        raise failed[0]
    if result is None:
        raise gone[0] if gone else Unreachable("hole punch cancelled", operation="punch")
    return result
