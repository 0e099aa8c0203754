"""The testbed's daemons as text: coturn's and miniupnpd's configs, miniupnpd's lease file.

coturn listens on two public addresses (:data:`~.nat_topology.TURN_ADDR` and
:data:`~.nat_topology.TURN_ALT_ADDR`), ports 3478 and 3479 on each, so that it answers RFC 5780
behaviour discovery: Binding responses carry OTHER-ADDRESS (the alternate address and port) and
a CHANGE-REQUEST is answered from the alternate address and/or port.  It runs STUN/TURN over UDP
and TCP only (no TLS/DTLS, no CLI), with long-term credentials :data:`TURN_USER` /
:data:`TURN_PASSWORD`.

miniupnpd 2.3 serves UPnP IGD (v1 description or v2) on the router's LAN side, port
:data:`UPNP_HTTP_PORT`, and NAT-PMP/PCP (UDP 5351); it fills the nft chains of
:mod:`.nat_rules`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .nat_topology import TURN_ADDR, TURN_ALT_ADDR, TURN_ALT_PORT, TURN_PORT

__all__ = [
    "TURN_PASSWORD",
    "TURN_REALM",
    "TURN_USER",
    "UPNP_HTTP_PORT",
    "UpnpMapping",
    "coturn_config",
    "miniupnpd_config",
    "parse_upnp_leases",
]

TURN_USER: Final = "a2al"
TURN_PASSWORD: Final = "testbed"
TURN_REALM: Final = "testbed.invalid"
UPNP_HTTP_PORT: Final = 5000
_UUID_PREFIX: Final = "3f1c7e2a-6b5d-4c1e-9a2b-"
_LEASE_FIELDS: Final = 6


def coturn_config(state: Path) -> str:
    """``turnserver.conf`` for the ``turn`` host (state files under ``state``)."""
    return "\n".join(
        [
            f"listening-ip={TURN_ADDR}",
            f"listening-ip={TURN_ALT_ADDR}",
            f"listening-port={TURN_PORT}",
            f"alt-listening-port={TURN_ALT_PORT}",
            f"relay-ip={TURN_ADDR}",
            "min-port=49152",
            "max-port=49999",
            "lt-cred-mech",
            f"user={TURN_USER}:{TURN_PASSWORD}",
            f"realm={TURN_REALM}",
            "fingerprint",
            "no-tls",
            "no-dtls",
            "no-cli",
            "no-software-attribute",
            "simple-log",
            f"userdb={state / 'turndb'}",
            f"log-file={state / 'coturn.log'}",
            f"pidfile={state / 'coturn.pid'}",
            "",
        ]
    )


def miniupnpd_config(*, lan_net: str, igdv1: bool, index: int, state: Path) -> str:
    """``miniupnpd.conf`` for a UPnP router whose LAN is ``lan_net`` (state under ``state``).

    ``igdv1``: ``force_igd_desc_v1`` (the description then lists the v1 services only;
    otherwise only ``WANIPConnection:2``/``WANIPv6FirewallControl:1``).
    """
    return "\n".join(
        [
            "ext_ifname=wan0",
            "listening_ip=lan0",
            f"port={UPNP_HTTP_PORT}",
            "enable_natpmp=yes",  # NAT-PMP and PCP (UDP 5351)
            "enable_upnp=yes",
            "secure_mode=yes",
            "system_uptime=yes",
            "notify_interval=30",
            f"uuid={_UUID_PREFIX}{index:012x}",
            f"force_igd_desc_v1={'yes' if igdv1 else 'no'}",
            "upnp_table_name=filter",
            "upnp_nat_table_name=filter",
            "upnp_forward_chain=miniupnpd",
            "upnp_nat_chain=prerouting_miniupnpd",
            "upnp_nat_postrouting_chain=postrouting_miniupnpd",
            f"lease_file={state / 'leases'}",
            f"allow 1024-65535 {lan_net} 1024-65535",
            "deny 0-65535 0.0.0.0/0 0-65535",
            "",
        ]
    )


@dataclass(frozen=True)
class UpnpMapping:
    """One port mapping miniupnpd holds (from its lease file)."""

    protocol: str
    external_port: int
    internal_addr: str
    internal_port: int
    expires: int
    """Unix time the lease ends (0: permanent)."""
    description: str


def parse_upnp_leases(text: str) -> list[UpnpMapping]:
    """Parse miniupnpd's lease file (``PROTO:eport:iaddr:iport:expires:description`` lines)."""
    out = []
    for line in text.splitlines():
        parts = line.split(":", _LEASE_FIELDS - 1)
        if len(parts) != _LEASE_FIELDS:
            continue
        proto, eport, iaddr, iport, expires, desc = parts
        try:
            out.append(UpnpMapping(proto, int(eport), iaddr, int(iport), int(expires), desc))
        except ValueError:
            continue
    return out
