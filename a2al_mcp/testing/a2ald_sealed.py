"""The sealed-namespace check that guards every a2ald launch.

``a2ald`` always performs DNS, STUN and IP-echo probes that cannot be switched off, so it must
only ever run inside a *sealed* network namespace: only ``lo`` (and it must be up), no IPv4
routes, no IPv6 routes beyond loopback/link-local/multicast/reject entries, and a UDP
``connect()`` towards public addresses must fail.  :func:`check_sealed` verifies exactly that;
:meth:`~a2al_mcp.testing.a2ald_peer.A2aldPeer.start` calls it before *every* launch.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Callable
from typing import Final

from .a2ald_errors import NotSealedError

__all__ = ["PROBE_TARGETS", "UdpProbe", "check_sealed", "sealed_problems"]

PROBE_TARGETS: Final[tuple[tuple[str, int], ...]] = (
    ("8.8.8.8", 53),
    ("2001:4860:4860::8888", 53),
)
"""Public addresses a UDP ``connect()`` must fail for (connect on UDP sends no packet)."""

_UNREACHABLE_ERRNOS: Final = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT}
)
_SIOCGIFFLAGS: Final = 0x8913
_IFF_UP: Final = 0x1
_RTF_REJECT: Final = 0x0200
# minimum field counts of a /proc/net/route line (iface dst gw flags refcnt use metric mask)
# and of a /proc/net/ipv6_route line (dst plen src plen nexthop metric refcnt use flags dev)
_ROUTE_FIELDS: Final = 8
_ROUTE6_FIELDS: Final = 10

UdpProbe = Callable[[str, int], None]
"""``probe(host, port)``: UDP ``connect()`` to the address; raises :class:`OSError` on failure."""


def _read_text(path: str) -> str | None:
    """Return the file's text, or None when it does not exist."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _interfaces(proc_net_dev: str) -> list[str]:
    """Interface names listed in a ``/proc/net/dev`` text."""
    names = []
    for line in proc_net_dev.splitlines()[2:]:
        name, sep, _ = line.partition(":")
        if sep and name.strip():
            names.append(name.strip())
    return names


def _ipv4_route_problems(proc_net_route: str) -> list[str]:
    """Every entry of ``/proc/net/route`` (main table) is a problem."""
    out = []
    for line in proc_net_route.splitlines()[1:]:
        fields = line.split()
        if len(fields) < _ROUTE_FIELDS:
            continue
        dev, dst, gw, flags, mask = fields[0], fields[1], fields[2], fields[3], fields[7]
        out.append(
            f"IPv4 route {_hex_ipv4(dst)}/{_hex_ipv4(mask)} via {_hex_ipv4(gw)} dev {dev} "
            f"(flags 0x{flags})"
        )
    return out


def _hex_ipv4(little_endian_hex: str) -> str:
    """Render a little-endian hex IPv4 address from ``/proc/net/route``."""
    try:
        return socket.inet_ntoa(struct.pack("<I", int(little_endian_hex, 16)))
    except (ValueError, struct.error):
        return little_endian_hex


_LOOPBACK_V6_OK: Final = (
    ipaddress.IPv6Network("::1/128"),
    ipaddress.IPv6Network("fe80::/10"),
    ipaddress.IPv6Network("ff00::/8"),
)


def _ipv6_route_problems(proc_net_ipv6_route: str) -> list[str]:
    """IPv6 routes other than reject entries or loopback/link-local/multicast on ``lo``."""
    out = []
    for line in proc_net_ipv6_route.splitlines():
        fields = line.split()
        if len(fields) < _ROUTE6_FIELDS:
            continue
        try:
            net = ipaddress.IPv6Network((int(fields[0], 16), int(fields[1], 16)))
            flags = int(fields[8], 16)
        except ValueError:
            out.append(f"unparsable IPv6 route line {line.strip()!r}")
            continue
        dev = fields[9]
        if flags & _RTF_REJECT:
            continue
        if dev == "lo" and any(net.subnet_of(ok) for ok in _LOOPBACK_V6_OK):
            continue
        out.append(f"IPv6 route {net} dev {dev} (flags 0x{flags:08x})")
    return out


def _lo_flags() -> int:
    """Interface flags of ``lo`` in the current namespace (``SIOCGIFFLAGS``; sysfs can be stale)."""
    import fcntl  # Linux only, like network namespaces: imported where they are used

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = struct.pack("16sh22x", b"lo", 0)  # struct ifreq: name + ifr_flags, 40 bytes
        res = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, req)
    return int(struct.unpack_from("16sh", res)[1])


def _udp_connect(host: str, port: int) -> None:
    """Default :data:`UdpProbe`: ``connect()`` a UDP socket (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))


def _probe_problems(probe: UdpProbe) -> list[str]:
    """Run the functional probe against every public target."""
    out = []
    for host, port in PROBE_TARGETS:
        try:
            probe(host, port)
        except OSError as exc:
            if exc.errno in _UNREACHABLE_ERRNOS:
                continue
            out.append(f"UDP connect to [{host}]:{port} failed unexpectedly: {exc!r}")
        else:
            out.append(f"UDP connect to [{host}]:{port} succeeded (a route to it exists)")
    return out


def _loopback_problems(lo_flags: int | None) -> list[str]:
    """``lo`` must be up and 127.0.0.1 bindable."""
    out = []
    try:
        flags = _lo_flags() if lo_flags is None else lo_flags
    except OSError as exc:
        out.append(f"cannot read the flags of lo: {exc!r}")
    else:
        if not flags & _IFF_UP:
            out.append("lo is down (run `ip link set lo up` inside the namespace)")
    if lo_flags is None:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.1", 0))
        except OSError as exc:
            out.append(f"cannot bind 127.0.0.1: {exc!r}")
    return out


def sealed_problems(
    *,
    proc_net_dev: str | None = None,
    proc_net_route: str | None = None,
    proc_net_ipv6_route: str | None = None,
    lo_flags: int | None = None,
    udp_probe: UdpProbe | None = None,
) -> list[str]:
    """Return every reason why the current network namespace is not sealed (empty = sealed).

    Each keyword overrides one input (for unit tests); when an input is None the live value
    of the current namespace is used.  When ``lo_flags`` is given, the live bind probe of
    127.0.0.1 is skipped too.
    """
    dev = _read_text("/proc/net/dev") if proc_net_dev is None else proc_net_dev
    route = _read_text("/proc/net/route") if proc_net_route is None else proc_net_route
    route6 = (
        _read_text("/proc/net/ipv6_route") if proc_net_ipv6_route is None else proc_net_ipv6_route
    )
    problems: list[str] = []
    if dev is None:
        problems.append("/proc/net/dev is missing (is /proc mounted?)")
    else:
        names = _interfaces(dev)
        others = sorted(set(names) - {"lo"})
        if others:
            problems.append("interfaces other than lo present: " + ", ".join(others))
        if "lo" not in names:
            problems.append("no lo interface")
    if route is None:
        problems.append("/proc/net/route is missing (is /proc mounted?)")
    else:
        problems.extend(_ipv4_route_problems(route))
    if route6 is not None:  # a missing file means the kernel has no IPv6 at all
        problems.extend(_ipv6_route_problems(route6))
    problems.extend(_loopback_problems(lo_flags))
    problems.extend(_probe_problems(_udp_connect if udp_probe is None else udp_probe))
    return problems


def check_sealed(
    *,
    proc_net_dev: str | None = None,
    proc_net_route: str | None = None,
    proc_net_ipv6_route: str | None = None,
    lo_flags: int | None = None,
    udp_probe: UdpProbe | None = None,
) -> None:
    """Raise :class:`NotSealedError` unless the current network namespace is sealed.

    Sealed means: ``/proc/net/dev`` lists only ``lo``; ``lo`` is up and 127.0.0.1 bindable;
    ``/proc/net/route`` has no entries; ``/proc/net/ipv6_route`` has only reject entries and
    loopback/link-local/multicast routes on ``lo``; and UDP ``connect()`` to 8.8.8.8:53 and
    [2001:4860:4860::8888]:53 fails with ENETUNREACH/EHOSTUNREACH/EADDRNOTAVAIL (or the
    address family is unsupported).  Keywords override the inputs, see :func:`sealed_problems`.
    """
    problems = sealed_problems(
        proc_net_dev=proc_net_dev,
        proc_net_route=proc_net_route,
        proc_net_ipv6_route=proc_net_ipv6_route,
        lo_flags=lo_flags,
        udp_probe=udp_probe,
    )
    if problems:
        raise NotSealedError(problems)
