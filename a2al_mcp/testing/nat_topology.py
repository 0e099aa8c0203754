"""The NAT testbed's topology as plain data: which namespaces, addresses and links to build.

::

    outer ns (sealed: lo only, no routes)
    └─ inet (router, ip_forward, NO default route)
         brpub  203.0.113.1/24 (+ .53: the testbed's resolver address, nothing listens)
         │   ├─ public hosts   203.0.113.11, .12, ...  (kind "public")
         │   └─ turn           203.0.113.3 + .4        coturn: STUN/TURN udp 3478 (+ 3479),
         │                                             RFC 5780 alternate address .4
         brwan  198.51.100.1/24
         │   └─ r-<host> 198.51.100.11, .12, ... ── 10.N.0.1/24 ── <host> 10.N.0.2
         │        (kinds "cone", "prc", "sym")
         brwan2 198.51.99.1/24  (miniupnpd refuses every reserved WAN range, TEST-NETs included)
             └─ r-<host> 198.51.99.41, .42, ... ── 10.N.0.1/24 ── <host> 10.N.0.2
                  (kinds "upnp-igdv1", "upnp-igdv2")

:func:`plan_topology` turns ``{host name: kind}`` into a :class:`Topology`; nothing here runs
a command.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_HOSTS",
    "DNS_ADDR",
    "INET_ADDRS",
    "KINDS",
    "NAT_KINDS",
    "PUBLIC_NET",
    "TURN_ADDR",
    "TURN_ALT_ADDR",
    "TURN_ALT_PORT",
    "TURN_HOST",
    "TURN_PORT",
    "UPNP_KINDS",
    "UPNP_WAN_NET",
    "WAN_NET",
    "HostPlan",
    "Topology",
    "plan_topology",
]

PUBLIC_NET: Final = "203.0.113"
WAN_NET: Final = "198.51.100"
UPNP_WAN_NET: Final = "198.51.99"
DNS_ADDR: Final = f"{PUBLIC_NET}.53"
"""The testbed's resolver address (on ``inet``; nothing listens: lookups fail at once)."""
TURN_HOST: Final = "turn"
TURN_ADDR: Final = f"{PUBLIC_NET}.3"
TURN_ALT_ADDR: Final = f"{PUBLIC_NET}.4"
"""coturn's second listening address: its RFC 5780 OTHER-ADDRESS (with :data:`TURN_ALT_PORT`)."""
TURN_PORT: Final = 3478
TURN_ALT_PORT: Final = 3479
INET_ADDRS: Final = {
    "brpub": (f"{PUBLIC_NET}.1", DNS_ADDR),
    "brwan": (f"{WAN_NET}.1",),
    "brwan2": (f"{UPNP_WAN_NET}.1",),
}
"""The bridges of ``inet`` and its addresses on them (all /24)."""

PUBLIC: Final = "public"
NAT_KINDS: Final = ("cone", "prc", "sym", "upnp-igdv1", "upnp-igdv2")
UPNP_KINDS: Final = ("upnp-igdv1", "upnp-igdv2")
KINDS: Final = (PUBLIC, *NAT_KINDS)

DEFAULT_HOSTS: Final[Mapping[str, str]] = {
    "pub1": PUBLIC,
    "pub2": PUBLIC,
    "pub3": PUBLIC,
    "cone": "cone",
    "prc": "prc",
    "sym": "sym",
    "upnp1": "upnp-igdv1",
    "upnp2": "upnp-igdv2",
}

_NAME_RE: Final = re.compile(r"[a-z][a-z0-9]{0,11}")
_RESERVED_NAMES: Final = frozenset({"inet", TURN_HOST, "outer"})
_FIRST_PUBLIC: Final = 11
_FIRST_WAN: Final = 11
_FIRST_UPNP_WAN: Final = 41
_MAX_PER_NET: Final = 40


@dataclass(frozen=True)
class HostPlan:
    """One end host; NAT hosts also carry their router's plan (``router`` is then set)."""

    name: str
    kind: str
    addr: str
    """The host's own address (public address, or LAN address behind a NAT)."""
    gateway: str
    inet_port: str
    """Name of the bridge port on ``inet`` (for the host itself, or for its router's WAN)."""
    bridge: str
    """The bridge of ``inet`` the host (or its router) hangs on."""
    router: str | None = None
    """Router namespace name (``r-<host>``), None for a public host."""
    wan: str | None = None
    """The router's WAN address (the host's public address as the internet sees it)."""
    wan_gateway: str | None = None
    lan_router_addr: str | None = None
    lan_net: str | None = None

    @property
    def public_addr(self) -> str:
        """Where the internet sees this host: its WAN address, or its own when public."""
        return self.wan if self.wan is not None else self.addr


@dataclass(frozen=True)
class Topology:
    """Every host to build, in order, plus whether coturn's host is part of it."""

    hosts: tuple[HostPlan, ...]
    turn: bool

    def host(self, name: str) -> HostPlan:
        """The plan of host ``name`` (or of the NAT host behind router ``r-<name>``)."""
        for plan in self.hosts:
            if name in (plan.name, plan.router):
                return plan
        raise KeyError(f"no host {name!r} in this testbed ({', '.join(self.names)})")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(plan.name for plan in self.hosts)


def plan_topology(hosts: Mapping[str, str] = DEFAULT_HOSTS, *, turn: bool = True) -> Topology:
    """Plan the topology for ``{host name: kind}`` (kinds: :data:`KINDS`).

    Names are 1-12 lowercase letters/digits (interface names are derived from them), not
    ``inet``, ``turn`` or ``outer``.  Addresses follow the insertion order of ``hosts``.
    """
    plans: list[HostPlan] = []
    n_public = n_wan = n_upnp = 0
    for index, (name, kind) in enumerate(hosts.items(), start=1):
        if not _NAME_RE.fullmatch(name) or name in _RESERVED_NAMES:
            raise ValueError(f"bad host name {name!r} (1-12 of a-z0-9, not {_RESERVED_NAMES})")
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r} for {name!r} (one of {KINDS})")
        if kind == PUBLIC:
            addr = f"{PUBLIC_NET}.{_FIRST_PUBLIC + n_public}"
            n_public += 1
            plans.append(
                HostPlan(name, kind, addr, f"{PUBLIC_NET}.1", f"p-{name}", "brpub"),
            )
            continue
        if kind in UPNP_KINDS:
            wan, net, bridge = f"{UPNP_WAN_NET}.{_FIRST_UPNP_WAN + n_upnp}", UPNP_WAN_NET, "brwan2"
            n_upnp += 1
        else:
            wan, net, bridge = f"{WAN_NET}.{_FIRST_WAN + n_wan}", WAN_NET, "brwan"
            n_wan += 1
        plans.append(
            HostPlan(
                name,
                kind,
                addr=f"10.{index}.0.2",
                gateway=f"10.{index}.0.1",
                inet_port=f"w-{name}",
                bridge=bridge,
                router=f"r-{name}",
                wan=wan,
                wan_gateway=f"{net}.1",
                lan_router_addr=f"10.{index}.0.1",
                lan_net=f"10.{index}.0.0/24",
            )
        )
    if max(n_public, n_wan, n_upnp) > _MAX_PER_NET:
        raise ValueError(f"at most {_MAX_PER_NET} hosts per kind of network")
    return Topology(tuple(plans), turn)
