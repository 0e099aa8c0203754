"""The nftables rule sets that make a router behave as each NAT kind (text only, no I/O).

Every router masquerades its LAN behind ``wan0`` and, like a home router (OpenWrt: WAN input
REJECT), drops *new* inbound packets addressed to itself in the input hook.  That drop matters:
without it an inbound packet that arrives before the host's own first packet to that peer
leaves a confirmed conntrack entry, the host's packet then clashes with it and masquerade picks
a random port (a port-restricted NAT turning symmetric exactly during hole punching).

=============  ==========================================================================
kind           behaviour
=============  ==========================================================================
cone           endpoint-independent mapping and filtering ("full cone"): masquerade keeps
               the port, and every inbound UDP packet to the WAN address is DNATed to the
               host (faithful for one host per NAT)
prc            endpoint-independent mapping, address-and-port-dependent filtering
               ("port-restricted cone"): masquerade keeps the port; conntrack lets in only
               replies from the exact remote ip:port
sym            endpoint-dependent mapping ("symmetric"): ``masquerade fully-random``, a new
               random external port for every 5-tuple
upnp-igdv1/v2  as prc, plus the empty chains miniupnpd 2.3 fills with its mappings (it does
               not create them itself)
=============  ==========================================================================
"""

from __future__ import annotations

from typing import Final

__all__ = ["FIREWALL_RULES", "nat_rules"]

FIREWALL_RULES: Final = """\
table inet fw {
  chain input { type filter hook input priority filter; policy accept;
    iifname "wan0" ct state new counter drop
  }
}
"""

_MASQUERADE: Final = {
    "cone": "masquerade",
    "prc": "masquerade",
    "sym": "masquerade fully-random",
}


def nat_rules(kind: str, *, wan: str, host: str) -> str:
    """The ``nft -f`` text for a router of ``kind`` (WAN address ``wan``, LAN host ``host``)."""
    if kind.startswith("upnp-"):
        nat = """\
table inet filter {
  chain forward { type filter hook forward priority 0; policy accept;
    jump miniupnpd
  }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority dstnat; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting { type nat hook postrouting priority srcnat; policy accept;
    jump postrouting_miniupnpd
    oifname "wan0" counter masquerade
  }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
}
"""
        return nat + FIREWALL_RULES
    try:
        masquerade = _MASQUERADE[kind]
    except KeyError:
        raise ValueError(f"unknown NAT kind {kind!r}") from None
    dnat = ""
    if kind == "cone":
        dnat = f"""\
  chain prerouting {{ type nat hook prerouting priority dstnat; policy accept;
    iifname "wan0" ip daddr {wan} meta l4proto udp counter dnat to {host}
  }}
"""
    nat = f"""\
table ip nat {{
{dnat}  chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" counter {masquerade}
  }}
}}
"""
    return nat + FIREWALL_RULES
