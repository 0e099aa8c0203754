"""One room, two techniques: the hole punch and ICE read the same room (testbed README D4).

a2ald interleaves its ICE frames (``cred``, ``cand``, ``eoc``) with the punch frames
(``punch-init``, ``punch-ack``, ``punch-go``) on one room socket. :class:`RoomDemux` (pure)
decides where each frame goes and bounds what ICE is given: one ``cred`` pair, at most
``max_candidates`` ``cand`` frames of at most ``max_candidate_chars`` characters, one
``eoc``, nothing after it; what it refuses is counted in :class:`RoomMuxStats`, never
raised. :class:`RoomMux` (driver) reads the room once and hands punch frames to a
:class:`PunchSink` (a :class:`~a2al_mcp.signal.punch_service.PunchSession`) and ICE frames
to :attr:`RoomMux.ice_frames`, a bounded stream whose reader feeds its ICE agent. Without an
ICE reader (``ice=False``) every frame but the punch's goes to the punch sink too, which
counts it as foreign (as a room read by the punch alone always did).
"""

from __future__ import annotations

import dataclasses
from typing import Final, Literal, Protocol

import anyio

from ..errors import ConnectionClosed, DecodeError
from .frames import Frame
from .room_socket import RoomSocket

__all__ = [
    "ICE_TYPES",
    "PUNCH_TYPES",
    "PunchSink",
    "RoomDemux",
    "RoomMux",
    "RoomMuxStats",
    "Route",
]

PUNCH_TYPES: Final = frozenset({"punch-init", "punch-ack", "punch-go"})
ICE_TYPES: Final = frozenset({"cred", "cand", "eoc"})

Route = Literal["punch", "ice", "drop"]


@dataclasses.dataclass(slots=True)
class RoomMuxStats:
    """What one room carried, and what was refused (counted, never fatal)."""

    punch: int = 0
    """Punch frames handed on."""
    ice: int = 0
    """ICE frames handed on."""
    foreign: int = 0
    """Frames of neither technique (``dht``, ``reg`` … in a room)."""
    malformed: int = 0
    """Messages that did not decode, and ICE frames without their fields (``cred`` without
    ``u``/``p``, ``cand`` without ``c``)."""
    refused: int = 0
    """ICE frames past the bounds: a candidate too long, too many, after ``eoc``, a second
    ``eoc``, a second different ``cred``, or the ICE reader not keeping up."""


class RoomDemux:
    """Where each frame of a room goes (pure; see the module docstring)."""

    def __init__(self, *, max_candidates: int = 64, max_candidate_chars: int = 256) -> None:
        self.max_candidates = max_candidates
        self.max_candidate_chars = max_candidate_chars
        self.stats = RoomMuxStats()
        self._cred: tuple[str, str] | None = None
        self._candidates = 0
        self._ended = False

    def route(self, frame: Frame) -> Route:
        """``punch``, ``ice`` (hand it on) or ``drop`` (counted)."""
        t = frame.t
        if t in PUNCH_TYPES:
            self.stats.punch += 1
            return "punch"
        if t not in ICE_TYPES:
            self.stats.foreign += 1
            return "drop"
        if t == "cred":
            if not frame.u or not frame.p:
                self.stats.malformed += 1
                return "drop"
            if self._cred is not None:
                if self._cred != (frame.u, frame.p):
                    self.stats.refused += 1
                return "drop"  # a repeat changes nothing
            self._cred = (frame.u, frame.p)
        elif t == "cand":
            if not frame.c:
                self.stats.malformed += 1
                return "drop"
            if (
                self._ended
                or len(frame.c) > self.max_candidate_chars
                or self._candidates >= self.max_candidates
            ):
                self.stats.refused += 1
                return "drop"
            self._candidates += 1
        else:  # eoc
            if self._ended:
                self.stats.refused += 1
                return "drop"
            self._ended = True
        self.stats.ice += 1
        return "ice"

    def malformed(self) -> None:
        """A room message that did not decode."""
        self.stats.malformed += 1


class PunchSink(Protocol):
    """What the mux feeds the punch (:class:`~a2al_mcp.signal.punch_service.PunchSession`)."""

    def received(self, frame: Frame) -> None: ...

    def malformed(self) -> None: ...


class RoomMux:
    """Reads ``room`` once (:meth:`run`), hands frames to ``punch`` and :attr:`ice_frames`.

    Args:
        room: the paired room.
        punch: the punch's sink (None: punch frames are dropped, counted as punch).
        ice: whether an ICE agent reads :attr:`ice_frames` (else ICE frames go to
            ``punch``, which counts them as foreign).
        max_candidates, max_candidate_chars: the bounds of :class:`RoomDemux`.
    """

    def __init__(
        self,
        room: RoomSocket,
        *,
        punch: PunchSink | None,
        ice: bool,
        max_candidates: int = 64,
        max_candidate_chars: int = 256,
    ) -> None:
        self.room = room
        self.punch = punch
        self.demux = RoomDemux(max_candidates=max_candidates,
                               max_candidate_chars=max_candidate_chars)  # fmt: skip
        self._ice = ice
        # every ICE frame the bounds let through fits: cred, the candidates, eoc
        self._ice_send, self.ice_frames = anyio.create_memory_object_stream[Frame](
            max_candidates + 2
        )
        """The ICE frames in order (``cred``, ``cand``, ``eoc``); ends when the room closes.
        Its reader closes it (``with mux.ice_frames:``)."""
        self.closed = anyio.Event()
        """Set when the room closed (the partner left, or the hub closed it)."""

    @property
    def stats(self) -> RoomMuxStats:
        return self.demux.stats

    async def run(self) -> None:
        """Read until the room closes (then return; :attr:`ice_frames` ends).

        Raises:
            NotFound: the hub answered ``noagent`` (the target is not registered there).
        """
        try:
            while True:
                try:
                    frame = await self.room.receive()
                except DecodeError:
                    self.demux.malformed()
                    if self.punch is not None:
                        self.punch.malformed()
                    continue
                except ConnectionClosed:
                    return  # NotFound (noagent) propagates
                self._dispatch(frame)
        finally:
            self.closed.set()
            self._ice_send.close()
            if not self._ice:
                self.ice_frames.close()

    def _dispatch(self, frame: Frame) -> None:
        if not self._ice and frame.t not in PUNCH_TYPES:
            if self.punch is not None:
                self.punch.received(frame)  # counted there as foreign, as before
            return
        route = self.demux.route(frame)
        if route == "punch":
            if self.punch is not None:
                self.punch.received(frame)
        elif route == "ice":
            try:
                self._ice_send.send_nowait(frame)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.demux.stats.ice -= 1
                self.demux.stats.refused += 1
