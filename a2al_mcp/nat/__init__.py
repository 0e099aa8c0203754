"""The NAT layer: where the node stands behind a NAT (sans-I/O core "natsense").

:class:`NatSense` takes votes, STUN answers and NAT probes and concludes a :class:`NatView`
(external addresses, :class:`NatType`); :func:`endpoint_urls` turns a view into the endpoint
record's URLs. :class:`PortMapper` keeps a UDP port mapping on the LAN gateway (UPnP IGD v1/v2,
PCP, NAT-PMP) when ``nat.upnp`` allows it. The node wires them to the DHT and the shared
socket; ``dht``, ``transport`` and ``nat`` do not import each other.
"""

from .addresses import is_plausible_wan
from .behaviour import Behaviour, Filtering, Mapping
from .config import NatSenseConfig
from .effects import NatEffect, SendProbeEcho, SendProbeRequest, SendStun, ViewChanged
from .endpoints import endpoint_urls, quic_url
from .portmap import PortMapConfig, PortMapStats
from .portmap_service import PortMapper, PortMapperStats
from .sense import NatSense, NatStats
from .stun import StunAnswer, StunClient, StunStats, StunTimeout
from .types import NatType, NatView

__all__ = [
    "Behaviour",
    "Filtering",
    "Mapping",
    "NatEffect",
    "NatSense",
    "NatSenseConfig",
    "NatStats",
    "NatType",
    "NatView",
    "PortMapConfig",
    "PortMapStats",
    "PortMapper",
    "PortMapperStats",
    "SendProbeEcho",
    "SendProbeRequest",
    "SendStun",
    "StunAnswer",
    "StunClient",
    "StunStats",
    "StunTimeout",
    "ViewChanged",
    "endpoint_urls",
    "is_plausible_wan",
    "quic_url",
]
