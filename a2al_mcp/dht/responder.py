"""Answering the DHT requests of other peers (a2al-wire §4): PING, FIND_NODE, FIND_VALUE
(with our record-window paging), STORE (under per-address and per-prefix rate limits) and
DHT_PUSH, plus the one-shot subscriptions those answers grant. NAT_PROBE_REQ and
NAT_PROBE_ECHO are handed on as events (:class:`~a2al_mcp.dht.events.NatProbeRequested`,
:class:`~a2al_mcp.dht.events.NatProbeEchoed`) for the NAT layer, which the node wires in.

Sans-I/O like :class:`~a2al_mcp.dht.core.DhtCore`, which owns a :class:`Responder` and
hands it every verified request: replies go out through the core's ``reply`` and events
through its ``emit``; a record new to the store is handed to ``on_new_record`` (the core
pushes it to the subscribers, which needs its transaction table).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Container
from typing import Final
from urllib.parse import urlsplit

from .._types import Addr
from ..config import LimitsConfig
from ..errors import A2ALError, DecodeError
from ..identity.aid import Aid, NodeId
from ..protocol import dht_messages as dm
from ..protocol import limits
from ..protocol.payloads import EndpointPayload
from ..protocol.records import Category, RecType, SignedRecord
from ..protocol.timers import SUBSCRIPTION_TTL_S
from . import events as ev
from .routing import RoutingTable
from .store import PutOutcome, RecordStore

__all__ = ["PAGE_MARK", "Responder", "Subscriptions"]

STORE_BURST_S: Final = 3.0
"""A STORE rate limit's burst: this many seconds' worth of its rate."""
RATE_TABLE_MAX: Final = 4096
"""Source addresses (and, separately, source prefixes) whose STORE rate is tracked; the least
recently seen is forgotten first."""
PUSH_SEEN_MAX: Final = 4096
PAGE_MARK: Final = b"\xa2\x1f"
"""A tx_id starting with these bytes carries a record-window offset in its next two bytes:
our extension for paging FIND_VALUE answers (a2ald's random tx_ids ignore it in practice)."""
SUBSCRIBERS_PER_KEY: Final = 64
_NODEINFO_MAX: Final = 81
"""Largest NodeInfo encoding: map head, 21-byte AID, 32-byte NodeID, 16-byte IP, 2-byte port."""

Reply = Callable[[dm.Message, dm.Body, Addr, bytes | None], None]


class Subscriptions:
    """One-shot subscriptions (a2al-wire §4.9): per key, the addresses to push its next new
    record to, each until ``SUBSCRIPTION_TTL_S`` after it subscribed."""

    __slots__ = ("_subs",)

    def __init__(self) -> None:
        self._subs: dict[bytes, dict[Addr, float]] = {}

    def subscribe(self, key: bytes, addr: Addr, now: float) -> None:
        subs = self._subs.setdefault(key, {})
        subs[addr] = now + SUBSCRIPTION_TTL_S
        if len(subs) > SUBSCRIBERS_PER_KEY:
            del subs[min(subs, key=lambda a: subs[a])]
        if len(self._subs) > RATE_TABLE_MAX:
            self._subs.pop(next(iter(self._subs)))

    def expire(self, now: float) -> None:
        for key in [k for k, s in self._subs.items() if all(t <= now for t in s.values())]:
            del self._subs[key]

    def take(self, key: NodeId, now: float) -> list[Addr]:
        """The live subscribers of ``key``, which are forgotten (one push each)."""
        subs = self._subs.pop(bytes(key), {})
        return [addr for addr, expiry in subs.items() if expiry > now]


class _TokenBucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, burst: float, now: float) -> None:
        self.tokens, self.updated = burst, now

    def refill(self, now: float, rate: float) -> bool:
        """Add what ``rate`` earned since the last call; True if a token is available."""
        burst = rate * STORE_BURST_S
        self.tokens = min(burst, self.tokens + max(0.0, now - self.updated) * rate)
        self.updated = now
        return self.tokens >= 1.0


def _prefix_of(host: str) -> str:
    """The rate-limit prefix of a source address: its IPv4 /24 or IPv6 /64 (an IPv4-mapped
    IPv6 address counts as IPv4)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is None:
            return str(ipaddress.IPv6Network((ip, 64), strict=False))
        ip = ip.ipv4_mapped
    return str(ipaddress.IPv4Network((ip, 24), strict=False))


def _quic_hosts(record: SignedRecord) -> set[str]:
    try:
        ep = EndpointPayload.from_bytes(record.payload)
    except DecodeError:
        return set()
    hosts = set()
    for url in ep.endpoints:
        try:
            host = urlsplit(url).hostname
        except ValueError:
            continue
        if host:
            hosts.add(host)
    return hosts


def _fewer_nodes(nodes: tuple[dm.NodeInfo, ...], size: int) -> tuple[dm.NodeInfo, ...]:
    """Drop trailing NodeInfos (at least one, never the first) towards shedding
    ``size - MAX_BODY`` bytes: the trimming of a2al-wire §4.6 in fewer steps. No NodeInfo
    encodes to more than ``_NODEINFO_MAX`` bytes, so this never drops more than the one-by-one
    rule would; the caller re-encodes and calls again while the body is too big."""
    drop = max(1, (size - limits.MAX_BODY) // _NODEINFO_MAX)
    return nodes[: max(1, len(nodes) - drop)]


def _trim_nodes(resp: dm.FindNodeResp) -> tuple[dm.FindNodeResp, bytes]:
    """Drop trailing NodeInfos until the body fits (a2al-wire §4.6); returns the body and
    its encoding."""
    data = dm.encode_body(resp)
    while len(resp.nodes) > 1 and len(data) > limits.MAX_BODY:
        resp = dataclasses.replace(resp, nodes=_fewer_nodes(resp.nodes, len(data)))
        data = dm.encode_body(resp)
    return resp, data


class Responder:
    """Answers one verified request at a time (the core has already seen its sender)."""

    def __init__(
        self,
        *,
        aid: Aid,
        routing: RoutingTable,
        store: RecordStore,
        limits: LimitsConfig,
        subscriptions: Subscriptions,
        answered: Container[NodeId],
        reply: Reply,
        emit: Callable[[ev.DhtEvent], None],
        on_new_record: Callable[[NodeId, SignedRecord, float], None],
    ) -> None:
        self._aid = aid
        self._routing = routing
        self._store = store
        self._limits = limits
        self._subs = subscriptions
        self._answered = answered
        """Peers that answered a request of ours (their STOREs are vouched for)."""
        self._reply = reply
        self._emit = emit
        self._on_new_record = on_new_record
        self._rates: OrderedDict[str, tuple[_TokenBucket, str]] = OrderedDict()
        """Per source address: its STORE token bucket and its prefix's key."""
        self._prefix_rates: OrderedDict[str, _TokenBucket] = OrderedDict()
        self._push_seen: OrderedDict[bytes, None] = OrderedDict()
        self.rate_limited_ip = 0
        self.rate_limited_prefix = 0
        self.unsolicited = 0
        """Requests of no known kind (none today: NAT_PROBE_REQ/ECHO become events)."""
        self.invalid = 0
        """DHT_PUSHes whose record failed validation."""

    def answer(self, msg: dm.Message, addr: Addr, now: float, wall: float) -> None:
        """Answer ``msg`` from ``addr`` at monotonic ``now`` (Unix time ``wall``)."""
        match body := msg.body:
            case dm.Ping():
                self._reply(msg, dm.Pong(address=self._aid, observed_addr=addr), addr, None)
            case dm.FindNode(target=target):
                nodes = self._node_infos(target, now)
                resp, data = _trim_nodes(dm.FindNodeResp(nodes=tuple(nodes), observed_addr=addr))
                self._reply(msg, resp, addr, data)
            case dm.FindValue():
                self._on_find_value(msg, body, addr, now, wall)
            case dm.Store():
                self._on_store(msg, body, addr, now, wall)
            case dm.DhtPush(key=key, record=record):
                self._on_push(msg, key, record, addr, wall)
            case dm.NatProbeReq(token=token, claimed_addr=claimed):
                # The NAT layer decides (it may refuse); we send nothing on our own.
                self._emit(ev.NatProbeRequested(sender=msg.sender, addr=addr, token=token,
                                                claimed=claimed))  # fmt: skip
            case dm.NatProbeEcho(token=token):
                self._emit(ev.NatProbeEchoed(sender=msg.sender, addr=addr, token=token))
            case _:  # responses are routed elsewhere; nothing else reaches us
                self.unsolicited += 1

    def _node_infos(self, target: NodeId, now: float) -> list[dm.NodeInfo]:
        out = []
        for p in self._routing.closest(target, limits.K):
            try:
                out.append(dm.NodeInfo.of(p.aid, p.dial(now)))
            except DecodeError:
                continue
        return out

    def _on_find_value(
        self, msg: dm.Message, body: dm.FindValue, addr: Addr, now: float, wall: float
    ) -> None:
        key = bytes(body.target)
        newest_first = self._store.get(key, wall, body.rec_type)[::-1]
        if newest_first and msg.tx_id.startswith(PAGE_MARK):
            off = int.from_bytes(msg.tx_id[2:4], "big") % len(newest_first)
            newest_first = newest_first[off:] + newest_first[:off]
        records = tuple(newest_first)
        legacy = None if records else self._store.newest_endpoint(key, wall)
        resp = dm.FindValueResp(
            nodes=tuple(self._node_infos(body.target, now)),
            observed_addr=addr,
            records=records,
            record=legacy,
        )
        data = dm.encode_body(resp)
        while len(data) > limits.MAX_BODY:
            if len(resp.nodes) > 1:
                resp = dataclasses.replace(resp, nodes=_fewer_nodes(resp.nodes, len(data)))
            elif len(resp.records) > 1:  # keep the front of the window (newest first)
                resp = dataclasses.replace(resp, records=resp.records[:-1])
            elif resp.record is not None:
                resp = dataclasses.replace(resp, record=None)
            elif resp.nodes:
                resp = dataclasses.replace(resp, nodes=())
            else:
                break
            data = dm.encode_body(resp)
        self._reply(msg, resp, addr, data)
        if body.one_shot_subscribe and (resp.records or resp.record is not None):
            self._subs.subscribe(key, addr, now)

    def _on_store(
        self, msg: dm.Message, body: dm.Store, addr: Addr, now: float, wall: float
    ) -> None:
        ip = addr[0]
        if not self._take_store_token(ip, now):
            return  # no answer: the sender times out, as with a lost datagram
        sender = msg.sender
        record = body.record
        key = bytes(body.key) if body.key is not None else record.default_key()
        from_publisher = sender.node_id == record.address.node_id or (
            record.rec_type == RecType.ENDPOINT and ip in _quic_hosts(record)
        )
        vouched = sender.node_id in self._answered or record.address.node_id in self._answered
        result = self._store.put(key, record, wall, from_publisher=from_publisher,
                                 vouched=vouched)  # fmt: skip
        match result.outcome:
            case PutOutcome.STORED:
                resp = dm.StoreResp(stored=True)
            case PutOutcome.STALE:
                resp = dm.StoreResp(stored=True, already_had=True)
            case PutOutcome.REJECTED_POLICY | PutOutcome.REJECTED_FULL:
                resp = dm.StoreResp(stored=False, reason=dm.StoreReason.POLICY)
            case _:
                resp = dm.StoreResp(stored=False, reason=dm.StoreReason.INVALID)
        self._reply(msg, resp, addr, None)
        if result.is_new:
            stored_key = NodeId(result.key or key)
            if record.category is Category.MAILBOX:
                self._emit(ev.MailboxStored(key=stored_key, record=record, source=addr))
            self._on_new_record(stored_key, record, now)

    def _take_store_token(self, host: str, now: float) -> bool:
        """Charge one STORE to its source address and to its /24 or /64; False (and counted)
        if either is over its rate (``limits.dht_stores_per_ip_s``, ``_per_prefix_s``, each
        with a burst of ``STORE_BURST_S`` seconds' worth)."""
        lim = self._limits
        entry = self._rates.get(host)
        if entry is None:
            bucket = _TokenBucket(lim.dht_stores_per_ip_s * STORE_BURST_S, now)
            entry = (bucket, _prefix_of(host))
            self._rates[host] = entry
            while len(self._rates) > RATE_TABLE_MAX:
                self._rates.popitem(last=False)
        self._rates.move_to_end(host)
        own, prefix = entry
        shared = self._prefix_rates.get(prefix)
        if shared is None:
            shared = _TokenBucket(lim.dht_stores_per_prefix_s * STORE_BURST_S, now)
            self._prefix_rates[prefix] = shared
            while len(self._prefix_rates) > RATE_TABLE_MAX:
                self._prefix_rates.popitem(last=False)
        self._prefix_rates.move_to_end(prefix)
        if not own.refill(now, lim.dht_stores_per_ip_s):
            self.rate_limited_ip += 1
            return False
        if not shared.refill(now, lim.dht_stores_per_prefix_s):
            self.rate_limited_prefix += 1
            return False
        own.tokens -= 1.0
        shared.tokens -= 1.0
        return True

    def _on_push(
        self, msg: dm.Message, key: NodeId, record: SignedRecord, addr: Addr, wall: float
    ) -> None:
        try:
            record.validate(wall, key=bytes(key))
        except A2ALError:
            self.invalid += 1
            return
        msg_id = record.msg_id
        is_new = msg_id not in self._push_seen
        if is_new:
            self._push_seen[msg_id] = None
            while len(self._push_seen) > PUSH_SEEN_MAX:
                self._push_seen.popitem(last=False)
            self._emit(ev.RecordPushed(key=key, record=record, source=addr))
        self._reply(msg, dm.DhtPushAck(key=key, msg_id=msg_id, one_shot_subscribe=is_new), addr,
                    None)  # fmt: skip
