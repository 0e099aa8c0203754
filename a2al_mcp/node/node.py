"""Node: the composition root — it builds the services, owns their task group, and forwards
the public async API to them.

``async with Node(config, identity) as node:`` binds the socket and joins the network
through ``config.bootstrap``; nothing is sent anywhere else. Every background task lives in
the node's task group and stops on close.

Who does what: :class:`~.identities.IdentityStore` (who we act as), :class:`~.joining.Joiner`
(bootstrap, rejoin, the peer cache), :class:`~.finder.Finder` (resolve, profile, discover),
:class:`~.publisher.Publisher` (what we publish, renewed), :class:`~.serving.Acceptor` (the
accepting side of QUIC), :class:`~.dialer.Dialer` (the dialling side: connect, streams,
fetch, tunnels), :class:`~.mailbox.Mailbox` (notes), :class:`~.supervision.Supervisor`
(tasks and what they raise), :class:`~.nat_service.NatService` (where we stand behind a NAT:
votes, STUN, NAT_PROBE, the port mapping), :class:`~.auto_publish.AutoPublisher` (endpoint
records renewed at once when that changes; the node's own published by itself),
:class:`~.traversal.CalleeTraversal` (with ``[signal]`` hubs or a hub served: registrations
with signalling hubs named in the endpoint records, calls answered with a hole punch; loaded
only then), :class:`~.mode_b.ModeB` (DHT messages over QUIC to and from NATed nodes, a2al-wire
§4.11: it stands in for the DHT core on the endpoint).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.lowlevel

from .._clock import Clock, SystemClock
from .._random import Rng, SystemRng
from .._types import Addr
from ..config import NodeConfig, parse_host_port
from ..dht import events as ev
from ..dht.core import DhtCore
from ..dht.lookup import LookupKind
from ..dht.service import DHT_EVENT_TYPES, DhtService, operation_timeout
from ..errors import HandshakeFailed, NodeClosed, UsageError
from ..identity.aid import Aid, NodeId
from ..identity.local import DelegatedIdentity, Identity
from ..protocol.payloads import AgentProfilePayload
from ..protocol.records import SignedRecord
from ..transport.certificates import CertificateStore, LocalCertificate
from ..transport.endpoint import UdpEndpoint
from ..transport.peer import PeerConnection, QuicService
from ..transport.quic_host import ConnectionAccepted, ConnectionEvent, ConnectionGone
from ..transport.session import PeerControl, RouteReceived
from .auto_publish import AutoPublisher
from .connect import Connector
from .dial_strategy import PathTry, UsedPath
from .dialer import Dialer
from .finder import Finder
from .identities import IdentityStore
from .inbox import Inbox, Note
from .joining import Joiner
from .mailbox import Mailbox, MailboxStats, SendResult
from .mode_b import ModeB, ModeBStats
from .nat_service import NatService, resolve_stun_servers, stun_entries
from .outbox import Outbox
from .publisher import Publisher
from .quic_verbs import QuicVerbs
from .serving import Acceptor, Serving, StreamHandler
from .status import (
    ConnectionPath,
    ContainedErrors,
    NodeStatus,
    ResolvedEndpoint,
    ServiceEntry,
    TraversalStatus,
)
from .supervision import Supervisor

if TYPE_CHECKING:  # the signalling and ICE bricks load only when traversal is configured
    from .punch_paths import HubCaller
    from .traversal import CalleeTraversal, TraversalStats

__all__ = ["Node", "NodeStatus", "ResolvedEndpoint", "ServiceEntry", "Serving", "StreamHandler"]

_QUIC_EVENT_TYPES = (ConnectionAccepted, ConnectionEvent, ConnectionGone)
_NAT_DHT_EVENTS = (ev.AddressObserved, ev.NatProbeRequested, ev.NatProbeEchoed)


class _State(Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class Node(QuicVerbs):
    """A full A2AL peer: DHT, QUIC connections and streams, mailbox."""

    def __init__(
        self,
        config: NodeConfig | None = None,
        identity: Identity | None = None,
        *,
        clock: Clock | None = None,
        rng: Rng | None = None,
        join_in_background: bool = False,
        auto_publish: bool = False,
    ) -> None:
        """``join_in_background``: ``async with`` returns as soon as the socket is open
        instead of after the network join (a server that must answer at once: the MCP
        front's ``initialize``); every verb that needs the DHT waits for the join first.
        ``auto_publish``: a server (``serve``, ``node run``) publishes the node's endpoint
        record by itself once it knows an address, unless ``config.auto_publish`` is off."""
        self.config = config or NodeConfig()
        self._join_in_background = join_in_background
        self._joined: anyio.Event | None = None
        self._clock = clock or SystemClock()
        self._rng = rng or SystemRng()
        self.identity = identity or Identity.generate(self._rng)
        self._state = _State.UNOPENED
        self._identities = IdentityStore(self.identity, data_dir=self.config.data_dir,
                                         clock=self._clock, rng=self._rng,
                                         on_added=self._add_certificate)  # fmt: skip
        self._joiner = Joiner(self.config, dht=self._check_open)
        self._finder = Finder(self._lookup)
        self._publisher = Publisher(
            publish_record=self._publish_record, identity=self._identity,
            endpoint_urls=lambda: self._nat_service().endpoint_urls(),
            nat_type=lambda: self._nat_service().nat_type(),
            signal_hubs=lambda: () if self._traversal is None else self._traversal.live_hubs(),
            clock=self._clock, republish_interval_s=self.config.dht.republish_interval_s,
        )  # fmt: skip
        self._auto = AutoPublisher(self._publisher, node_aid=self.identity.aid,
                                   enabled=auto_publish and self.config.auto_publish,
                                   knows_address=lambda: self._nat_service().knows_address(),
                                   settling=lambda: self._nat_service().settling(),
                                   joined=self._join_done)  # fmt: skip
        self._acceptor = Acceptor(identities=self._identities, node_aid=self.identity.aid)
        self._tasks = Supervisor(clock=self._clock)
        self._nat: NatService | None = None
        self._traversal: CalleeTraversal | None = None
        self._hub_caller: HubCaller | None = None
        # Built on open (they bind, generate certificates or open the inbox):
        self._endpoint: UdpEndpoint | None = None
        self._dht: DhtService | None = None
        self._certs: CertificateStore | None = None
        self._quic: QuicService | None = None
        self._mode_b: ModeB | None = None
        self._connector: Connector | None = None
        self._dialer: Dialer | None = None
        self._mailbox: Mailbox | None = None
        self._outbox: Outbox | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is not _State.UNOPENED:
            raise UsageError(f"cannot open a node that is {self._state.value}")
        cfg = self.config
        host, _port = cfg.listen
        self._identities.load_agents()
        entries, named = stun_entries(cfg)
        stun_servers = await resolve_stun_servers(entries, named=named)
        nat = self._nat = NatService(cfg, rng=self._rng, stun_servers=stun_servers)
        core = DhtCore(self.identity, rng=self._rng, config=cfg.dht, limits=cfg.limits,
                       wall_offset=self._clock.wall() - self._clock.monotonic(),
                       allow_local_hearsay=host.startswith("127.") or host == "::1",
                       report_unanswered=cfg.dht.mode_b)  # fmt: skip
        inbox = Inbox(None if cfg.data_dir is None else cfg.data_dir / "inbox.db", cfg.limits)
        mailbox = self._mailbox = Mailbox(
            inbox, config=cfg.mailbox, clock=self._clock, rng=self._rng,
            identities=self._identities, resolve=self.resolve, connect=self.connect,
            publish_record=self._publish_record, aggregate=self._finder.aggregate,
            dht_ready=lambda: self._dht is not None and self._dht.ready,
            spawn=self._spawn_open, connected=self.is_connected,
        )  # fmt: skip
        dht = self._dht = DhtService(core, clock=self._clock, flush=self._flush,
                                     timeout_s=operation_timeout(cfg.dht),
                                     on_mailbox=mailbox.on_dht_record)  # fmt: skip
        self._certs = CertificateStore.generate(
            self.identity, *[i for a, i in self._identities.items() if a != self.aid],
            now=self._clock.wall(), rng=self._rng,
        )  # fmt: skip
        mode_b = self._mode_b = ModeB(core, config=cfg.dht, now=self._clock.monotonic,
                                      flush=self._flush, spawn=self.spawn,
                                      dial=self._mode_b_dial)  # fmt: skip
        handlers = self._acceptor.handlers(agent_info=self._publisher.agent_info,
                                           note_observed=_ignore_addr,  # voted below
                                           cache_record=dht.cache_record,
                                           on_mailbox=mailbox.on_frame,
                                           dht_stream=mode_b.read_stream)  # fmt: skip
        handlers = dataclasses.replace(
            handlers, on_peer_control=_voting(handlers.on_peer_control, nat.observe),
            route=_noting_accepted(handlers.route, self._accepted),
        )  # fmt: skip
        quic = self._quic = QuicService(
            certificates=self._certs, flush=self._flush, now=self._clock.monotonic,
            wall=self._clock.wall, spawn=self.spawn, handlers=handlers, limits=cfg.limits,
            handshake_timeout_s=cfg.quic.handshake_timeout_s,
            idle_timeout_s=cfg.quic.idle_timeout_s, rng=self._rng,
            send_buffer=cfg.quic.send_buffer_max_bytes,
        )  # fmt: skip
        connector = self._connector = Connector(quic, now=self._clock.monotonic, ipv6=":" in host,
                                                keepalive_s=cfg.quic.keepalive_s,
                                                own_nat=nat.nat_type,
                                                hub_path=self._hub_path,
                                                upgrade_path=self._hub_path_no_relay)  # fmt: skip
        endpoint = self._endpoint = UdpEndpoint(cfg.listen, clock=self._clock, dht=mode_b,
                                                quic=quic.host, stun=nat.core,
                                                on_events=self._on_events)  # fmt: skip
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(endpoint)
            nat.attach(clock=self._clock, flush=self._flush, local_addr=lambda: endpoint.local_addr,
                       route_source=endpoint.route_source, peers=dht.peer_addrs,
                       on_change=self._auto.changed,
                       probe=core)  # fmt: skip
            nat.start()
            stack.callback(inbox.close)  # after the task group has stopped
            outbox = self._outbox = Outbox(
                None if cfg.data_dir is None else cfg.data_dir / "outbox.db",
                cfg.outbox, clock=self._clock,
                resolve=self.resolve, connect=self.connect, fetch=self.fetch,
                connected=self.is_connected,
            )  # fmt: skip
            stack.callback(outbox.close)  # after the task group has stopped
            stack.push_async_callback(self._close_quic)
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)  # runs first on exit
            self._dialer = Dialer(connector, identity=self._identity, resolve=self.resolve,
                                  task_group=tg, check_open=self._check_open,
                                  handshake_timeout_s=cfg.quic.handshake_timeout_s)  # fmt: skip
            mapper = nat.port_mapper()
            if mapper is not None:
                await tg.start(mapper.run)
                stack.push_async_callback(mapper.aclose)  # deletes the mapping, before cancel
            self._tasks.attach(tg)
            stack.callback(self._tasks.detach)  # also when joining fails
            self._start_traversal(endpoint, quic, nat)
            self._state = _State.OPEN
            stack.callback(lambda: self._joiner.save_peers(dht.peer_addrs()))
            self._joined = anyio.Event()
            if self._join_in_background:
                self.spawn(self._join_then_mark)
            else:
                await self._join_then_mark()
            for loop in (self._publisher.republish_loop, self._joiner.rejoin_loop,
                         connector.maintain, mailbox.poll_loop, nat.check_loop,
                         self._auto.run):  # fmt: skip
                self._tasks.start(loop)
            self._tasks.start(outbox.run)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close: stop background tasks and the socket (must run in the entering task)."""
        self._state = _State.CLOSED
        self._tasks.detach()
        if self._dht is not None:
            self._dht.close()
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    async def aclose(self) -> None:
        """Stop background work and close the socket. Idempotent."""
        await self.__aexit__(None, None, None)

    async def _close_quic(self) -> None:
        if self._traversal is not None or self._hub_caller is not None:
            from ..ice.session import settle_lingering  # loaded with the traversal already

            await settle_lingering()  # ICE sessions closed while gathering: their sockets
        if self._dialer is not None:
            await self._dialer.aclose()  # its tunnels
        if self._quic is not None and self._quic.connections():
            self._quic.close_all()
            self._flush()  # the CONNECTION_CLOSE frames leave now
            await anyio.lowlevel.checkpoint()

    def _start_traversal(self, endpoint: UdpEndpoint, quic: QuicService, nat: NatService) -> None:
        """With ``signal.hubs`` or a hub to serve: the callee's side of NAT traversal, as a
        supervised task of the node (docs/signal.md, "In the node")."""
        cfg, sig = self.config, self.config.signal
        host, port = cfg.listen
        serve = sig.serve_hub == "on" or (
            sig.serve_hub == "auto" and cfg.network == "public" and port != 0
        )
        if not sig.hubs and not serve:
            return
        from .punch_paths import accept_ice, node_ice
        from .traversal import CalleeTraversal, own_hub_url, punch_addrs, quic_dial

        hub_at = None
        if serve:
            hub_at = (parse_host_port(sig.hub_listen_addr, what="signal.hub_listen_addr")
                      if sig.hub_listen_addr else (host, endpoint.local_addr[1]))  # fmt: skip

        def own_hub(bound: Addr) -> str | None:
            view = nat.view
            public_ip = view.external_v4[0][0] if view.public and view.external_v4 else None
            if public_ip is None and view.external:
                return None  # behind a NAT: the hub's TCP port is not reachable
            return own_hub_url(bound, public_ip=public_ip, bound_host=bound[0])

        async def dial(local: Aid, remote: Aid, addr: Addr, timeout_s: float) -> bool:
            return await quic_dial(quic, local, remote, addr, timeout_s)

        self._traversal = CalleeTraversal(
            sig, clock=self._clock, rng=self._rng, serve_hub=hub_at,
            published=self._publisher.published, own_hub=own_hub,
            punch_addrs=lambda: punch_addrs(nat.view, endpoint.local_addr),
            nat_type=nat.nat_type, send_datagram=endpoint.send_datagram,
            dial=dial if sig.callee_dials else None,
            on_change=self._auto.changed,
            ice=lambda: node_ice(cfg, nat.sense.config.stun_servers),
            accept_ice=lambda ice: accept_ice(quic, ice, cfg.quic.handshake_timeout_s),
            dht_target=self.aid if cfg.dht.mode_b else None,
            accept_dht=self._accept_mode_b,
        )  # fmt: skip
        self._tasks.start(self._traversal.run)

    async def _accept_mode_b(self, ice: Any) -> PeerConnection:
        """The callee's connection over a connected ICE session for a call to the node AID:
        Mode B (the DHT adopts it with its first stream) unless its stream 0 is a route
        frame."""
        from .punch_paths import accept_ice

        if self._quic is None or self._mode_b is None:
            raise NodeClosed("the node is not open")
        return await accept_ice(self._quic, ice, self.config.quic.handshake_timeout_s,
                                dht_only=True)  # fmt: skip

    async def _mode_b_dial(self, aid: Aid) -> PeerConnection | None:
        """Reach the NATed node ``aid`` (a DHT peer UDP does not answer) over Mode B: its
        endpoint record's hubs, our node identity, ICE, no route frame; None when its record
        names no hub or no NAT (a2al-wire §4.11)."""
        from .dialer import dial_target

        target = dial_target(await self.resolve(aid))
        if not target.hubs or target.nat_type < 2 or self._certs is None:
            return None
        cert = self._certs.get(self.aid)
        if cert is None:
            return None
        return await self._hub_path(cert, aid, target.hubs, dht_only=True)

    def mode_b_statistics(self) -> ModeBStats | None:
        """What Mode B (DHT messages over QUIC to and from NATed nodes) did; None before
        the node opened."""
        return None if self._mode_b is None else self._mode_b.stats

    def _accepted(self, peer: Aid, addr: Addr) -> None:
        if self._quic is not None and any(p.addr == addr for p in self._quic.paths()):
            return  # over an ICE pair (the traversal's own), not a punch's path
        if self._traversal is not None:
            self._traversal.accepted(peer, addr)
        if self._hub_caller is not None:
            self._hub_caller.accepted(peer, addr)

    async def _hub_path_no_relay(
        self, local: LocalCertificate, remote: Aid, hubs: tuple[str, ...]
    ) -> PeerConnection:
        """A call through the hubs whose ICE takes no relay (a relay connection's upgrade)."""
        return await self._hub_path(local, remote, hubs, relay=False)

    async def _hub_path(
        self,
        local: LocalCertificate,
        remote: Aid,
        hubs: tuple[str, ...],
        *,
        relay: bool = True,
        dht_only: bool = False,
    ) -> PeerConnection:
        """The caller's side of NAT traversal: a punch through the hubs the target's record
        names (its bricks load with the first such dial; docs/signal.md, "In the node").
        ``dht_only``: a Mode-B connection to a NATed node (ICE alone, no route frame)."""
        if self._hub_caller is None:
            from .punch_paths import HubCaller, node_ice, punch_addrs

            endpoint, quic, nat = self._endpoint, self._quic, self._nat_service()
            if endpoint is None or quic is None:
                raise NodeClosed("the node is not open")
            self._hub_caller = HubCaller(
                self.config.signal, clock=self._clock, rng=self._rng, service=quic,
                punch_addrs=lambda: punch_addrs(nat.view, endpoint.local_addr),
                nat_type=nat.nat_type, send_datagram=endpoint.send_datagram,
                ice=lambda: node_ice(self.config, nat.sense.config.stun_servers),
            )  # fmt: skip
        return await self._hub_caller.connect(local, remote, hubs, relay=relay,
                                              dht_only=dht_only)  # fmt: skip

    def traversal_statistics(self) -> TraversalStats | None:
        """What the callee side of NAT traversal did (None: not configured): calls answered,
        punches that found a path or not, contained errors, live hub changes."""
        return None if self._traversal is None else self._traversal.stats

    def connection_path(self, aid: Aid, *, local: Aid | None = None) -> UsedPath | None:
        """Which path the pooled connection from ``local`` (default: the node) to ``aid``
        came up on (``direct`` or ``punched``), the peer's address on it and how long the
        dial took; None without a connection we dialled."""
        return self._dial().path_to(aid, local=local)

    def dial_tries(self, aid: Aid) -> tuple[PathTry, ...]:
        """The paths the last dial to ``aid`` tried: kind, start, duration, outcome."""
        return self._dial().tried(aid)

    def signal_hubs(self) -> tuple[str, ...]:
        """The signalling hubs that acknowledged our registrations (what endpoint records
        name), the preferred first."""
        return () if self._traversal is None else self._traversal.live_hubs()

    def _nat_service(self) -> NatService:
        if self._nat is None:
            raise UsageError("the node is not open")
        return self._nat

    def _check_open(self) -> DhtService:
        if self._state is not _State.OPEN or self._dht is None:
            raise NodeClosed(f"the node is {self._state.value}")
        return self._dht

    # -- wiring -------------------------------------------------------------------------

    def _on_events(self, core: str, event: object) -> None:
        """The endpoint's hook: QUIC host events to the QUIC service, DHT events to the
        DHT service."""
        if isinstance(event, _QUIC_EVENT_TYPES):
            if self._quic is not None:
                self._quic.on_event(event)
        elif core == "stun":
            if self._nat is not None:
                self._nat.on_effect(event)
        elif isinstance(event, _NAT_DHT_EVENTS):
            if self._nat is not None:
                self._nat.on_dht_event(event)
            if isinstance(event, DHT_EVENT_TYPES) and self._dht is not None:
                self._dht.on_event(event)
        elif isinstance(event, DHT_EVENT_TYPES) and self._dht is not None:
            self._dht.on_event(event)

    def _flush(self) -> None:
        if self._endpoint is not None:
            self._endpoint.flush()

    @property
    def joining(self) -> bool:
        """The network join still runs (opened with ``join_in_background``)."""
        return self._joined is not None and not self._joined.is_set()

    async def _join_then_mark(self) -> None:
        try:
            await self._joiner.join()
        finally:
            assert self._joined is not None
            self._joined.set()

    async def _join_done(self) -> None:
        """Wait until the network join has finished (at once when it did)."""
        if self._joined is not None:
            await self._joined.wait()

    async def _network(self) -> DhtService:
        """The DHT service once the join has finished (at once unless it runs in the
        background: see ``join_in_background``)."""
        dht = self._check_open()
        if self._joined is not None and not self._joined.is_set():
            await self._joined.wait()
        return dht

    async def _lookup(self, target: NodeId, kind: LookupKind, *, rec_type: int = 0,
                      subscribe: bool = False) -> ev.LookupFinished:  # fmt: skip
        return await (await self._network()).lookup(target, kind, rec_type=rec_type,
                                                    subscribe=subscribe)  # fmt: skip

    async def _publish_record(self, record: SignedRecord, key: NodeId) -> ev.PublishFinished:
        return await (await self._network()).publish(record, key)

    def _add_certificate(self, identity: Identity) -> None:
        if self._certs is not None and identity.aid not in self._certs:
            self._certs.add(LocalCertificate.create(identity, now=self._clock.wall(),
                                                        rng=self._rng))  # fmt: skip

    def _identity(self, aid: Aid | None) -> Identity:
        return self._identities.require(aid)

    def _dial(self) -> Dialer:
        self._check_open()
        assert self._dialer is not None
        return self._dialer

    def _mail(self) -> Mailbox:
        self._check_open()
        assert self._mailbox is not None
        return self._mailbox

    # -- identities -------------------------------------------------------------------

    @property
    def aid(self) -> Aid:
        """The node's own AID."""
        return self.identity.aid

    @property
    def clock(self) -> Clock:
        """The clock the node reads (wall and monotonic time; virtual in a simulation)."""
        return self._clock

    @property
    def local_addr(self) -> Addr:
        """The bound UDP address."""
        if self._endpoint is None:
            raise UsageError("the node is not open")
        return self._endpoint.local_addr

    def add_identity(self, identity: Identity) -> None:
        """Act as another identity too (e.g. a delegated agent)."""
        self._identities.add(identity)

    def identities(self) -> list[Identity]:
        return self._identities.identities()

    def create_agent(self) -> DelegatedIdentity:
        """A new delegated agent identity served by this node. Its operational key and proof
        are kept in ``data_dir/agents/`` (0600) and loaded on every start; the owner (master)
        key is returned once and **not** kept."""
        return self._identities.create_agent()

    async def export_identity(self, passphrase: str, aid: Aid | None = None) -> str:
        """A local identity (default: the node) sealed under ``passphrase`` (scrypt,
        AES-GCM), to move it to another machine with :meth:`import_identity`. The KDF runs
        in a worker thread (one at a time), not on the event loop."""
        return await self._identities.export(passphrase, aid)

    async def import_identity(self, blob: str, passphrase: str) -> Identity:
        """Add an exported delegated agent to this node (kept in the data directory). The
        export is bounded and checked before its KDF runs, in a worker thread (one at a time).

        Raises:
            DecodeError: not an export, or one asking for more scrypt than allowed.
            VerificationError: wrong passphrase. UsageError: not a delegated agent, or its
                delegation no longer verifies.
        """
        return await self._identities.import_sealed(blob, passphrase)

    # -- DHT: join, publish, find -------------------------------------------------------

    async def bootstrap(self, seeds: Sequence[str] | None = None) -> int:
        """Join through ``seeds`` (default: ``config.bootstrap``). Returns the peer count.

        Raises:
            Unreachable-like RequestTimeout: no seed answered in time.
        """
        return await self._joiner.bootstrap(seeds)

    async def publish(self, aid: Aid | None = None, *, ttl_s: int = 3600) -> SignedRecord:
        """Publish (and keep renewing) the endpoint record of a local identity."""
        return await self._publisher.publish(aid, ttl_s=ttl_s)

    async def set_profile(
        self, profile: AgentProfilePayload, aid: Aid | None = None, *, ttl_s: int = 3600
    ) -> SignedRecord:
        """Publish the agent profile (rec_type 0x02) of a local identity now and with every
        renewal (:meth:`publish`).

        Raises:
            LimitExceeded: the profile encodes to more than 700 bytes.
        """
        return await self._publisher.set_profile(profile, aid, ttl_s=ttl_s)

    async def register_service(
        self,
        topic: str,
        *,
        name: str = "",
        brief: str = "",
        protocols: Sequence[str] = (),
        tags: Sequence[str] = (),
        meta: dict[str, Any] | None = None,
        ttl_s: int = 3600,
        aid: Aid | None = None,
    ) -> SignedRecord:
        """Register a local identity under ``topic`` (renewed with :meth:`publish`)."""
        return await self._publisher.register_service(topic, name=name, brief=brief,
                                                      protocols=protocols, tags=tags, meta=meta,
                                                      ttl_s=ttl_s, aid=aid)  # fmt: skip

    def unpublish(self, aid: Aid | None = None) -> list[str]:
        """Stop renewing the endpoint record and the service registrations of ``aid``
        (default: the node). Copies on the network expire with their TTL (an hour at most
        for endpoints, two for topics). Returns the topics that were registered."""
        return self._publisher.unpublish(aid)

    async def profile(self, aid: Aid) -> AgentProfilePayload:
        """The newest valid agent profile (rec_type 0x02) that ``aid`` published.

        Raises:
            NotFound: nobody holds a valid profile for it.
        """
        return await self._finder.profile(aid)

    async def resolve(self, aid: Aid) -> ResolvedEndpoint:
        """Find the newest valid endpoint record of ``aid``.

        Raises:
            NotFound: nobody holds a valid record.
        """
        return await self._finder.resolve(aid)

    async def discover(
        self, topics: str | Sequence[str], *, protocols: Sequence[str] = (),
        tags: Sequence[str] = (),
    ) -> list[ServiceEntry]:  # fmt: skip
        """Find registrations under every topic (AIDs present in all), filtered by
        protocols (any) and tags (all)."""
        return await self._finder.discover(topics, protocols=protocols, tags=tags)

    # -- status and tasks -----------------------------------------------------------------

    def status(self) -> NodeStatus:
        stats = self._check_open().statistics()
        assert self._quic is not None and self._mailbox is not None
        return NodeStatus(aid=self.aid, listen=self.local_addr, peers=stats.peers,
                          ready=stats.peers > 0, published=self._publisher.published(),
                          dht=stats, observed_addrs=self._nat_service().observed.ranked(),
                          nat=self._nat_service().status(),
                          connections=len(self._quic.connections()),
                          serving=self._acceptor.serving(), mailbox=self._mailbox.statistics(),
                          contained_errors=self._contained_errors(),
                          quic=self._quic.statistics(), joining=self.joining,
                          traversal=self._traversal_status())  # fmt: skip

    def _traversal_status(self) -> TraversalStatus:
        c = self._connector
        if c is None:
            return TraversalStatus()
        return TraversalStatus(
            live_hubs=self.signal_hubs(), callee=self.traversal_statistics(),
            direct_wins=c.direct_wins, punch_wins=c.punch_wins, hub_dials=c.hub_dials,
            dial_failures=c.dial_failures,
            paths=tuple(ConnectionPath(peer=r, local=lo, path=p) for lo, r, p in c.dialled_paths()),
        )  # fmt: skip

    def _contained_errors(self) -> ContainedErrors:
        ep = None if self._endpoint is None else self._endpoint.statistics()
        failed = 0 if self._quic is None else self._quic.host.statistics().failed
        tunnels = 0 if self._dialer is None else self._dialer.tunnel_errors
        # an answered call that failed on an error (not a punch without a path): its task
        answers = 0 if self._traversal is None else self._traversal.stats.errors
        return ContainedErrors(tasks=self._tasks.tasks + tunnels + answers,
                               loops=self._tasks.loops,
                               core=failed + (0 if ep is None else ep.core_errors),
                               callbacks=0 if ep is None else ep.callback_errors,
                               last=self._tasks.last)  # fmt: skip

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn()`` as a task of the open node (ignored when it is not open): peer-driven
        work (a stream handler, a mailbox store...) and the MCP server's. Whatever it raises
        ends that task only: counted in ``status()``, logged at most once per 30 s;
        cancellation and exit propagate; it is cancelled when the node closes."""
        self._tasks.spawn(fn)

    def _spawn_open(self, fn: Callable[[], Awaitable[None]]) -> None:
        """:meth:`spawn`, or NodeClosed when the node is not open: for a caller that then
        waits for the task (the mailbox's delivery), which must not wait for one never run."""
        self._check_open()
        self._tasks.spawn(fn)

    # -- mailbox ----------------------------------------------------------------------------

    async def send_mailbox(
        self, recipient: Aid, body: bytes | str, *, local: Aid | None = None, msg_type: int = 3
    ) -> SendResult:
        """Leave an encrypted note for ``recipient`` (online or not): delivered directly when
        it is reachable and always stored on DHT replicas for an hour; returns once either
        holds it (the other goes on in the background). Bodies up to 389 bytes.

        Raises:
            LimitExceeded: body too large (use connect/fetch for data).
            NotFound: the recipient never published an endpoint record (no key).
            Unreachable: nobody took the note.
        """
        mail = self._mail()
        return await mail.send(recipient, body, sender=self._identity(local), msg_type=msg_type)

    async def read_mailbox(
        self,
        *,
        local: Aid | None = None,
        peek: bool = False,
        limit: int = 50,
        sender: Aid | None = None,
        include_read: bool = False,
    ) -> list[Note]:
        """Notes for local identity ``local`` (default: the node), oldest first. Unless
        ``peek``, returned notes are marked read (kept until deleted or past retention)."""
        mail = self._mail()
        return mail.read(self._identity(local).aid, peek=peek, limit=limit, sender=sender,
                         include_read=include_read)  # fmt: skip

    def delete_mailbox(self, msg_ids: Sequence[bytes], *, local: Aid | None = None) -> int:
        """Remove notes from the inbox; returns how many were removed."""
        return self._mail().delete(self._identity(local).aid, msg_ids)

    async def check_mailbox(self) -> int:
        """Poll the DHT for waiting notes now; returns how many were new."""
        return await self._mail().poll()

    def on_mail(self, callback: Callable[[Note], None]) -> Callable[[], None]:
        """Call ``callback(note)`` when a note arrives; returns an unsubscribe function."""
        return self._mail().listen(callback)

    def mailbox_statistics(self) -> MailboxStats:
        return self._mail().statistics()

    def outbox(self) -> Outbox:
        """The durable outbox: messages kept for agents that are offline, sent when they
        come back (:mod:`~a2al_mcp.node.outbox`)."""
        self._check_open()
        assert self._outbox is not None
        return self._outbox


def _ignore_addr(addr: Addr) -> None:
    """Stream-0 ObservedAddr is voted by :func:`_voting`, which knows the reporter."""


def _noting_accepted(
    inner: Callable[[PeerConnection, RouteReceived], Aid | None],
    note: Callable[[Aid, Addr], None],
) -> Callable[[PeerConnection, RouteReceived], Aid | None]:
    """The acceptor's route hook, telling ``note`` of every inbound connection it admits
    (verified peer, remote address): a hole punch waits for the partner's."""

    def route(pc: PeerConnection, received: RouteReceived) -> Aid | None:
        local = inner(pc, received)
        if local is not None:
            with contextlib.suppress(HandshakeFailed):  # verified before any route frame
                note(pc.peer_aid, pc.addr)
        return local

    return route


def _voting(
    inner: Callable[[PeerConnection, PeerControl], None], vote: Callable[[bytes, Addr], None]
) -> Callable[[PeerConnection, PeerControl], None]:
    """The acceptor's stream-0 answer handler, casting its ObservedAddr as a NAT vote by the
    peer's AID first."""

    def on_peer_control(pc: PeerConnection, ctl: PeerControl) -> None:
        if ctl.observed_addr is not None:
            vote(bytes(pc.peer_aid), ctl.observed_addr)
        inner(pc, ctl)

    return on_peer_control
