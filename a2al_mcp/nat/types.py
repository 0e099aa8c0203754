"""What the NAT layer knows: the NAT type (a2al-wire §3.6 key 2) and the :class:`NatView`."""

from __future__ import annotations

from enum import IntEnum

from .._dataclass import dataclass
from .._types import Addr
from .addresses import is_plausible_wan, is_v4

__all__ = ["NatType", "NatView"]


class NatType(IntEnum):
    """The ``nat_type`` of an endpoint record (a2al-wire §3.6)."""

    UNKNOWN = 0
    """No evidence at all yet."""
    FULL_CONE = 1
    """Full cone or no NAT: endpoint-independent mapping and filtering, or a public bind."""
    RESTRICTED = 2
    """Address-dependent filtering: only hosts we sent to (any port) get through."""
    PORT_RESTRICTED = 3
    """Address-and-port-dependent filtering (also: behind a NAT whose filtering is unproven)."""
    SYMMETRIC = 4
    """The mapping depends on the destination: no address of ours works for a new peer."""

    @property
    def words(self) -> str:
        """The type for humans (``status``)."""
        return _WORDS[self]


_WORDS = {
    NatType.UNKNOWN: "unknown",
    NatType.FULL_CONE: "full cone",
    NatType.RESTRICTED: "restricted",
    NatType.PORT_RESTRICTED: "port-restricted",
    NatType.SYMMETRIC: "symmetric",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class NatView:
    """Where the node stands, as :class:`~a2al_mcp.nat.sense.NatSense` last concluded."""

    nat_type: NatType = NatType.UNKNOWN
    external: tuple[Addr, ...] = ()
    """Our external addresses that peers can be told, best first (IPv4 and IPv6 mixed; see
    :attr:`external_v4` / :attr:`external_v6`). Empty behind a symmetric NAT: no ``ip:port``
    of ours works for a peer that has not been sent to (the external IP alone is in
    :attr:`external_ips`)."""
    observed: tuple[Addr, ...] = ()
    """Addresses enough peers agree on (a2al-wire §6.1 consensus), plausible WAN only, best
    first; kept even where they are no use to a new peer (behind a symmetric NAT)."""
    external_ips: tuple[str, ...] = ()
    """The external IPs seen (consensus or STUN), best first, even where no port works."""
    public: bool = False
    """Bound on a plausible WAN address and peers see exactly that address: no NAT."""
    evidence: tuple[str, ...] = ()
    """Why, in short words for ``status`` (e.g. ``"3 peers agree on 198.51.100.21:4121"``)."""
    stun_reflected: tuple[Addr, ...] = ()
    """Mapped addresses the configured STUN servers returned, newest answer first."""
    upnp: Addr | None = None
    """The gateway port mapping the UPnP/NAT-PMP driver reported."""
    reachable: bool | None = None
    """Last NAT_PROBE result: an echo came back (True), none did (False), never ran (None).
    Proves reachability from peers already in contact only (testbed D5), not full cone."""
    local: tuple[Addr, ...] = ()
    """The local addresses the node said its socket answers on."""

    @property
    def external_v4(self) -> tuple[Addr, ...]:
        return tuple(a for a in self.external if is_v4(a[0]))

    @property
    def external_v6(self) -> tuple[Addr, ...]:
        return tuple(a for a in self.external if not is_v4(a[0]))

    @property
    def direct(self) -> bool:
        """A peer that never sent to us can reach us directly at :attr:`external`: public,
        full cone or a UPnP mapping on a WAN address."""
        return (
            self.public
            or (self.upnp is not None and is_plausible_wan(self.upnp[0]))
            or (self.nat_type is NatType.FULL_CONE and bool(self.external))
        )
