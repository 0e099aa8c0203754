"""The iterative lookup state machine: NODES, FIRST and ALL (a2al-wire §4.8)."""

from __future__ import annotations

import functools
import itertools

import pytest

from a2al_mcp._random import SeededRng
from a2al_mcp._types import Addr
from a2al_mcp.dht.lookup import Candidate, Lookup, LookupKind, _State, slot_of, valid_records
from a2al_mcp.dht.routing import RoutingTable
from a2al_mcp.identity import Aid, Identity, NodeId
from a2al_mcp.protocol.payloads import (
    AgentProfilePayload,
    EndpointPayload,
    MailboxPayload,
    TopicPayload,
)
from a2al_mcp.protocol.records import Category, RecType, SignedRecord

T0 = 1_700_000_000
TARGET = NodeId(bytes(32))
"""Lookups aim at zero, so a candidate's distance is its NodeID as an integer."""


@functools.cache
def ident(n: int) -> Identity:
    return Identity.generate(SeededRng(n))


def aid(n: int) -> Aid:
    return ident(n).aid


ME = aid(0)


def addr(i: int) -> Addr:
    return (f"192.0.2.{i % 250 + 1}", 4000 + i)


def nearest(count: int, *, start: int = 1, pool: int = 60) -> list[Aid]:
    """``count`` AIDs from ``aid(start)`` on, nearest to TARGET first."""
    return sorted((aid(n) for n in range(start, start + pool)), key=lambda a: int(a.node_id))[
        :count
    ]


def infos(aids: list[Aid]) -> list[tuple[Aid, Addr]]:
    return [(a, addr(i)) for i, a in enumerate(aids)]


def new(kind: LookupKind = LookupKind.NODES, *, k: int = 16, alpha: int = 5) -> Lookup:
    return Lookup(TARGET, kind, self_id=ME.node_id, k=k, alpha=alpha)


def done(lk: Lookup) -> bool:
    """``lk.finished``, read through a call so mypy does not narrow it between asserts."""
    return lk.finished


def found(lk: Lookup) -> SignedRecord | None:
    return lk.found


def ids(cands: list[Candidate]) -> list[NodeId]:
    return [c.node_id for c in cands]


def nids(aids: list[Aid]) -> list[NodeId]:
    return [a.node_id for a in aids]


def endpoint(n: int, *, seq: int = 1, ts: int = T0) -> SignedRecord:
    payload = EndpointPayload(endpoints=(f"quic://192.0.2.{n % 250 + 1}:4121",)).to_bytes()
    return SignedRecord.sign(ident(n), 1, payload, seq=seq, timestamp=ts)


def profile(n: int, *, seq: int = 1) -> SignedRecord:
    payload = AgentProfilePayload(name=f"agent{n}").to_bytes()
    return SignedRecord.sign(ident(n), 2, payload, seq=seq, timestamp=T0)


def topic(n: int, name: str = "chat", *, seq: int = 1, ts: int = T0) -> SignedRecord:
    payload = TopicPayload(topic=name, name=f"t{n}", protocols=("a2a",)).to_bytes()
    return SignedRecord.sign(ident(n), 0x10, payload, seq=seq, timestamp=ts)


def mail(sender: int, recipient: int, msg: int, *, seq: int = 1) -> SignedRecord:
    payload = MailboxPayload(
        recipient=aid(recipient), sender=aid(sender), ephemeral_pk=bytes(32),
        ciphertext=msg.to_bytes(4, "big") + bytes(16), nonce=bytes(12),
    ).to_bytes()  # fmt: skip
    return SignedRecord.sign(ident(sender), 0x80, payload, seq=seq, timestamp=T0)


def state(lk: Lookup, a: Aid) -> _State:
    return lk.candidate(a.node_id).state


# -- slot_of ----------------------------------------------------------------------------


def test_slot_of_sovereign_is_address_and_rec_type() -> None:
    e = endpoint(1)
    assert e.category is Category.SOVEREIGN
    assert slot_of(e) == ("sovereign", aid(1), 1)
    assert slot_of(endpoint(1, seq=2)) == slot_of(e)
    assert slot_of(profile(1)) == ("sovereign", aid(1), 2) != slot_of(e)
    assert slot_of(endpoint(2)) != slot_of(e)


def test_slot_of_topic_is_the_signing_key() -> None:
    t = topic(1)
    assert t.category is Category.TOPIC
    assert slot_of(t) == ("topic", bytes(ident(1).key.public))
    assert slot_of(topic(1, "other", seq=5)) == slot_of(t)
    assert slot_of(topic(2)) != slot_of(t)


def test_slot_of_mailbox_is_key_and_payload() -> None:
    m = mail(1, 2, 0)
    assert m.category is Category.MAILBOX
    assert slot_of(m) == ("mailbox", bytes(ident(1).key.public), m.payload)
    assert slot_of(mail(1, 2, 0, seq=9)) == slot_of(m)  # same message, newer seq
    assert slot_of(mail(1, 2, 1)) != slot_of(m)  # another message
    assert slot_of(mail(3, 2, 0)) != slot_of(m)  # another sender


# -- candidates -------------------------------------------------------------------------


def test_add_candidates() -> None:
    lk = new()
    a, b, c = aid(1), aid(2), aid(3)
    lk.add_candidates([(a, addr(1)), (ME, addr(0)), (b, addr(2))])
    lk.add_candidates([(a, addr(9)), (c, addr(3))], hops=4)  # a is known: kept as it was
    ca = lk.candidate(a.node_id)
    assert (ca.aid, ca.node_id, ca.addr, ca.hops) == (a, a.node_id, addr(1), 0)
    assert ca.distance == int(a.node_id) ^ int(TARGET) == a.node_id.distance(TARGET)
    assert ca.state is _State.NEW
    assert lk.candidate(c.node_id).hops == 4
    with pytest.raises(KeyError):
        lk.candidate(ME.node_id)  # never a candidate of our own lookup
    with pytest.raises(KeyError):
        lk.candidate(aid(4).node_id)
    assert lk.queried == lk.answered == lk.waiting == 0


def test_distance_is_xor_with_any_target() -> None:
    target = aid(99).node_id
    lk = Lookup(target, LookupKind.NODES, self_id=ME.node_id)
    peers = [aid(n) for n in range(1, 30)]
    lk.add_candidates(infos(peers))
    for a in peers:
        assert lk.candidate(a.node_id).distance == a.node_id.distance(target)
    want = sorted(peers, key=lambda a: a.node_id.distance(target))
    assert ids(lk.next_requests()) == nids(want[:5])


def test_empty_lookup_is_finished() -> None:
    for kind in LookupKind:
        lk = new(kind)
        assert done(lk) and lk.next_requests() == []
        assert lk.closest() == [] and lk.records() == [] and found(lk) is None
        assert lk.path_hops() == 0 and lk.queried == 0


def test_only_ourselves_as_seed_is_finished() -> None:
    lk = new()
    lk.add_candidates([(ME, addr(0))])
    assert done(lk) and lk.next_requests() == []


# -- requests, alpha, termination -------------------------------------------------------


def test_next_requests_closest_first_and_alpha_limits_in_flight() -> None:
    peers = nearest(10)
    lk = new(k=16, alpha=3)
    lk.add_candidates(infos(list(reversed(peers))))
    first = lk.next_requests()
    assert ids(first) == nids(peers[:3])
    assert all(c.state is _State.WAITING for c in first)
    assert lk.waiting == 3 and lk.queried == 3
    assert lk.next_requests() == []  # at capacity
    assert lk.queried == 3
    lk.on_answer(peers[0].node_id, [])
    assert lk.answered == 1 and lk.waiting == 2
    assert ids(lk.next_requests()) == [peers[3].node_id]
    lk.on_failure(peers[1].node_id)
    assert lk.waiting == 2
    assert ids(lk.next_requests()) == [peers[4].node_id]
    assert lk.waiting == 3 and lk.queried == 5 and lk.answered == 1
    assert not done(lk)


def test_default_k_and_alpha() -> None:
    peers = nearest(30, pool=60)
    lk = new()
    lk.add_candidates(infos(peers))
    assert ids(lk.next_requests()) == nids(peers[:5])  # alpha 5
    asked = 5
    while not done(lk):
        for c in lk.next_requests():
            asked += 1
            assert c.node_id in nids(peers[:16])  # never beyond the 16 closest
        for c in [lk.candidate(a.node_id) for a in peers[:16]]:
            if c.state is _State.WAITING:
                lk.on_answer(c.node_id, [])
    assert asked == lk.queried == lk.answered == 16
    assert ids(lk.closest()) == nids(peers[:16])


def test_only_the_k_closest_live_candidates_are_queried() -> None:
    peers = nearest(10)
    lk = new(k=3, alpha=5)
    lk.add_candidates(infos(peers))
    assert ids(lk.next_requests()) == nids(peers[:3])  # alpha allows 5, k caps at 3
    assert lk.next_requests() == []


def test_nodes_lookup_finishes_when_the_k_closest_answered() -> None:
    peers = nearest(5)
    lk = new(k=3, alpha=3)
    lk.add_candidates(infos(peers))
    asked = lk.next_requests()
    assert ids(asked) == nids(peers[:3])
    lk.on_answer(peers[2].node_id, [])
    lk.on_answer(peers[0].node_id, [])
    assert not done(lk)  # peers[1] is still waiting
    assert lk.next_requests() == []  # and nothing else is worth asking
    lk.on_answer(peers[1].node_id, [])
    assert done(lk) and lk.next_requests() == []
    assert ids(lk.closest()) == nids(peers[:3])
    assert state(lk, peers[3]) is _State.NEW and state(lk, peers[4]) is _State.NEW
    assert lk.queried == lk.answered == 3


def test_a_closer_peer_from_an_answer_keeps_the_lookup_going() -> None:
    peers = nearest(4)
    close, far = peers[:2], peers[2:]
    lk = new(k=2, alpha=2)
    lk.add_candidates(infos(far))
    assert ids(lk.next_requests()) == nids(far)
    lk.on_answer(far[0].node_id, [(close[1], addr(11))])
    assert not done(lk)
    assert ids(lk.next_requests()) == [close[1].node_id]
    lk.on_answer(far[1].node_id, [(close[0], addr(10)), (far[0], addr(1))])
    assert not done(lk)
    assert ids(lk.next_requests()) == [close[0].node_id]
    lk.on_answer(close[1].node_id, [])
    assert not done(lk)
    lk.on_answer(close[0].node_id, [])
    assert done(lk)
    assert ids(lk.closest()) == nids(close)
    assert lk.candidate(close[0].node_id).addr == addr(10)
    assert lk.queried == lk.answered == 4


def test_failures_are_skipped_and_replaced() -> None:
    peers = nearest(6)
    lk = new(k=3, alpha=3)
    lk.add_candidates(infos(peers))
    lk.next_requests()
    lk.on_failure(peers[0].node_id)
    assert state(lk, peers[0]) is _State.FAILED
    assert ids(lk.next_requests()) == [peers[3].node_id]
    lk.on_answer(peers[1].node_id, [])
    lk.on_answer(peers[2].node_id, [])
    assert not done(lk)
    lk.on_failure(peers[3].node_id)
    assert ids(lk.next_requests()) == [peers[4].node_id]
    lk.on_answer(peers[4].node_id, [])
    assert done(lk)
    assert ids(lk.closest()) == [peers[1].node_id, peers[2].node_id, peers[4].node_id]
    assert lk.queried == 5 and lk.answered == 3
    # a failed peer learned again from an answer is not retried
    lk.on_answer(peers[1].node_id, [(peers[0], addr(0))])
    assert state(lk, peers[0]) is _State.FAILED and done(lk)


def test_lookup_where_everyone_fails_finishes_empty() -> None:
    peers = nearest(4)
    lk = new(k=3, alpha=2)
    lk.add_candidates(infos(peers))
    while reqs := lk.next_requests():
        for c in reqs:
            lk.on_failure(c.node_id)
    assert done(lk) and lk.closest() == [] and lk.waiting == 0
    assert lk.queried == 4 and lk.answered == 0
    assert lk.path_hops() == 0


def test_on_failure_only_affects_waiting_candidates() -> None:
    peers = nearest(3)
    lk = new(k=3, alpha=1)
    lk.add_candidates(infos(peers))
    (asked,) = lk.next_requests()
    lk.on_answer(asked.node_id, [])
    lk.on_failure(asked.node_id)  # answered already: stays answered
    assert asked.state is _State.DONE and lk.answered == 1
    lk.on_failure(peers[2].node_id)  # never asked: stays new
    assert state(lk, peers[2]) is _State.NEW
    lk.on_failure(aid(500).node_id)  # unknown: ignored
    assert ids(lk.next_requests()) == [peers[1].node_id]


def test_duplicate_answer_is_counted_once() -> None:
    peers = nearest(2)
    lk = new(k=2)
    lk.add_candidates(infos(peers))
    lk.next_requests()
    lk.on_answer(peers[0].node_id, [])
    lk.on_answer(peers[0].node_id, [])
    assert lk.answered == 1 and lk.queried == 2 and lk.waiting == 1


def test_late_answer_after_a_failure_does_not_count_but_teaches_peers() -> None:
    peers = nearest(3)
    lk = new(k=3, alpha=1)
    lk.add_candidates(infos(peers[:1]))
    lk.next_requests()
    lk.on_failure(peers[0].node_id)
    lk.on_answer(peers[0].node_id, infos(peers[1:]))
    assert state(lk, peers[0]) is _State.FAILED and lk.answered == 0
    assert peers[0].node_id not in ids(lk.closest())
    assert lk.candidate(peers[1].node_id).hops == 1
    assert ids(lk.next_requests()) == [peers[1].node_id]


def test_unsolicited_answer_is_one_hop_deep() -> None:
    lk = new()
    stranger, learned = aid(1), aid(2)
    lk.on_answer(stranger.node_id, [(learned, addr(2))])
    assert lk.answered == 0
    with pytest.raises(KeyError):
        lk.candidate(stranger.node_id)
    assert lk.candidate(learned.node_id).hops == 1


# -- hops -------------------------------------------------------------------------------


def test_hops_grow_with_answer_depth() -> None:
    peers = nearest(4)
    seed, d1, d2, d3 = reversed(peers)  # each answer leads closer
    lk = new(k=1, alpha=1)
    lk.add_candidates([(seed, addr(0))])
    assert lk.path_hops() == 0  # nothing answered yet
    path = [seed, d1, d2, d3]
    for depth, (asking, learned) in enumerate(itertools.pairwise(path)):
        assert ids(lk.next_requests()) == [asking.node_id]
        lk.on_answer(asking.node_id, [(learned, addr(depth + 1))])
        assert lk.candidate(learned.node_id).hops == depth + 1
        assert lk.path_hops() == depth + 1  # the deepest answer among the closest
    assert ids(lk.next_requests()) == [d3.node_id]
    lk.on_answer(d3.node_id, [])
    assert done(lk) and ids(lk.closest()) == [d3.node_id]
    assert lk.path_hops() == 4
    assert [lk.candidate(a.node_id).hops for a in path] == [0, 1, 2, 3]


def test_path_hops_is_the_deepest_among_the_closest() -> None:
    peers = nearest(3)
    lk = new(k=2, alpha=3)
    lk.add_candidates(infos([peers[0], peers[2]]))
    lk.next_requests()
    lk.on_answer(peers[2].node_id, [(peers[1], addr(1))])  # peers[1] at hops 1
    assert lk.path_hops() == 1
    lk.on_answer(peers[0].node_id, [])
    assert ids(lk.next_requests()) == [peers[1].node_id]
    lk.on_answer(peers[1].node_id, [])
    assert done(lk)
    assert ids(lk.closest()) == nids(peers[:2])  # peers[2] dropped out of the closest
    assert lk.path_hops() == 2  # peers[1] answered at depth 2


# -- FIRST ------------------------------------------------------------------------------


def test_first_local_hit_has_zero_hops() -> None:
    peers = nearest(3)
    lk = new(LookupKind.FIRST)
    lk.add_candidates(infos(peers))
    r = endpoint(1)
    lk.add_records([r])
    assert found(lk) is r and done(lk)
    assert lk.next_requests() == [] and lk.queried == 0
    assert lk.path_hops() == 0
    assert lk.records() == [r]


def test_first_stops_at_the_first_record() -> None:
    peers = nearest(6)
    lk = new(LookupKind.FIRST, k=4, alpha=2)
    lk.add_candidates(infos(peers[4:]))
    assert ids(lk.next_requests()) == nids(peers[4:])
    lk.on_answer(peers[5].node_id, infos(peers[:4]))
    assert found(lk) is None and not done(lk)
    assert lk.path_hops() == 1
    asked = lk.next_requests()
    assert ids(asked) == [peers[0].node_id]  # one still in flight
    assert asked[0].hops == 1
    r = endpoint(1)
    lk.on_answer(peers[0].node_id, [], [r])
    assert found(lk) is r and done(lk)
    assert lk.path_hops() == 2  # seed -> peers[0] -> record
    assert lk.next_requests() == []
    assert lk.waiting == 1  # peers[4] has not answered, but nobody else is asked
    assert lk.queried == 3 and lk.answered == 2


def test_first_hit_from_a_seed_is_one_hop() -> None:
    lk = new(LookupKind.FIRST)
    lk.add_candidates(infos(nearest(3)))
    (first, *_) = lk.next_requests()
    lk.on_answer(first.node_id, [], [endpoint(1)])
    assert done(lk) and lk.path_hops() == 1


def test_first_keeps_the_first_record_found() -> None:
    lk = new(LookupKind.FIRST)
    older, newer = endpoint(1, seq=1), endpoint(1, seq=2)
    lk.add_records([older], hops=3)
    lk.add_records([newer], hops=1)
    assert found(lk) is older and lk.path_hops() == 3
    assert lk.records() == [newer]  # the merged view still keeps the newest


def test_first_skips_records_the_filter_rejects() -> None:
    wanted = aid(2)
    lk = Lookup(
        TARGET, LookupKind.FIRST, self_id=ME.node_id, k=3, accept=lambda r: r.address == wanted
    )
    peers = nearest(3)
    lk.add_candidates(infos(peers))
    lk.next_requests()
    lk.on_answer(peers[0].node_id, [], [endpoint(1)])
    assert found(lk) is None and not done(lk) and lk.records() == []
    good = endpoint(2)
    lk.on_answer(peers[1].node_id, [], [endpoint(3), good])
    assert found(lk) is good and done(lk) and lk.records() == [good]


def test_first_without_a_hit_reports_the_closest() -> None:
    peers = nearest(2)
    lk = new(LookupKind.FIRST, k=2)
    lk.add_candidates(infos(peers))
    lk.next_requests()
    lk.on_answer(peers[0].node_id, [])
    lk.on_answer(peers[1].node_id, [])
    assert done(lk) and found(lk) is None
    assert ids(lk.closest()) == nids(peers) and lk.path_hops() == 1


# -- ALL --------------------------------------------------------------------------------


def test_all_does_not_stop_at_a_record() -> None:
    peers = nearest(3)
    lk = new(LookupKind.ALL, k=3, alpha=3)
    lk.add_candidates(infos(peers))
    lk.next_requests()
    lk.on_answer(peers[0].node_id, [], [topic(1)])
    assert not done(lk) and found(lk) is None
    lk.on_answer(peers[1].node_id, [], [topic(2)])
    lk.on_answer(peers[2].node_id, [], [topic(1)])
    assert done(lk) and found(lk) is None
    assert sorted(r.address for r in lk.records()) == sorted([aid(1), aid(2)])
    assert lk.path_hops() == 1


def test_all_keeps_the_newest_record_per_sovereign_slot() -> None:
    lk = new(LookupKind.ALL)
    e1, e2, e3 = endpoint(1, seq=1), endpoint(1, seq=2), endpoint(1, seq=2, ts=T0 + 5)
    p1 = profile(1)
    other = endpoint(2, seq=1)
    lk.add_records([e2, other], hops=1)
    lk.add_records([e1, p1], hops=2)  # older endpoint: ignored
    assert set(lk.records()) == {e2, other, p1}
    lk.add_records([e3])  # same seq, later timestamp: newer
    assert set(lk.records()) == {e3, other, p1}
    lk.add_records([e2, e3])
    assert len(lk.records()) == 3


def test_all_keeps_the_newest_topic_record_per_signer() -> None:
    lk = new(LookupKind.ALL)
    old, new_ = topic(1, seq=1), topic(1, seq=2)
    lk.add_records([new_, topic(2), old, topic(3)])
    recs = lk.records()
    assert len(recs) == 3 and new_ in recs and old not in recs
    # a second topic from the same signer shares its slot (the lookup is per topic key)
    other_topic = topic(1, "other", seq=3)
    lk.add_records([other_topic])
    assert other_topic in lk.records() and new_ not in lk.records()
    assert len(lk.records()) == 3


def test_all_keeps_one_mailbox_record_per_message() -> None:
    lk = new(LookupKind.ALL)
    a0, a1 = mail(1, 9, 0), mail(1, 9, 1)
    a0_again = mail(1, 9, 0, seq=5)
    b0 = mail(2, 9, 0)
    lk.add_records([a0, a1, b0])
    assert set(lk.records()) == {a0, a1, b0}
    lk.add_records([a0_again])
    assert set(lk.records()) == {a0_again, a1, b0}


def test_all_drops_records_the_filter_rejects() -> None:
    lk = Lookup(TARGET, LookupKind.ALL, self_id=ME.node_id, accept=lambda r: r.seq < 10)
    ok, too_new = topic(1, seq=1), topic(1, seq=11)
    lk.add_records([ok, too_new, topic(2, seq=12)])
    assert lk.records() == [ok]  # the rejected newer record does not replace it


def test_nodes_lookup_has_no_found_record() -> None:
    lk = new(LookupKind.NODES)
    r = endpoint(1)
    lk.add_records([r])
    assert found(lk) is None and lk.records() == [r]


# -- reopen, closest --------------------------------------------------------------------


def test_reopen_asks_an_answered_peer_again() -> None:
    peers = nearest(2)
    lk = new(LookupKind.ALL, k=2)
    lk.add_candidates(infos(peers))
    lk.next_requests()
    lk.on_answer(peers[0].node_id, [], [mail(1, 9, 0)])
    lk.on_answer(peers[1].node_id, [])
    assert done(lk) and (lk.queried, lk.answered) == (2, 2)
    assert lk.reopen(peers[0].node_id) is True
    assert state(lk, peers[0]) is _State.WAITING
    assert (lk.queried, lk.answered, lk.waiting) == (3, 1, 1)
    assert not done(lk)
    assert lk.next_requests() == []  # reopening is the caller's request
    assert ids(lk.closest()) == [peers[1].node_id]
    lk.on_answer(peers[0].node_id, [], [mail(1, 9, 1)])
    assert done(lk) and (lk.queried, lk.answered) == (3, 2)
    assert len(lk.records()) == 2


def test_reopen_refuses_peers_that_have_not_answered() -> None:
    peers = nearest(3)
    lk = new(k=3, alpha=2)
    lk.add_candidates(infos(peers))
    lk.next_requests()
    lk.on_failure(peers[1].node_id)
    before = (lk.queried, lk.answered, lk.waiting)
    assert lk.reopen(peers[0].node_id) is False  # waiting
    assert lk.reopen(peers[1].node_id) is False  # failed
    assert lk.reopen(peers[2].node_id) is False  # new
    assert lk.reopen(aid(500).node_id) is False  # unknown
    assert (lk.queried, lk.answered, lk.waiting) == before
    assert state(lk, peers[1]) is _State.FAILED and state(lk, peers[2]) is _State.NEW


def test_closest_returns_answered_candidates_sorted_and_capped() -> None:
    peers = nearest(8)
    lk = new(k=3, alpha=8)
    lk.add_candidates(infos(peers))
    lk.next_requests()
    for a in (peers[2], peers[0]):
        lk.on_answer(a.node_id, [])
    assert ids(lk.closest()) == [peers[0].node_id, peers[2].node_id]  # not peers[1]
    lk.on_failure(peers[1].node_id)
    lk.next_requests()
    for a in reversed(peers[3:]):
        lk.on_answer(a.node_id, [])  # only peers[3] was asked: the others do not count
    assert ids(lk.closest()) == [peers[0].node_id, peers[2].node_id, peers[3].node_id]
    dists = [c.distance for c in lk.closest()]
    assert dists == sorted(dists)


# -- against a network of routing tables ------------------------------------------------


def _network(size: int) -> dict[NodeId, RoutingTable]:
    tables = {aid(n).node_id: RoutingTable(aid(n).node_id) for n in range(1, size + 1)}
    for n, table in enumerate(tables.values(), start=1):
        for m in range(1, size + 1):
            if m != n:
                table.observe_direct(aid(m), addr(m), 0.0)
    return tables


@pytest.mark.parametrize("dead_every", [0, 4])
def test_converges_on_the_true_closest(dead_every: int) -> None:
    size = 120
    tables = _network(size)
    dead = {aid(n).node_id for n in range(1, size + 1) if dead_every and n % dead_every == 0}
    target = aid(1000).node_id
    alive = [aid(n) for n in range(1, size + 1) if aid(n).node_id not in dead]
    want = sorted(alive, key=lambda a: a.node_id.distance(target))[:16]
    # seeds: a few of the farthest live peers
    seeds = sorted(alive, key=lambda a: a.node_id.distance(target))[-3:]
    lk = Lookup(target, LookupKind.NODES, self_id=ME.node_id)
    lk.add_candidates(infos(seeds))
    rounds = failures = 0
    while not done(lk):
        reqs = lk.next_requests()
        assert reqs and len(reqs) <= 5
        for c in reqs:
            if c.node_id in dead:
                failures += 1
                lk.on_failure(c.node_id)
            else:
                answer = tables[c.node_id].closest(target)
                lk.on_answer(c.node_id, [(p.aid, p.addr) for p in answer])
        rounds += 1
        assert rounds < 100
    assert ids(lk.closest()) == nids(want)
    assert lk.answered == lk.queried - failures and lk.waiting == 0
    assert (failures > 0) == bool(dead_every)
    assert lk.queried < size  # far fewer RPCs than asking everyone
    assert 1 <= lk.path_hops() <= 6


def test_valid_records_checks_type_key_and_the_wall_clock_read_at_each_offer() -> None:
    owner = ident(3)
    key = owner.aid.node_id
    payload = EndpointPayload(endpoints=("quic://192.0.2.1:4121",)).to_bytes()
    rec = SignedRecord.sign(owner, RecType.ENDPOINT, payload, seq=1, timestamp=T0, ttl=60)
    clock = [float(T0)]
    accept = valid_records(key, 0, lambda: clock[0])
    assert accept(rec)
    assert valid_records(key, RecType.ENDPOINT, lambda: clock[0])(rec)
    assert not valid_records(key, RecType.TOPIC, lambda: clock[0])(rec)  # another type
    assert not valid_records(TARGET, 0, lambda: clock[0])(rec)  # under another key
    clock[0] = T0 + 61.0  # the same filter, later: the record has expired
    assert not accept(rec)
