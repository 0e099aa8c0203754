"""Every limit and interval of the NAT layer, in one frozen dataclass."""

from __future__ import annotations

from .._dataclass import dataclass
from .._types import Addr
from ..errors import ConfigError

__all__ = ["NatSenseConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NatSenseConfig:
    """Limits and timers of :class:`~a2al_mcp.nat.sense.NatSense`. Defaults follow a2ald
    (a2al-wire §6.1, §6.2) where a2ald has a number."""

    stun_servers: tuple[Addr, ...] = ()
    """STUN servers as resolved ``(ip, port)``: only what configuration names (the node
    resolves ``nat.stun_servers``); there is no built-in server."""
    min_observed_peers: int = 3
    """Distinct reporters that must agree on an observed address (cold start: fewer)."""
    vote_ttl_s: float = 15 * 60.0
    """Votes older than this are ignored (a2al-wire §6.1)."""
    max_reporters: int = 256
    """Reporters whose latest vote is kept (per address family); the oldest vote goes first."""
    symmetric_min_ports: int = 3
    """Symmetric by votes: at least this many distinct ports for one external IP…"""
    symmetric_min_reporters: int = 3
    """…from at least this many reporters, none of the ports held by a majority of them."""
    stun_rto_s: float = 0.5
    """First STUN retransmission timeout; doubles at each retry (RFC 5389 §7.2.1)."""
    stun_tries: int = 3
    """STUN requests sent per transaction before it times out."""
    stun_max_pending: int = 16
    """STUN transactions in flight at most (more are refused, counted)."""
    stun_refresh_s: float = 5 * 60.0
    """Binding (test I) to every STUN server again after this."""
    behaviour_refresh_s: float = 30 * 60.0
    """RFC 5780 mapping/filtering tests again after this (and on a network change)."""
    rerun_min_interval_s: float = 30.0
    """A new consensus IP (seen in votes) reruns STUN and the tests at most this often; a
    change of the local addresses always does."""
    probe_peers: int = 3
    """NAT_PROBE_REQs per probe round (peers with a public IPv4)."""
    probe_window_s: float = 5.0
    """How long a probe round waits for an echo."""
    probe_interval_s: float = 20 * 60.0
    """Probe rounds this far apart (a2ald: 20 min)."""
    probe_candidates_max: int = 64
    """Peers kept from :meth:`~a2al_mcp.nat.sense.NatSense.offer_peers`."""
    echo_per_requester_s: float = 0.1
    """NAT_PROBE_ECHOs we send per second to one requester IP (one per 10 s)…"""
    echo_requester_burst: float = 2.0
    """…with this burst."""
    echo_global_per_s: float = 5.0
    """NAT_PROBE_ECHOs we send per second in all…"""
    echo_global_burst: float = 10.0
    """…with this burst."""
    echo_requesters_max: int = 1024
    """Requester IPs whose echo rate is tracked (least recently seen forgotten first)."""

    def __post_init__(self) -> None:
        if self.min_observed_peers < 1:
            raise ConfigError("min_observed_peers must be at least 1")
        if self.stun_tries < 1 or self.stun_rto_s <= 0 or self.stun_max_pending < 1:
            raise ConfigError("STUN retransmission needs tries >= 1, rto > 0, pending >= 1")
        if self.max_reporters < 1 or self.probe_candidates_max < 1:
            raise ConfigError("NAT tables need room for at least one entry")
        if self.symmetric_min_ports < 2 or self.symmetric_min_reporters < 2:
            raise ConfigError("symmetric detection needs at least 2 ports and 2 reporters")
