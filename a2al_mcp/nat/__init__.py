"""The NAT layer: where the node stands behind a NAT (sans-I/O core "natsense").

:class:`NatSense` takes votes, STUN answers and NAT probes and concludes a :class:`NatView`
(external addresses, :class:`NatType`); :func:`endpoint_urls` turns a view into the endpoint
record's URLs. :class:`PortMapper` keeps a UDP port mapping on the LAN gateway (UPnP IGD v1/v2,
PCP, NAT-PMP) when ``nat.upnp`` allows it. The node wires them to the DHT and the shared
socket; ``dht``, ``transport`` and ``nat`` do not import each other. The names below load
with their module on first use.
"""

import typing as _typing

if _typing.TYPE_CHECKING:  # imported on first use: see __getattr__
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

_LAZY = {
    "is_plausible_wan": "addresses",
    "Behaviour": "behaviour",
    "Filtering": "behaviour",
    "Mapping": "behaviour",
    "NatSenseConfig": "config",
    "NatEffect": "effects",
    "SendProbeEcho": "effects",
    "SendProbeRequest": "effects",
    "SendStun": "effects",
    "ViewChanged": "effects",
    "endpoint_urls": "endpoints",
    "quic_url": "endpoints",
    "PortMapConfig": "portmap",
    "PortMapStats": "portmap",
    "PortMapper": "portmap_service",
    "PortMapperStats": "portmap_service",
    "NatSense": "sense",
    "NatStats": "sense",
    "StunAnswer": "stun",
    "StunClient": "stun",
    "StunStats": "stun",
    "StunTimeout": "stun",
    "NatType": "types",
    "NatView": "types",
}


def __getattr__(name: str) -> object:
    """The names above, imported from their module on first use (PEP 562): a node whose
    ``nat.upnp`` is off never loads the port-mapping clients (PCP, NAT-PMP, UPnP), and
    importing one ``a2al_mcp.nat`` module no longer loads them all."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
