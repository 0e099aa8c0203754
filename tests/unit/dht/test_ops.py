"""The operation classes of dht/ops.py on their own: each decides its next step from an
event without a core around it."""

from __future__ import annotations

from a2al_mcp._random import SeededRng
from a2al_mcp.dht import events as ev
from a2al_mcp.dht.lookup import Lookup, LookupKind
from a2al_mcp.dht.ops import BootstrapOp, FindOp, PublishOp
from a2al_mcp.identity import Identity, NodeId
from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.protocol.payloads import TopicPayload, topic_key
from a2al_mcp.protocol.records import RecType, SignedRecord

KEY = NodeId(topic_key("lang.translate"))
SELF = Identity.generate(SeededRng(1)).aid.node_id
PEERS = [(Identity.generate(SeededRng(100 + i)).aid, (f"10.0.0.{i + 1}", 4121)) for i in range(6)]


def lookup(kind: LookupKind = LookupKind.NODES) -> Lookup:
    return Lookup(KEY, kind, self_id=SELF, k=20, alpha=3)


def record() -> SignedRecord:
    payload = TopicPayload(topic="lang.translate", name="a").to_bytes()
    return SignedRecord.sign(Identity.generate(SeededRng(7)), RecType.TOPIC, payload, seq=1,
                             timestamp=1_700_000_000, ttl=3600)  # fmt: skip


def test_bootstrap_joins_at_the_first_pong_and_gives_up_when_no_seed_is_left() -> None:
    op = BootstrapOp(op_id=3, seeds_left=3)
    assert not op.on_failure()
    assert op.on_pong()  # the first answer: joined
    assert not op.on_pong()  # later ones are not a second join
    assert op.finished(peers=2) == ev.BootstrapFinished(op_id=3, ok=True, seeds_answered=2,
                                                        peers=2)  # fmt: skip
    silent = BootstrapOp(op_id=4, seeds_left=2)
    assert not silent.on_failure() and silent.on_failure()
    assert not silent.finished(peers=0).ok


def test_publish_stores_within_concurrency_until_enough_replicas_accepted() -> None:
    rec = record()
    op = PublishOp(op_id=5, lookup=lookup(), key=KEY, record=rec)
    assert op.answers
    op.start_storing(PEERS)
    assert not op.answers and op.store_request() == dm.Store(record=rec, key=KEY)
    first = op.next_stores(concurrency=2, want=3)
    assert first == PEERS[:2] and op.next_stores(concurrency=2, want=3) == []
    op.on_store_resp(PEERS[0][0], dm.StoreResp(stored=True))
    op.on_store_resp(PEERS[1][0], dm.StoreResp(stored=False, reason=dm.StoreReason.POLICY))
    assert not op.complete(want=3)
    assert op.next_stores(concurrency=2, want=3) == PEERS[2:4]
    op.on_store_resp(PEERS[2][0], dm.StoreResp(stored=True))
    assert op.next_stores(concurrency=2, want=3) == []  # 2 stored + 1 in flight = 3 wanted
    op.on_store_failed()
    assert op.next_stores(concurrency=2, want=3) == PEERS[4:5]
    op.on_store_resp(PEERS[4][0], dm.StoreResp(stored=True))
    assert op.complete(want=3)
    assert op.finished() == ev.PublishFinished(
        op_id=5, key=KEY, stored_at=(PEERS[0][0], PEERS[2][0], PEERS[4][0]),
        refused=((PEERS[1][0], dm.StoreReason.POLICY),),
    )  # fmt: skip


def test_find_pages_a_peer_from_the_records_it_sent_up_to_the_limit() -> None:
    op = FindOp(op_id=6, lookup=lookup(LookupKind.ALL), rec_type=RecType.TOPIC)
    op.lookup.add_candidates(PEERS[:1])
    [cand] = op.lookup.next_requests()
    op.on_answer(cand.node_id, [], [record()])
    assert op.seen_from == {cand.node_id: 1}
    assert op.request_body() == dm.FindValue(target=KEY, rec_type=RecType.TOPIC)
    assert op.next_page(cand.node_id, max_pages=1) == 1  # offset: records it already sent
    op.on_answer(cand.node_id, [], [])
    assert op.next_page(cand.node_id, max_pages=1) is None  # the limit
    assert op.path_cache_peer() is None  # every answerer sent a record
