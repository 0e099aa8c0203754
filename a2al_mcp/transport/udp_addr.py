"""The address forms of the endpoint's UDP socket: IP literals only, IPv4 on dual-stack sockets.

A socket bound to ``"::"`` is dual-stack (IPV6_V6ONLY off): it reports IPv4 senders as
IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``) and reaches IPv4 destinations only in that
form. The cores see and use plain IPv4: :func:`normalise` maps what the socket reports,
:class:`SendTargets` maps what the cores ask for. Only IP literals are accepted, never a name
(that would block on DNS).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Final

from .._types import Addr

__all__ = ["SendTargets", "bind_family", "normalise"]

_MAX_HOST_CACHE: Final = 1024
_MAPPED_PREFIX: Final = "::ffff:"


def bind_family(bind: Addr) -> socket.AddressFamily:
    """The socket family for a bind address (AF_INET6 for an IPv6 host).

    Raises:
        ValueError: the host is not an IP literal, or the port is out of range.
    """
    host, port = bind
    try:
        bind_ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        raise ValueError(f"bind host must be an IP literal, got {host!r}") from None
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"bind port out of range: {port}")
    return socket.AF_INET6 if bind_ip.version == 6 else socket.AF_INET


def normalise(raw_addr: Any) -> Addr:
    """``(host, port)`` from a socket address; IPv4-mapped IPv6 becomes plain IPv4."""
    host: str = raw_addr[0]
    if host.startswith(_MAPPED_PREFIX) and "." in host:
        host = host[len(_MAPPED_PREFIX) :]
    return (host, raw_addr[1])


class SendTargets:
    """The ``sendto`` address for a core's destination on a socket of one family, cached
    (the cache is cleared when it holds :data:`_MAX_HOST_CACHE` hosts)."""

    __slots__ = ("_family", "_hosts")

    def __init__(self, family: socket.AddressFamily) -> None:
        self._family = family
        self._hosts: dict[str, str | None] = {}

    def target(self, addr: Addr) -> tuple[str, int] | None:
        """Where to send ``addr`` on this socket, or None if it cannot reach it (port 0 is
        never a destination: it names the host's other datagram paths,
        :mod:`~a2al_mcp.transport.quic_paths`)."""
        host, port = addr
        if not port:
            return None
        try:
            target = self._hosts[host]
        except KeyError:
            target = self._send_host(host)
        return None if target is None else (target, port)

    def _send_host(self, host: str) -> str | None:
        """The host string to pass to ``sendto`` on this socket, or None if unreachable.

        Only IP literals are accepted (never a name: that would block on DNS). An IPv4
        destination on a dual-stack socket becomes its IPv4-mapped IPv6 form.
        """
        target: str | None
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            target = None
        else:
            if self._family == socket.AF_INET6:
                target = f"{_MAPPED_PREFIX}{ip}" if ip.version == 4 else host
            elif ip.version == 4:
                target = host
            elif isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                target = str(ip.ipv4_mapped)
            else:
                target = None
        if len(self._hosts) >= _MAX_HOST_CACHE:
            self._hosts.clear()
        self._hosts[host] = target
        return target
