"""Configuration: frozen dataclasses with defaults, validation, and the one loader.

:func:`load_config` is the only code in the package that reads configuration files or
environment variables. Precedence: defaults < TOML file < environment < explicit overrides.
TOML keys match a2ald's where the meaning is the same (``listen_addr``, ``bootstrap``);
``advertise_host`` is a2ald's ``fallback_host``.

Nothing here sends a packet anywhere: with the defaults a node talks only to peers it is
given (``bootstrap``) or learns from them. Joining the public network is the explicit
``network = "public"`` opt-in.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, Self

from ._dataclass import dataclass
from .errors import ConfigError

__all__ = [
    "PUBLIC_BOOTSTRAP_DNS",
    "DhtConfig",
    "ExposeConfig",
    "HubConfig",
    "IceTableConfig",
    "LimitsConfig",
    "MailboxConfig",
    "NatConfig",
    "NodeConfig",
    "OutboxConfig",
    "QuicConfig",
    "SignalConfig",
    "TurnServerConfig",
    "load_config",
    "parse_host_port",
]

PUBLIC_BOOTSTRAP_DNS: Final = "_a2al-bootstrap.a2al.org"
"""DNS TXT record listing public seeds; consulted only with ``network = "public"``."""

ENV_PREFIX: Final = "A2AL_MCP_"


def parse_host_port(text: str, *, what: str = "address") -> tuple[str, int]:
    """Parse ``host:port`` or ``[v6]:port``.

    Raises:
        ConfigError: with a sentence naming ``what``.
    """
    s = text.strip()
    host, sep, port_s = s.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{what} {text!r} must look like HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"{what} {text!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ConfigError(f"{what} {text!r}: write IPv6 addresses as [addr]:port")
    try:
        port = int(port_s)
    except ValueError:
        raise ConfigError(f"{what} {text!r}: port {port_s!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what} {text!r}: port must be 0-65535")
    return host, port


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class DhtConfig:
    """Tunables of the DHT. The protocol's own timers are not settings: they live in
    ``a2al_mcp.protocol.timers``, with the section of the wire description each comes from."""

    lookup_rpc_timeout_s: float = 2.0
    """Deadline of each DHT RPC the node sends: inside an iterative lookup, and each PING,
    STORE and DHT_PUSH (a2ald: 2 s). A seed gets two PINGs, every other RPC one attempt; the
    node gives up on a whole operation after 15 s + 16 of these."""
    lookup_concurrency: int = 5
    """Concurrent RPCs to healthy peers during a lookup."""
    replicas: int = 8
    """Directly reachable replica holders per published record."""
    republish_interval_s: float = 1800.0
    """How often own records are re-published (a2ald: 30 min, half the records' TTL)."""
    mode_b: bool = True
    """Carry DHT messages over QUIC to and from NATed nodes (a2al-wire §4.11, "Mode B"): a
    node that calls our node AID through a hub gets its DHT answers on that connection, and
    a peer whose UDP does not answer is reached through its hubs (docs/signal.md, "Mode B").
    Off: the node AID is not registered with the hubs for it, Mode-B connections are closed
    and the DHT speaks UDP only."""
    mode_b_max_connections: int = 32
    """Mode-B connections held at once, both ways; more are closed at once (counted)."""
    mode_b_idle_s: float = 300.0
    """A Mode-B connection with no DHT message either way for this long is closed (a2ald:
    5 min idle timeout)."""
    mode_b_keepalive_s: float = 20.0
    """A QUIC PING on every Mode-B connection this often (a2ald: 20 s keep-alive)."""
    mode_b_read_timeout_s: float = 10.0
    """A Mode-B stream must bring its whole message (≤ 64 KiB, FIN) this fast, else it is
    reset and counted (a2ald reads to EOF; a misrouted Mode-A stream gets its fixed 3 s)."""
    mode_b_dial_timeout_s: float = 60.0
    """How long reaching a NATed peer's node through its hubs (ICE, then QUIC) may take
    (a2ald: 60 s)."""
    mode_b_retry_s: float = 300.0
    """After a failed Mode-B dial, the same peer is not called again for this long (a2ald
    punches only once the peer's back-off reached 5 min)."""

    def __post_init__(self) -> None:
        _positive("dht.lookup_rpc_timeout_s", self.lookup_rpc_timeout_s)
        _positive("dht.republish_interval_s", self.republish_interval_s)
        for name in ("mode_b_idle_s", "mode_b_keepalive_s", "mode_b_read_timeout_s",
                     "mode_b_dial_timeout_s", "mode_b_retry_s"):  # fmt: skip
            _positive(f"dht.{name}", getattr(self, name))
        for name in ("lookup_concurrency", "replicas", "mode_b_max_connections"):
            if getattr(self, name) < 1:
                raise ConfigError(f"dht.{name} must be at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class QuicConfig:
    """Tunables of the QUIC data plane."""

    idle_timeout_s: float = 90.0
    """Our QUIC max idle timeout (transport parameter): a connection with no traffic this
    long is closed; the shorter of ours and the peer's applies (a2ald uses 90 s)."""
    keepalive_s: float = 25.0
    """Ping every pooled outgoing connection this often, to stay under the idle timeouts
    (a2ald: 25 s). Must be shorter than ``idle_timeout_s``."""
    handshake_timeout_s: float = 10.0
    """Give up on a QUIC/TLS handshake after this long (dialling), and drop an inbound
    connection that has not completed its handshake by then (a2ald: 10 s)."""
    send_buffer_max_bytes: int = 4 * 1024 * 1024
    """High-water mark on a stream's unsent data (back-pressure)."""

    def __post_init__(self) -> None:
        _positive("quic.idle_timeout_s", self.idle_timeout_s)
        _positive("quic.keepalive_s", self.keepalive_s)
        if self.keepalive_s >= self.idle_timeout_s:
            raise ConfigError("quic.keepalive_s must be shorter than quic.idle_timeout_s")
        _positive("quic.handshake_timeout_s", self.handshake_timeout_s)
        if self.send_buffer_max_bytes < 65536:
            raise ConfigError("quic.send_buffer_max_bytes must be ≥ 65536")


@dataclass(frozen=True, slots=True, kw_only=True)
class NatConfig:
    """Reachability helpers.

    Port mapping works: with ``upnp = true`` (and only then) the node asks its LAN gateway
    for a UDP mapping of its DHT/QUIC port, by UPnP IGD v1 or v2 (needs the ``upnp`` extra)
    or else PCP/NAT-PMP to the default gateway (or ``gateway``), renews it at half the lease,
    backs off from ``upnp_backoff_initial_s`` doubling up to ``upnp_backoff_max_s`` when no
    gateway answers, and deletes it on close. Where the node stands (its public address and
    NAT type, published in its endpoint records) comes from what peers report
    (``min_observed_peers``) and from the STUN servers named in ``stun_servers``, asked from
    the node's own UDP socket; no other STUN server is ever asked, except once the user
    opted into the public network (``network = "public"``) and named none: then a2ald's
    (its hubs' hosts at 3478, then its compiled-in public servers; docs/nat.md)."""

    stun_servers: tuple[str, ...] = ()
    """``host:port`` STUN servers to learn our public address and, when one offers an
    alternate address (RFC 5780), how our NAT maps and filters; empty = none (with
    ``network = "public"``: the servers a2ald asks)."""
    stun_interval_s: float = 300.0
    """The STUN servers are asked again this often (a2ald: 5 min); a network change asks at
    once."""
    upnp: bool = False
    """Ask the LAN gateway for a port mapping (UPnP with the ``upnp`` extra, else PCP/NAT-PMP).
    False: no SSDP multicast, no PCP/NAT-PMP packet is ever sent."""
    upnp_lease_s: int = 3600
    """Lease asked for the mapping (a2ald: 3600 s); renewed at half what the gateway grants."""
    upnp_backoff_initial_s: float = 60.0
    """Wait after a failed mapping attempt; doubles with each failure in a row (a2ald: 60 s)."""
    upnp_backoff_max_s: float = 3600.0
    """Cap on that wait."""
    gateway: str = ""
    """IPv4 address of the gateway for PCP/NAT-PMP; empty = the default route's gateway."""
    min_observed_peers: int = 3
    """Distinct peers that must agree on our observed address."""

    def __post_init__(self) -> None:
        for s in self.stun_servers:
            parse_host_port(s, what="nat.stun_servers entry")
        if self.min_observed_peers < 1:
            raise ConfigError("nat.min_observed_peers must be at least 1")
        _positive("nat.stun_interval_s", self.stun_interval_s)
        if not isinstance(self.upnp_lease_s, int) or not 60 <= self.upnp_lease_s <= 604800:
            raise ConfigError("nat.upnp_lease_s must be 60-604800 (seconds)")
        _positive("nat.upnp_backoff_initial_s", self.upnp_backoff_initial_s)
        if self.upnp_backoff_max_s < self.upnp_backoff_initial_s:
            raise ConfigError("nat.upnp_backoff_max_s must be ≥ nat.upnp_backoff_initial_s")
        if self.gateway:
            try:
                ipaddress.IPv4Address(self.gateway)
            except ValueError:
                raise ConfigError(f"nat.gateway {self.gateway!r} must be an IPv4 address") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxConfig:
    """Mailbox polling and retention."""

    poll_interval_s: float = 60.0
    """Base interval of background polling of our own mailbox key."""
    retention_s: float = 30 * 24 * 3600.0
    """How long read notes stay in the inbox before they are purged."""

    def __post_init__(self) -> None:
        _positive("mailbox.poll_interval_s", self.poll_interval_s)
        _positive("mailbox.retention_s", self.retention_s)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OutboxConfig:
    """The durable outbox of A2A messages for agents that are offline
    (``call_agent(queue_if_offline=true)``, ``a2al_mcp.node.outbox``): every limit of it."""

    ttl_s: float = 86400.0
    """How long a queued message is kept (a caller may ask for less, never more)."""
    per_target_max: int = 100
    """Queued messages for one agent; one more is refused."""
    total_max: int = 1000
    """Queued messages in all; one more is refused."""
    message_max_bytes: int = 256 * 1024
    """Largest request kept (the JSON-RPC body)."""
    retry_initial_s: float = 2.0
    """Wait after the first failed try; doubled after each further one."""
    retry_max_s: float = 300.0
    """Longest wait between two tries (the record watch may try sooner)."""
    watch_interval_s: float = 1.0
    """How often a queued target's endpoint record is looked up."""
    watch_per_round: int = 16
    """Most targets looked up per ``watch_interval_s`` (taken in turn)."""
    parallel_max: int = 8
    """Targets tried at the same time."""
    connect_timeout_s: float = 10.0
    """Longest wait for a connection on one try."""
    answer_timeout_s: float = 60.0
    """Longest wait for the agent's answer on one try (the request asks it to answer at
    once with its task, so this is rarely reached)."""
    keep_done_s: float = 7 * 86400.0
    """How long a delivery that ended (delivered, failed, expired, canceled) stays listed."""
    done_max: int = 1000
    """Most ended deliveries kept (the oldest go first)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_s"):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ConfigError(f"outbox.{f.name} must be a number, got {value!r}")
                _positive(f"outbox.{f.name}", value)
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"outbox.{f.name} must be a whole number ≥ 1, got {value!r}")
        if self.retry_max_s < self.retry_initial_s:
            raise ConfigError("outbox.retry_max_s must be ≥ outbox.retry_initial_s")


@dataclass(frozen=True, slots=True, kw_only=True)
class HubConfig:
    """One node per data directory, shared by every MCP client (``serve --stdio``).

    Each ``a2al-mcp serve --stdio`` is a small proxy that attaches to the node running on its
    data directory, or starts one (``a2al-mcp node run``) that stops ``grace_s`` after its
    last client left; ``a2al-mcp node start`` runs one that stays up."""

    grace_s: float = 60.0
    """A node started for a client stops this long after its last client left."""
    start_timeout_s: float = 30.0
    """How long a client waits for the node it started to open its channel."""
    hello_timeout_s: float = 5.0
    """A local client must identify itself (token) within this time."""
    channel: Literal["auto", "unix", "tcp"] = "auto"
    """``unix``: a 0600 socket in the data directory (POSIX); ``tcp``: a loopback port whose
    token is in the 0600 ``mcp.channel`` file (Windows); ``auto``: unix where it exists."""

    def __post_init__(self) -> None:
        for name in ("grace_s", "start_timeout_s", "hello_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"hub.{name} must be a number ≥ 0, got {value!r}")
        if self.channel not in ("auto", "unix", "tcp"):
            raise ConfigError(f"hub.channel must be auto, unix or tcp, got {self.channel!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalConfig:
    """The signalling hub (a2al-wire §6.4): the client that registers our identities with
    hubs, and the limits of a hub we serve. Timers follow a2ald 0.3.5 where it has one.

    The node's callee side uses it (``a2al_mcp.node.traversal``, docs/signal.md "In the
    node"): it registers its published identities with ``hubs`` (and its own hub when it
    serves one and is public), names the live ones in its endpoint records, and answers
    calls with a hole punch and ICE (``[ice]``). The caller's side needs no ``[signal]``: it
    calls the hubs the target's record names (``a2al_mcp.node.punch_paths``)."""

    hubs: tuple[str, ...] = ()
    """``ws://host:port`` hubs to register our identities with (a2ald's ``ice_signal_urls``)."""
    serve_hub: Literal["auto", "on", "off"] = "auto"
    """Serve a hub (``/signal``, ``/ice``) on TCP. ``auto``: only with ``network = "public"``
    and a fixed listen port (a2ald embeds one on every node unless its port is 0; a private
    network serves none unless told: ``on``). The node registers with and publishes its own
    hub only while it is public (no NAT)."""
    hub_listen_addr: str = ""
    """``host:port`` (TCP) of the hub we serve; empty: the node's listen host and the same port
    number as its UDP socket (a2ald's default)."""
    max_answers: int = 16
    """Incoming calls answered (room joined, punch running) at once; more are refused and
    counted. At most 4 at a time per caller (a2ald calls again while a call still runs)."""
    answer_timeout_s: float = 30.0
    """One answered call (join the room, send the ICE ``cred``, punch) ends after this."""
    callee_dials: bool = False
    """As the callee of a punch, also dial the caller over QUIC in each round (a2ald does).
    Off by default: a connection the node dialled does not take the caller's requests (the
    node serves only connections it accepted), and a2ald uses the first connection that comes
    up, so a dial of ours that wins leaves its request failing until it retries (seen in the
    NAT testbed). The probes open our NAT as well, and the caller's connection is accepted."""
    max_hubs: int = 2
    """Hubs registered with at once (a2ald keeps 2)."""
    register_interval_s: float = 45.0
    """Every identity's ``reg`` is sent again this often, with a WebSocket ping (a2ald: 45 s)."""
    reconnect_initial_s: float = 1.0
    """Wait before reconnecting to a hub that dropped us; doubles with each failure…"""
    reconnect_max_s: float = 60.0
    """…up to this."""
    max_frame_bytes: int = 65536
    """Longest frame read from a hub or relayed by ours; longer closes the socket (1009)."""
    hub_max_sockets: int = 1024
    """Open TCP connections our hub holds at most; more are refused at once."""
    hub_max_sockets_per_ip: int = 16
    """Of which from one IP address at most."""
    hub_max_rooms: int = 256
    """Rooms (waiting or paired) at once; another ``/ice`` is answered 503."""
    hub_max_registrations: int = 4096
    """Registered AIDs at once; a ``reg`` beyond is not acknowledged."""
    hub_max_registrations_per_socket: int = 64
    """Registered AIDs per ``/signal`` socket."""
    hub_room_queue_bytes: int = 65536
    """Bytes a socket may send while it waits for its partner (kept, then relayed in order:
    the caller's ``cred`` precedes the callee); more closes the socket."""
    hub_pair_timeout_s: float = 30.0
    """A room whose second socket has not come by then is closed (a2ald: 30 s)."""
    hub_room_lifetime_s: float = 300.0
    """A paired room is closed after this, however busy (signalling takes seconds)."""
    hub_idle_timeout_s: float = 60.0
    """A ``/signal`` socket that sent nothing (frame or ping) for this long is closed (a2ald's
    read timeout: 60 s)."""
    hub_registration_ttl_s: float = 120.0
    """A registration not refreshed by a ``reg`` for this long is dropped."""
    hub_handshake_timeout_s: float = 10.0
    """A connection must complete its WebSocket upgrade within this (a2ald: 10 s)."""
    hub_max_bad_frames: int = 16
    """Malformed or unknown frames tolerated per socket before it is closed (1008)."""

    def __post_init__(self) -> None:
        if not isinstance(self.hubs, tuple) or not all(isinstance(h, str) for h in self.hubs):
            raise ConfigError('signal.hubs must be a list of "ws://host:port" strings')
        for h in self.hubs:
            if not h.startswith("ws://"):
                raise ConfigError(f"signal.hubs entry {h!r} must start with ws://")
            parse_host_port(h.removeprefix("ws://").rstrip("/"), what="signal.hubs entry")
        if self.serve_hub not in ("auto", "on", "off"):
            raise ConfigError(f"signal.serve_hub must be auto, on or off, got {self.serve_hub!r}")
        if not isinstance(self.hub_listen_addr, str):
            raise ConfigError('signal.hub_listen_addr must be a "host:port" string')
        if self.hub_listen_addr:
            parse_host_port(self.hub_listen_addr, what="signal.hub_listen_addr")
        if not isinstance(self.callee_dials, bool):
            raise ConfigError(
                f"signal.callee_dials must be true or false, got {self.callee_dials!r}"
            )
        for f in dataclasses.fields(self):
            if f.name in ("hubs", "serve_hub", "hub_listen_addr", "callee_dials"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"signal.{f.name} must be a number, got {value!r}")
            _positive(f"signal.{f.name}", value)
        if self.hub_max_sockets_per_ip > self.hub_max_sockets:
            raise ConfigError("signal.hub_max_sockets_per_ip must not exceed hub_max_sockets")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ConfigError("signal.reconnect_max_s must be ≥ signal.reconnect_initial_s")
        if self.max_frame_bytes < 1024:
            raise ConfigError("signal.max_frame_bytes must be ≥ 1024")


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnServerConfig:
    """One ``[[ice.turn_servers]]`` entry (a2ald's ``turn_servers``): a TURN server with
    static long-term credentials (coturn's ``lt-cred-mech``)."""

    url: str
    """``turn:host:port[?transport=udp|tcp]`` or ``turns:host:port`` (a2ald's form)."""
    username: str
    """The long-term credential's user name."""
    credential: str = dataclasses.field(repr=False)
    """Its password."""

    def __post_init__(self) -> None:
        for name in ("url", "username", "credential"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"ice.turn_servers entry needs a non-empty string {name}")
        scheme = self.url.partition(":")[0].lower()
        if scheme not in ("turn", "turns"):
            raise ConfigError(f"ice.turn_servers url {self.url!r} must start with turn: or turns:")


@dataclass(frozen=True, slots=True, kw_only=True)
class IceTableConfig:
    """ICE beside the hole punch (a2al-wire §6.3; docs/ice.md): when a dial goes through a
    signalling hub, both the caller and the callee also run an ICE agent over the same room
    (host, server-reflexive and, with a TURN server, relay candidates) and QUIC runs over the
    first pair that works when the punch found no path first. Names follow a2ald's
    ``ice_stun_urls`` and ``turn_servers``. No STUN or TURN server is built in: only those
    named here, or (``stun_urls`` empty) the STUN servers the node's ``[nat]`` asks."""

    enabled: bool = True
    """Run ICE beside the punch on hub dials and answers (false: the punch alone, the ICE
    ``cred`` still sent because a2ald waits for it)."""
    stun_urls: tuple[str, ...] = ()
    """``stun:host:port`` servers for server-reflexive candidates (aioice asks the first);
    empty: the STUN servers of ``[nat]`` (``nat.stun_servers``, or what the public-network
    opt-in derives), none in private mode without them."""
    turn_servers: tuple[TurnServerConfig, ...] = ()
    """``[[ice.turn_servers]]`` tables with ``url``, ``username``, ``credential``: TURN
    relays for relay candidates (aioice allocates on the first); empty: no relay."""
    gather_timeout_s: float = 8.0
    """Gathering candidates (STUN and TURN answers included) fails after this."""
    credentials_timeout_s: float = 30.0
    """How long the agent waits for the peer's ``cred`` (a2ald: 30 s)."""
    connect_timeout_s: float = 30.0
    """One ICE connection attempt gives up after this (a2ald: 30 s per hub); a dial ends
    sooner at its own timeout."""
    max_candidate_chars: int = 256
    """Longest candidate string accepted from a peer (longer: dropped and counted)."""
    max_remote_candidates: int = 64
    """Candidates accepted from a peer per room (more: dropped and counted)."""

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"ice.enabled must be true or false, got {self.enabled!r}")
        if not isinstance(self.stun_urls, tuple) or not all(
            isinstance(u, str) for u in self.stun_urls
        ):
            raise ConfigError('ice.stun_urls must be a list of "stun:host:port" strings')
        for url in self.stun_urls:
            scheme, sep, rest = url.partition(":")
            if not sep or scheme.lower() != "stun" or not rest:
                raise ConfigError(f"ice.stun_urls entry {url!r} must look like stun:host:port")
        turns: object = self.turn_servers
        if isinstance(turns, Mapping):
            turns = (turns,)
        if not isinstance(turns, tuple | list):
            raise ConfigError("ice.turn_servers must be a list of [[ice.turn_servers]] tables")
        built: list[TurnServerConfig] = []
        for t in turns:
            if isinstance(t, TurnServerConfig):
                built.append(t)
            elif isinstance(t, Mapping):
                built.append(_build(TurnServerConfig, t, "ice.turn_servers."))
            else:
                raise ConfigError("ice.turn_servers entries must be tables (url, username, "
                                  "credential)")  # fmt: skip
        object.__setattr__(self, "turn_servers", tuple(built))
        for name in ("gather_timeout_s", "credentials_timeout_s", "connect_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"ice.{name} must be a number, got {value!r}")
            _positive(f"ice.{name}", value)
        if not isinstance(self.max_candidate_chars, int) or not (
            64 <= self.max_candidate_chars <= 4096
        ):
            raise ConfigError("ice.max_candidate_chars must be 64-4096 (pion's own are ~130)")
        if not isinstance(self.max_remote_candidates, int) or not (
            1 <= self.max_remote_candidates <= 4096
        ):
            raise ConfigError("ice.max_remote_candidates must be 1-4096")


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsConfig:
    """The node's resource budget: every limit on what peers and clients may make it hold.

    One place for all of them (the ``[limits]`` table), in the spirit of go-libp2p's resource
    manager. docs/security.md says what happens at each limit. Counts are items, sizes bytes.
    """

    # --- QUIC connections and streams (transport)
    connections: int = 1024
    """Live QUIC connections, inbound and outbound."""
    connections_per_aid: int = 8
    """Live inbound connections from one remote AID to one of our identities."""
    connections_per_ip: int = 32
    """Live inbound connections from one IPv4 address or one IPv6 /64."""
    half_open: int = 256
    """Inbound handshakes in progress (connections not yet authenticated)."""
    half_open_per_ip: int = 16
    """Inbound handshakes in progress from one IPv4 address or one IPv6 /64."""
    retry_above_half_open: int = 64
    """With more handshakes than this in progress, new clients must prove their address
    first (QUIC Retry)."""
    idle_evict_s: float = 30.0
    """When ``connections`` is reached, an accepted connection idle (no open stream, no data)
    this long may be closed to make room for a new one."""
    streams_per_connection: int = 100
    """Concurrent streams a peer may open per connection."""
    stream_receive_buffer: int = 6 << 20
    """Received but unread bytes held per stream; flow-control credit returns as the
    application reads (quic-go's largest stream window)."""
    connection_receive_buffer: int = 15 << 20
    """Received but unread bytes held per connection, over all its streams (quic-go's
    largest connection window)."""
    receive_buffer_total: int = 128 << 20
    """Received but unread bytes held over all connections; a stream whose data would go
    past it is reset (the stream asking for memory that is not there loses, as in
    go-libp2p's resource manager)."""

    # --- mailbox
    mailbox_notes_per_sender: int = 200
    """Stored notes from one sender AID (read or unread)."""
    mailbox_bytes_per_sender: int = 256 << 10
    """Stored note bytes from one sender AID."""
    mailbox_notes_total: int = 20_000
    """Stored notes for all local identities together."""
    mailbox_bytes_total: int = 32 << 20
    """Stored note bytes for all local identities together."""
    mailbox_unread_retention_s: float = 90 * 24 * 3600.0
    """Unread notes older than this are purged."""
    mailbox_min_free_disk_bytes: int = 64 << 20
    """Refuse new notes while the data directory's file system has less free space."""

    # --- DHT record store
    dht_keys: int = 100_000
    """Distinct keys held by the record store."""
    dht_records: int = 200_000
    """Records held by the record store, over all keys."""
    dht_records_per_key: int = 256
    """Records held under one key (topic registrants, mailbox notes, …)."""
    dht_bytes: int = 64 << 20
    """Encoded record bytes held by the record store."""
    dht_stores_per_ip_s: float = 20.0
    """Sustained STORE rate accepted from one IP address (burst: 3 s worth)."""
    dht_stores_per_prefix_s: float = 60.0
    """Sustained STORE rate accepted from one IPv4 /24 or IPv6 /64 (burst: 3 s worth)."""

    # --- HTTP front (serve --http) and MCP messages
    http_connections: int = 64
    """Concurrent HTTP connections to ``serve --http``."""
    http_header_timeout_s: float = 10.0
    """A request's headers must arrive within this time."""
    http_body_timeout_s: float = 30.0
    """A request's body must arrive within this time."""
    http_body_max_bytes: int = 4 << 20
    """Largest HTTP request body."""
    mcp_message_max_bytes: int = 4 << 20
    """Largest JSON-RPC message accepted from an MCP client."""
    mcp_local_clients: int = 32
    """MCP clients attached at once to the shared node (``serve --stdio`` proxies)."""
    mcp_calls_in_flight: int = 64
    """Tool calls one MCP session runs at once; more are refused (``LIMIT``)."""

    # --- MCP servers of other agents (remote_tools, call_remote_tool, proxy)
    remote_mcp_response_max_bytes: int = 4 << 20
    """Largest answer taken from another agent's MCP server; a larger one is cut off
    (``LIMIT``)."""
    remote_mcp_call_timeout_s: float = 60.0
    """A call to another agent's MCP server (connecting included) must be answered within
    this time (``TIMEOUT``)."""
    remote_mcp_calls_per_agent: int = 8
    """Calls running at once to one agent's MCP server; more are refused (``LIMIT``)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"limits.{f.name} must be a number, got {value!r}")
            _positive(f"limits.{f.name}", value)
        if self.half_open_per_ip > self.half_open or self.connections_per_ip > self.connections:
            raise ConfigError("limits per IP must not exceed the totals")
        if self.stream_receive_buffer < 65536 or self.connection_receive_buffer < 65536:
            raise ConfigError("limits.*_receive_buffer must be ≥ 65536")
        if self.receive_buffer_total < self.connection_receive_buffer:
            raise ConfigError("limits.receive_buffer_total must be ≥ connection_receive_buffer")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExposeConfig:
    """One MCP server or A2A agent this node serves to other agents over A2AL (an
    ``[[expose]]`` table; docs/remote-mcp.md, docs/concepts/a2a.md). Exactly one of
    ``command`` and ``url``. With ``protocol = "a2a"``:
    an existing plain-HTTP A2A agent at ``url`` (its base URL), published with its card's
    skills as topics (unless ``topics`` names them); it gets the verified caller AID in the
    ``X-A2AL-Caller`` header (docs/concepts/a2a.md)."""

    protocol: str = "mcp"
    """What is exposed: ``mcp`` (an MCP server) or ``a2a`` (an A2A agent on plain HTTP)."""
    command: tuple[str, ...] = ()
    """A stdio MCP server to start and own, as its argument list (``["python", "srv.py"]``)."""
    url: str = ""
    """Or a streamable-HTTP MCP server already running (``http://127.0.0.1:PORT/mcp``); it
    gets the verified caller AID in the ``X-A2AL-Caller`` header."""
    topics: tuple[str, ...] = ()
    """Capability topics it is registered under, with protocol ``mcp`` (or ``a2a``: by
    default the card's skills)."""
    aid: str = ""
    """The local identity serving it (default: the node's own)."""
    allow: tuple[str, ...] = ()
    """Only these caller AIDs (empty: everyone not denied)."""
    deny: tuple[str, ...] = ()
    """Caller AIDs refused."""
    name: str = ""
    """Display name in its topic records."""
    brief: str = ""
    """One sentence in its topic records."""

    def __post_init__(self) -> None:
        if self.protocol not in ("mcp", "a2a"):
            raise ConfigError(f"expose.protocol must be 'mcp' or 'a2a', got {self.protocol!r}")
        if self.protocol == "a2a" and self.command:
            raise ConfigError("an [[expose]] table with protocol 'a2a' takes a url (the A2A "
                              "agent's, http://host:port), not a command")  # fmt: skip
        if bool(self.command) == bool(self.url):
            raise ConfigError("an [[expose]] table needs exactly one of command and url")
        for name in ("command", "topics", "allow", "deny"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"expose.{name} must be a list of strings")
        for name in ("url", "aid", "name", "brief"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"expose.{name} must be a string")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """Everything a node needs to start."""

    listen_addr: str = "127.0.0.1:0"
    """UDP address for DHT and QUIC (port 0 = any free port)."""
    bootstrap: tuple[str, ...] = ()
    """``host:port`` seeds to join through."""
    advertise_host: str = ""
    """Host to publish in our endpoint record when no public address is known."""
    network: Literal["private", "public"] = "private"
    """``public`` additionally looks up the public seeds (explicit opt-in)."""
    auto_publish: bool = True
    """A node run as a server (``serve``, ``node run``) publishes its own endpoint record by
    itself once it knows an address to publish, and again whenever that address or its NAT
    type changes (a2ald's ``auto_publish``); false keeps it unlisted until ``publish``."""
    data_dir: Path | None = None
    """Where state is kept; None = in memory only."""
    dht: DhtConfig = dataclasses.field(default_factory=DhtConfig)
    quic: QuicConfig = dataclasses.field(default_factory=QuicConfig)
    nat: NatConfig = dataclasses.field(default_factory=NatConfig)
    mailbox: MailboxConfig = dataclasses.field(default_factory=MailboxConfig)
    outbox: OutboxConfig = dataclasses.field(default_factory=OutboxConfig)
    limits: LimitsConfig = dataclasses.field(default_factory=LimitsConfig)
    hub: HubConfig = dataclasses.field(default_factory=HubConfig)
    signal: SignalConfig = dataclasses.field(default_factory=SignalConfig)
    ice: IceTableConfig = dataclasses.field(default_factory=IceTableConfig)
    expose: tuple[ExposeConfig, ...] = ()
    """MCP servers served to other agents over A2AL by ``serve`` and ``node run`` (each an
    ``[[expose]]`` table with ``command`` or ``url``, ``topics``, ``aid``, ``allow``,
    ``deny``, ``name``, ``brief``; docs/remote-mcp.md)."""

    def __post_init__(self) -> None:
        if not isinstance(self.expose, tuple) or not all(
            isinstance(e, ExposeConfig) for e in self.expose
        ):
            raise ConfigError("expose must be a list of [[expose]] tables")
        if not isinstance(self.listen_addr, str) or not isinstance(self.advertise_host, str):
            raise ConfigError("listen_addr and advertise_host must be strings")
        if not isinstance(self.bootstrap, tuple) or not all(
            isinstance(b, str) for b in self.bootstrap
        ):
            raise ConfigError('bootstrap must be a list of "host:port" strings')
        if self.data_dir is not None and not isinstance(self.data_dir, Path):
            raise ConfigError("data_dir must be a path")
        parse_host_port(self.listen_addr, what="listen_addr")
        for b in self.bootstrap:
            parse_host_port(b, what="bootstrap entry")
        if not isinstance(self.auto_publish, bool):
            raise ConfigError(f"auto_publish must be true or false, got {self.auto_publish!r}")
        if self.network not in ("private", "public"):
            raise ConfigError(f"network must be 'private' or 'public', got {self.network!r}")

    @property
    def listen(self) -> tuple[str, int]:
        """``listen_addr`` parsed."""
        return parse_host_port(self.listen_addr, what="listen_addr")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Self:
        """Build from a TOML-shaped mapping; unknown keys are an error (typos matter)."""
        sections = {
            "dht": DhtConfig,
            "quic": QuicConfig,
            "nat": NatConfig,
            "mailbox": MailboxConfig,
            "outbox": OutboxConfig,
            "limits": LimitsConfig,
            "hub": HubConfig,
            "signal": SignalConfig,
            "ice": IceTableConfig,
        }
        kwargs: dict[str, Any] = {}
        top = {f.name for f in dataclasses.fields(cls)} - set(sections)
        for key, value in data.items():
            if key in sections:
                if not isinstance(value, Mapping):
                    raise ConfigError(f"[{key}] must be a table")
                kwargs[key] = _build(sections[key], value, f"{key}.")
            elif key == "expose":
                if isinstance(value, Mapping):
                    value = [value]
                if not isinstance(value, list | tuple) or not all(
                    isinstance(t, Mapping | ExposeConfig) for t in value
                ):
                    raise ConfigError("[[expose]] must be an array of tables")
                kwargs[key] = tuple(
                    t if isinstance(t, ExposeConfig) else _build(ExposeConfig, t, "expose.")
                    for t in value
                )
            elif key in top:
                kwargs[key] = value
            else:
                raise ConfigError(f"unknown configuration key {key!r}")
        built: Self = _build(cls, kwargs, "")
        return built


def _build(cls: Any, values: Mapping[str, Any], prefix: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown configuration key {prefix}{key!r}")
        if isinstance(value, list):
            value = tuple(value)
        if key == "data_dir" and isinstance(value, str):
            value = Path(value).expanduser()
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad configuration: {exc}") from exc


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"expected true or false, got {text!r}")


def _split_list(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.replace(";", ",").split(",") if p.strip())


def load_config(
    path: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> NodeConfig:
    """Read the TOML file (if any), then ``A2AL_MCP_*`` variables, then ``overrides``.

    Environment variables: ``A2AL_MCP_LISTEN``, ``A2AL_MCP_BOOTSTRAP`` (comma-separated),
    ``A2AL_MCP_ADVERTISE``, ``A2AL_MCP_HOME`` (data directory), ``A2AL_MCP_NETWORK``,
    ``A2AL_MCP_AUTO_PUBLISH`` (``0``/``false``/``no``/``off`` or ``1``/``true``/``yes``/``on``).

    Raises:
        ConfigError: unreadable file, bad TOML, unknown keys, or invalid values.
    """
    data: dict[str, Any] = {}
    if path is not None:
        import tomllib  # only with a file: the parser is ~10 ms of a start without one

        p = Path(path).expanduser()
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc
    env = os.environ if env is None else env
    mapping: dict[str, tuple[str, Callable[[str], object]]] = {
        "LISTEN": ("listen_addr", str),
        "BOOTSTRAP": ("bootstrap", _split_list),
        "ADVERTISE": ("advertise_host", str),
        "HOME": ("data_dir", str),
        "NETWORK": ("network", str),
        "AUTO_PUBLISH": ("auto_publish", _flag),
    }
    for suffix, (key, convert) in mapping.items():
        value = env.get(ENV_PREFIX + suffix)
        if value:
            data[key] = convert(value)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return NodeConfig.from_mapping(data)
