"""The NAT layer: where the node stands behind a NAT (sans-I/O core "natsense").

:class:`NatSense` takes votes, STUN answers and NAT probes and concludes a :class:`NatView`
(external addresses, :class:`NatType`); :func:`endpoint_urls` turns a view into the endpoint
record's URLs. The node wires it to the DHT and the shared socket; ``dht``, ``transport`` and
``nat`` do not import each other.
"""

from .addresses import is_plausible_wan
from .behaviour import Behaviour, Filtering, Mapping
from .config import NatSenseConfig
from .effects import NatEffect, SendProbeEcho, SendProbeRequest, SendStun, ViewChanged
from .endpoints import endpoint_urls, quic_url
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
