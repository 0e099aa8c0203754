"""One side of a room on a signalling hub: frames to and from the partner (driver).

What the partner sends arrives byte for byte (the hub relays it verbatim); this decodes it.
The hub's own ``noagent`` (the target is not registered there) ends the room as
:class:`~a2al_mcp.errors.NotFound`.
"""

from __future__ import annotations

from ..errors import NotFound
from . import frames
from .frames import Frame
from .ws_client import WebSocket

__all__ = ["RoomSocket"]


class RoomSocket:
    """A room's ``/ice`` socket (from :func:`~a2al_mcp.signal.client_service.call` or
    :func:`~a2al_mcp.signal.client_service.answer`)."""

    def __init__(self, ws: WebSocket, *, hub: str, target: str = "") -> None:
        self.ws = ws
        self.hub = hub
        self._target = target

    async def send(self, frame: Frame) -> None:
        await self.ws.send(frames.encode(frame))

    async def receive(self) -> Frame:
        """The partner's next frame.

        Raises:
            NotFound: the hub answered ``noagent`` (then closes the socket).
            ConnectionClosed: the partner or the hub closed the room.
            DecodeError: the partner sent something that is not a frame (skip it or give up).
        """
        frame = frames.decode(await self.ws.receive(), max_bytes=self.ws.max_message_bytes)
        if frame.t == "noagent":
            await self.ws.aclose()
            raise NotFound(
                f"{self._target or 'the target'} is not registered with signalling hub {self.hub}",
                aid=self._target or None,
            )
        return frame

    async def aclose(self) -> None:
        await self.ws.aclose()
