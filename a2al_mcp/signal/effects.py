"""What the signalling cores ask their drivers to do.

The hub (:class:`~a2al_mcp.signal.hub_core.HubCore`) names sockets by the ``int`` it handed out
in ``connect``; the client (:class:`~a2al_mcp.signal.client_core.SignalClient`) names hubs by
their URL. Payloads are complete WebSocket binary messages (encoded frames or relayed bytes).
"""

from __future__ import annotations

import dataclasses
from typing import TypeAlias

__all__ = [
    "Abort",
    "AcceptUpgrade",
    "Close",
    "Connect",
    "Disconnect",
    "HubEffect",
    "IncomingCall",
    "Ping",
    "Registered",
    "RejectUpgrade",
    "Send",
    "SendFrame",
    "SignalEffect",
]

# ---- hub (server) side


@dataclasses.dataclass(frozen=True, slots=True)
class AcceptUpgrade:
    """Answer the socket's WebSocket upgrade with 101 (subprotocol ``a2al.ice.v1`` if offered)."""

    conn: int


@dataclasses.dataclass(frozen=True, slots=True)
class RejectUpgrade:
    """Answer the upgrade with an HTTP error ``status`` and close the connection."""

    conn: int
    status: int
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Send:
    """Send ``payload`` as one binary message on the socket."""

    conn: int
    payload: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Close:
    """Close the WebSocket with ``code`` (RFC 6455 §7.4), then the connection. The core has
    already forgotten the socket's registrations and room."""

    conn: int
    code: int
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Abort:
    """Drop the connection without a closing handshake (no upgrade in time)."""

    conn: int


HubEffect: TypeAlias = AcceptUpgrade | RejectUpgrade | Send | Close | Abort

# ---- client side


@dataclasses.dataclass(frozen=True, slots=True)
class Connect:
    """Open the ``/signal`` WebSocket to ``hub``."""

    hub: str


@dataclasses.dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the ``/signal`` WebSocket to ``hub`` (1000). The core has already counted it
    closed: the driver does not report ``disconnected`` for it."""

    hub: str


@dataclasses.dataclass(frozen=True, slots=True)
class SendFrame:
    """Send ``payload`` as one binary message to ``hub``."""

    hub: str
    payload: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Ping:
    """Send a WebSocket ping carrying ``payload`` (a2ald: an ASCII counter, ``b"1"``, …)."""

    hub: str
    payload: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Registered:
    """``hub`` acknowledged a ``reg``: our identities are reachable through it."""

    hub: str
    acks: int


@dataclasses.dataclass(frozen=True, slots=True)
class IncomingCall:
    """Someone wants to reach ``target`` (one of ours) from ``caller``: join ``room`` on
    ``hub`` (``/ice?room=``). The first notice of a room is reported, later ones from other
    hubs are not (a caller opens rooms on all its hubs at once, nat-testbed D3)."""

    hub: str
    room: str
    caller: str
    target: str


SignalEffect: TypeAlias = Connect | Disconnect | SendFrame | Ping | Registered | IncomingCall
