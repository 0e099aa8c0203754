"""The signalling hub, both roles (a2al-wire §6.4, wire-compatible with a2ald 0.3.5).

Sans-I/O cores: :mod:`.frames` (the CBOR frames), :mod:`.rooms` (room ids, request targets),
:class:`HubCore` (a hub: registrations, rooms, relay, limits) and :class:`SignalClient` (our
registrations with hubs); their effects are in :mod:`.effects`. The drivers run them over
WebSocket on TCP (wsproto): :mod:`.ws_server` serves a hub, :mod:`.ws_client` opens
``/signal`` and ``/ice`` sockets. ``signal`` imports none of ``dht``, ``transport``, ``nat``;
the node does not use it yet (docs/signal.md).
"""

from .client_core import ClientStats, SignalClient
from .frames import Frame, FrameTooLarge, UnknownFrameType
from .hub_core import HubCore, HubStats
from .rooms import SUBPROTOCOL, ice_target, room_id

__all__ = [
    "SUBPROTOCOL",
    "ClientStats",
    "Frame",
    "FrameTooLarge",
    "HubCore",
    "HubStats",
    "SignalClient",
    "UnknownFrameType",
    "ice_target",
    "room_id",
]
