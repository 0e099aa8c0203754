"""What each testbed host's NAT does, measured with RFC 5780 STUN tests against coturn.

:func:`observe` sends Binding requests from one socket in the host to coturn's primary and
alternate addresses and with CHANGE-REQUEST, and reports the mapping (endpoint-independent or
not) and the filtering (endpoint-independent, address-dependent, address-and-port-dependent)
the host is behind; :data:`EXPECTED` is what each NAT kind must show.  ``python -m
a2al_mcp.testing.nat_testbed check`` prints this for every host.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Final

from .nat_stun import stun_query
from .nat_testbed import NatTestbed

__all__ = ["EXPECTED", "Observation", "observe"]

EIM: Final = "endpoint-independent"
EDM: Final = "endpoint-dependent"
EIF: Final = "endpoint-independent"
ADF: Final = "address-dependent"
APDF: Final = "address-and-port-dependent"

EXPECTED: Final = {
    "public": (EIM, EIF),
    "cone": (EIM, EIF),
    "prc": (EIM, APDF),
    "sym": (EDM, APDF),
    "upnp-igdv1": (EIM, APDF),
    "upnp-igdv2": (EIM, APDF),
}
"""(mapping, filtering) per host kind (a UPnP host without a mapping is port-restricted)."""


@dataclass(frozen=True)
class Observation:
    """What STUN showed for one host."""

    host: str
    kind: str
    mapped: tuple[str, int] | None
    """The address coturn's primary address saw (XOR-MAPPED-ADDRESS)."""
    mapped_alternate: tuple[str, int] | None
    """The address coturn's alternate address saw, from the same socket."""
    mapping: str | None
    filtering: str | None

    @property
    def as_expected(self) -> bool:
        return (self.mapping, self.filtering) == EXPECTED[self.kind]


def observe(tb: NatTestbed, host: str, *, port: int = 0, timeout: float = 0.5) -> Observation:
    """Run the RFC 5780 mapping and filtering tests from ``host`` (flushes its router first)."""
    plan = tb.host(host)
    if plan.router is not None:
        tb.conntrack_flush(host)
    with tb.netns(host):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.bind((plan.addr, port))
        first = stun_query(sock, tb.stun, timeout=timeout)
        if first is None:
            return Observation(host, plan.kind, None, None, None, None)
        mapped = first[0].xor_mapped
        # filtering first: the alternate address has not been contacted yet
        if stun_query(sock, tb.stun, change_ip=True, change_port=True, timeout=timeout, attempts=1):
            filtering = EIF
        elif stun_query(sock, tb.stun, change_port=True, timeout=timeout, attempts=1):
            filtering = ADF
        else:
            filtering = APDF
        alternate = stun_query(sock, tb.stun_alternate, timeout=timeout)
        mapped_alt = alternate[0].xor_mapped if alternate is not None else None
    mapping = EIM if mapped_alt is not None and mapped_alt == mapped else EDM
    return Observation(host, plan.kind, mapped, mapped_alt, mapping, filtering)
