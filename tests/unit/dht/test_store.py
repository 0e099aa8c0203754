"""The DHT record store: validation, slots, caps, fair eviction, soft expiry (wire §3.3–3.5)."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable

import pytest

from a2al_mcp._random import SeededRng
from a2al_mcp.dht import store_slots
from a2al_mcp.dht.store import SOFT_EXPIRY_S, PutOutcome, RecordStore, StoreStats
from a2al_mcp.dht.store_ledger import HEAP_SLACK, StoreLedger
from a2al_mcp.errors import UsageError
from a2al_mcp.identity import Aid, DelegatedIdentity, DelegationProof, Identity, SigningKey
from a2al_mcp.protocol import limits
from a2al_mcp.protocol.payloads import (
    AgentProfilePayload,
    EndpointPayload,
    MailboxPayload,
    TopicPayload,
    topic_key,
)
from a2al_mcp.protocol.records import Category, SignedRecord

T0 = 1_700_000_000
EP = EndpointPayload(endpoints=("quic://192.0.2.1:4121",)).to_bytes()
PROFILE = AgentProfilePayload(name="agent").to_bytes()

_idents: dict[int, Identity] = {}


def ident(n: int) -> Identity:
    if n not in _idents:
        _idents[n] = Identity.generate(SeededRng(n))
    return _idents[n]


def nid(identity: Identity) -> bytes:
    return bytes(identity.aid.node_id)


def rec(
    identity: Identity,
    rec_type: int = 1,
    payload: bytes = EP,
    *,
    seq: int = 1,
    ts: int = T0,
    ttl: int = 3600,
) -> SignedRecord:
    return SignedRecord.sign(identity, rec_type, payload, seq=seq, timestamp=ts, ttl=ttl)


def signed(
    key: SigningKey,
    address: Aid,
    rec_type: int,
    payload: bytes,
    *,
    seq: int = 1,
    ts: int = T0,
    ttl: int = 3600,
    delegation: bytes = b"",
) -> SignedRecord:
    """A record signed by ``key`` for any address and rec_type (bypassing Identity checks)."""
    unsigned = SignedRecord(
        address=address, rec_type=rec_type, payload=payload, seq=seq, timestamp=ts, ttl=ttl,
        pubkey=bytes(key.public), signature=b"", delegation=delegation,
    )  # fmt: skip
    return dataclasses.replace(unsigned, signature=key.sign(unsigned.signed_bytes()))


def topic(identity: Identity, name: str = "chat", *, seq: int = 1, ts: int = T0) -> SignedRecord:
    payload = TopicPayload(topic=name, name=f"{identity.aid.short()}").to_bytes()
    return rec(identity, 0x10, payload, seq=seq, ts=ts)


def mail(
    sender: Identity, recipient: Identity, n: int, *, seq: int = 1, ts: int = T0, ttl: int = 3600
) -> SignedRecord:
    payload = MailboxPayload(
        recipient=recipient.aid, sender=sender.aid, ephemeral_pk=bytes(32),
        ciphertext=n.to_bytes(4, "big") + bytes(16), nonce=bytes(12),
    ).to_bytes()  # fmt: skip
    return rec(sender, 0x80, payload, seq=seq, ts=ts, ttl=ttl)


def put(
    store: RecordStore,
    record: SignedRecord,
    key: bytes = b"",
    now: float = T0,
    *,
    publisher: bool = True,
) -> PutOutcome:
    return store.put(key, record, now, from_publisher=publisher).outcome


# -- basics -----------------------------------------------------------------------------


def test_put_get_endpoint() -> None:
    s = RecordStore()
    a = ident(1)
    r = rec(a)
    result = s.put(b"", r, T0, from_publisher=True)
    assert result.outcome is PutOutcome.STORED and result.is_new
    assert result.accepted and result.wire_reason == 0
    assert result.key == nid(a)
    assert s.get(nid(a), T0) == [r]
    assert s.get(a.aid.node_id, T0) == [r]  # a NodeId works as a key too
    assert s.newest_endpoint(nid(a), T0) == r
    assert s.get(nid(a), T0, rec_type=2) == []
    assert s.get(nid(ident(2)), T0) == [] and s.newest_endpoint(nid(ident(2)), T0) is None
    assert len(s) == 1 and s.key_count == 1


@pytest.mark.parametrize("key", [b"", bytes(32), b"short", bytes(33)])
def test_absent_zero_or_odd_keys_mean_nodeid_of_address(key: bytes) -> None:
    s = RecordStore()
    a = ident(1)
    result = s.put(key, rec(a), T0, from_publisher=True)
    assert result.outcome is PutOutcome.STORED and result.key == nid(a)
    # any category: a keyless topic record lands at NodeID(address), as in a2ald
    t = topic(a)
    assert s.put(key, t, T0, from_publisher=True).key == nid(a)
    assert s.get(nid(a), T0, 0x10) == [t]


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(UsageError):
        RecordStore(max_keys=0)
    assert RecordStore().max_keys == limits.STORE_KEYS_MAX


# -- newer / stale ----------------------------------------------------------------------


def test_stale_equal_and_older_newer_replaces() -> None:
    s = RecordStore()
    a = ident(1)
    r1 = rec(a, seq=5, ts=T0)
    assert put(s, r1) is PutOutcome.STORED
    same = s.put(b"", r1, T0, from_publisher=True)
    assert same.outcome is PutOutcome.STALE and not same.is_new
    assert same.accepted and same.wire_reason == 0
    assert put(s, rec(a, seq=4, ts=T0 + 10)) is PutOutcome.STALE  # seq beats timestamp
    r2 = rec(a, seq=5, ts=T0 + 1)  # equal seq: timestamp decides
    assert put(s, r2, now=T0 + 1) is PutOutcome.STORED
    assert s.get(nid(a), T0 + 1) == [r2]
    r3 = rec(a, seq=6, ts=T0)
    assert put(s, r3, now=T0 + 1) is PutOutcome.STORED
    assert s.get(nid(a), T0 + 1) == [r3] and len(s) == 1


def test_newer_delegation_beats_higher_seq() -> None:
    made = DelegatedIdentity.generate(SeededRng(40), issued_at=T0 - 100)
    old_agent = made.identity
    new_op = SigningKey.generate(SeededRng(41))
    proof = DelegationProof.create(made.master, new_op.public, issued_at=T0 - 50)
    new_agent = Identity.from_delegation(new_op, proof, now=T0)
    assert new_agent.aid == old_agent.aid
    s = RecordStore()
    high_seq = rec(old_agent, seq=99)
    low_seq_new_proof = rec(new_agent, seq=1)
    assert put(s, high_seq) is PutOutcome.STORED
    assert put(s, low_seq_new_proof) is PutOutcome.STORED
    assert s.get(nid(old_agent), T0) == [low_seq_new_proof]
    assert put(s, rec(old_agent, seq=1000)) is PutOutcome.STALE  # the old op key is revoked


def test_expired_record_in_slot_is_purged_before_the_newer_check() -> None:
    s = RecordStore()
    a = ident(1)
    assert put(s, rec(a, seq=9, ttl=100)) is PutOutcome.STORED
    lower = rec(a, seq=1, ts=T0 + 150)
    assert put(s, lower, now=T0 + 150) is PutOutcome.STORED  # seq 9 expired at T0+100
    assert s.get(nid(a), T0 + 150) == [lower]


# -- rejection --------------------------------------------------------------------------


def test_invalid_records() -> None:
    s = RecordStore()
    a = ident(1)
    r = rec(a)
    bad_sig = dataclasses.replace(r, seq=2)
    result = s.put(b"", bad_sig, T0, from_publisher=True)
    assert result.outcome is PutOutcome.REJECTED_INVALID and "signature" in result.reason
    assert not result.accepted and result.wire_reason == 2 and not result.is_new
    assert put(s, r, now=T0 + 3601) is PutOutcome.REJECTED_INVALID  # expired
    assert put(s, r, now=T0 + 3600) is PutOutcome.STORED  # last valid second
    future = rec(ident(2), ts=T0 + 61)
    assert put(s, future) is PutOutcome.REJECTED_INVALID
    assert put(s, rec(ident(2), ts=T0 + 60)) is PutOutcome.STORED  # 60 s skew tolerated
    bad_payload = rec(ident(3), payload=b"\x01")
    assert put(s, bad_payload) is PutOutcome.REJECTED_INVALID
    big_mail = rec(ident(3), 0x80, bytes(513))
    assert put(s, big_mail, nid(ident(4))) is PutOutcome.REJECTED_INVALID


def test_sovereign_key_mismatch_is_invalid() -> None:
    s = RecordStore()
    a, b = ident(1), ident(2)
    for key in (nid(b), topic_key("chat")):
        result = s.put(key, rec(a), T0, from_publisher=True)
        assert result.outcome is PutOutcome.REJECTED_INVALID and result.key == key
        assert "NodeID" in result.reason
    # unknown rec types are sovereign too
    odd = signed(a.key, a.aid, 0x42, b"opaque")
    assert put(s, odd, nid(b)) is PutOutcome.REJECTED_INVALID
    assert put(s, odd, nid(a)) is PutOutcome.STORED
    assert len(s) == 1


def test_authority_failures_are_invalid_as_in_a2ald() -> None:
    s = RecordStore()
    a, b = ident(1), ident(2)
    # correctly signed by B, but claiming A's address, no delegation
    claim = signed(b.key, a.aid, 1, EP)
    result = s.put(b"", claim, T0, from_publisher=True)
    assert result.outcome is PutOutcome.REJECTED_INVALID and result.wire_reason == 2
    assert result.key == nid(a)
    # a topic registration and a mailbox record spoofing A as well
    assert put(s, signed(b.key, a.aid, 0x10, TopicPayload(topic="x").to_bytes()),
               topic_key("x")) is PutOutcome.REJECTED_INVALID  # fmt: skip
    assert put(s, signed(b.key, a.aid, 0x80, b"\xa0"), nid(b)) is PutOutcome.REJECTED_INVALID
    # a valid delegation, but for a different AID
    d1 = DelegatedIdentity.generate(SeededRng(50), issued_at=T0).identity
    d2 = DelegatedIdentity.generate(SeededRng(51), issued_at=T0).identity
    assert d1.delegation is not None
    borrowed = signed(d1.key, d2.aid, 1, EP, delegation=d1.delegation.to_bytes())
    assert put(s, borrowed) is PutOutcome.REJECTED_INVALID
    # a delegation that has expired (60 s grace after expires_at)
    short = DelegatedIdentity.generate(SeededRng(52), issued_at=T0 - 1000, expires_at=T0 - 100)
    assert put(s, rec(short.identity, ts=T0 - 200), now=T0 - 200) is PutOutcome.STORED
    assert put(s, rec(short.identity, seq=2)) is PutOutcome.REJECTED_INVALID
    assert s.statistics().rejected_invalid == 5 and s.statistics().rejected_policy == 0


# -- topics -----------------------------------------------------------------------------


def test_topic_slots_are_per_registrant_at_the_topic_key() -> None:
    s = RecordStore()
    a, b = ident(1), ident(2)
    key = topic_key("chat")
    ta, tb = topic(a), topic(b)
    assert put(s, ta, key) is PutOutcome.STORED
    assert put(s, tb, key) is PutOutcome.STORED
    assert s.get(key, T0) == [ta, tb]
    assert s.get(nid(a), T0) == []
    ta2 = topic(a, seq=2)
    assert put(s, ta2, key) is PutOutcome.STORED
    assert s.get(key, T0) == [tb, ta2]  # the replaced slot moves to the end
    assert put(s, ta, key) is PutOutcome.STALE
    # one AID, two operational keys: one slot (keyed by the registrant's address, unlike
    # a2ald's pubkey); the newer delegation wins
    made = DelegatedIdentity.generate(SeededRng(60), issued_at=T0)
    op2 = SigningKey.generate(SeededRng(61))
    second = Identity.from_delegation(
        op2, DelegationProof.create(made.master, op2.public, issued_at=T0 + 1), now=T0
    )
    assert put(s, topic(made.identity), key) is PutOutcome.STORED
    assert put(s, topic(second), key) is PutOutcome.STORED
    assert put(s, topic(made.identity), key) is PutOutcome.STALE
    assert s.get(key, T0, 0x10) == [tb, ta2, topic(second)]


def test_topic_cap_keeps_established_registrations() -> None:
    s = RecordStore()
    key = topic_key("busy")
    records = [topic(ident(100 + i), "busy", ts=T0 - 1000 + (i * 37) % 101) for i in range(100)]
    for r in records:
        assert put(s, r, key) is PutOutcome.STORED
    assert len(s) == 100
    # newcomers are refused whatever their timestamp (a2ald would drop the oldest timestamp)
    for n, ts in enumerate((T0, T0 + 59, T0 - 2000)):
        result = s.put(key, topic(ident(300 + n), "busy", ts=ts), T0, from_publisher=True)
        assert result.outcome is PutOutcome.REJECTED_FULL and not result.is_new
        assert (result.reason, result.wire_reason, result.accepted) == ("per_key", 1, False)
    assert s.get(key, T0) == records
    # an established registrant still updates its slot
    update = topic(ident(100), "busy", seq=2, ts=T0)
    assert put(s, update, key) is PutOutcome.STORED
    # a vouched newcomer (a peer that answered us) displaces the newest unvouched registration
    result = s.put(key, topic(ident(310), "busy"), T0, from_publisher=True, vouched=True)
    assert result.outcome is PutOutcome.STORED
    got = s.get(key, T0)
    assert len(got) == 100 and records[-1] not in got and update in got
    stats = s.statistics()
    assert (stats.evicted, stats.refused_per_key, stats.vouched) == (1, 3, 1)
    # vouched records are not displaced by unvouched or later vouched newcomers
    for i in range(99):
        s.put(key, topic(ident(320 + i), "busy"), T0, from_publisher=True, vouched=True)
    assert s.statistics().vouched == 100
    late = s.put(key, topic(ident(500), "busy"), T0, from_publisher=True, vouched=True)
    assert late.outcome is PutOutcome.REJECTED_FULL
    assert topic(ident(310), "busy") in s.get(key, T0)


def test_future_dated_records_expire_as_if_dated_now() -> None:
    s = RecordStore()
    key = topic_key("t")
    r = rec(ident(1), 0x10, TopicPayload(topic="t").to_bytes(), ts=T0 + 60, ttl=100)
    assert put(s, r, key) is PutOutcome.STORED  # 60 s ahead is within a2ald's skew
    assert s.get(key, T0 + 60) == [r]
    assert s.get(key, T0 + 101) == []  # a2ald would hold it until T0 + 160
    assert s.statistics().expired == 1


# -- mailbox ----------------------------------------------------------------------------


def test_mailbox_slots() -> None:
    s = RecordStore()
    alice, bob = ident(1), ident(2)
    box = nid(bob)
    m1, m2 = mail(alice, bob, 1), mail(alice, bob, 2)
    assert put(s, m1, box) is PutOutcome.STORED
    assert put(s, m2, box) is PutOutcome.STORED
    assert put(s, m1, box) is PutOutcome.STALE  # same (pubkey, payload, rec_type)
    m1b = mail(alice, bob, 1, seq=2)
    assert put(s, m1b, box) is PutOutcome.STORED  # same payload, newer: replaces
    assert s.get(box, T0, 0x80) == [m2, m1b]


def test_mailbox_per_pubkey_cap_drops_that_senders_oldest() -> None:
    s = RecordStore()
    alice, carol, bob = ident(1), ident(3), ident(2)
    box = nid(bob)
    carols = mail(carol, bob, 99, ts=T0 - 500)  # older than all of Alice's, but not hers
    assert put(s, carols, box) is PutOutcome.STORED
    stamps = [T0 - 10, T0 - 40, T0 - 20, T0 - 30, T0 - 5]
    alices = [mail(alice, bob, i, ts=t) for i, t in enumerate(stamps)]
    for m in alices:
        assert put(s, m, box) is PutOutcome.STORED
    got = s.get(box, T0)
    assert carols in got
    assert alices[1] not in got  # T0-40: Alice's oldest, though not her first
    assert [m for m in got if m.pubkey == bytes(alice.key.public)] == [
        alices[0], alices[2], alices[3], alices[4]
    ]  # fmt: skip


def test_mailbox_per_key_cap_refuses_new_senders() -> None:
    s = RecordStore()
    bob = ident(2)
    box = nid(bob)
    sent: list[SignedRecord] = []
    for j in range(13):  # 13 senders x 4 = 52 > 50
        sender = ident(200 + j)
        for i in range(4):
            m = mail(sender, bob, i, ts=T0 - 1000 + j * 10 + i)
            sent.append(m)
            want = PutOutcome.STORED if len(sent) <= 50 else PutOutcome.REJECTED_FULL
            assert put(s, m, box) is want
    got = s.get(box, T0)
    assert got == sent[:50]  # the two newest were refused; nothing held was dropped
    # a sender at its own cap still gets in: its own oldest note makes room
    assert put(s, mail(ident(200), bob, 9, ts=T0), box) is PutOutcome.STORED
    assert sent[0] not in s.get(box, T0) and len(s) == 50
    stats = s.statistics()
    assert (stats.evicted, stats.refused_per_key) == (1, 2)


# -- sovereign --------------------------------------------------------------------------


def test_sovereign_cap_drops_first_non_endpoint_in_list_order() -> None:
    s = RecordStore()
    a = ident(1)
    key = nid(a)
    ep = rec(a, ts=T0 - 100)  # the oldest, yet never evicted while others exist
    assert put(s, ep) is PutOutcome.STORED
    by_type = {t: rec(a, t, PROFILE if t == 2 else b"\xa0", ts=T0 - t) for t in range(2, 10)}
    for r in by_type.values():
        assert put(s, r) is PutOutcome.STORED
    types = [r.rec_type for r in s.get(key, T0)]
    assert types == [1, 3, 4, 5, 6, 7, 8, 9]  # 0x02 went: first non-endpoint
    # refreshing 0x03 moves it to the end; next overflow then drops 0x04
    assert put(s, rec(a, 3, b"\xa0", seq=2)) is PutOutcome.STORED
    assert put(s, rec(a, 0x0A, b"\xa0")) is PutOutcome.STORED
    assert [r.rec_type for r in s.get(key, T0)] == [1, 5, 6, 7, 8, 9, 3, 0x0A]
    # unknown types count against the same cap
    assert put(s, signed(a.key, a.aid, 0x55, b"x")) is PutOutcome.STORED
    assert [r.rec_type for r in s.get(key, T0)] == [1, 6, 7, 8, 9, 3, 0x0A, 0x55]
    assert s.newest_endpoint(key, T0) == ep
    assert s.statistics().evicted == 3


def test_sovereign_victim_when_only_endpoints_remain() -> None:
    # Unreachable through put (one endpoint slot per key short of a NodeID collision),
    # so the rule is checked on the helper directly.
    stamps = [T0 - 5, T0 - 9, T0 - 1, T0 - 9, T0 - 3]
    group: dict[Hashable, store_slots.Entry] = {
        i: store_slots.Entry(rec(ident(400 + i), ts=t), None, 0, 0, False, i)
        for i, t in enumerate(stamps)
    }
    assert store_slots.sovereign_victim(group) == 1  # oldest timestamp, first on ties
    group["profile"] = store_slots.Entry(rec(ident(1), 2, PROFILE), None, 0, 0, False, 9)
    assert store_slots.sovereign_victim(group) == "profile"


# -- order and filtering ----------------------------------------------------------------


def test_get_order_groups_the_last_stored_category_last() -> None:
    s = RecordStore()
    a, b = ident(1), ident(2)
    key = nid(a)
    ep, prof = rec(a), rec(a, 2, PROFILE)
    m1, m2 = mail(b, a, 1), mail(b, a, 2)
    for r in (ep, m1, prof, m2):
        assert put(s, r, key) is PutOutcome.STORED
    assert s.get(key, T0) == [ep, prof, m1, m2]
    assert s.get(key, T0, 0x80) == [m1, m2]
    assert s.get(key, T0, 0x02) == [prof]
    ep2 = rec(a, seq=2)
    assert put(s, ep2, key) is PutOutcome.STORED
    assert s.get(key, T0) == [m1, m2, prof, ep2]
    assert put(s, mail(b, a, 1), key) is PutOutcome.STALE  # stale: order unchanged
    assert s.get(key, T0) == [m1, m2, prof, ep2]


def test_get_hides_expired_and_future_records() -> None:
    s = RecordStore()
    a, b = ident(1), ident(2)
    short, long = rec(a, ttl=10), rec(b, ttl=1000)
    put(s, short)
    put(s, long)
    assert s.get(nid(a), T0 + 10) == [short]
    assert s.get(nid(a), T0 + 11) == [] and s.newest_endpoint(nid(a), T0 + 11) is None
    assert s.key_count == 1  # the emptied key was purged by the read
    assert s.get(nid(b), T0 - 61) == []  # clock went back: too far in the future now
    assert s.get(nid(b), T0 - 60) == [long]


# -- soft expiry ------------------------------------------------------------------------


def test_soft_expiry_hides_unconfirmed_path_cached_records() -> None:
    s = RecordStore()
    a = ident(1)
    key = nid(a)
    r = rec(a)
    assert put(s, r, now=T0, publisher=False) is PutOutcome.STORED
    assert s.get(key, T0 + SOFT_EXPIRY_S) == [r]
    assert s.get(key, T0 + SOFT_EXPIRY_S + 0.5) == []
    assert s.newest_endpoint(key, T0 + 121) is None
    assert len(s) == 1  # hidden, not dropped
    # a replay is still stale against the hidden record, and does not re-arm
    assert put(s, r, now=T0 + 200, publisher=False) is PutOutcome.STALE
    assert s.get(key, T0 + 200) == []
    # the publisher stores it itself: visible again
    assert put(s, r, now=T0 + 200, publisher=True) is PutOutcome.STALE
    assert s.get(key, T0 + 200) == [r]


def test_publisher_stored_records_stay() -> None:
    b = ident(2)
    s = RecordStore()
    # the publisher's own STORE of the same record (stale) confirms
    put(s, rec(b), now=T0, publisher=False)
    assert put(s, rec(b), now=T0 + 10, publisher=True) is PutOutcome.STALE
    assert len(s.get(nid(b), T0 + 3000)) == 1
    # as does the publisher's newer record
    c = ident(3)
    put(s, rec(c), now=T0, publisher=False)
    put(s, rec(c, seq=2), now=T0 + 10, publisher=True)
    assert len(s.get(nid(c), T0 + 3000)) == 1


def test_soft_expiry_across_replacements() -> None:
    s = RecordStore()
    a, b = ident(1), ident(2)
    # a newer non-publisher record in a visible slot inherits the pending deadline
    put(s, rec(a), now=T0, publisher=False)
    assert put(s, rec(a, seq=2), now=T0 + 60, publisher=False) is PutOutcome.STORED
    assert s.get(nid(a), T0 + 121) == []
    # ... and into a hidden slot it arms a fresh one
    r3 = rec(a, seq=3, ts=T0 + 200)
    assert put(s, r3, now=T0 + 200, publisher=False) is PutOutcome.STORED
    assert s.get(nid(a), T0 + 320) == [r3]
    assert s.get(nid(a), T0 + 321) == []
    # a slot the publisher filled stays unarmed when a non-publisher updates it
    put(s, rec(b), now=T0, publisher=True)
    put(s, rec(b, seq=2), now=T0 + 10, publisher=False)
    assert len(s.get(nid(b), T0 + 3000)) == 1


def test_soft_expiry_only_for_assigned_sovereign_types() -> None:
    s = RecordStore()
    a, b = ident(1), ident(2)
    odd = signed(a.key, a.aid, 0x42, b"x")
    t = topic(a)
    m = mail(a, b, 1)
    put(s, odd, publisher=False)
    put(s, t, topic_key("chat"), publisher=False)
    put(s, m, nid(b), publisher=False)
    prof = rec(a, 2, PROFILE)
    put(s, prof, publisher=False)
    later = T0 + 1000
    assert s.get(nid(a), later) == [odd]
    assert s.get(topic_key("chat"), later) == [t]
    assert s.get(nid(b), later) == [m]


# -- keys, expiry sweep, statistics ---------------------------------------------------------


def test_key_cap_refuses_new_keys_unless_vouched() -> None:
    s = RecordStore(max_keys=3)
    ids = [ident(i) for i in (1, 2, 3, 4, 5, 6)]
    for i in ids[:3]:
        put(s, rec(i))
    result = s.put(nid(ids[3]), rec(ids[3]), T0, from_publisher=True)
    assert (result.outcome, result.reason) == (PutOutcome.REJECTED_FULL, "keys")
    assert all(s.get(nid(i), T0) for i in ids[:3])  # reads and writes do not matter
    # more records under an existing key never need a key
    assert put(s, mail(ids[0], ids[2], 1), nid(ids[2])) is PutOutcome.STORED
    # a vouched newcomer takes the place of the newest key that holds nothing vouched
    assert s.put(nid(ids[4]), rec(ids[4]), T0, from_publisher=True, vouched=True).accepted
    assert s.get(nid(ids[2]), T0) == [] and s.key_count == 3 and len(s) == 3
    # a key holding a vouched record is never taken for another key
    s.put(nid(ids[1]), rec(ids[1]), T0, from_publisher=True, vouched=True)  # stale: vouches
    assert s.put(nid(ids[5]), rec(ids[5]), T0, from_publisher=True, vouched=True).accepted
    assert [bool(s.get(nid(i), T0)) for i in ids] == [False, True, False, False, True, True]
    stats = s.statistics()
    assert (stats.evicted, stats.refused_keys, stats.vouched) == (3, 1, 3)
    assert s.put(nid(ids[3]), rec(ids[3]), T0, from_publisher=True, vouched=True).reason == "keys"


def test_total_records_and_bytes_stay_bounded() -> None:
    size = len(rec(ident(1)).to_bytes())
    s = RecordStore(max_records=10, max_bytes=1_000_000)
    ids = [ident(900 + i) for i in range(14)]
    got = [s.put(nid(i), rec(i), T0, from_publisher=True).outcome for i in ids[:12]]
    assert got == [PutOutcome.STORED] * 10 + [PutOutcome.REJECTED_FULL] * 2
    assert len(s) == 10 and s.byte_count == 10 * size
    assert s.put(nid(ids[12]), rec(ids[12]), T0, from_publisher=True, vouched=True).accepted
    assert s.get(nid(ids[9]), T0) == []  # the newest unvouched record made room
    s2 = RecordStore(max_bytes=3 * size + 10)
    reasons = [s2.put(nid(i), rec(i), T0, from_publisher=True).reason for i in ids[:5]]
    assert reasons == ["stored"] * 3 + ["bytes"] * 2
    assert s2.byte_count == 3 * size and s2.statistics().refused_bytes == 2
    # expired records are purged to make room before anything is refused
    later = rec(ids[5], ts=T0 + 3611)
    assert s2.put(nid(ids[5]), later, T0 + 3611, from_publisher=True).reason == "stored"
    assert s2.statistics().expired == 3 and len(s2) == 1


def test_records_per_key_cap() -> None:
    s = RecordStore(max_records_per_key=5)
    key = topic_key("t")
    outcomes = [put(s, topic(ident(600 + i), "t"), key) for i in range(7)]
    assert outcomes == [PutOutcome.STORED] * 5 + [PutOutcome.REJECTED_FULL] * 2
    assert s.statistics().refused_per_key == 2


def test_remove_expired() -> None:
    s = RecordStore()
    a, b, c = ident(1), ident(2), ident(3)
    put(s, rec(a, ttl=100))
    put(s, rec(a, 2, PROFILE, ttl=300))
    put(s, rec(b, ttl=200))
    put(s, rec(c, ttl=5000))
    assert s.remove_expired(T0 + 100) == 0
    assert s.remove_expired(T0 + 101) == 1
    assert s.key_count == 3 and len(s) == 3
    assert s.remove_expired(T0 + 301) == 2
    assert s.key_count == 1 and len(s) == 1
    assert s.remove_expired(T0 + 400) == 0
    # a record replaced by a longer-lived one leaves a stale expiry hint; the sweep copes
    d = ident(4)
    put(s, rec(d, ttl=500))
    put(s, rec(d, seq=2, ttl=900))
    assert s.remove_expired(T0 + 501) == 0 and s.key_count == 2
    # and a shorter-lived replacement is swept when it is due
    put(s, rec(c, seq=2, ts=T0 + 400, ttl=200), now=T0 + 400)
    assert s.remove_expired(T0 + 601) == 1 and s.key_count == 1
    assert s.remove_expired(T0 + 901) == 1 and s.key_count == 0 and len(s) == 0
    assert s.statistics().expired == 5


def test_ledger_compacts_its_expiry_heap() -> None:
    ledger = StoreLedger()
    keys = [bytes([i + 1]) * 32 for i in range(50)]
    for k in keys:
        ledger.buckets[k] = store_slots.KeyRecords()
    for round_ in range(30):  # ever earlier expiries: every update pushes an expiry hint
        for i, k in enumerate(keys[:40]):
            bucket = ledger.buckets[k]
            bucket.next_expiry = T0 + 2000 - round_ * 10 - i
            ledger.push_expiry(k, bucket)
    for k in keys[40:]:
        ledger.push_expiry(k, ledger.buckets[k])
    assert len(ledger.heap) <= 2 * 50 + HEAP_SLACK + 1  # compacted, not 1210
    assert sorted(ledger.heap)[0] == (T0 + 2000 - 29 * 10 - 39, keys[39])


def test_remove_expired_many_keys_and_heap_compaction() -> None:
    s = RecordStore(max_keys=50)
    people = [ident(500 + i) for i in range(50)]
    for round_ in range(30):  # ever earlier expiries: every put pushes an expiry hint
        for i, p in enumerate(people[:40]):
            put(s, rec(p, seq=round_ + 1, ts=T0 + round_, ttl=2000 - round_ * 10 - i),
                now=T0 + round_)  # fmt: skip
    for p in people[40:]:
        put(s, rec(p, ttl=50), now=T0 + 40)
    assert s.key_count == 50
    assert s.remove_expired(T0 + 91) == 10
    assert s.key_count == 40
    assert s.remove_expired(T0 + 3000) == 40 and s.key_count == 0 and len(s) == 0


def test_statistics_counters() -> None:
    s = RecordStore(max_keys=1)
    a, b = ident(1), ident(2)
    put(s, rec(a))
    put(s, rec(a))
    put(s, dataclasses.replace(rec(b), seq=7))
    put(s, signed(b.key, a.aid, 1, EP))
    put(s, rec(b))  # refused: one key only
    s.put(nid(b), rec(b), T0, from_publisher=True, vouched=True)  # evicts key a
    size = len(rec(b).to_bytes())
    assert s.statistics() == StoreStats(
        keys=1, records=1, stored=2, stale=1, rejected_policy=0, rejected_invalid=2,
        evicted=1, expired=0, bytes=size, vouched=1, refused_keys=1,
    )  # fmt: skip


# -- model check against a2ald's list algorithm -----------------------------------------------


class _GoModel:
    """A direct restatement of store.go's list semantics (no soft expiry), for comparison."""

    def __init__(self) -> None:
        self.m: dict[bytes, list[SignedRecord]] = {}

    @staticmethod
    def _same_slot(r: SignedRecord, rec: SignedRecord) -> bool:
        if r.category is not rec.category:
            return False
        if rec.category is Category.TOPIC:
            return r.address == rec.address
        if rec.category is Category.MAILBOX:
            return (r.pubkey, r.payload, r.rec_type) == (rec.pubkey, rec.payload, rec.rec_type)
        return (r.address, r.rec_type) == (rec.address, rec.rec_type)

    def put(self, key: bytes, rec: SignedRecord, now: int) -> PutOutcome:
        live = [r for r in self.m.get(key, []) if r.timestamp + r.ttl >= now]
        if any(self._same_slot(r, rec) and not rec.is_newer_than(r) for r in live):
            self.m[key] = live
            return PutOutcome.STALE
        cat = rec.category
        grp_before = [r for r in live if r.category is cat]
        if not any(self._same_slot(r, rec) for r in live):  # a new slot: room or refusal
            senders = [r for r in grp_before if r.address == rec.address]
            if cat is Category.TOPIC and len(grp_before) >= limits.TOPIC_PER_KEY:
                self.m[key] = live
                return PutOutcome.REJECTED_FULL
            if (
                cat is Category.MAILBOX
                and len(grp_before) >= limits.MAILBOX_PER_KEY
                and len(senders) < limits.MAILBOX_PER_PUBKEY
            ):
                self.m[key] = live
                return PutOutcome.REJECTED_FULL
        out = [r for r in live if not self._same_slot(r, rec)] + [rec]
        rest = [r for r in out if r.category is not cat]
        grp = [r for r in out if r.category is cat]

        def oldest(rs: list[SignedRecord]) -> int:
            return min(range(len(rs)), key=lambda i: (rs[i].timestamp, i))

        if cat is Category.SOVEREIGN:
            while len(grp) > limits.SOVEREIGN_PER_KEY:
                idx = next((i for i, r in enumerate(grp) if r.rec_type != 1), None)
                del grp[oldest(grp) if idx is None else idx]
        elif cat is Category.MAILBOX:
            mine = [i for i, r in enumerate(grp) if r.address == rec.address]
            while len(mine) > limits.MAILBOX_PER_PUBKEY:
                del grp[min(mine, key=lambda i: (grp[i].timestamp, i))]
                mine = [i for i, r in enumerate(grp) if r.address == rec.address]
        self.m[key] = rest + grp
        return PutOutcome.STORED

    def get(self, key: bytes, now: int) -> list[SignedRecord]:
        return [r for r in self.m.get(key, []) if r.timestamp + r.ttl >= now]


def test_matches_a2ald_list_semantics_under_random_operations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in [("SOVEREIGN_PER_KEY", 3), ("TOPIC_PER_KEY", 3),
                        ("MAILBOX_PER_KEY", 5), ("MAILBOX_PER_PUBKEY", 2)]:  # fmt: skip
        monkeypatch.setattr(limits, name, value)
    rng = SeededRng(2024)
    people = [ident(700 + i) for i in range(4)]
    keys = [nid(p) for p in people[:2]] + [topic_key("t")]
    store, model = RecordStore(), _GoModel()
    now = T0
    for _ in range(400):
        now += rng.randrange(15)
        who = rng.choice(people)
        kind = rng.randrange(4)
        seq, ts, ttl = 1 + rng.randrange(4), now - rng.randrange(40), 40 + rng.randrange(120)
        if kind == 0:
            rec_type = rng.choice([1, 2, 3, 4, 5, 0x30])
            payload = EP if rec_type == 1 else b"\xa0"
            r = signed(who.key, who.aid, rec_type, payload, seq=seq, ts=ts, ttl=ttl)
            key = nid(who)
        elif kind == 1:
            payload = TopicPayload(topic="t", name=str(rng.randrange(2))).to_bytes()
            r = rec(who, 0x10, payload, seq=seq, ts=ts, ttl=ttl)
            key = keys[2]
        else:
            to = rng.choice(people[:2])
            r = mail(who, to, rng.randrange(3), seq=seq, ts=ts, ttl=ttl)
            key = nid(to)
        got = store.put(key, r, now, from_publisher=True).outcome
        assert got is model.put(key, r, now)
        for k in keys:
            assert store.get(k, now) == model.get(k, now)
        if rng.randrange(10) == 0:
            store.remove_expired(now)
    assert store.statistics().evicted > 0 and store.statistics().stale > 0
