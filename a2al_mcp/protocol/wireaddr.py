"""Observed/claimed UDP address encoding: IPv4 ‖ port (6 bytes) or IPv6 ‖ port (18 bytes).

The IP conversions are pure and hot (every NodeInfo in every FIND_* answer), so they are
memoised in small bounded LRU caches.
"""

from __future__ import annotations

import functools
import ipaddress

from .._types import Addr
from ..errors import DecodeError

__all__ = ["decode_addr", "encode_addr", "ip_bytes", "ip_from_bytes", "is_public_ip"]


@functools.lru_cache(maxsize=4096)
def ip_bytes(host: str) -> bytes:
    """4 bytes for IPv4 (also for IPv4-mapped IPv6), 16 for IPv6."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        raise DecodeError(f"not an IP address: {host!r}") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.packed


@functools.lru_cache(maxsize=4096)
def ip_from_bytes(raw: bytes) -> str:
    """The text form of a 4- or 16-byte IP; IPv4-mapped IPv6 becomes plain IPv4."""
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if len(raw) == 16:
        ip6 = ipaddress.IPv6Address(raw)
        return str(ip6.ipv4_mapped) if ip6.ipv4_mapped is not None else str(ip6)
    raise DecodeError(f"IP must be 4 or 16 bytes, got {len(raw)}")


def encode_addr(addr: Addr) -> bytes:
    """The 6- or 18-byte wire form of ``(host, port)``."""
    host, port = addr
    if not 0 <= port <= 0xFFFF:
        raise DecodeError(f"port out of range: {port}")
    return ip_bytes(host) + port.to_bytes(2, "big")


def decode_addr(raw: bytes) -> Addr:
    """Parse the 6- or 18-byte wire form."""
    if len(raw) not in (6, 18):
        raise DecodeError(f"wire address must be 6 or 18 bytes, got {len(raw)}")
    return ip_from_bytes(raw[:-2]), int.from_bytes(raw[-2:], "big")


def is_public_ip(host: str) -> bool:
    """Not unspecified, loopback, multicast, link-local, RFC 1918, ULA or CGNAT 100.64/10."""
    try:
        ip = ipaddress.ip_address(ip_from_bytes(ip_bytes(host)))
    except DecodeError:
        return False
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_link_local:
        return False
    if ip.version == 4:
        if ip in ipaddress.IPv4Network("100.64.0.0/10"):
            return False
        return not ip.is_private
    return ip not in ipaddress.IPv6Network("fc00::/7")
