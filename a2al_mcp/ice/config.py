"""Every server, limit and timeout of the ICE layer, in one frozen dataclass.

The STUN and TURN servers are given as a2ald writes them (a2al-wire §7.3): ``ice_stun_urls``
entries ``stun:host:port`` and ``[[turn_servers]]`` with ``url = "turn:host:port?transport=udp"``,
``username`` and ``credential`` (static long-term credentials; a2ald's HMAC and REST kinds
are not here yet).  :func:`parse_stun_url` / :func:`parse_turn_url` read those strings.

aioice takes **one** STUN and **one** TURN server per connection: a session uses the first of
each list (the rest are kept for a later racing of several sessions).

Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from typing import Final, Literal
from urllib.parse import parse_qs

from .._types import Addr
from ..config import IceTableConfig
from ..errors import ConfigError
from .candidates import MAX_CANDIDATE_CHARS

__all__ = ["IceConfig", "TurnServer", "ice_config", "parse_stun_url", "parse_turn_url"]

STUN_PORT: Final = 3478
TURNS_PORT: Final = 5349


def _host_port(rest: str, default_port: int, what: str) -> Addr:
    """``host[:port]`` or ``[v6]:port`` of a STUN/TURN URI (RFC 7064/7065)."""
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep or (tail and not tail.startswith(":")):
            raise ConfigError(f"bad {what} address {rest!r}")
        port_text = tail[1:] if tail else ""
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    elif ":" in rest:
        raise ConfigError(f"bad {what} address {rest!r}", hint="write IPv6 as [addr]:port")
    else:
        host, port_text = rest, ""
    if not host:
        raise ConfigError(f"{what} has no host: {rest!r}")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ConfigError(f"bad {what} port in {rest!r}") from None
    if not 1 <= port <= 0xFFFF:
        raise ConfigError(f"{what} port {port} out of range")
    return host, port


def parse_stun_url(url: str) -> Addr:
    """``stun:host[:port]`` → ``(host, port)`` (port 3478 by default)."""
    scheme, sep, rest = url.partition(":")
    if not sep or scheme.lower() != "stun":
        raise ConfigError(f"not a stun: URL: {url!r}")
    return _host_port(rest, STUN_PORT, "STUN server")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TurnServer:
    """One TURN server with static long-term credentials (coturn ``lt-cred-mech``)."""

    addr: Addr
    username: str
    password: str = dataclasses.field(repr=False)
    transport: Literal["udp", "tcp"] = "udp"
    tls: bool = False
    """``turns:`` (TURN over TLS, over TCP)."""

    def __post_init__(self) -> None:
        if not self.username or not self.password:
            raise ConfigError(f"TURN server {self.addr[0]}:{self.addr[1]} needs credentials")
        if self.transport not in ("udp", "tcp"):
            raise ConfigError(f"TURN transport {self.transport!r} is neither udp nor tcp")
        if self.tls and self.transport != "tcp":
            raise ConfigError("turns: runs over TCP (transport=tcp)")


def parse_turn_url(url: str, username: str, password: str) -> TurnServer:
    """``turn[s]:host[:port][?transport=udp|tcp]`` plus credentials → :class:`TurnServer`."""
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in ("turn", "turns"):
        raise ConfigError(f"not a turn: or turns: URL: {url!r}")
    rest, _, query = rest.partition("?")
    tls = scheme == "turns"
    values = parse_qs(query, keep_blank_values=True).get("transport", [])
    transport = values[-1].lower() if values else ("tcp" if tls else "udp")
    if transport not in ("udp", "tcp"):
        raise ConfigError(f"TURN transport {transport!r} in {url!r} is neither udp nor tcp")
    addr = _host_port(rest, TURNS_PORT if tls else STUN_PORT, "TURN server")
    return TurnServer(
        addr=addr,
        username=username,
        password=password,
        transport="tcp" if transport == "tcp" else "udp",
        tls=tls,
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class IceConfig:
    """Servers, limits and timeouts of :class:`~a2al_mcp.ice.session.IceSession`.

    Defaults follow a2ald where it has a number (a2al-wire §6.3/§6.4: 30 s for credentials
    and for the connection per hub).
    """

    stun_servers: tuple[Addr, ...] = ()
    """STUN servers for server-reflexive candidates; aioice asks only the first."""
    turn_servers: tuple[TurnServer, ...] = ()
    """TURN servers for relay candidates; aioice allocates on the first only."""
    use_ipv4: bool = True
    use_ipv6: bool = True
    """Gather host candidates of this family (aioice: every interface address; IPv6
    srflx is never gathered)."""
    gather_timeout_s: float = 8.0
    """``gather`` fails after this. aioice itself stops waiting for STUN/TURN answers after
    5 s and keeps what it has, so below ~5 s a dead server fails the whole gathering."""
    credentials_timeout_s: float = 30.0
    """``connect`` waits this long for the remote ``cred`` (a2ald: 30 s)."""
    connect_timeout_s: float = 30.0
    """``connect`` gives up after this, credentials wait included (a2ald: 30 s per hub)."""
    max_candidate_chars: int = MAX_CANDIDATE_CHARS
    """Longest remote candidate string accepted."""
    max_remote_candidates: int = 64
    """Remote candidates accepted per session (a2ald sent at most 16 in the testbed)."""

    def __post_init__(self) -> None:
        for host, port in self.stun_servers:
            if not host or not 1 <= port <= 0xFFFF:
                raise ConfigError(f"bad STUN server {host!r}:{port}")
        for name in ("gather_timeout_s", "credentials_timeout_s", "connect_timeout_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"ice.{name} must be positive, got {value}")
        if self.max_candidate_chars < 64:
            raise ConfigError("ice.max_candidate_chars below 64 refuses pion's own candidates")
        if not 1 <= self.max_remote_candidates <= 4096:
            raise ConfigError("ice.max_remote_candidates must be 1..4096")
        if not (self.use_ipv4 or self.use_ipv6):
            raise ConfigError("ice: at least one of use_ipv4 and use_ipv6")

    @property
    def stun_server(self) -> Addr | None:
        """The STUN server a session asks (the first), or None."""
        return self.stun_servers[0] if self.stun_servers else None

    @property
    def turn_server(self) -> TurnServer | None:
        """The TURN server a session allocates on (the first), or None."""
        return self.turn_servers[0] if self.turn_servers else None


def ice_config(table: IceTableConfig, *, nat_stun: tuple[Addr, ...] = ()) -> IceConfig:
    """The :class:`IceConfig` of the node's ``[ice]`` table: its ``stun_urls`` (empty: the
    node's ``[nat]`` STUN servers ``nat_stun``, resolved), its ``[[ice.turn_servers]]``,
    timeouts and limits. Never a server that is not named in one of the two.

    Raises:
        ConfigError: a URL that does not parse.
    """
    stun = tuple(parse_stun_url(u) for u in table.stun_urls) or tuple(nat_stun)
    turn = tuple(parse_turn_url(t.url, t.username, t.credential) for t in table.turn_servers)
    return IceConfig(
        stun_servers=stun,
        turn_servers=turn,
        gather_timeout_s=table.gather_timeout_s,
        credentials_timeout_s=table.credentials_timeout_s,
        connect_timeout_s=table.connect_timeout_s,
        max_candidate_chars=table.max_candidate_chars,
        max_remote_candidates=table.max_remote_candidates,
    )
