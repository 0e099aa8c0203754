"""DhtCore: the sans-I/O DHT peer (a2al-wire §4). Implements :class:`DatagramCore`.

It answers every request type (through its :class:`~a2al_mcp.dht.responder.Responder`) and
runs pings, bootstraps, lookups and publishes as operations: one small state machine per kind
(:mod:`a2al_mcp.dht.ops`, :mod:`a2al_mcp.dht.lookup_ops`), each advanced by an input and
returning effects (:mod:`a2al_mcp.dht.effects`). The core only routes each response or
timeout to the operation that owns its transaction (:mod:`a2al_mcp.dht.transactions`) and
carries out the effects; it keeps the routing table, the record store and one-shot
subscriptions. It never reads a clock or opens a socket: each call carries ``now``
(monotonic seconds); record times use ``now + wall_offset`` (Unix seconds).

After calling any command (``ping``, ``bootstrap``, ``lookup``, ``publish``…) the driver must
send :meth:`datagrams_to_send` and re-read :meth:`get_timer`, as after a received datagram.
Remote garbage never raises: it is dropped and counted (:meth:`statistics`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from .._types import Addr, Datagram
from ..config import DhtConfig, LimitsConfig
from ..errors import A2ALError, DecodeError, LimitExceeded, UsageError
from ..identity.aid import Aid, NodeId
from ..protocol import dht_messages as dm
from ..protocol import limits
from ..protocol.records import SignedRecord
from ..protocol.timers import MAINTENANCE_S, REFRESH_PER_ROUND
from . import events as ev
from .effects import (
    AnchorSeed,
    Answered,
    CacheFound,
    Effect,
    Failed,
    Finish,
    Op,
    OpEvent,
    RefillEnded,
    RefreshBuckets,
    Replied,
    Send,
    Start,
    StartPathCache,
    StartSelfLookup,
)
from .lookup import Lookup, LookupKind, valid_records
from .lookup_ops import MAX_PAGES, REFRESH_AFTER_BOOTSTRAP
from .maintenance import BucketRefresher, random_id_in_bucket
from .ops import (
    BOOTSTRAP_PING_ATTEMPTS,
    BootstrapOp,
    BucketRefreshOp,
    FindOp,
    LookupOp,
    PathCacheOp,
    PingOp,
    PublishOp,
    SelfLookupOp,
)
from .responder import PAGE_MARK, Responder, Subscriptions
from .routing import HEARSAY_PROBE_MIN_BUCKET, RoutingTable
from .stats import DhtStats, collect_stats
from .store import PutOutcome, RecordStore
from .transactions import RESPONSES, Pending, Transactions, response_of

if TYPE_CHECKING:
    from .._random import Rng
    from ..identity.local import Identity

__all__ = [
    "ANSWERED_MAX",
    "BOOTSTRAP_PING_ATTEMPTS",
    "HEARSAY_PROBE_MIN_BUCKET",
    "MAX_PAGES",
    "MAX_RECEIVE",
    "PAGE_MARK",
    "REFRESH_AFTER_BOOTSTRAP",
    "DhtCore",
    "DhtStats",
]

logger = logging.getLogger(__name__)

_START: Final = Start()
_FIND_RESPONSES: Final = (dm.FindNodeResp, dm.FindValueResp)

MAX_RECEIVE: Final = limits.MAX_DATAGRAM
"""Longest DHT datagram decoded; longer ones are dropped and counted (``dropped_oversize``).
No A2AL sender writes more (a2ald's transports refuse to send over 1200 bytes, a2al-wire
§4.1; so does our encoder), so anything longer is not a DHT message of any peer."""
ANSWERED_MAX: Final = 4096
"""Peers remembered as having answered one of our requests (their records are vouched for)."""


class DhtCore:
    """A full DHT peer as a sans-I/O state machine."""

    def __init__(
        self,
        identity: Identity,
        *,
        rng: Rng,
        config: DhtConfig | None = None,
        limits: LimitsConfig | None = None,
        wall_offset: float = 0.0,
        allow_local_hearsay: bool = False,
        report_unanswered: bool = False,
    ) -> None:
        """``report_unanswered``: emit :class:`~a2al_mcp.dht.events.PeerUnanswered` when a
        routing-table peer let an RPC time out on every attempt (for Mode B's driver)."""
        if identity.is_delegated:
            raise UsageError("a DHT node identity must be a native (non-delegated) identity")
        self.identity = identity
        self.aid: Aid = identity.aid
        self.node_id: NodeId = identity.aid.node_id
        self.config = config or DhtConfig()
        self.rng = rng
        self.wall_offset = wall_offset
        self.routing = RoutingTable(self.node_id, allow_local_hearsay=allow_local_hearsay)
        self._report_unanswered = report_unanswered
        self.limits = limits or LimitsConfig()
        self.store = RecordStore.from_limits(self.limits)
        self._wall_now = wall_offset
        """Unix time of the call being handled (records are validated against it)."""
        self._now = 0.0
        """Monotonic time of the call being handled (dial slots are chosen against it)."""
        self._out: list[Datagram] = []
        self._events: deque[ev.DhtEvent] = deque()
        self._txs = Transactions()
        self._subs = Subscriptions()
        self._answered: OrderedDict[NodeId, None] = OrderedDict()
        """Peers that answered a request of ours, most recent last."""
        self._next_maintenance: float | None = None
        self._refresher = BucketRefresher(self.routing)
        self._c: dict[str, int] = dict.fromkeys(
            (
                "received", "sent", "answered", "matched", "decode", "verify", "oversize",
                "unsolicited", "timeouts", "cancelled",
            ), 0,
        )  # fmt: skip
        self._responder = Responder(
            aid=self.aid, routing=self.routing, store=self.store, limits=self.limits,
            subscriptions=self._subs, answered=self._answered, reply=self._reply,
            emit=self._events.append, on_new_record=self._notify_subscribers,
        )  # fmt: skip

    # == DatagramCore =================================================================

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """Handle one datagram: answer requests, complete RPCs; drop and count garbage."""
        self._c["received"] += 1
        self._wall_now = self._wall(now)
        self._now = now
        if len(data) > MAX_RECEIVE:
            self._c["oversize"] += 1
            return
        try:
            msg = dm.decode_message(data)
        except DecodeError:
            self._c["decode"] += 1
            return
        try:
            msg.verify()
        except A2ALError:
            self._c["verify"] += 1
            return
        try:
            if msg.msg_type in RESPONSES:
                self._on_response(msg, addr, now)
            else:
                self._on_request(msg, addr, now)
        except A2ALError as exc:  # a well-formed message we still cannot use
            self._c["verify"] += 1
            logger.debug("dht.drop from=%s type=%s reason=%s", addr, msg.msg_type.name, exc)

    def handle_timer(self, now: float) -> None:
        """Time out RPCs whose deadline passed (retrying where attempts are left)."""
        self._wall_now = self._wall(now)
        self._now = now
        while (p := self._txs.pop_due(now)) is not None:
            self._txs.remove(p)
            if p.attempts_left > 0:
                self._resend(p, now)
                continue
            self._c["timeouts"] += 1
            if p.node_id is not None:
                self.routing.record_failure(p.node_id, now)
                peer = self.routing.get(p.node_id) if self._report_unanswered else None
                if peer is not None:
                    self._events.append(ev.PeerUnanswered(aid=peer.aid, addr=p.addr))
            op = self._txs.running(p.op_id)
            if op is not None:
                self._apply(op, op.advance(Failed(p.node_id, p.expect), self), now)
        self._subs.expire(now)
        if self._next_maintenance is not None and self._next_maintenance <= now:
            self._next_maintenance = now + MAINTENANCE_S
            self.store.remove_expired(self._wall_now)
            self.refresh_buckets(now, REFRESH_PER_ROUND)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """Take the queued datagrams."""
        out, self._out = self._out, []
        self._c["sent"] += len(out)
        return out

    def get_timer(self) -> float | None:
        """The earliest RPC deadline or the next maintenance round."""
        deadlines = [d for d in (self._next_maintenance, self._txs.next_deadline())
                     if d is not None]  # fmt: skip
        return min(deadlines) if deadlines else None

    def next_event(self) -> ev.DhtEvent | None:
        """Pop the oldest event."""
        return self._events.popleft() if self._events else None

    # == commands =====================================================================

    def ping(self, addr: Addr, now: float) -> int:
        """PING ``addr``; ends with :class:`PingFinished`."""
        return self._start(PingOp(op_id=self._txs.new_op_id(), addr=addr), now)

    def bootstrap(self, seeds: Iterable[Addr], now: float) -> int:
        """PING every seed, then look up our own NodeID; ends with :class:`BootstrapFinished`."""
        seeds = tuple(dict.fromkeys(seeds))
        op = BootstrapOp(op_id=self._txs.new_op_id(), seeds=seeds, seeds_left=len(seeds))
        return self._start(op, now)

    def lookup(
        self,
        target: NodeId,
        kind: LookupKind,
        now: float,
        *,
        rec_type: int = 0,
        subscribe: bool = False,
    ) -> int:
        """Start an iterative lookup; ends with :class:`LookupFinished`.

        ``FIRST`` answers from the local store when it holds a valid record; ``ALL`` merges
        the local store's records with the network's.
        """
        self._wall_now = self._wall(now)
        self._now = now
        op_id = self._txs.new_op_id()
        op = FindOp(op_id=op_id, lookup=self._make_lookup(target, kind, rec_type),
                    rec_type=rec_type, subscribe=subscribe)  # fmt: skip
        local = () if kind is LookupKind.NODES else tuple(
            self.store.get(bytes(target), self._wall(now), rec_type))  # fmt: skip
        return self._start(op, now, Start(local))

    def publish(self, record: SignedRecord, key: NodeId, now: float) -> int:
        """Store locally, then on up to ``config.replicas`` of the closest peers to ``key``.

        Ends with :class:`PublishFinished`.

        Raises:
            UsageError: our own store refuses the record (invalid or not authorised).
        """
        self._now = now
        result = self.store.put(bytes(key), record, self._wall(now), from_publisher=True,
                                vouched=True)  # fmt: skip
        if result.outcome in (PutOutcome.REJECTED_INVALID, PutOutcome.REJECTED_POLICY):
            raise UsageError(f"record refused: {result.reason}")
        if result.outcome is PutOutcome.REJECTED_FULL:  # the network may still hold it
            logger.warning("dht.publish local store full (%s)", result.reason)
        if result.is_new:
            self._notify_subscribers(key, record, now)
        op_id = self._txs.new_op_id()
        return self._start(PublishOp(op_id=op_id, key=key, record=record,
                                     lookup=self._make_lookup(key, LookupKind.NODES, 0)),
                           now)  # fmt: skip

    def send_nat_probe(self, peer: Addr, token: bytes, claimed: Addr, now: float) -> None:
        """Send a NAT_PROBE_REQ to ``peer``: please echo ``token`` to ``claimed`` (a2al-wire
        §4.4). No response is awaited: an echo arrives as :class:`NatProbeEchoed`."""
        self._now = now
        self._send(dm.NatProbeReq(token=token, claimed_addr=claimed), peer,
                   self.rng.bytes(limits.TX_ID_LEN))  # fmt: skip

    def send_nat_echo(self, addr: Addr, token: bytes, now: float) -> None:
        """Send a NAT_PROBE_ECHO carrying ``token`` to ``addr`` (the answer to a
        :class:`NatProbeRequested` the NAT layer allowed), with a new random tx_id."""
        self._now = now
        self._send(dm.NatProbeEcho(token=token), addr, self.rng.bytes(limits.TX_ID_LEN))

    def cancel(self, op_id: int) -> bool:
        """Stop an operation its caller no longer waits for; True if it was still running.

        It sends nothing more and ends without an event; its outstanding requests are
        forgotten, so their late answers are dropped and counted as ``dropped_unsolicited``
        (what they taught the routing table before the cancel stays). Work it already
        handed on (a path-cache STORE, the background self-lookup of a bootstrap) goes on.
        """
        if not self._txs.cancel(op_id):
            return False
        self._c["cancelled"] += 1
        return True

    def refresh_buckets(self, now: float, limit: int) -> int:
        """Look up a random ID in up to ``limit`` unhealthy buckets; returns how many started.
        Which buckets, and when again: a2ald's rule (§4.7), kept by
        :class:`~a2al_mcp.dht.maintenance.BucketRefresher`."""
        self._now = now
        started = 0
        for i, size in self._refresher.due(now, limit):
            op_id = self._txs.new_op_id()
            target = random_id_in_bucket(self.node_id, i, self.rng)
            self._start(BucketRefreshOp(
                op_id=op_id, lookup=self._make_lookup(target, LookupKind.NODES, 0),
                bucket=i, size_before=size), now)  # fmt: skip
            started += 1
        return started

    def cache_record(self, key: NodeId | bytes, record: SignedRecord, now: float) -> PutOutcome:
        """Keep a record learnt outside the DHT (a peer's stream-0 AgentInfo, a2al-wire §5.2
        type 3) as if a lookup had found it: verified, unvouched, under the store's limits."""
        return self.store.put(bytes(key), record, self._wall(now), from_publisher=False).outcome

    def find_node_peers(self, target: NodeId, n: int = limits.K) -> list[tuple[Aid, Addr]]:
        """The routing table's view of the peers nearest to ``target``, each with the address
        its dial slots prefer."""
        now = self._now
        return [(p.aid, p.dial(now)) for p in self.routing.closest(target, n)]

    def peer_count(self) -> int:
        """Peers in the routing table."""
        return len(self.routing)

    def statistics(self) -> DhtStats:
        return collect_stats(self._c, self._responder, self.store.statistics(),
                             len(self.routing))  # fmt: skip

    # == internals: sending ===========================================================

    def _wall(self, now: float) -> float:
        return now + self.wall_offset

    def _send(
        self, body: dm.Body, addr: Addr, tx_id: bytes, body_bytes: bytes | None = None
    ) -> bytes | None:
        try:
            data = dm.encode_message(body, tx_id=tx_id, key=self.identity.key,
                                     body_bytes=body_bytes)  # fmt: skip
        except (LimitExceeded, DecodeError) as exc:
            logger.warning("dht.encode_failed type=%s reason=%s", body.MSG_TYPE.name, exc)
            return None
        self._out.append((data, addr))
        return data

    def _request(
        self,
        body: dm.Body,
        addr: Addr,
        op_id: int,
        node_id: NodeId | None,
        now: float,
        *,
        attempts: int = 1,
        timeout_s: float | None = None,
        tx_prefix: bytes = b"",
    ) -> None:
        tx_id = tx_prefix + self.rng.bytes(limits.TX_ID_LEN - len(tx_prefix))
        if self._send(body, addr, tx_id) is None:
            return
        timeout = timeout_s if timeout_s is not None else self.config.lookup_rpc_timeout_s
        self._txs.add(Pending(tx_id, addr, response_of(body.MSG_TYPE), now + timeout, op_id,
                              node_id, body, attempts - 1, timeout))  # fmt: skip

    def _resend(self, p: Pending, now: float) -> None:
        """Retry a timed-out request with a fresh tx_id (as a2ald does), same body."""
        tx_id = self.rng.bytes(limits.TX_ID_LEN)
        if self._send(p.body, p.addr, tx_id) is None:
            return
        self._txs.add(Pending(tx_id, p.addr, p.expect, now + p.timeout_s, p.op_id, p.node_id,
                            p.body, p.attempts_left - 1, p.timeout_s))  # fmt: skip

    def _reply(
        self, request: dm.Message, body: dm.Body, addr: Addr, body_bytes: bytes | None
    ) -> None:
        self._c["answered"] += 1
        self._send(body, addr, request.tx_id, body_bytes)

    # == internals: requests ==========================================================

    def _on_request(self, msg: dm.Message, addr: Addr, now: float) -> None:
        if self._next_maintenance is None:
            self._next_maintenance = now + MAINTENANCE_S
        if not isinstance(msg.body, dm.NatProbeReq | dm.NatProbeEcho):
            lru = self.routing.observe_direct(msg.sender, addr, now)
            if lru is not None:  # full bucket: check the least recently seen peer
                self._request(dm.Ping(address=self.aid), lru.dial(now), 0, lru.node_id, now)
        self._responder.answer(msg, addr, now, self._wall(now))

    def _notify_subscribers(self, key: NodeId, record: SignedRecord, now: float) -> None:
        for addr in self._subs.take(key, now):
            self._request(dm.DhtPush(key=key, record=record), addr, 0, None, now)

    # == internals: responses =========================================================

    def _on_response(self, msg: dm.Message, addr: Addr, now: float) -> None:
        p = self._txs.match(msg.tx_id, msg.msg_type, addr)
        if p is None:
            self._c["unsolicited"] += 1
            return
        self._txs.remove(p)
        self._c["matched"] += 1
        sender = msg.sender
        self._answered[sender.node_id] = None
        self._answered.move_to_end(sender.node_id)
        if len(self._answered) > ANSWERED_MAX:
            self._answered.popitem(last=False)
        self.routing.observe_direct(sender, addr, now)
        self.routing.record_success(sender.node_id, now)
        body = msg.body
        observed = getattr(body, "observed_addr", None)
        if observed is not None:
            self._events.append(ev.AddressObserved(reporter=sender, addr=observed))
        if isinstance(body, dm.DhtPushAck) and body.one_shot_subscribe:
            self._subs.subscribe(bytes(body.key), addr, now)
        op = self._txs.running(p.op_id)
        if op is None:
            return
        event: OpEvent = Replied(sender, addr, body)
        if isinstance(op, LookupOp) and op.answers and isinstance(body, _FIND_RESPONSES):
            event = self._hearsay(sender, body, now)
        self._apply(op, op.advance(event, self), now)

    def _hearsay(self, sender: Aid, body: dm.FindNodeResp | dm.FindValueResp,
                 now: float) -> Answered:  # fmt: skip
        """Learn the peers a lookup answer names (a near new one gets a PING); the answer as
        its lookup takes it."""
        peers, probe = self.routing.observe_answer(body.nodes, now)
        for addr, node_id in probe:  # a2ald: one PING for a new near hearsay peer
            self._request(dm.Ping(address=self.aid), addr, 0, node_id, now)
        records: list[SignedRecord] = []
        trimmed = False
        if isinstance(body, dm.FindValueResp):
            records = list(body.records) + ([body.record] if body.record else [])
            trimmed = len(body.nodes) <= 1  # responders trim nodes before records
        return Answered(sender, peers, records, trimmed)

    # == internals: operations ========================================================

    def _make_lookup(self, target: NodeId, kind: LookupKind, rec_type: int) -> Lookup:
        accept = valid_records(target, rec_type, lambda: self._wall_now)
        lookup = Lookup(target, kind, self_id=self.node_id, accept=accept,
                        k=limits.K, alpha=self.config.lookup_concurrency)  # fmt: skip
        lookup.add_candidates(self.find_node_peers(target, 64))
        return lookup

    def _start(self, op: Op, now: float, start: Start = _START) -> int:
        self._txs.register(op)
        self._apply(op, op.advance(start, self), now)
        return op.op_id

    def _apply(self, op: Op, effects: list[Effect], now: float) -> None:
        """Carry out an operation's effects, in order."""
        for e in effects:
            match e:
                case Send():
                    self._request(e.body, e.addr, op.op_id, e.node_id, now, attempts=e.attempts,
                                  timeout_s=e.timeout_s, tx_prefix=e.tx_prefix)  # fmt: skip
                case Finish():  # its pending requests stay but no longer reach it
                    self._txs.end(op)
                    if not op.INTERNAL:
                        self._events.append(e.event)
                case AnchorSeed():
                    self.routing.set_anchor(e.node_id, e.addr)
                case StartSelfLookup():
                    op_id = self._txs.new_op_id()
                    lookup = self._make_lookup(self.node_id, LookupKind.NODES, 0)
                    lookup.add_candidates(e.seeds)
                    self._next_maintenance = now + MAINTENANCE_S
                    self._start(SelfLookupOp(op_id=op_id, lookup=lookup), now)
                case RefreshBuckets():
                    self.refresh_buckets(now, e.limit)
                case RefillEnded():
                    self._refresher.done(e.bucket, e.size_before, now)
                case CacheFound():  # vouched if its publisher answered one of our requests
                    vouched = e.record.address.node_id in self._answered
                    self.store.put(bytes(e.key), e.record, self._wall(now),
                                   from_publisher=False, vouched=vouched)  # fmt: skip
                case StartPathCache():
                    self._start(PathCacheOp(op_id=self._txs.new_op_id(), key=e.key,
                                            record=e.record, cache_at=e.cache_at), now)  # fmt: skip
