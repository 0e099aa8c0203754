"""DhtCore: the sans-I/O DHT peer (a2al-wire §4). Implements :class:`DatagramCore`.

It answers every request type (through its :class:`~a2al_mcp.dht.responder.Responder`),
runs pings, bootstraps, lookups and publishes as operations (:mod:`a2al_mcp.dht.ops`, one
class per kind) that end in events, and keeps the routing table, the record store, the
transaction table (indexed per operation) and one-shot subscriptions. It never reads a
clock or opens a socket: each call carries ``now`` (monotonic seconds); record times use
``now + wall_offset`` (Unix seconds).

After calling any command (``ping``, ``bootstrap``, ``lookup``, ``publish``…) the driver must
send :meth:`datagrams_to_send` and re-read :meth:`get_timer`, as after a received datagram.
Remote garbage never raises: it is dropped and counted (:meth:`statistics`).
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, TypeVar

from .._types import Addr, Datagram
from ..config import DhtConfig, LimitsConfig
from ..errors import A2ALError, DecodeError, LimitExceeded, UsageError
from ..identity.aid import Aid, NodeId
from ..protocol import dht_messages as dm
from ..protocol import limits
from ..protocol.records import Category, SignedRecord
from ..protocol.timers import (
    MAINTENANCE_S,
    REFRESH_PER_ROUND,
)
from . import events as ev
from .lookup import Lookup, LookupKind
from .maintenance import BucketRefresher
from .ops import (
    BootstrapOp,
    BucketRefreshOp,
    FindOp,
    LookupOp,
    Op,
    PathCacheOp,
    PingOp,
    PublishOp,
    SelfLookupOp,
)
from .responder import PAGE_MARK, Responder, Subscriptions
from .routing import RoutingTable
from .stats import DhtStats
from .store import PutOutcome, RecordStore

if TYPE_CHECKING:
    from .._random import Rng
    from ..identity.local import Identity

__all__ = ["DhtCore", "DhtStats"]

_O = TypeVar("_O", bound=Op)

logger = logging.getLogger(__name__)

MAX_RECEIVE: Final = limits.MAX_DATAGRAM
"""Longest DHT datagram decoded; longer ones are dropped and counted (``dropped_oversize``).
No A2AL sender writes more (a2ald's transports refuse to send over 1200 bytes, a2al-wire
§4.1; so does our encoder), so anything longer is not a DHT message of any peer."""
ANSWERED_MAX: Final = 4096
"""Peers remembered as having answered one of our requests (their records are vouched for)."""
MAX_PAGES: Final = 16
HEARSAY_PROBE_MIN_BUCKET: Final = 3
BOOTSTRAP_PING_ATTEMPTS: Final = 2
"""A seed gets this many PINGs (each ``lookup_rpc_timeout_s``); every other RPC of the core
gets one attempt, as a2ald's lookups, replication STOREs and DHT_PUSHes do (§4.5)."""
REFRESH_AFTER_BOOTSTRAP: Final = 2
_RESPONSE_OF: Final = {
    dm.MsgType.PING: dm.MsgType.PONG,
    dm.MsgType.FIND_NODE: dm.MsgType.FIND_NODE_RESP,
    dm.MsgType.FIND_VALUE: dm.MsgType.FIND_VALUE_RESP,
    dm.MsgType.STORE: dm.MsgType.STORE_RESP,
    dm.MsgType.DHT_PUSH: dm.MsgType.DHT_PUSH_ACK,
}
_RESPONSES: Final = frozenset(_RESPONSE_OF.values())


@dataclasses.dataclass(slots=True)
class _Pending:
    tx_id: bytes
    addr: Addr
    expect: dm.MsgType
    deadline: float
    op_id: int
    node_id: NodeId | None
    body: dm.Body
    attempts_left: int
    timeout_s: float


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
    ) -> None:
        if identity.is_delegated:
            raise UsageError("a DHT node identity must be a native (non-delegated) identity")
        self.identity = identity
        self.aid: Aid = identity.aid
        self.node_id: NodeId = identity.aid.node_id
        self.config = config or DhtConfig()
        self.rng = rng
        self.wall_offset = wall_offset
        self.routing = RoutingTable(self.node_id, allow_local_hearsay=allow_local_hearsay)
        self.limits = limits or LimitsConfig()
        self.store = RecordStore.from_limits(self.limits)
        self._wall_now = wall_offset
        self._now = 0.0
        """Monotonic time of the call being handled (dial slots are chosen against it)."""
        """Unix time of the call being handled (records are validated against it)."""
        self._out: list[Datagram] = []
        self._events: deque[ev.DhtEvent] = deque()
        self._pending: dict[bytes, _Pending] = {}
        self._timers: list[tuple[float, bytes]] = []
        self._ops: dict[int, Op] = {}
        self._next_op = 1
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
            if msg.msg_type in _RESPONSES:
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
        while self._timers and self._timers[0][0] <= now:
            _, tx_id = heapq.heappop(self._timers)
            p = self._pending.get(tx_id)
            if p is None or p.deadline > now:
                continue
            self._untrack(p)
            if p.attempts_left > 0:
                self._resend(p, now)
                continue
            self._c["timeouts"] += 1
            if p.node_id is not None:
                self.routing.record_failure(p.node_id, now)
            self._on_rpc_failed(p, now)
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
        while self._timers and (
            self._timers[0][1] not in self._pending
            or self._pending[self._timers[0][1]].deadline != self._timers[0][0]
        ):
            heapq.heappop(self._timers)
        deadlines = [d for d in (self._next_maintenance,) if d is not None]
        if self._timers:
            deadlines.append(self._timers[0][0])
        return min(deadlines) if deadlines else None

    def next_event(self) -> ev.DhtEvent | None:
        """Pop the oldest event."""
        return self._events.popleft() if self._events else None

    # == commands =====================================================================

    def ping(self, addr: Addr, now: float) -> int:
        """PING ``addr``; ends with :class:`PingFinished`."""
        op = self._add(PingOp(op_id=self._take_op_id()))
        self._request(dm.Ping(address=self.aid), addr, op.op_id, None, now, attempts=1)
        return op.op_id

    def bootstrap(self, seeds: Iterable[Addr], now: float) -> int:
        """PING every seed, then look up our own NodeID; ends with :class:`BootstrapFinished`."""
        seeds = list(dict.fromkeys(seeds))
        op = self._add(BootstrapOp(op_id=self._take_op_id(), seeds_left=len(seeds)))
        for addr in seeds:
            self._request(dm.Ping(address=self.aid), addr, op.op_id, None, now,
                          attempts=BOOTSTRAP_PING_ATTEMPTS)  # fmt: skip
        if not seeds:
            self._finish_bootstrap(op)
        return op.op_id

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
        op_id = self._take_op_id()
        op = self._add(FindOp(op_id=op_id, lookup=self._make_lookup(target, kind, rec_type),
                              rec_type=rec_type, subscribe=subscribe))  # fmt: skip
        if kind is not LookupKind.NODES:
            local = self.store.get(bytes(target), self._wall(now), rec_type)
            op.lookup.add_records(local)
        self._advance_lookup(op, now)
        return op.op_id

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
        op_id = self._take_op_id()
        op = self._add(PublishOp(op_id=op_id, lookup=self._make_lookup(key, LookupKind.NODES, 0),
                                 key=key, record=record))  # fmt: skip
        self._advance_lookup(op, now)
        return op.op_id

    def cancel(self, op_id: int) -> bool:
        """Stop an operation its caller no longer waits for; True if it was still running.

        It sends nothing more and ends without an event; its outstanding requests are
        forgotten, so their late answers are dropped and counted as ``dropped_unsolicited``
        (what they taught the routing table before the cancel stays). Work it already
        handed on (a path-cache STORE, the background self-lookup of a bootstrap) goes on.
        """
        op = self._ops.pop(op_id, None)
        if op is None or op.done:
            return False
        op.done = True
        for tx_id in op.txs:
            del self._pending[tx_id]  # its heap entry is skipped by get_timer/handle_timer
        op.txs.clear()
        self._c["cancelled"] += 1
        return True

    def refresh_buckets(self, now: float, limit: int) -> int:
        """Look up a random ID in up to ``limit`` unhealthy buckets; returns how many started.

        a2ald's rule (§4.7), kept by :class:`~a2al_mcp.dht.maintenance.BucketRefresher`: a
        bucket is refilled when it is non-empty and holds fewer than K/2 verified peers,
        nearest buckets (highest CPL) first, each bucket backing off 30 s → 2 min → 10 min →
        15 min while its refills bring nobody new; a bucket that was healthy and declines
        starts again at 30 s.
        """
        self._now = now
        started = 0
        for i, size in self._refresher.due(now, limit):
            op_id = self._take_op_id()
            target = self._random_id_in_bucket(i)
            op = self._add(BucketRefreshOp(
                op_id=op_id, lookup=self._make_lookup(target, LookupKind.NODES, 0),
                bucket=i, size_before=size))  # fmt: skip
            self._advance_lookup(op, now)
            started += 1
        return started

    def _random_id_in_bucket(self, i: int) -> NodeId:
        """A random NodeID whose common prefix with ours is exactly ``i`` bits."""
        own = int(self.node_id)
        rand = int.from_bytes(self.rng.bytes(32), "big")
        keep = ((1 << 256) - 1) ^ ((1 << (256 - i)) - 1)  # our first i bits
        flip = 1 << (255 - i)
        low = rand & (flip - 1)
        value = (own & keep) | ((own & flip) ^ flip) | low
        return NodeId(value.to_bytes(32, "big"))

    def cache_record(self, key: NodeId | bytes, record: SignedRecord, now: float) -> PutOutcome:
        """Keep a record learnt outside the DHT (a peer's stream-0 AgentInfo, a2al-wire §5.2
        type 3) as if a lookup had found it: verified, unvouched, under the store's limits."""
        return self.store.put(bytes(key), record, self._wall(now), from_publisher=False).outcome

    def find_node_peers(self, target: NodeId, n: int = limits.K) -> list[tuple[Aid, Addr]]:
        """The routing table's view of the peers nearest to ``target``, each with the address
        its dial slots prefer."""
        now = self._now
        return [(p.aid, p.dial(now)) for p in self.routing.closest(target, n)]

    def statistics(self) -> DhtStats:
        c, r = self._c, self._responder
        store = self.store.statistics()
        return DhtStats(
            received=c["received"], sent=c["sent"], requests_answered=c["answered"],
            responses_matched=c["matched"], dropped_decode=c["decode"],
            dropped_verify=c["verify"] + r.invalid, dropped_oversize=c["oversize"],
            dropped_unsolicited=c["unsolicited"] + r.unsolicited,
            dropped_rate_limited=r.rate_limited_ip + r.rate_limited_prefix,
            rpc_timeouts=c["timeouts"], peers=len(self.routing),
            stored_records=store.records, stored_keys=store.keys,
            rate_limited_ip=r.rate_limited_ip, rate_limited_prefix=r.rate_limited_prefix,
            stored_bytes=store.bytes, stored_vouched=store.vouched, store_evicted=store.evicted,
            store_refused_keys=store.refused_keys, store_refused_records=store.refused_records,
            store_refused_bytes=store.refused_bytes, store_refused_per_key=store.refused_per_key,
            store_rejected_invalid=store.rejected_invalid, cancelled_ops=c["cancelled"],
        )  # fmt: skip

    # == internals: sending ===========================================================

    def _wall(self, now: float) -> float:
        return now + self.wall_offset

    def _take_op_id(self) -> int:
        op_id = self._next_op
        self._next_op += 1
        return op_id

    def _add(self, op: _O) -> _O:
        self._ops[op.op_id] = op
        return op

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
        tx_id: bytes | None = None,
    ) -> None:
        tx_id = tx_id or self.rng.bytes(limits.TX_ID_LEN)
        if self._send(body, addr, tx_id) is None:
            return
        timeout = timeout_s if timeout_s is not None else self.config.lookup_rpc_timeout_s
        p = _Pending(tx_id, addr, _RESPONSE_OF[body.MSG_TYPE], now + timeout, op_id, node_id,
                     body, attempts - 1, timeout)  # fmt: skip
        self._track(p)

    def _track(self, p: _Pending) -> None:
        self._pending[p.tx_id] = p
        heapq.heappush(self._timers, (p.deadline, p.tx_id))
        op = self._ops.get(p.op_id)
        if op is not None:
            op.txs.add(p.tx_id)

    def _untrack(self, p: _Pending) -> None:
        del self._pending[p.tx_id]
        op = self._ops.get(p.op_id)
        if op is not None:
            op.txs.discard(p.tx_id)

    def _resend(self, p: _Pending, now: float) -> None:
        """Retry a timed-out request with a fresh tx_id (as a2ald does), same body."""
        tx_id = self.rng.bytes(limits.TX_ID_LEN)
        if self._send(p.body, p.addr, tx_id) is None:
            return
        self._track(dataclasses.replace(p, tx_id=tx_id, deadline=now + p.timeout_s,
                                        attempts_left=p.attempts_left - 1))  # fmt: skip

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
        p = self._pending.get(msg.tx_id)
        if p is None or p.expect != msg.msg_type or p.addr != addr:
            self._c["unsolicited"] += 1
            return
        self._untrack(p)
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
        op = self._ops.get(p.op_id)
        if op is None or op.done:
            return
        match op:
            case PathCacheOp():
                if isinstance(body, dm.Pong) and op.on_pong_confirms(sender):
                    self._store_cached(op, now)
                else:
                    self._finish(op, op.ended(ok=True))
            case PingOp() if isinstance(body, dm.Pong):
                self._finish(op, op.on_pong(sender))
            case BootstrapOp() if isinstance(body, dm.Pong):
                self.routing.set_anchor(sender.node_id, addr)  # a seed we were given
                if op.on_pong():
                    # a2ald's rule: joined at the first PONG; the self-lookup (and then the
                    # bucket refresh) go on in the background
                    self._finish_bootstrap(op)
                    self._start_self_lookup([(sender, addr)], now)
            case PublishOp(storing=True) if isinstance(body, dm.StoreResp):
                op.on_store_resp(sender, body)
                self._advance_publish(op, now)
            case LookupOp() if op.answers and isinstance(body, dm.FindNodeResp | dm.FindValueResp):
                self._lookup_answer(op, sender, body, now)
            case _:
                pass

    def _lookup_answer(
        self, op: LookupOp, sender: Aid, body: dm.FindNodeResp | dm.FindValueResp, now: float
    ) -> None:
        peers = []
        for n in body.nodes:
            try:
                addr = n.addr
            except DecodeError:
                continue
            if n.node_id != n.address.node_id:
                continue  # a NodeInfo whose NodeID does not match its AID is a lie
            added = self.routing.observe_hearsay(n.address, addr, now)
            if added and self.routing.bucket_index(n.node_id) >= HEARSAY_PROBE_MIN_BUCKET:
                # a2ald: one opportunistic PING for a new near hearsay peer (verifies it)
                self._request(dm.Ping(address=self.aid), addr, 0, n.node_id, now)
            if self.routing.hearsay_usable(addr):
                peers.append((n.address, addr))
        records: list[SignedRecord] = []
        if isinstance(body, dm.FindValueResp):
            records = list(body.records) + ([body.record] if body.record else [])
        before = len(op.lookup.records())
        op.on_answer(sender.node_id, peers, records)
        if (
            isinstance(op, FindOp)
            and op.lookup.kind is LookupKind.ALL
            and isinstance(body, dm.FindValueResp)
            and len(body.nodes) <= 1  # responders trim nodes before records: likely trimmed
            and len(op.lookup.records()) > before
        ):
            self._request_page(op, sender, now)
        self._advance_lookup(op, now)

    def _request_page(self, op: FindOp, peer: Aid, now: float) -> None:
        """Ask a peer whose answer was trimmed for the next window of its records."""
        seen = op.next_page(peer.node_id, MAX_PAGES)
        if seen is None:
            return
        cand = op.lookup.candidate(peer.node_id)
        tx_id = PAGE_MARK + (seen % 65536).to_bytes(2, "big") + self.rng.bytes(16)
        self._request(op.value_request(), cand.addr, op.op_id, peer.node_id, now, tx_id=tx_id)

    def _on_rpc_failed(self, p: _Pending, now: float) -> None:
        op = self._ops.get(p.op_id)
        if op is None or op.done:
            return
        match op:
            case PingOp():
                self._finish(op, op.on_failure())
            case PathCacheOp():
                self._finish(op, op.ended(ok=False))
            case BootstrapOp():
                if op.on_failure():
                    self._finish_bootstrap(op)
            case PublishOp(storing=True):
                if p.expect is dm.MsgType.STORE_RESP:
                    op.on_store_failed()
                    self._advance_publish(op, now)
                # a late FIND_NODE timeout: the lookup has ended, nothing to ask any more
            case LookupOp() if p.node_id is not None:
                op.lookup.on_failure(p.node_id)
                self._advance_lookup(op, now)
            case _:
                pass

    # == internals: operations ========================================================

    def _make_lookup(self, target: NodeId, kind: LookupKind, rec_type: int) -> Lookup:
        key = bytes(target)

        def accept(rec: SignedRecord) -> bool:
            if rec_type and rec.rec_type != rec_type:
                return False
            try:
                rec.validate(self._wall_now, key=key)
            except A2ALError:
                return False
            return True

        lookup = Lookup(target, kind, self_id=self.node_id, accept=accept,
                        k=limits.K, alpha=self.config.lookup_concurrency)  # fmt: skip
        lookup.add_candidates(self.find_node_peers(target, 64))
        return lookup

    def _advance_lookup(self, op: LookupOp, now: float) -> None:
        lookup = op.lookup
        for cand in lookup.next_requests():
            self._request(op.request_body(), cand.addr, op.op_id, cand.node_id, now)
        if lookup.finished or lookup.waiting == 0:
            self._lookup_done(op, now)

    def _lookup_done(self, op: LookupOp, now: float) -> None:
        match op:
            case BucketRefreshOp():
                self._refresher.done(op.bucket, op.size_before, now)
                self._finish(op, op.nodes_finished())
            case SelfLookupOp():
                self._finish(op, op.nodes_finished())
                self.refresh_buckets(now, REFRESH_AFTER_BOOTSTRAP)
            case PublishOp():
                if not op.storing:
                    op.start_storing(list(op.closest()) or self.find_node_peers(op.key))
                    self._advance_publish(op, now)
            case FindOp():
                self._find_done(op, now)
            case _:  # pragma: no cover - every LookupOp kind is matched above
                raise AssertionError(f"unknown lookup op {op!r}")

    def _find_done(self, op: FindOp, now: float) -> None:
        lookup = op.lookup
        target = lookup.target
        if lookup.kind is LookupKind.FIRST:
            records: tuple[SignedRecord, ...] = (lookup.found,) if lookup.found else ()
            if lookup.found is not None:  # cache the hit, as a2ald does (soft-expires in 2 min)
                vouched = lookup.found.address.node_id in self._answered
                self.store.put(bytes(target), lookup.found, self._wall(now),
                               from_publisher=False, vouched=vouched)  # fmt: skip
                if lookup.path_hops() > 0:
                    self._path_cache(op, lookup.found, now)
        else:
            records = tuple(lookup.records())
        self._finish(op, op.finished(records))

    def _path_cache(self, op: FindOp, record: SignedRecord, now: float) -> None:
        """a2al-wire §4.8: STORE a found record at the closest peer that answered without it;
        a sovereign record only after its publisher answered a PING at its advertised
        address (so a dead publisher's record is not spread further)."""
        peer = op.path_cache_peer()
        if peer is None:
            return
        pc = self._add(PathCacheOp(op_id=self._take_op_id(), key=op.lookup.target,
                                   record=record, cache_at=peer))  # fmt: skip
        if record.category is Category.SOVEREIGN:
            addr = pc.publisher_addr()
            if addr is None:
                self._finish(pc, pc.ended(ok=False))
                return
            self._request(dm.Ping(address=self.aid), addr, pc.op_id, None, now)
        else:
            self._store_cached(pc, now)

    def _store_cached(self, pc: PathCacheOp, now: float) -> None:
        aid, addr = pc.cache_at
        self._request(pc.store_request(), addr, pc.op_id, aid.node_id, now)

    def _advance_publish(self, op: PublishOp, now: float) -> None:
        want = self.config.replicas
        for aid, addr in op.next_stores(self.config.lookup_concurrency, want):
            self._request(op.store_request(), addr, op.op_id, aid.node_id, now)
        if op.complete(want):
            self._finish(op, op.finished())

    def _start_self_lookup(self, seeds: list[tuple[Aid, Addr]], now: float) -> None:
        op_id = self._take_op_id()
        lookup = self._make_lookup(self.node_id, LookupKind.NODES, 0)
        lookup.add_candidates(seeds)
        op = self._add(SelfLookupOp(op_id=op_id, lookup=lookup))
        self._next_maintenance = now + MAINTENANCE_S
        self._advance_lookup(op, now)

    def _finish_bootstrap(self, op: BootstrapOp) -> None:
        if not op.done:
            self._finish(op, op.finished(len(self.routing)))

    def _finish(self, op: Op, event: ev.DhtEvent) -> None:
        """End ``op``; its requests still pending stay (their answers still teach the routing
        table, their timeouts still count) but no longer reach it."""
        op.done = True
        self._ops.pop(op.op_id, None)
        op.txs.clear()
        if not op.INTERNAL:
            self._events.append(event)
