"""NatService: the thin driver of NAT sensing — where the node stands, told to the DHT at once.

It owns :class:`~a2al_mcp.nat.sense.NatSense` (votes, STUN, NAT_PROBE, the classification)
and, with ``nat.upnp``, the gateway port mapper, and it feeds them:

* votes: every DHT ``AddressObserved`` (the reporter's AID) and every stream-0 ObservedAddr
  (the AID of the peer we dialled), also tallied in :class:`~.observed.ObservedAddresses`
  for ``status``;
* the socket's local addresses: the bound address, or for a wildcard bind the address the
  routing table sends from towards a known peer (a UDP ``connect`` that sends nothing), read
  again every :data:`CHECK_INTERVAL_S` — a change is a network change;
* STUN: :class:`NatCore` is the endpoint's ``"stun"`` datagram core, so requests leave from
  the shared DHT/QUIC socket (the mapping a STUN server sees is the one peers see) and the
  answers come back through the demux; only servers ``nat.stun_servers`` names are asked;
* NAT_PROBE in both roles, through the DHT core's commands and events;
* DHT peers the NAT probe may ask.

Timers run in the endpoint's timer loop (NatCore is a datagram core like the DHT's); the
network checks and the port mapper run as loops of the node's supervisor.

When the view changes (NAT type, external addresses, public or not, the gateway mapping),
``on_change`` is called at once: the node renews the endpoint records of every published
identity (or publishes its own for the first time: auto-publish), so the record in the DHT
carries the truth within seconds instead of at the next 30-min renewal.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, Protocol

import anyio

from .._clock import Clock
from .._dataclass import dataclass
from .._random import Rng
from .._types import Addr, Datagram
from ..config import NodeConfig, parse_host_port
from ..dht import events as ev
from ..errors import ConfigError, UsageError
from ..nat.addresses import parse_ip
from ..nat.config import NatSenseConfig
from ..nat.effects import NatEffect, SendProbeEcho, SendProbeRequest, SendStun, ViewChanged
from ..nat.endpoints import endpoint_urls as nat_endpoint_urls
from ..nat.endpoints import quic_url
from ..nat.sense import NatSense, NatStats
from ..nat.types import NatType, NatView
from .observed import ObservedAddresses
from .status import NatStatus

if TYPE_CHECKING:
    from ..nat.portmap_service import PortMapper

__all__ = [
    "CHECK_INTERVAL_S",
    "PUBLIC_STUN_SERVERS",
    "NatCore",
    "NatService",
    "ProbeSender",
    "endpoint_urls",
    "resolve_stun_servers",
    "stun_entries",
]

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S: Final = 2.0
"""How often the local route address and the DHT peers offered to the NAT probe are read
again (cheap: one unconnected-then-connected UDP socket, nothing sent)."""

_WILDCARDS: Final = ("0.0.0.0", "::", "")


def endpoint_urls(view: NatView, local_addr: Addr, advertise_host: str = "") -> tuple[str, ...]:
    """The ``quic://`` URLs an endpoint record carries now: a2al-wire §3.6's list
    (:func:`a2al_mcp.nat.endpoints.endpoint_urls`: peers' consensus, STUN, a public bound
    address, ``advertise_host``, the gateway mapping); when that is empty, a specific (not
    wildcard) bound address, so a LAN or loopback network keeps working as before (a private
    address is never published beside a public one). Behind a symmetric NAT with a wildcard
    bind the list may be empty: the record still tells dialers the type.

    Raises:
        UsageError: nothing is known yet: the socket is bound to a wildcard address, no peer
            or STUN server has told us our address and none is advertised.
    """
    host, port = local_addr
    urls = list(nat_endpoint_urls(view, local_port=port, advertise_host=advertise_host or None))
    if not urls and host not in _WILDCARDS:
        urls.append(quic_url(host, port))
    if not urls and view.nat_type is not NatType.SYMMETRIC:
        raise UsageError(
            "cannot determine an address to publish yet: the node listens on a wildcard "
            f"address ({host or '*'}:{port}) and no peer or STUN server has told it its "
            "public address. Wait until it has joined (status shows nat.public_addrs), "
            "configure nat.stun_servers, or set advertise_host (--advertise HOST)"
        )
    return tuple(dict.fromkeys(urls))


class NatCore:
    """:class:`NatSense` as the endpoint's ``"stun"`` datagram core: STUN datagrams in,
    STUN requests out from the shared socket, the timer in the endpoint's timer loop; the
    other effects (NAT_PROBE sends, view changes) leave as its events."""

    def __init__(self, sense: NatSense) -> None:
        self.sense = sense
        self._datagrams: list[Datagram] = []
        self._events: deque[NatEffect] = deque()

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self.sense.stun_datagram(data, addr, now)

    def handle_timer(self, now: float) -> None:
        self.sense.handle_timer(now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        self._pump()
        out, self._datagrams = self._datagrams, []
        return out

    def get_timer(self) -> float | None:
        return self.sense.get_timer()

    def next_event(self) -> NatEffect | None:
        self._pump()
        return self._events.popleft() if self._events else None

    def _pump(self) -> None:
        for effect in self.sense.effects():
            if isinstance(effect, SendStun):
                self._datagrams.append((effect.data, effect.addr))
            else:
                self._events.append(effect)


class ProbeSender(Protocol):
    """The DHT core's NAT_PROBE commands (the node passes the core)."""

    def send_nat_probe(self, peer: Addr, token: bytes, claimed: Addr, now: float) -> None: ...

    def send_nat_echo(self, addr: Addr, token: bytes, now: float) -> None: ...


@dataclass(frozen=True, slots=True)
class _Wiring:
    clock: Clock
    flush: Callable[[], None]
    local_addr: Callable[[], Addr]
    route_source: Callable[[Addr], str | None]
    peers: Callable[[], list[Addr]]
    on_change: Callable[[], None]


class NatService:
    """The driver: NatSense (+ the port mapper) fed by the node, its view turned into
    endpoint URLs, a NAT type and ``status`` lines."""

    def __init__(
        self, config: NodeConfig, *, rng: Rng, stun_servers: tuple[Addr, ...] = ()
    ) -> None:
        """
        Args:
            config: the node's configuration (``nat``, ``advertise_host``, ``bootstrap``).
            rng: the node's randomness (STUN transaction IDs, probe tokens).
            stun_servers: ``nat.stun_servers`` resolved to IP literals
                (:func:`resolve_stun_servers`).
        """
        self._config = config
        self.sense = NatSense(
            NatSenseConfig(stun_servers=stun_servers,
                           min_observed_peers=config.nat.min_observed_peers,
                           stun_refresh_s=config.nat.stun_interval_s),
            rng=rng,
        )  # fmt: skip
        self.core = NatCore(self.sense)
        self.observed = ObservedAddresses()
        self._wiring: _Wiring | None = None
        self._probe: ProbeSender | None = None
        self._route_peers: tuple[Addr, ...] = tuple(
            parse_host_port(b, what="bootstrap entry") for b in config.bootstrap
        )
        self._mapper: PortMapper | None = None
        self._locals_seen: list[Addr] | None = None
        self.view_changes = 0
        """ViewChanged effects seen (each asked for a republish)."""

    # -- wiring (the node calls these once the endpoint is open) -------------------------

    def attach(
        self,
        *,
        clock: Clock,
        flush: Callable[[], None],
        local_addr: Callable[[], Addr],
        route_source: Callable[[Addr], str | None],
        peers: Callable[[], list[Addr]],
        on_change: Callable[[], None],
        probe: ProbeSender | None = None,
    ) -> None:
        """Connect the service to the open node.

        Args:
            clock: the node's clock (``now`` for the core).
            flush: sends what the cores queued (the endpoint's flush).
            local_addr: the bound address.
            route_source: the local IP towards a peer (:meth:`UdpEndpoint.route_source`).
            peers: DHT routing peers' addresses.
            on_change: called (synchronously) when the view changed: republish.
            probe: the DHT core's NAT_PROBE commands, if it has them.
        """
        self._wiring = _Wiring(clock, flush, local_addr, route_source, peers, on_change)
        self._probe = probe

    def start(self) -> None:
        """The socket is up: set the local addresses and start STUN."""
        w = self._require()
        now = w.clock.monotonic()
        self._locals_seen = self._locals()
        self.sense.set_local(self._locals_seen, now)
        self.sense.start(now)
        w.flush()

    def port_mapper(self) -> PortMapper | None:
        """The gateway port mapper for the bound socket when ``nat.upnp`` is true (else None,
        and no SSDP, PCP or NAT-PMP packet is ever sent); the node runs it in its task
        group. The mapping it holds (or loses) goes into the view. The port-mapping
        clients are imported only when ``nat.upnp`` is on."""
        w = self._require()
        if not self._config.nat.upnp:
            return None  # what PortMapper.from_config answers, without loading it
        from ..nat.portmap_service import PortMapper

        self._mapper = PortMapper.from_config(self._config.nat, listen=w.local_addr(),
                                              clock=w.clock, on_change=self.set_upnp)  # fmt: skip
        return self._mapper

    # -- inputs ----------------------------------------------------------------------------
    # Votes and NAT_PROBE arrivals come from the endpoint's event path (DHT and QUIC events
    # are delivered before the "stun" core's turn in the same flush), so what they queue
    # leaves in that flush: no flush of their own.

    def observe(self, reporter: bytes, addr: Addr) -> None:
        """A peer (its AID bytes) sees us at ``addr``: a vote, and a line in the tally."""
        self.observed.note(addr)
        w = self._wiring
        if w is None:
            return
        self.sense.observe(reporter, addr, w.clock.monotonic())

    def probe_requested(self, source: Addr, token: bytes, claimed: Addr) -> None:
        """A peer at ``source`` asks for a NAT_PROBE_ECHO to ``claimed``."""
        w = self._wiring
        if w is not None:
            self.sense.probe_requested(source, token, claimed, w.clock.monotonic())

    def probe_echoed(self, token: bytes, source: Addr) -> None:
        """A NAT_PROBE_ECHO arrived."""
        w = self._wiring
        if w is not None:
            self.sense.probe_echoed(token, source, w.clock.monotonic())

    def on_dht_event(
        self, event: ev.AddressObserved | ev.NatProbeRequested | ev.NatProbeEchoed
    ) -> None:
        """The DHT events NAT sensing takes: a vote, a NAT_PROBE_REQ, a NAT_PROBE_ECHO."""
        if isinstance(event, ev.AddressObserved):
            self.observe(bytes(event.reporter), event.addr)
        elif isinstance(event, ev.NatProbeRequested):
            self.probe_requested(event.addr, event.token, event.claimed)
        else:
            self.probe_echoed(event.token, event.addr)

    def on_effect(self, effect: object) -> None:
        """An event of :class:`NatCore` (the endpoint's ``"stun"`` core)."""
        w = self._wiring
        if w is None:
            return
        now = w.clock.monotonic()
        if isinstance(effect, ViewChanged):
            self.view_changes += 1
            v = effect.view
            logger.info("nat.view type=%s external=%s public=%s upnp=%s", v.nat_type.words,
                        v.external, v.public, v.upnp)  # fmt: skip
            w.on_change()
        elif isinstance(effect, SendProbeRequest):
            if self._probe is not None:
                self._probe.send_nat_probe(effect.peer, effect.token, effect.claimed, now)
                w.flush()
        elif isinstance(effect, SendProbeEcho) and self._probe is not None:
            self._probe.send_nat_echo(effect.addr, effect.token, now)
            w.flush()

    def set_upnp(self, mapping: Addr | None) -> None:
        """The gateway mapping the port mapper holds now (None: none, or lost)."""
        w = self._wiring
        if w is not None:
            self.sense.set_upnp(mapping, w.clock.monotonic())
            w.flush()

    # -- the periodic checks ---------------------------------------------------------------

    async def check_loop(self, interval_s: float = CHECK_INTERVAL_S) -> None:
        """Every ``interval_s``: read the local route address again (a changed one is a
        network change: STUN, tests and the probe run again and the view is republished),
        and offer the DHT's peers to the NAT probe."""
        while True:
            await anyio.sleep(interval_s)
            self.check()

    def check(self) -> None:
        """One round of :meth:`check_loop`."""
        w = self._require()
        now = w.clock.monotonic()
        peers = w.peers()
        if peers:
            self.sense.offer_peers(peers[:32], now)
        local = self._locals(peers)
        if local != self._locals_seen:
            if self._locals_seen is not None:
                logger.info("nat.network_changed local=%s was=%s", local, self._locals_seen)
                if self._mapper is not None:
                    self._mapper.network_changed()
            self._locals_seen = local
        self.sense.set_local(local, now)
        w.flush()

    def _locals(self, peers: list[Addr] | None = None) -> list[Addr]:
        """The socket's local addresses: the bound one, or for a wildcard bind the source
        address towards a seed or peer of each family."""
        w = self._require()
        host, port = w.local_addr()
        if host not in _WILDCARDS:
            return [(host, port)]
        found: dict[str, None] = {}
        towards = [*self._route_peers, *(peers or [])[:4]]
        families: set[bool] = set()
        for peer in towards:
            v4 = ":" not in peer[0]
            if v4 in families:
                continue
            source = w.route_source(peer)
            if source is not None:
                families.add(v4)
                found[source] = None
        return [(ip, port) for ip in found]

    # -- outputs ---------------------------------------------------------------------------

    @property
    def view(self) -> NatView:
        return self.sense.view

    def nat_type(self) -> int:
        """The ``nat_type`` endpoint records carry now: NatSense's, but 1 while the gateway
        maps a port to us (anyone reaches the mapping directly, whatever the NAT does to
        other traffic: published as public, as a2ald does)."""
        v = self.sense.view
        if v.upnp is not None:
            return int(NatType.FULL_CONE)
        return int(v.nat_type)

    def endpoint_urls(self) -> tuple[str, ...]:
        """The URLs to publish now (:func:`endpoint_urls`)."""
        return endpoint_urls(self.sense.view, self._require().local_addr(),
                             self._config.advertise_host)  # fmt: skip

    def settling(self) -> bool:
        """A STUN test or the gateway's first mapping attempt is under way: what the node
        would publish may change in a moment."""
        return self.sense.settling or (self._mapper is not None and self._mapper.settling)

    def knows_address(self) -> bool:
        """There is an address to publish (auto-publish may go)."""
        try:
            self.endpoint_urls()
        except UsageError:
            return False
        return True

    def status(self) -> NatStatus:
        v = self.sense.view
        public = tuple(dict.fromkeys([*v.external, *([v.upnp] if v.upnp else [])]))
        try:
            urls = self.endpoint_urls() if self._wiring is not None else ()
        except UsageError:
            urls = ()
        words = "public (no NAT)" if v.public else v.nat_type.words
        if v.upnp is not None and not v.public:
            words = f"{words}, port mapped by the gateway (published as full cone)"
        return NatStatus(public_addrs=public, nat_type=self.nat_type(), nat_type_words=words,
                         upnp_mapping=v.upnp, reachable_directly=v.direct,
                         published_endpoints=urls, evidence=v.evidence)  # fmt: skip

    def statistics(self) -> NatStats:
        return self.sense.statistics()

    def _require(self) -> _Wiring:
        if self._wiring is None:
            raise UsageError("the NAT service is not attached to an open node")
        return self._wiring


PUBLIC_STUN_SERVERS: Final = (
    "stun.l.google.com:19302",
    "stun1.l.google.com:19302",
    "stun.cloudflare.com:3478",
)
"""The STUN servers a2ald 0.3.5 asks (its compiled-in list): used only once the user opted
into the public network (``network = "public"``) and named none in ``nat.stun_servers``."""

HUB_STUN_PORT: Final = 3478
"""a2ald derives a STUN server from each signalling hub's host at this port (its hubs run
coturn beside them)."""

PUBLIC_STUN_LOOKUP_S: Final = 3.0
"""How long a public node's start waits for the names of derived STUN servers; the ones
not resolved by then are skipped (logged), so a broken resolver delays no start for long."""


def stun_entries(config: NodeConfig) -> tuple[tuple[str, ...], bool]:
    """The STUN servers to ask (``host:port``) and whether configuration named them.

    ``nat.stun_servers`` when set. Otherwise none in private mode (nothing is ever sent to a
    server nobody named); with the public-network opt-in, a2ald's choice: the host of each
    ``signal.hubs`` entry at :data:`HUB_STUN_PORT`, then :data:`PUBLIC_STUN_SERVERS`.
    """
    named = config.nat.stun_servers
    if named or config.network != "public":
        return tuple(named), True
    derived = [f"{_hub_host(h)}:{HUB_STUN_PORT}" for h in config.signal.hubs]
    return tuple(dict.fromkeys([*derived, *PUBLIC_STUN_SERVERS])), False


def _hub_host(url: str) -> str:
    host, _port = parse_host_port(url.removeprefix("ws://").rstrip("/"), what="signal.hubs entry")
    return f"[{host}]" if ":" in host else host


async def resolve_stun_servers(entries: Sequence[str], *, named: bool = True) -> tuple[Addr, ...]:
    """STUN servers (``host:port``) as IP literals. Names are looked up once, here (the
    system resolver, in a worker thread); nothing but these entries is ever asked.

    Args:
        named: the entries are ``nat.stun_servers`` (a name that does not resolve is a
            configuration error); False for derived ones (:func:`stun_entries`), whose
            failures are logged and skipped, all within :data:`PUBLIC_STUN_LOOKUP_S`.

    Raises:
        ConfigError: a named entry does not resolve.
    """
    out: list[Addr] = []
    with anyio.move_on_after(None if named else PUBLIC_STUN_LOOKUP_S) as scope:
        for entry in entries:
            host, port = parse_host_port(entry, what="nat.stun_servers entry")
            if parse_ip(host) is not None:
                out.append((host, port))
                continue
            try:
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            except OSError as exc:
                if named:
                    raise ConfigError(
                        f"nat.stun_servers entry {entry!r} does not resolve: {exc}"
                    ) from exc
                logger.warning("nat.stun_unresolved server=%s reason=%s", entry, exc)
                continue
            for _family, _type, _proto, _name, sockaddr in infos:
                out.append((str(sockaddr[0]), int(sockaddr[1])))
                break
    if scope.cancelled_caught:
        logger.warning("nat.stun_lookup_slow resolved=%d of=%d", len(out), len(entries))
    return tuple(dict.fromkeys(out))
