"""Address helpers of the NAT layer: normalising ``(host, port)`` pairs and the
"plausible WAN" test of a2al-wire §3.6/§3.10. Pure.

The WAN test is an explicit list of ranges, not :attr:`ipaddress.IPv4Address.is_private`:
Python counts the documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
2001:db8::/32) as private, and the NAT testbed uses exactly those as its internet.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Final

from .._types import Addr

__all__ = ["is_plausible_wan", "is_v4", "normalise", "parse_ip"]

_IP = ipaddress.IPv4Address | ipaddress.IPv6Address

_NOT_WAN_V4: Final = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # unspecified / "this network"
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT (RFC 6598)
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
)
_NOT_WAN_V6: Final = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/128",
        "::1/128",
        "::ffff:0:0/96",  # IPv4-mapped: judged as IPv4 by normalise
        "fc00::/7",  # ULA
        "fe80::/10",  # link-local
        "ff00::/8",  # multicast
        "2001::/32",  # Teredo
        "2002::/16",  # 6to4
    )
)


@functools.lru_cache(maxsize=4096)
def parse_ip(host: str) -> _IP | None:
    """The IP literal ``host`` (a zone index is dropped; IPv4-mapped IPv6 becomes IPv4), or
    None when ``host`` is not an IP literal."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def normalise(addr: Addr) -> Addr:
    """``addr`` with its IP in canonical text (IPv4-mapped IPv6 as plain IPv4, as a2ald's
    mux does); a host that is not an IP literal is kept as it is."""
    ip = parse_ip(addr[0])
    return (str(ip), addr[1]) if ip is not None else addr


def is_v4(host: str) -> bool:
    """True for an IPv4 literal (or IPv4-mapped IPv6)."""
    return isinstance(parse_ip(host), ipaddress.IPv4Address)


@functools.lru_cache(maxsize=4096)
def is_plausible_wan(host: str) -> bool:
    """True when ``host`` is an IP that may be reachable from the internet: not unspecified,
    loopback, link-local, RFC 1918, ULA, CGNAT (100.64/10), multicast, reserved, Teredo or
    6to4 (a2al-wire §3.6). Host names are not plausible WAN addresses (they are not
    observed, only configured)."""
    ip = parse_ip(host)
    if ip is None:
        return False
    nets = _NOT_WAN_V4 if isinstance(ip, ipaddress.IPv4Address) else _NOT_WAN_V6
    return not any(ip in net for net in nets)
