"""DhtCore driven directly: sans-I/O, no sockets, a virtual clock and exact deadlines.

Each test plays the remote peers by hand: it reads the datagrams the core queues, decodes
them with the message codec and answers (or stays silent) with datagrams signed by scripted
identities. Constants come from where they live (``protocol.timers``, ``dht.core``,
``DhtConfig``), never re-typed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from a2al_mcp._random import SeededRng
from a2al_mcp.config import DhtConfig
from a2al_mcp.dht import events as ev
from a2al_mcp.dht.core import BOOTSTRAP_PING_ATTEMPTS, MAX_PAGES, PAGE_MARK, DhtCore
from a2al_mcp.dht.lookup import LookupKind
from a2al_mcp.identity import Identity, NodeId
from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.protocol.payloads import TopicPayload, topic_key
from a2al_mcp.protocol.records import RecType, SignedRecord
from a2al_mcp.protocol.timers import MAINTENANCE_S, SUBSCRIPTION_TTL_S
from a2al_mcp.testing.clock import FakeClock

_Addr = tuple[str, int]
RPC = DhtConfig().lookup_rpc_timeout_s
"""The core's deadline of one RPC (``dht.lookup_rpc_timeout_s``, default LOOKUP_RPC_TIMEOUT_S)."""
ALPHA = DhtConfig().lookup_concurrency
T0 = FakeClock().monotonic()
WALL_OFFSET = FakeClock().wall_offset
TOPIC = "lang.translate"
TOPIC_KEY = NodeId(topic_key(TOPIC))


@dataclass
class Remote:
    """A scripted peer: an identity at an address."""

    ident: Identity
    addr: _Addr

    def answer(self, core: DhtCore, request: dm.Message, body: dm.Body, now: float) -> None:
        data = dm.encode_message(body, tx_id=request.tx_id, key=self.ident.key)
        core.receive_datagram(data, self.addr, now)

    def ask(self, core: DhtCore, body: dm.Body, now: float, tx_id: bytes) -> None:
        core.receive_datagram(dm.encode_message(body, tx_id=tx_id, key=self.ident.key),
                              self.addr, now)  # fmt: skip


def make_core(seed: int = 1) -> DhtCore:
    return DhtCore(Identity.generate(SeededRng(seed)), rng=SeededRng(seed + 1000),
                   wall_offset=WALL_OFFSET)  # fmt: skip


def remotes(n: int, start: int = 100) -> list[Remote]:
    return [Remote(Identity.generate(SeededRng(start + i)), (f"10.0.{i // 250}.{i % 250 + 1}",
                                                             4121)) for i in range(n)]  # fmt: skip


def known(core: DhtCore, peers: list[Remote]) -> None:
    for p in peers:
        core.routing.observe_direct(p.ident.aid, p.addr, T0)


def sent(core: DhtCore, now: float) -> list[tuple[dm.Message, _Addr]]:
    return [(dm.decode_message(d), a) for d, a in core.datagrams_to_send(now)]


def events(core: DhtCore) -> list[ev.DhtEvent]:
    out = []
    while (e := core.next_event()) is not None:
        out.append(e)
    return [e for e in out if not isinstance(e, ev.AddressObserved)]


def topic_record(seed: int, now: float = T0) -> SignedRecord:
    ident = Identity.generate(SeededRng(seed))
    wall = now + WALL_OFFSET
    payload = TopicPayload(topic=TOPIC, name=f"agent-{seed}", brief="x" * 60)
    return SignedRecord.sign(ident, RecType.TOPIC, payload.to_bytes(), seq=seed,
                             timestamp=int(wall), ttl=3600)  # fmt: skip


def by_addr(out: list[tuple[dm.Message, _Addr]], peers: list[Remote]) -> dict[_Addr, dm.Message]:
    addrs = {p.addr for p in peers}
    return {a: m for m, a in out if a in addrs}


# -- ping ----------------------------------------------------------------------------------


def test_ping_answered_and_timed_out_at_its_deadline() -> None:
    core = make_core()
    (peer,) = remotes(1)
    op = core.ping(peer.addr, T0)
    [(msg, addr)] = sent(core, T0)
    assert addr == peer.addr and isinstance(msg.body, dm.Ping) and msg.sender == core.aid
    assert core.get_timer() == T0 + RPC
    peer.answer(core, msg, dm.Pong(address=peer.ident.aid, observed_addr=("10.9.9.9", 1)), T0)
    assert events(core) == [ev.PingFinished(op_id=op, ok=True, aid=peer.ident.aid)]
    assert core.get_timer() is None  # nothing pending, no maintenance before any request

    op2 = core.ping(peer.addr, T0 + 10)
    sent(core, T0 + 10)
    core.handle_timer(T0 + 10 + RPC - 0.001)
    assert events(core) == [] and sent(core, T0 + 10 + RPC) == []
    core.handle_timer(T0 + 10 + RPC)
    assert events(core) == [ev.PingFinished(op_id=op2, ok=False)]
    assert sent(core, T0 + 10 + RPC) == []  # one attempt: no retry
    assert core.get_timer() is None and core.statistics().rpc_timeouts == 1


# -- bootstrap -----------------------------------------------------------------------------


def test_bootstrap_retries_each_seed_after_exactly_the_rpc_timeout_then_gives_up() -> None:
    core = make_core()
    seeds = remotes(2)
    op = core.bootstrap([s.addr for s in seeds], T0)
    first = sent(core, T0)
    assert sorted(a for _, a in first) == sorted(s.addr for s in seeds)
    assert all(isinstance(m.body, dm.Ping) for m, _ in first)
    now = T0
    tx_ids = {m.tx_id for m, _ in first}
    for _ in range(BOOTSTRAP_PING_ATTEMPTS - 1):
        assert core.get_timer() == now + RPC
        now += RPC
        core.handle_timer(now)
        retry = sent(core, now)
        assert sorted(a for _, a in retry) == sorted(s.addr for s in seeds)
        assert {m.tx_id for m, _ in retry}.isdisjoint(tx_ids)  # a fresh tx_id per attempt
        tx_ids |= {m.tx_id for m, _ in retry}
        assert events(core) == []
    assert core.get_timer() == now + RPC
    core.handle_timer(now + RPC)
    assert events(core) == [ev.BootstrapFinished(op_id=op, ok=False, seeds_answered=0, peers=0)]
    assert sent(core, now + RPC) == [] and core.get_timer() is None


def test_bootstrap_joins_at_the_first_pong_then_looks_itself_up() -> None:
    core = make_core()
    (seed,) = remotes(1)
    op = core.bootstrap([seed.addr], T0)
    [(ping, _)] = sent(core, T0)
    seed.answer(core, ping, dm.Pong(address=seed.ident.aid, observed_addr=("10.9.9.9", 1)), T0)
    assert events(core) == [ev.BootstrapFinished(op_id=op, ok=True, seeds_answered=1, peers=1)]
    [(find, addr)] = sent(core, T0)
    assert addr == seed.addr and find.body == dm.FindNode(target=core.node_id)
    assert core.get_timer() == T0 + RPC  # the self-lookup's RPC before maintenance
    seed.answer(core, find, dm.FindNodeResp(nodes=(), observed_addr=("10.9.9.9", 1)), T0 + 1)
    # then the seed's under-filled bucket is refreshed: a lookup of a random ID in it
    [(refresh, addr)] = sent(core, T0 + 1)
    assert addr == seed.addr and isinstance(refresh.body, dm.FindNode)
    assert core.routing.bucket_index(refresh.body.target) == core.routing.bucket_index(
        seed.ident.aid.node_id
    )
    assert core.get_timer() == T0 + 1 + RPC
    core.handle_timer(T0 + 1 + RPC)
    assert events(core) == []  # internal work ends without an event
    assert core.get_timer() == T0 + MAINTENANCE_S


# -- lookups -------------------------------------------------------------------------------


def test_find_node_asks_alpha_peers_and_moves_on_at_each_deadline() -> None:
    core = make_core()
    peers = remotes(ALPHA + 2)
    known(core, peers)
    target = NodeId(bytes(32))
    op = core.lookup(target, LookupKind.NODES, T0)
    first = sent(core, T0)
    assert len(first) == ALPHA
    assert all(m.body == dm.FindNode(target=target) for m, _ in first)
    assert core.get_timer() == T0 + RPC
    core.handle_timer(T0 + RPC)
    second = sent(core, T0 + RPC)
    assert len(second) == 2 and {a for _, a in first}.isdisjoint(a for _, a in second)
    assert events(core) == [] and core.get_timer() == T0 + 2 * RPC
    core.handle_timer(T0 + 2 * RPC)
    [done] = events(core)
    assert isinstance(done, ev.LookupFinished) and done.op_id == op and done.closest == ()
    assert core.statistics().rpc_timeouts == ALPHA + 2 and core.get_timer() is None


def test_find_value_first_ends_at_the_first_valid_record() -> None:
    core = make_core()
    peers = remotes(2)
    known(core, peers)
    rec = topic_record(7)
    op = core.lookup(TOPIC_KEY, LookupKind.FIRST, T0, rec_type=RecType.TOPIC)
    out = sent(core, T0)
    assert len(out) == 2
    assert all(m.body == dm.FindValue(target=TOPIC_KEY, rec_type=RecType.TOPIC) for m, _ in out)
    msgs = by_addr(out, peers)
    peers[0].answer(core, msgs[peers[0].addr],
                    dm.FindValueResp(nodes=(), observed_addr=("10.9.9.9", 1), records=(rec,)),
                    T0 + 0.5)  # fmt: skip
    [done] = events(core)
    assert isinstance(done, ev.LookupFinished) and done.op_id == op and done.records == (rec,)
    assert core.store.get(bytes(TOPIC_KEY), T0 + 0.5 + WALL_OFFSET, RecType.TOPIC) == [rec]


def test_find_value_all_pages_through_a_responder_whose_answer_is_trimmed() -> None:
    """Two real cores: the responder holds more topic records than one datagram carries; the
    requester asks again with PAGE_MARK tx_ids and collects every record."""
    asker, holder = make_core(1), make_core(2)
    a_addr, h_addr = ("10.1.0.1", 4121), ("10.1.0.2", 4121)
    records = [topic_record(500 + i) for i in range(30)]
    for r in records:
        holder.store.put(bytes(TOPIC_KEY), r, T0 + WALL_OFFSET, from_publisher=True)
    asker.routing.observe_direct(holder.aid, h_addr, T0)
    op = asker.lookup(TOPIC_KEY, LookupKind.ALL, T0, rec_type=RecType.TOPIC)
    pages = []
    first_answer_records = -1
    now = T0
    for _ in range(4 * MAX_PAGES):
        out = asker.datagrams_to_send(now)
        if not out:
            break
        for data, addr in out:
            assert addr == h_addr
            msg = dm.decode_message(data)
            if msg.tx_id.startswith(PAGE_MARK):
                pages.append(int.from_bytes(msg.tx_id[2:4], "big"))
            holder.receive_datagram(data, a_addr, now)
        for data, addr in holder.datagrams_to_send(now):
            assert addr == a_addr
            if first_answer_records < 0:
                body = dm.decode_message(data).body
                assert isinstance(body, dm.FindValueResp)
                first_answer_records = len(body.records)
            asker.receive_datagram(data, h_addr, now)
        now += 0.01
    [done] = events(asker)
    assert isinstance(done, ev.LookupFinished) and done.op_id == op
    assert 0 < first_answer_records < len(records)  # the answer spans pages
    assert {r.address for r in done.records} == {r.address for r in records}
    # each page request starts its window after the records seen so far from that peer
    assert pages == [first_answer_records * (i + 1) for i in range(len(pages))]
    assert len(pages) <= MAX_PAGES


def test_find_value_paging_stops_after_max_pages() -> None:
    """A responder that always has one more record gets at most MAX_PAGES page requests."""
    core = make_core()
    (peer,) = remotes(1)
    known(core, [peer])
    core.lookup(TOPIC_KEY, LookupKind.ALL, T0, rec_type=RecType.TOPIC)
    asked = 0
    seed = 900
    while out := sent(core, T0):
        [(msg, _)] = out
        assert msg.body == dm.FindValue(target=TOPIC_KEY, rec_type=RecType.TOPIC)
        assert msg.tx_id.startswith(PAGE_MARK) == (asked > 0)
        asked += 1
        seed += 1
        peer.answer(core, msg, dm.FindValueResp(nodes=(), observed_addr=("10.9.9.9", 1),
                                                records=(topic_record(seed),)), T0)  # fmt: skip
    assert asked == 1 + MAX_PAGES
    [done] = events(core)
    assert isinstance(done, ev.LookupFinished) and len(done.records) == 1 + MAX_PAGES


def test_responder_rotates_its_record_window_by_the_page_offset() -> None:
    core = make_core()
    (asker,) = remotes(1)
    records = [topic_record(300 + i) for i in range(3)]
    for r in records:
        core.store.put(bytes(TOPIC_KEY), r, T0 + WALL_OFFSET, from_publisher=True)
    body = dm.FindValue(target=TOPIC_KEY, rec_type=RecType.TOPIC)
    asker.ask(core, body, T0, bytes(20))
    [(plain, _)] = sent(core, T0)
    asker.ask(core, body, T0, PAGE_MARK + (1).to_bytes(2, "big") + bytes(16))
    [(paged, _)] = sent(core, T0)
    assert isinstance(plain.body, dm.FindValueResp) and isinstance(paged.body, dm.FindValueResp)
    assert len(plain.body.records) == 3
    assert paged.body.records == plain.body.records[1:] + plain.body.records[:1]


# -- publish -------------------------------------------------------------------------------


def test_publish_looks_up_then_stores_and_skips_a_silent_replica() -> None:
    core = make_core()
    peers = remotes(2)
    known(core, peers)
    rec = topic_record(42)
    op = core.publish(rec, TOPIC_KEY, T0)
    finds = by_addr(sent(core, T0), peers)
    assert all(m.body == dm.FindNode(target=TOPIC_KEY) for m in finds.values())
    for p in peers:
        p.answer(core, finds[p.addr], dm.FindNodeResp(nodes=(), observed_addr=("10.9.9.9", 1)),
                 T0 + 0.1)  # fmt: skip
    stores = by_addr(sent(core, T0 + 0.1), peers)
    assert len(stores) == 2
    assert all(m.body == dm.Store(record=rec, key=TOPIC_KEY) for m in stores.values())
    peers[0].answer(core, stores[peers[0].addr], dm.StoreResp(stored=True), T0 + 0.2)
    assert events(core) == [] and core.get_timer() == T0 + 0.1 + RPC
    core.handle_timer(T0 + 0.1 + RPC)  # the second replica never answers: one attempt
    assert sent(core, T0 + 0.1 + RPC) == []
    assert events(core) == [
        ev.PublishFinished(op_id=op, key=TOPIC_KEY, stored_at=(peers[0].ident.aid,))
    ]


# -- subscriptions -------------------------------------------------------------------------


def test_one_shot_subscription_pushes_the_next_record_until_it_expires() -> None:
    core = make_core()
    subs = remotes(2)
    core.store.put(bytes(TOPIC_KEY), topic_record(1), T0 + WALL_OFFSET, from_publisher=True)
    body = dm.FindValue(target=TOPIC_KEY, rec_type=RecType.TOPIC, one_shot_subscribe=True)
    subs[0].ask(core, body, T0, bytes(20))
    sent(core, T0)
    rec = topic_record(2, T0 + 1)
    core.publish(rec, TOPIC_KEY, T0 + 1)
    [(push, addr)] = pushes(sent(core, T0 + 1))  # (and the publish's FIND_NODE)
    assert addr == subs[0].addr and push.body == dm.DhtPush(key=TOPIC_KEY, record=rec)
    subs[1].ask(core, body, T0 + 2, bytes(19) + b"\x01")
    sent(core, T0 + 2)
    late = T0 + 2 + SUBSCRIPTION_TTL_S
    core.handle_timer(late)
    core.publish(topic_record(3, late), TOPIC_KEY, late)
    assert pushes(sent(core, late)) == []  # the subscription lapsed


def pushes(out: list[tuple[dm.Message, _Addr]]) -> list[tuple[dm.Message, _Addr]]:
    return [(m, a) for m, a in out if isinstance(m.body, dm.DhtPush)]


# -- maintenance ---------------------------------------------------------------------------


def test_maintenance_refreshes_unhealthy_buckets_every_round() -> None:
    core = make_core()
    peers = remotes(3)
    known(core, peers)
    peers[0].ask(core, dm.Ping(address=peers[0].ident.aid), T0, bytes(20))
    [(pong, _)] = sent(core, T0)
    assert isinstance(pong.body, dm.Pong)
    assert core.get_timer() == T0 + MAINTENANCE_S
    core.handle_timer(T0 + MAINTENANCE_S - 0.001)
    assert sent(core, T0 + MAINTENANCE_S) == []
    core.handle_timer(T0 + MAINTENANCE_S)
    refresh = sent(core, T0 + MAINTENANCE_S)
    assert refresh and all(isinstance(m.body, dm.FindNode) for m, _ in refresh)
    assert core.get_timer() == T0 + MAINTENANCE_S + RPC
    core.handle_timer(T0 + MAINTENANCE_S + RPC)  # the refresh lookups time out
    assert events(core) == []  # internal: no event
    assert core.get_timer() == T0 + 2 * MAINTENANCE_S


# -- cancellation --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [LookupKind.FIRST, LookupKind.ALL, LookupKind.NODES])
def test_cancel_stops_a_lookup(kind: LookupKind) -> None:
    core = make_core()
    peers = remotes(ALPHA + 3)
    known(core, peers)
    op = core.lookup(TOPIC_KEY, kind, T0, rec_type=RecType.TOPIC)
    out = sent(core, T0)
    assert len(out) == ALPHA
    assert core.cancel(op)
    assert core.get_timer() is None  # its deadlines are gone
    core.handle_timer(T0 + 10 * RPC)
    assert sent(core, T0 + 10 * RPC) == [] and events(core) == []
    before = core.statistics().dropped_unsolicited
    msg, addr = out[0]
    peer = next(p for p in peers if p.addr == addr)
    late: dm.Body = (
        dm.FindNodeResp(nodes=(), observed_addr=("10.9.9.9", 1))
        if kind is LookupKind.NODES
        else dm.FindValueResp(nodes=(), observed_addr=("10.9.9.9", 1))
    )
    peer.answer(core, msg, late, T0 + 11 * RPC)
    assert core.statistics().dropped_unsolicited == before + 1  # a late answer is dropped
    assert sent(core, T0 + 11 * RPC) == [] and events(core) == []
    assert core.statistics().cancelled_ops == 1
    assert not core.cancel(op)  # already gone


def test_cancel_stops_a_publish_and_a_bootstrap_and_not_a_finished_op() -> None:
    core = make_core()
    peers = remotes(2)
    known(core, peers)
    pub = core.publish(topic_record(5), TOPIC_KEY, T0)
    boot = core.bootstrap([("10.7.0.1", 4121)], T0)
    assert len(sent(core, T0)) == 3
    assert core.cancel(pub) and core.cancel(boot)
    core.handle_timer(T0 + 10 * RPC)
    assert sent(core, T0 + 10 * RPC) == [] and events(core) == []
    ping = core.ping(peers[0].addr, T0)
    [(msg, _)] = sent(core, T0)
    peers[0].answer(core, msg, dm.Pong(address=peers[0].ident.aid, observed_addr=("10.9.9.9", 1)),
                    T0)  # fmt: skip
    assert len(events(core)) == 1 and not core.cancel(ping)
