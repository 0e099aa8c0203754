"""Node: one UDP socket, the DHT core, local identities, and the public async API.

``async with Node(config, identity) as node:`` binds the socket and joins the network
through ``config.bootstrap``; nothing is sent anywhere else. Every background task lives in
the node's task group and stops on close.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from typing import Any, Self

import anyio
import anyio.lowlevel

from .._clock import Clock, SystemClock
from .._containment import containable
from .._random import Rng, SystemRng
from .._types import Addr
from ..config import NodeConfig, parse_host_port
from ..dht import events as ev
from ..dht.core import DhtCore
from ..dht.lookup import LookupKind
from ..dht.service import DHT_EVENT_TYPES, DhtService, operation_timeout
from ..errors import (
    AccessDenied,
    ConfigError,
    DecodeError,
    NodeClosed,
    NotFound,
    RequestTimeout,
    UsageError,
)
from ..identity.aid import Aid, NodeId
from ..identity.local import DelegatedIdentity, Identity
from ..protocol.payloads import AgentProfilePayload, EndpointPayload, TopicPayload, topic_key
from ..protocol.records import Category, RecType, SignedRecord
from ..protocol.session_frames import MailboxFrame
from ..transport import tls
from ..transport.endpoint import UdpEndpoint
from ..transport.peer import PeerConnection, PeerStream, QuicService
from ..transport.quic_host import ConnectionAccepted, ConnectionEvent, ConnectionGone
from .connect import Connector
from .http import MAX_BODY, HttpHandler, HttpResponse, StreamedResponse, request_over
from .identities import IdentityStore
from .inbox import Inbox, Note
from .mailbox import Mailbox, MailboxStats, SendResult
from .publisher import Publisher
from .seeds import load_peer_cache, lookup_public_seeds, save_peer_cache
from .serving import Acceptor, Serving, StreamHandler
from .status import ContainedErrors, NodeStatus, ResolvedEndpoint, ServiceEntry
from .tunnel import Tunnel

__all__ = ["Node", "NodeStatus", "ResolvedEndpoint", "ServiceEntry", "Serving", "StreamHandler"]

_QUIC_EVENT_TYPES = (ConnectionAccepted, ConnectionEvent, ConnectionGone)

logger = logging.getLogger(__name__)

_LOG_INTERVAL_S = 30.0
"""A contained task failure of one kind is logged at most this often (always counted)."""
_LOOP_RESTART_S = 1.0
"""A background loop that failed is started again after this long."""


class _State(Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class Node:
    """A full A2AL peer: DHT, QUIC connections and streams (mailbox in a later layer)."""

    def __init__(
        self,
        config: NodeConfig | None = None,
        identity: Identity | None = None,
        *,
        clock: Clock | None = None,
        rng: Rng | None = None,
    ) -> None:
        self.config = config or NodeConfig()
        self._clock = clock or SystemClock()
        self._rng = rng or SystemRng()
        self.identity = identity or Identity.generate(self._rng)
        self._identities = IdentityStore(self.identity, data_dir=self.config.data_dir,
                                         clock=self._clock, rng=self._rng,
                                         on_added=self._add_certificate)  # fmt: skip
        self._publisher = Publisher(
            publish_record=self._publish_record, identity=self._identity,
            endpoint_urls=self._endpoint_urls, clock=self._clock,
            republish_interval_s=self.config.dht.republish_interval_s,
        )  # fmt: skip
        self._state = _State.UNOPENED
        self._endpoint: UdpEndpoint | None = None
        self._dht: DhtService | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._crash: BaseException | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._acceptor = Acceptor(identities=self._identities, node_aid=self.identity.aid,
                                  note_observed=self._note_observed,
                                  cache_record=self._cache_record,
                                  on_mailbox=self._on_mailbox_frame)  # fmt: skip
        self._certs: tls.CertificateStore | None = None
        self._quic: QuicService | None = None
        self._connector: Connector | None = None
        self._tunnels: list[Tunnel] = []
        self._tunnel_errors = 0
        """Contained errors of tunnels no longer in ``_tunnels``."""
        self._mailbox: Mailbox | None = None
        self._observed: dict[Addr, int] = {}
        """Our address as peers report it (DHT PONG/FIND_* answers, QUIC ObservedAddr)."""
        self._task_errors = 0
        self._loop_errors = 0
        self._last_error = ""
        self._last_log: dict[str, float] = {}

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is not _State.UNOPENED:
            raise UsageError(f"cannot open a node that is {self._state.value}")
        host, _port = self.config.listen
        self._identities.load_agents()
        wall_offset = self._clock.wall() - self._clock.monotonic()
        core = DhtCore(
            self.identity,
            rng=self._rng,
            config=self.config.dht,
            limits=self.config.limits,
            wall_offset=wall_offset,
            allow_local_hearsay=host.startswith("127.") or host == "::1",
        )
        self._dht = DhtService(core, clock=self._clock, flush=self._flush,
                               timeout_s=operation_timeout(self.config.dht),
                               closed_cause=lambda: self._crash, on_address=self._note_observed,
                               on_mailbox=self._on_mailbox_record)  # fmt: skip
        self._certs = tls.CertificateStore.generate(
            self.identity, *[i for a, i in self._identities.items() if a != self.aid],
            now=self._clock.wall(), rng=self._rng,
        )  # fmt: skip
        self._quic = QuicService(
            certificates=self._certs,
            flush=self._flush,
            now=self._clock.monotonic,
            wall=self._clock.wall,
            spawn=self.spawn,
            handlers=self._acceptor.handlers(self._publisher.agent_info),
            limits=self.config.limits,
            handshake_timeout_s=self.config.quic.handshake_timeout_s,
            idle_timeout_s=self.config.quic.idle_timeout_s,
            rng=self._rng,
            send_buffer=self.config.quic.send_buffer_max_bytes,
        )
        self._connector = Connector(self._quic, now=self._clock.monotonic, ipv6=":" in host,
                                    keepalive_s=self.config.quic.keepalive_s)  # fmt: skip
        data_dir = self.config.data_dir
        self._mailbox = Mailbox(
            Inbox(None if data_dir is None else data_dir / "inbox.db", self.config.limits),
            config=self.config.mailbox,
            clock=self._clock,
            rng=self._rng,
            identities=self._identities,
            resolve=self.resolve,
            connect=self.connect,
            publish_record=self._publish_record,
            aggregate=self._aggregate,
            dht_ready=lambda: self._dht is not None and self._dht.ready,
        )
        self._endpoint = UdpEndpoint(self.config.listen, clock=self._clock, dht=core,
                                     quic=self._quic.host, on_events=self._on_events)  # fmt: skip
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self._endpoint)
            stack.callback(self._mailbox.inbox.close)  # after the task group has stopped
            stack.push_async_callback(self._close_quic)
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._tg.cancel_scope.cancel)  # runs first on exit
            self._state = _State.OPEN
            stack.push_async_callback(self._save_peers)
            await self._join()
            for loop in (self._publisher.republish_loop, self._rejoin_loop,
                         self._connector.maintain, self._mailbox.poll_loop):  # fmt: skip
                self._tg.start_soon(self._supervised, loop)
            self._stack = stack.pop_all()
        return self

    async def _seeds(self) -> list[str]:
        seeds = list(self.config.bootstrap)
        if self.config.data_dir is not None:
            seeds += load_peer_cache(self.config.data_dir)
        if self.config.network == "public":
            seeds += await lookup_public_seeds()
        return list(dict.fromkeys(seeds))

    async def _join(self) -> None:
        """Bootstrap from every known seed; a node with no reachable seed still starts."""
        seeds = await self._seeds()
        if not seeds:
            return
        try:
            peers = await self.bootstrap(seeds)
        except RequestTimeout:
            logger.warning("bootstrap.failed seeds=%d: starting alone, will retry", len(seeds))
        else:
            logger.info("bootstrap.done peers=%d", peers)

    async def _rejoin_loop(self) -> None:
        """While the routing table is empty, try the seeds again (every 30 s)."""
        while True:
            await anyio.sleep(30.0)
            if self._dht is not None and not self._dht.ready:
                await self._join()

    async def _save_peers(self) -> None:
        if self.config.data_dir is None or self._dht is None:
            return
        addrs = [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self._dht.peer_addrs()]
        try:
            save_peer_cache(self.config.data_dir, addrs)
        except ConfigError as exc:
            logger.warning("peers.cache_write_failed reason=%s", exc)

    async def __aexit__(self, *exc: object) -> None:
        """Close: stop background tasks and the socket (must run in the entering task)."""
        self._mark_closed()
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    def _mark_closed(self) -> None:
        self._state = _State.CLOSED
        if self._dht is not None:
            self._dht.close()

    async def aclose(self) -> None:
        """Stop background work and close the socket. Idempotent."""
        await self.__aexit__(None, None, None)

    def _check_open(self) -> DhtService:
        if self._state is not _State.OPEN or self._dht is None:
            raise NodeClosed(f"the node is {self._state.value}") from self._crash
        return self._dht

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

    def _add_certificate(self, identity: Identity) -> None:
        if self._certs is not None and identity.aid not in self._certs:
            self._certs.add(tls.LocalCertificate.create(identity, now=self._clock.wall(),
                                                        rng=self._rng))  # fmt: skip

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

    def _identity(self, aid: Aid | None) -> Identity:
        return self._identities.require(aid)

    # -- operations -------------------------------------------------------------------

    def _on_events(self, core: str, event: object) -> None:
        """The endpoint's hook: QUIC host events to the QUIC service, DHT events to the
        DHT service."""
        if isinstance(event, _QUIC_EVENT_TYPES):
            if self._quic is not None:
                self._quic.on_event(event)
        elif isinstance(event, DHT_EVENT_TYPES) and self._dht is not None:
            self._dht.on_event(event)

    def _on_mailbox_record(self, event: ev.MailboxStored | ev.RecordPushed) -> None:
        """A mailbox record STOREd with us or pushed to us: filed if it is for one of ours."""
        if self._mailbox is not None and event.record.category is Category.MAILBOX:
            via = "store" if isinstance(event, ev.MailboxStored) else "push"
            if any(event.key == i.node_id for i in self._identities):
                self._mailbox.accept(event.record, via=via)

    async def bootstrap(self, seeds: Sequence[str] | None = None) -> int:
        """Join through ``seeds`` (default: ``config.bootstrap``). Returns the peer count.

        Raises:
            Unreachable-like RequestTimeout: no seed answered in time.
        """
        addrs = []
        for seed in seeds or self.config.bootstrap:
            host, port = parse_host_port(seed, what="bootstrap entry")
            addrs.append((host, port))
        event = await self._check_open().bootstrap(addrs)
        if not event.ok:
            raise RequestTimeout("no bootstrap peer answered")
        return event.peers

    def _endpoint_urls(self) -> tuple[str, ...]:
        host, port = self.local_addr
        advertise = self.config.advertise_host or host
        if advertise in ("0.0.0.0", "::", ""):
            raise UsageError(
                "cannot determine an address to publish: set advertise_host (a2ald's fallback_host)"
            )
        if ":" in advertise:
            return (f"quic://[{advertise}]:{port}",)
        return (f"quic://{advertise}:{port}",)

    async def _publish_record(self, record: SignedRecord, key: NodeId) -> ev.PublishFinished:
        return await self._check_open().publish(record, key)

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

    async def profile(self, aid: Aid) -> AgentProfilePayload:
        """The newest valid agent profile (rec_type 0x02) that ``aid`` published.

        Raises:
            NotFound: nobody holds a valid profile for it.
        """
        event = await self._check_open().lookup(aid.node_id, LookupKind.FIRST,
                                                rec_type=RecType.PROFILE)  # fmt: skip
        for rec in event.records:
            try:
                return AgentProfilePayload.from_bytes(rec.payload)
            except DecodeError:
                continue
        raise NotFound(f"no agent profile for {aid}", aid=aid, operation="profile")

    async def resolve(self, aid: Aid) -> ResolvedEndpoint:
        """Find the newest valid endpoint record of ``aid``.

        Raises:
            NotFound: nobody holds a valid record.
        """
        event = await self._check_open().lookup(aid.node_id, LookupKind.FIRST,
                                                rec_type=RecType.ENDPOINT)  # fmt: skip
        if not event.records:
            raise NotFound(f"no endpoint record for {aid}", aid=aid, operation="resolve")
        rec = event.records[0]
        ep = EndpointPayload.from_bytes(rec.payload)
        return ResolvedEndpoint(aid=rec.address, endpoints=ep.endpoints, nat_type=ep.nat_type,
                                seq=rec.seq, timestamp=rec.timestamp, ttl=rec.ttl,
                                record=rec)  # fmt: skip

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

    async def discover(
        self, topics: str | Sequence[str], *, protocols: Sequence[str] = (),
        tags: Sequence[str] = (),
    ) -> list[ServiceEntry]:  # fmt: skip
        """Find registrations under every topic (AIDs present in all), filtered by
        protocols (any) and tags (all)."""
        topic_list = [topics] if isinstance(topics, str) else list(topics)
        if not topic_list:
            raise UsageError("give at least one topic")
        per_topic: list[dict[Aid, ServiceEntry]] = []
        for topic in topic_list:
            event = await self._check_open().lookup(NodeId(topic_key(topic)), LookupKind.ALL,
                                                    rec_type=RecType.TOPIC)  # fmt: skip
            found: dict[Aid, ServiceEntry] = {}
            for rec in event.records:
                try:
                    tp = TopicPayload.from_bytes(rec.payload)
                except DecodeError:
                    continue
                if tp.topic != topic:
                    continue
                entry = ServiceEntry(aid=rec.address, service=topic, name=tp.name,
                                     brief=tp.brief, protocols=tp.protocols, tags=tp.tags,
                                     meta=dict(tp.meta), seq=rec.seq, timestamp=rec.timestamp,
                                     ttl=rec.ttl)  # fmt: skip
                old = found.get(rec.address)
                if old is None or entry.seq > old.seq:
                    found[rec.address] = entry
            per_topic.append(found)
        common = set(per_topic[0]).intersection(*per_topic[1:])
        out = [per_topic[0][a] for a in common]
        if protocols:
            out = [e for e in out if set(protocols) & set(e.protocols)]
        if tags:
            out = [e for e in out if set(tags) <= set(e.tags)]
        out.sort(key=lambda e: -e.timestamp)
        return out

    def status(self) -> NodeStatus:
        dht = self._check_open()
        stats = dht.statistics()
        observed = tuple(sorted(self._observed.items(), key=lambda kv: -kv[1]))
        conns = len(self._quic.connections()) if self._quic is not None else 0
        return NodeStatus(aid=self.aid, listen=self.local_addr, peers=stats.peers,
                          ready=stats.peers > 0, published=self._publisher.published(),
                          dht=stats, observed_addrs=observed, connections=conns,
                          serving=self._acceptor.serving(),
                          mailbox=None if self._mailbox is None else
                          dataclasses.replace(self._mailbox.stats),
                          contained_errors=self._contained_errors(),
                          quic=None if self._quic is None else self._quic.statistics())  # fmt: skip

    def _contained_errors(self) -> ContainedErrors:
        ep = None if self._endpoint is None else self._endpoint.statistics()
        failed = 0 if self._quic is None else self._quic.host.statistics().failed
        tunnels = self._tunnel_errors + sum(t.errors for t in self._tunnels)
        return ContainedErrors(tasks=self._task_errors + tunnels, loops=self._loop_errors,
                               core=failed + (0 if ep is None else ep.core_errors),
                               callbacks=0 if ep is None else ep.callback_errors,
                               last=self._last_error)  # fmt: skip

    # -- QUIC: plumbing -------------------------------------------------------------------

    def _flush(self) -> None:
        if self._endpoint is not None:
            self._endpoint.flush()

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn()`` as a task of the open node (ignored when it is not open): peer-driven
        work (a stream handler, a mailbox store...) and the MCP server's. Whatever it raises
        ends that task only: counted in ``status()``, logged at most once per 30 s;
        cancellation and exit propagate; it is cancelled when the node closes."""
        if self._tg is not None and self._state is _State.OPEN:

            async def run() -> None:
                try:
                    await fn()
                except BaseException as exc:
                    if not containable(exc):
                        raise
                    self._task_errors += 1
                    self._contained("task", exc)

            self._tg.start_soon(run)

    async def _supervised(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a background loop; if it fails (a peer's data, a full disk...), count it,
        log it and start it again, so the node carries on."""
        while True:
            try:
                await loop()
                return
            except BaseException as exc:
                if not containable(exc):
                    raise
                self._loop_errors += 1
                self._contained(f"loop.{getattr(loop, '__name__', 'loop')}", exc)
            await anyio.sleep(_LOOP_RESTART_S)

    def _contained(self, kind: str, exc: BaseException) -> None:
        self._last_error = type(exc).__name__
        now = self._clock.monotonic()
        last = self._last_log.get(kind)
        if last is None or now - last >= _LOG_INTERVAL_S:
            self._last_log[kind] = now
            logger.warning("node.contained kind=%s error=%r", kind, exc, exc_info=exc)

    async def _close_quic(self) -> None:
        for t in self._tunnels:
            await t.aclose()
        if self._quic is not None and self._quic.connections():
            self._quic.close_all()
            self._flush()  # the CONNECTION_CLOSE frames leave now
            await anyio.lowlevel.checkpoint()

    def _note_observed(self, addr: Addr) -> None:
        self._observed[addr] = self._observed.get(addr, 0) + 1
        if len(self._observed) > 64:  # keep the most reported
            for a, _ in sorted(self._observed.items(), key=lambda kv: kv[1])[:32]:
                del self._observed[a]

    def _cache_record(self, key: NodeId, record: SignedRecord) -> None:
        if self._dht is not None:
            self._dht.cache_record(key, record)

    async def _on_mailbox_frame(self, local: Aid | None, frame: MailboxFrame) -> bool:
        assert self._mailbox is not None
        return await self._mailbox.on_frame(local, frame)

    async def _aggregate(
        self, key: NodeId, rec_type: int, *, subscribe: bool = False
    ) -> tuple[SignedRecord, ...]:
        event = await self._check_open().lookup(key, LookupKind.ALL, rec_type=rec_type,
                                                subscribe=subscribe)  # fmt: skip
        return event.records

    # -- mailbox: public API -------------------------------------------------------------

    def _mail(self) -> Mailbox:
        self._check_open()
        assert self._mailbox is not None
        return self._mailbox

    async def send_mailbox(
        self, recipient: Aid, body: bytes | str, *, local: Aid | None = None, msg_type: int = 3
    ) -> SendResult:
        """Leave an encrypted note for ``recipient`` (online or not): delivered directly when
        it is reachable and always stored on DHT replicas for an hour. Bodies up to 389 bytes.

        Raises:
            LimitExceeded: body too large (use connect/fetch for data).
            NotFound: the recipient never published an endpoint record (no key).
            Unreachable: nobody took the note.
        """
        raw = body.encode() if isinstance(body, str) else body
        return await self._mail().send(recipient, raw, sender=self._identity(local),
                                       msg_type=msg_type)  # fmt: skip

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
        return mail.inbox.read(self._identity(local).aid, peek=peek, limit=limit, sender=sender,
                               include_read=include_read, now=self._clock.wall())  # fmt: skip

    def delete_mailbox(self, msg_ids: Sequence[bytes], *, local: Aid | None = None) -> int:
        """Remove notes from the inbox; returns how many were removed."""
        return self._mail().inbox.delete(self._identity(local).aid, msg_ids)

    async def check_mailbox(self) -> int:
        """Poll the DHT for waiting notes now; returns how many were new."""
        return await self._mail().poll()

    def on_mail(self, callback: Callable[[Note], None]) -> Callable[[], None]:
        """Call ``callback(note)`` when a note arrives; returns an unsubscribe function."""
        return self._mail().listen(callback)

    def mailbox_statistics(self) -> MailboxStats:
        return dataclasses.replace(self._mail().stats)

    def _quic_parts(self) -> tuple[QuicService, Connector, tls.CertificateStore]:
        self._check_open()
        assert self._quic is not None and self._connector is not None and self._certs is not None
        return self._quic, self._connector, self._certs

    # -- QUIC: public API -----------------------------------------------------------------

    def serve(
        self,
        aid: Aid | None = None,
        *,
        handler: StreamHandler | None = None,
        http: HttpHandler | None = None,
        app: Any = None,
        service_tcp: str | Addr | None = None,
        allow: Sequence[Aid] | None = None,
        deny: Sequence[Aid] = (),
        token: str | None = None,
    ) -> Serving:
        """Answer inbound service streams addressed to local identity ``aid`` (default: the
        node) with exactly one of: ``handler`` (raw stream), ``http`` (one request → one
        response), ``app`` (ASGI 3) or ``service_tcp`` (bridge to a TCP service, like a2ald).
        ``allow``/``deny`` filter callers by verified AID; ``token`` requires an access token.
        Calling it again replaces the previous setting.
        """
        ident = self._identity(aid)
        if isinstance(service_tcp, str):
            service_tcp = parse_host_port(service_tcp.removeprefix("http://"), what="service_tcp")
        given = [x for x in (handler, http, app, service_tcp) if x is not None]
        if len(given) != 1:
            raise UsageError("give exactly one of handler=, http=, app= or service_tcp=")
        serving = Serving(handler=handler, http=http, app=app, service_tcp=service_tcp,
                          allow=None if allow is None else frozenset(allow),
                          deny=frozenset(deny), token=token)  # fmt: skip
        self._acceptor.set(ident.aid, serving)
        return serving

    def unserve(self, aid: Aid | None = None) -> None:
        """Stop answering service streams for ``aid`` (they are refused from now on)."""
        self._acceptor.remove(self._identity(aid).aid)

    async def connect(
        self,
        aid: Aid,
        *,
        local: Aid | None = None,
        endpoints: Sequence[str] | None = None,
        timeout_s: float | None = None,
    ) -> PeerConnection:
        """A verified QUIC connection from local identity ``local`` (default: the node) to
        ``aid``, pooled per (local, remote). ``endpoints`` (``quic://ip:port`` URLs) skips
        the DHT lookup.

        Raises:
            NotFound: ``aid`` has no endpoint record.
            Unreachable / RequestTimeout: no endpoint answered; HandshakeFailed: none proved
                ``aid``.
        """
        _quic, connector, certs = self._quic_parts()
        ident = self._identity(local)
        cert = certs.get(ident.aid)
        assert cert is not None

        async def urls() -> Sequence[str]:
            if endpoints is not None:
                return endpoints
            return (await self.resolve(aid)).endpoints

        return await connector.connect(
            cert, aid, urls, timeout_s=timeout_s or self.config.quic.handshake_timeout_s
        )

    async def open_stream(
        self, aid: Aid, *, local: Aid | None = None, token: str | None = None,
        endpoints: Sequence[str] | None = None,
    ) -> PeerStream:  # fmt: skip
        """A new service stream to ``aid`` (connecting first if needed). One retry on a
        connection that turns out to be dead, as a2ald does."""
        for attempt in (1, 2):
            pc = await self.connect(aid, local=local, endpoints=endpoints)
            try:
                return await pc.open_stream(token)
            except AccessDenied:
                raise
            except NodeClosed:
                raise
            except Exception:
                if attempt == 2:
                    raise
                pc.close(0, "retrying")
        raise AssertionError("unreachable")  # pragma: no cover

    async def fetch(
        self,
        aid: Aid,
        method: str = "GET",
        path: str = "/",
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        local: Aid | None = None,
        token: str | None = None,
        endpoints: Sequence[str] | None = None,
        timeout_s: float = 30.0,
    ) -> HttpResponse:
        """One HTTP/1.1 request to the agent ``aid`` over a new stream.

        Raises:
            RequestTimeout: no complete answer within ``timeout_s``.
        """
        try:
            with anyio.fail_after(timeout_s):
                resp = await self.request(aid, method, path, headers=headers, body=body,
                                          local=local, token=token, endpoints=endpoints,
                                          timeout_s=math.inf, max_body=MAX_BODY)  # fmt: skip
                data = await resp.read()
        except TimeoutError:
            raise RequestTimeout(f"fetch {method} {path} from {aid} took over {timeout_s:g} s",
                                 aid=aid, operation="fetch") from None  # fmt: skip
        return HttpResponse(resp.status, resp.headers, data, resp.reason)

    async def request(
        self,
        aid: Aid,
        method: str = "GET",
        path: str = "/",
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        local: Aid | None = None,
        token: str | None = None,
        endpoints: Sequence[str] | None = None,
        timeout_s: float = 30.0,
        max_body: int | None = None,
    ) -> StreamedResponse:
        """Like :meth:`fetch`, but returns once the response head is in; iterate the result
        for the body as it arrives (server-sent events) and ``aclose()`` it when done.
        ``timeout_s`` covers connecting and the head, not the body.

        Raises:
            RequestTimeout: no response head within ``timeout_s``.
        """
        try:
            with anyio.fail_after(timeout_s):
                stream = await self.open_stream(aid, local=local, token=token,
                                                endpoints=endpoints)  # fmt: skip
                try:
                    return await request_over(stream, method, path, headers, body,
                                              max_body=max_body)  # fmt: skip
                except BaseException:
                    stream.reset()
                    raise
        except TimeoutError:
            raise RequestTimeout(f"{method} {path} to {aid}: no response within {timeout_s:g} s",
                                 aid=aid, operation="request") from None  # fmt: skip

    async def tunnel(
        self,
        aid: Aid,
        *,
        local: Aid | None = None,
        token: str | None = None,
        listen: Addr = ("127.0.0.1", 0),
        endpoints: Sequence[str] | None = None,
    ) -> Tunnel:
        """A local TCP listener (``tunnel.addr``) whose every connection becomes a stream
        to ``aid``. Close it with ``await tunnel.aclose()``; the node closes it on exit."""
        self._quic_parts()
        assert self._tg is not None
        await self.connect(aid, local=local, endpoints=endpoints)  # fail early
        t = Tunnel(aid, lambda: self.open_stream(aid, local=local, token=token,
                                                 endpoints=endpoints), listen=listen)  # fmt: skip
        await t.start(self._tg)
        self._tunnel_errors += sum(x.errors for x in self._tunnels if x.closed)
        self._tunnels = [x for x in self._tunnels if not x.closed] + [t]
        return t

    def tunnels(self) -> list[Tunnel]:
        """Open tunnels."""
        return [t for t in self._tunnels if not t.closed]

    def connections(self) -> list[PeerConnection]:
        """Live QUIC connections (both directions)."""
        quic, _, _ = self._quic_parts()
        return quic.connections()

    def unpublish(self, aid: Aid | None = None) -> list[str]:
        """Stop renewing the endpoint record and the service registrations of ``aid``
        (default: the node). Copies on the network expire with their TTL (an hour at most
        for endpoints, two for topics). Returns the topics that were registered."""
        return self._publisher.unpublish(aid)
