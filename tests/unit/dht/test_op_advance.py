"""Each operation kind's ``advance(event, view) -> effects`` on its own, with no core: what it
sends (body, address, deadline, attempts, tx_id prefix), what it hands on and how it ends; and
the transaction table that turns a Send's ``timeout_s`` into an exact deadline on the virtual
clock.

Constants come from where they live, never re-typed.
"""

from __future__ import annotations

import dataclasses

from a2al_mcp._random import SeededRng
from a2al_mcp._types import Addr
from a2al_mcp.config import DhtConfig
from a2al_mcp.dht import events as ev
from a2al_mcp.dht.effects import (
    AnchorSeed,
    Answered,
    CacheFound,
    Failed,
    Finish,
    RefillEnded,
    RefreshBuckets,
    Replied,
    Send,
    Start,
    StartPathCache,
    StartSelfLookup,
)
from a2al_mcp.dht.lookup import Lookup, LookupKind
from a2al_mcp.dht.lookup_ops import REFRESH_AFTER_BOOTSTRAP
from a2al_mcp.dht.ops import (
    BOOTSTRAP_PING_ATTEMPTS,
    BootstrapOp,
    BucketRefreshOp,
    FindOp,
    PathCacheOp,
    PingOp,
    PublishOp,
    SelfLookupOp,
)
from a2al_mcp.dht.responder import PAGE_MARK
from a2al_mcp.dht.transactions import Pending, Transactions
from a2al_mcp.identity import Aid, Identity, NodeId
from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.protocol.payloads import EndpointPayload, TopicPayload, topic_key
from a2al_mcp.protocol.records import RecType, SignedRecord
from a2al_mcp.testing.clock import FakeClock

CONFIG = DhtConfig()
RPC = CONFIG.lookup_rpc_timeout_s
ALPHA = CONFIG.lookup_concurrency
T0 = FakeClock().monotonic()
KEY = NodeId(topic_key("lang.translate"))
ME = Identity.generate(SeededRng(1)).aid
PEERS = [(Identity.generate(SeededRng(100 + i)).aid, (f"10.0.0.{i + 1}", 4121)) for i in range(8)]


@dataclasses.dataclass
class View:
    """A core as an operation sees it."""

    aid: Aid = ME
    config: DhtConfig = CONFIG
    nearest: list[tuple[Aid, Addr]] = dataclasses.field(default_factory=list)
    peers: int = 0

    def find_node_peers(self, target: NodeId, n: int = 20) -> list[tuple[Aid, Addr]]:
        return self.nearest[:n]

    def peer_count(self) -> int:
        return self.peers


def topic_record(seed: int = 7) -> SignedRecord:
    payload = TopicPayload(topic="lang.translate", name="a").to_bytes()
    return SignedRecord.sign(Identity.generate(SeededRng(seed)), RecType.TOPIC, payload, seq=1,
                             timestamp=1_700_000_000, ttl=3600)  # fmt: skip


def endpoint_record(ident: Identity, url: str) -> SignedRecord:
    payload = EndpointPayload(endpoints=(url,)).to_bytes()
    return SignedRecord.sign(ident, RecType.ENDPOINT, payload, seq=1, timestamp=1_700_000_000)


def new_lookup(kind: LookupKind, peers: list[tuple[Aid, Addr]]) -> Lookup:
    lookup = Lookup(KEY, kind, self_id=ME.node_id, k=20, alpha=ALPHA)
    lookup.add_candidates(peers)
    return lookup


def pong(aid: Aid) -> dm.Pong:
    return dm.Pong(address=aid, observed_addr=("192.0.2.200", 1))


def ping(addr: Addr, attempts: int = 1) -> Send:
    return Send(dm.Ping(address=ME), addr, None, timeout_s=RPC, attempts=attempts)


def sends(effects: list[object]) -> list[Send]:
    return [e for e in effects if isinstance(e, Send)]


# -- ping and bootstrap --------------------------------------------------------------------


def test_ping_sends_one_attempt_and_ends_on_pong_or_failure() -> None:
    view, addr = View(), PEERS[0][1]
    op = PingOp(op_id=1, addr=addr)
    assert op.advance(Start(), view) == [ping(addr)]
    other = dm.StoreResp(stored=True)
    assert op.advance(Replied(PEERS[0][0], addr, other), view) == []
    assert op.advance(Replied(PEERS[0][0], addr, pong(PEERS[0][0])), view) == [
        Finish(ev.PingFinished(op_id=1, ok=True, aid=PEERS[0][0]))
    ]
    silent = PingOp(op_id=2, addr=addr)
    assert silent.advance(Failed(None, dm.MsgType.PONG), view) == [
        Finish(ev.PingFinished(op_id=2, ok=False))
    ]


def test_bootstrap_pings_each_seed_joins_at_the_first_pong_and_hands_the_self_lookup_on() -> None:
    view = View(peers=5)
    seeds = (PEERS[0][1], PEERS[1][1], PEERS[2][1])
    op = BootstrapOp(op_id=3, seeds=seeds, seeds_left=len(seeds))
    assert op.advance(Start(), view) == [ping(a, BOOTSTRAP_PING_ATTEMPTS) for a in seeds]
    assert op.advance(Failed(None, dm.MsgType.PONG), view) == []
    aid, addr = PEERS[1]
    assert op.advance(Replied(aid, addr, pong(aid)), view) == [
        AnchorSeed(aid.node_id, addr),
        Finish(ev.BootstrapFinished(op_id=3, ok=True, seeds_answered=1, peers=5)),
        StartSelfLookup(((aid, addr),)),
    ]
    later, later_addr = PEERS[2]
    assert op.advance(Replied(later, later_addr, pong(later)), view) == [
        AnchorSeed(later.node_id, later_addr)  # a seed, but not a second join
    ]


def test_bootstrap_without_seeds_or_answers_ends_not_joined() -> None:
    view = View(peers=2)
    empty = BootstrapOp(op_id=4, seeds_left=0)
    assert empty.advance(Start(), view) == [
        Finish(ev.BootstrapFinished(op_id=4, ok=False, seeds_answered=0, peers=2))
    ]
    silent = BootstrapOp(op_id=5, seeds=(PEERS[0][1],), seeds_left=1)
    silent.advance(Start(), view)
    assert silent.advance(Failed(None, dm.MsgType.PONG), view) == [
        Finish(ev.BootstrapFinished(op_id=5, ok=False, seeds_answered=0, peers=2))
    ]


# -- path cache ----------------------------------------------------------------------------


def test_path_cache_stores_an_open_record_at_once() -> None:
    rec, (aid, addr) = topic_record(), PEERS[3]
    op = PathCacheOp(op_id=6, key=KEY, record=rec, cache_at=(aid, addr))
    assert op.advance(Start(), View()) == [
        Send(dm.Store(record=rec, key=KEY), addr, aid.node_id, timeout_s=RPC)
    ]
    assert op.advance(Replied(aid, addr, dm.StoreResp(stored=True)), View()) == [
        Finish(ev.PingFinished(op_id=6, ok=True))
    ]


def test_path_cache_stores_a_sovereign_record_only_after_its_publisher_pongs() -> None:
    publisher = Identity.generate(SeededRng(42))
    rec = endpoint_record(publisher, "quic://192.0.2.9:4121")
    aid, addr = PEERS[4]
    op = PathCacheOp(op_id=7, key=publisher.aid.node_id, record=rec, cache_at=(aid, addr))
    assert op.advance(Start(), View()) == [ping(("192.0.2.9", 4121))]
    impostor = PEERS[5][0]
    assert op.advance(Replied(impostor, ("192.0.2.9", 4121), pong(impostor)),
                      View()) == [Finish(ev.PingFinished(op_id=7, ok=True))]  # fmt: skip
    op = PathCacheOp(op_id=8, key=publisher.aid.node_id, record=rec, cache_at=(aid, addr))
    op.advance(Start(), View())
    confirms = pong(publisher.aid)
    assert op.advance(Replied(publisher.aid, ("192.0.2.9", 4121), confirms), View()) == [
        Send(dm.Store(record=rec, key=publisher.aid.node_id), addr, aid.node_id, timeout_s=RPC)
    ]
    assert op.advance(Failed(aid.node_id, dm.MsgType.STORE_RESP), View()) == [
        Finish(ev.PingFinished(op_id=8, ok=False))
    ]


def test_path_cache_gives_up_on_a_sovereign_record_with_no_ip_endpoint() -> None:
    publisher = Identity.generate(SeededRng(43))
    rec = endpoint_record(publisher, "quic://agent.example:4121")
    op = PathCacheOp(op_id=9, key=publisher.aid.node_id, record=rec, cache_at=PEERS[0])
    assert op.advance(Start(), View()) == [Finish(ev.PingFinished(op_id=9, ok=False))]


# -- lookups -------------------------------------------------------------------------------


def find_node(node: tuple[Aid, Addr]) -> Send:
    return Send(dm.FindNode(target=KEY), node[1], node[0].node_id, timeout_s=RPC)


def test_find_node_asks_alpha_then_one_more_per_answer_or_failure_and_ends_dry() -> None:
    peers = sorted(PEERS[: ALPHA + 1], key=lambda p: int(p[0].node_id) ^ int(KEY))
    op = FindOp(op_id=10, lookup=new_lookup(LookupKind.NODES, peers))
    assert op.advance(Start(), View()) == [find_node(p) for p in peers[:ALPHA]]  # nearest
    first, second, *rest = peers[:ALPHA]
    left = peers[ALPHA]
    assert op.advance(Answered(first[0], [], [], trimmed=False), View()) == [find_node(left)]
    assert op.advance(Failed(second[0].node_id, dm.MsgType.FIND_NODE_RESP), View()) == []
    assert op.advance(Failed(None, dm.MsgType.PONG), View()) == []  # not one of its peers
    for aid, _ in rest:
        assert op.advance(Answered(aid, [], [], trimmed=False), View()) == []
    [end] = op.advance(Answered(left[0], [], [], trimmed=False), View())
    assert end == Finish(ev.LookupFinished(
        op_id=10, target=KEY, closest=tuple(p for p in peers if p is not second),
        queried=ALPHA + 1, hops=1,
    ))  # fmt: skip


def test_find_first_answered_locally_caches_and_ends_without_a_request() -> None:
    rec = topic_record()
    op = FindOp(op_id=11, lookup=new_lookup(LookupKind.FIRST, PEERS[:2]), rec_type=RecType.TOPIC)
    assert op.advance(Start((rec,)), View()) == [
        CacheFound(KEY, rec),  # no hop behind it: nobody to path-cache at
        Finish(ev.LookupFinished(op_id=11, target=KEY, closest=(), records=(rec,), hops=0)),
    ]


def test_find_first_found_on_the_network_is_path_cached_at_the_closest_peer_without_it() -> None:
    rec = topic_record()
    op = FindOp(op_id=12, lookup=new_lookup(LookupKind.FIRST, PEERS[:2]), rec_type=RecType.TOPIC)
    op.advance(Start(), View())
    without, holder = sorted(PEERS[:2], key=lambda p: int(p[0].node_id) ^ int(KEY))
    assert op.advance(Answered(without[0], [], [], trimmed=False), View()) == []
    effects = op.advance(Answered(holder[0], [], [rec], trimmed=False), View())
    assert effects[:2] == [CacheFound(KEY, rec), StartPathCache(KEY, rec, without)]
    [end] = effects[2:]
    assert isinstance(end, Finish) and isinstance(end.event, ev.LookupFinished)
    assert end.event.records == (rec,) and end.event.hops == 1


def test_find_all_asks_a_trimmed_answerer_for_its_next_window_by_tx_prefix() -> None:
    recs = [topic_record(200 + i) for i in range(2)]
    aid, addr = PEERS[0]
    op = FindOp(op_id=13, lookup=new_lookup(LookupKind.ALL, [PEERS[0]]), rec_type=RecType.TOPIC)
    request = dm.FindValue(target=KEY, rec_type=RecType.TOPIC)
    assert op.advance(Start(), View()) == [Send(request, addr, aid.node_id, timeout_s=RPC)]
    page = Send(request, addr, aid.node_id, timeout_s=RPC,
                tx_prefix=PAGE_MARK + len(recs).to_bytes(2, "big"))  # fmt: skip
    assert op.advance(Answered(aid, [], recs, trimmed=True), View()) == [page]
    [end] = op.advance(Answered(aid, [], [], trimmed=True), View())  # nothing new: no page
    assert isinstance(end, Finish) and isinstance(end.event, ev.LookupFinished)
    assert set(end.event.records) == set(recs)
    untrimmed = FindOp(op_id=14, lookup=new_lookup(LookupKind.ALL, [PEERS[0]]))
    untrimmed.advance(Start(), View())
    assert sends(untrimmed.advance(Answered(aid, [], recs, trimmed=False), View())) == []


def test_self_lookup_and_bucket_refresh_hand_on_what_follows() -> None:
    [done, refresh] = SelfLookupOp(op_id=15, lookup=new_lookup(LookupKind.NODES, [])).advance(
        Start(), View()
    )
    assert isinstance(done, Finish) and refresh == RefreshBuckets(REFRESH_AFTER_BOOTSTRAP)
    op = BucketRefreshOp(op_id=16, lookup=new_lookup(LookupKind.NODES, []), bucket=7,
                         size_before=3)  # fmt: skip
    [refilled, end] = op.advance(Start(), View())
    assert refilled == RefillEnded(7, 3) and isinstance(end, Finish)


def test_publish_with_an_empty_lookup_stores_at_the_table_s_nearest_within_concurrency() -> None:
    rec = topic_record()
    view = View(nearest=PEERS)
    op = PublishOp(op_id=17, lookup=new_lookup(LookupKind.NODES, []), key=KEY, record=rec)

    def store(p: tuple[Aid, Addr]) -> Send:
        return Send(dm.Store(record=rec, key=KEY), p[1], p[0].node_id, timeout_s=RPC)

    assert op.advance(Start(), view) == [store(p) for p in PEERS[:ALPHA]]
    assert op.advance(Failed(PEERS[7][0].node_id, dm.MsgType.FIND_NODE_RESP), view) == []
    assert op.advance(Replied(PEERS[0][0], PEERS[0][1], dm.StoreResp(stored=True)), view) == [
        store(PEERS[ALPHA])
    ]
    assert op.advance(Failed(PEERS[1][0].node_id, dm.MsgType.STORE_RESP), view) == [
        store(PEERS[ALPHA + 1])
    ]


def test_publish_ends_when_enough_replicas_accepted() -> None:
    rec = topic_record()
    want = CONFIG.replicas
    view = View(nearest=PEERS[: want + 1])
    op = PublishOp(op_id=18, lookup=new_lookup(LookupKind.NODES, []), key=KEY, record=rec)
    in_flight = sends(op.advance(Start(), view))
    by_addr = {addr: aid for aid, addr in PEERS}
    accepted: list[Aid] = []
    effects: list[object] = []
    while in_flight:
        store = in_flight.pop(0)
        accepted.append(by_addr[store.addr])
        effects = op.advance(Replied(accepted[-1], store.addr, dm.StoreResp(stored=True)), view)
        in_flight += sends(effects)
    assert effects == [Finish(ev.PublishFinished(op_id=18, key=KEY, stored_at=tuple(accepted)))]
    assert len(accepted) == want  # the last peer the table offered was never asked


# -- deadlines -----------------------------------------------------------------------------


def pending(tx: bytes, deadline: float, op_id: int = 1, attempts_left: int = 0) -> Pending:
    return Pending(tx, PEERS[0][1], dm.MsgType.PONG, deadline, op_id, None,
                   dm.Ping(address=ME), attempts_left, RPC)  # fmt: skip


def test_a_request_is_due_exactly_at_its_deadline_and_an_answer_cancels_it() -> None:
    txs = Transactions()
    op = PingOp(op_id=txs.new_op_id(), addr=PEERS[0][1])
    txs.register(op)
    a, b = pending(b"a" * 20, T0 + RPC, op.op_id), pending(b"b" * 20, T0 + 2 * RPC, op.op_id)
    txs.add(a)
    txs.add(b)
    assert op.txs == {a.tx_id, b.tx_id}
    assert txs.next_deadline() == T0 + RPC
    assert txs.pop_due(T0 + RPC - 0.001) is None
    assert txs.pop_due(T0 + RPC) is a
    txs.remove(a)
    assert txs.match(b.tx_id, dm.MsgType.PONG, PEERS[1][1]) is None  # wrong source
    assert txs.match(b.tx_id, dm.MsgType.STORE_RESP, b.addr) is None  # wrong type
    assert txs.match(b.tx_id, dm.MsgType.PONG, b.addr) is b
    txs.remove(b)  # answered: its deadline is gone
    assert txs.next_deadline() is None and txs.pop_due(T0 + 3 * RPC) is None
    assert op.txs == set()


def test_an_ended_op_leaves_its_requests_and_a_cancelled_one_takes_them_out() -> None:
    txs = Transactions()
    ended, cancelled = (
        PingOp(op_id=txs.new_op_id(), addr=("x", 1)),
        PingOp(op_id=txs.new_op_id(), addr=("y", 1)),
    )
    for op in (ended, cancelled):
        txs.register(op)
    txs.add(pending(b"e" * 20, T0 + RPC, ended.op_id))
    txs.add(pending(b"c" * 20, T0 + RPC / 2, cancelled.op_id))
    txs.end(ended)
    assert ended.done and txs.running(ended.op_id) is None and ended.txs == set()
    assert txs.cancel(cancelled.op_id) and not txs.cancel(cancelled.op_id)
    assert not txs.cancel(ended.op_id)  # already ended
    assert txs.next_deadline() == T0 + RPC  # the ended op's request is still timed
    due = txs.pop_due(T0 + RPC)
    assert due is not None and due.op_id == ended.op_id
