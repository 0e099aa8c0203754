"""What :class:`~a2al_mcp.nat.sense.NatSense` asks the node to do (drained with
:meth:`~a2al_mcp.nat.sense.NatSense.effects`)."""

from __future__ import annotations

from typing import TypeAlias

from .._dataclass import dataclass
from .._types import Addr
from .types import NatView

__all__ = ["NatEffect", "SendProbeEcho", "SendProbeRequest", "SendStun", "ViewChanged"]


@dataclass(frozen=True, slots=True)
class SendStun:
    """Send ``data`` (a STUN request) to ``addr`` from the shared DHT/QUIC socket."""

    data: bytes
    addr: Addr


@dataclass(frozen=True, slots=True)
class SendProbeRequest:
    """Send a NAT_PROBE_REQ to the DHT peer at ``peer`` (``DhtCore.send_nat_probe``)."""

    peer: Addr
    token: bytes
    claimed: Addr


@dataclass(frozen=True, slots=True)
class SendProbeEcho:
    """Send a NAT_PROBE_ECHO carrying ``token`` to ``addr`` (``DhtCore.send_nat_echo``)."""

    addr: Addr
    token: bytes


@dataclass(frozen=True, slots=True)
class ViewChanged:
    """The view changed in what a record or ``status`` shows: republish at once."""

    view: NatView
    previous: NatView


NatEffect: TypeAlias = SendStun | SendProbeRequest | SendProbeEcho | ViewChanged
