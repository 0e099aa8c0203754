"""The Kademlia routing table: buckets, direct contact vs hearsay, pending, backoff (§4.7)."""

from __future__ import annotations

import functools
from collections import Counter

import pytest

from a2al_mcp._random import SeededRng
from a2al_mcp._types import Addr
from a2al_mcp.dht.routing import (
    BACKOFF_BASE_S,
    BAD_AFTER_FAILURES,
    HEARSAY_PROBE_MIN_BUCKET,
    PENDING_MAX,
    PENDING_TTL_S,
    QUESTIONABLE_AFTER_S,
    Health,
    K,
    Peer,
    RoutingStats,
    RoutingTable,
)
from a2al_mcp.identity import Aid, Identity, NodeId
from a2al_mcp.protocol.dht_messages import NodeInfo

SELF = NodeId(bytes(32))
"""Our NodeID in most tests: the CPL of a peer is then the count of its leading zero bits."""


@functools.cache
def aid(n: int) -> Aid:
    return Identity.generate(SeededRng(n)).aid


def addr(i: int) -> Addr:
    return (f"192.0.2.{i % 250 + 1}", 4000 + i)


def aids_in_bucket(
    table: RoutingTable, index: int, count: int, *, skip: int = 0, start: int = 1
) -> list[Aid]:
    """``count`` AIDs whose bucket in ``table`` is ``index``, after skipping ``skip`` such."""
    out: list[Aid] = []
    n = start
    while len(out) < skip + count:
        a = aid(n)
        if table.bucket_index(a.node_id) == index:
            out.append(a)
        n += 1
    return out[skip:]


def fill(table: RoutingTable, index: int = 0, count: int = K, now: float = 0.0) -> list[Aid]:
    """Fill bucket ``index`` with ``count`` verified peers, oldest first."""
    members = aids_in_bucket(table, index, count)
    for i, a in enumerate(members):
        assert table.observe_direct(a, addr(i), now) is None
    assert table.bucket_size(index) == count
    return members


def spread(table: RoutingTable) -> list[Aid]:
    """32 peers over buckets 0-3 (none full), added by direct contact."""
    everyone = [
        a for index, count in ((0, 12), (1, 10), (2, 6), (3, 4))
        for a in aids_in_bucket(table, index, count)
    ]  # fmt: skip
    for i, a in enumerate(everyone):
        assert table.observe_direct(a, addr(i), 0.0) is None
    assert len(table) == len(everyone)
    return everyone


def health(peer: Peer) -> Health:
    """``peer.health``, read through a call so mypy does not narrow it between asserts."""
    return peer.health


def ids(peers: list[Peer]) -> list[NodeId]:
    return [p.node_id for p in peers]


def assert_consistent(table: RoutingTable) -> None:
    """len/contains/get/peers/closest/statistics agree with the bucket sizes."""
    peers = table.peers()
    assert len(peers) == len(table) == len({p.node_id for p in peers})
    per_bucket = Counter(table.bucket_index(p.node_id) for p in peers)
    sizes = {i: table.bucket_size(i) for i in range(257) if table.bucket_size(i)}
    assert per_bucket == sizes
    assert sum(sizes.values()) == len(table)
    assert all(size <= K for size in sizes.values())
    for p in peers:
        assert p.node_id in table
        assert table.get(p.node_id) is p
        assert p.node_id != table.self_id
    everyone = table.closest(table.self_id, n=len(table) + 1, scan=len(table) + 1)
    assert {p.node_id for p in everyone} == {p.node_id for p in peers}
    stats = table.statistics()
    assert stats.peers == len(table)
    assert stats.good + stats.unknown + stats.bad == len(table)
    assert stats.buckets_used == len(sizes)


# -- health, bucket index ---------------------------------------------------------------


def test_health_order_and_peer_health() -> None:
    assert Health.GOOD < Health.UNKNOWN < Health.BAD
    p = Peer(aid(1), aid(1).node_id, addr(1), verified=True, last_seen=0.0)
    assert health(p) is Health.GOOD and p.failures == 0 and p.retry_at == 0.0
    p.verified = False
    assert health(p) is Health.UNKNOWN
    p.failures = BAD_AFTER_FAILURES - 1
    assert health(p) is Health.UNKNOWN  # one failure is not enough
    p.failures = BAD_AFTER_FAILURES
    assert health(p) is Health.BAD
    p.verified = True
    assert health(p) is Health.BAD  # bad wins over verified


def test_bucket_index_is_the_common_prefix_length() -> None:
    t = RoutingTable(SELF)
    assert t.bucket_index(SELF) == 256
    assert t.bucket_index(NodeId(b"\x80" + bytes(31))) == 0
    assert t.bucket_index(NodeId(b"\xff" * 32)) == 0
    assert t.bucket_index(NodeId(b"\x40" + bytes(31))) == 1
    assert t.bucket_index(NodeId(b"\x01" + bytes(31))) == 7
    assert t.bucket_index(NodeId(bytes(1) + b"\x80" + bytes(30))) == 8
    assert t.bucket_index(NodeId(bytes(31) + b"\x01")) == 255


def test_bucket_index_matches_common_prefix_len_and_is_256_only_for_self() -> None:
    me = aid(0).node_id
    t = RoutingTable(me)
    assert t.bucket_index(me) == 256
    for n in range(1, 200):
        other = aid(n).node_id
        idx = t.bucket_index(other)
        assert idx == me.common_prefix_len(other) == other.common_prefix_len(me)
        assert 0 <= idx < 256


# -- what is taken ----------------------------------------------------------------------


def test_self_is_never_added() -> None:
    me = aid(0)
    t = RoutingTable(me.node_id, allow_local_hearsay=True)
    assert t.observe_direct(me, addr(1), 0.0) is None
    assert t.observe_hearsay(me, addr(1), 0.0) is False
    assert len(t) == 0 and me.node_id not in t and t.get(me.node_id) is None
    assert t.bucket_size(256) == 0
    assert t.statistics() == RoutingStats(0, 0, 0, 0, 0, 0)


UNDIALABLE: list[Addr] = [
    ("192.0.2.1", 0),  # port 0
    ("0.0.0.0", 4121),  # unspecified
    ("::", 4121),
    ("224.0.0.1", 4121),  # multicast
    ("ff02::1", 4121),
    ("239.255.255.250", 4121),
    ("example.com", 4121),  # not an IP literal
    ("localhost", 4121),
    ("", 4121),
    ("192.0.2.256", 4121),
    ("127.1", 4121),
]


@pytest.mark.parametrize("where", UNDIALABLE)
@pytest.mark.parametrize("allow_local", [False, True])
def test_undialable_addresses_are_ignored(where: Addr, allow_local: bool) -> None:
    t = RoutingTable(SELF, allow_local_hearsay=allow_local)
    assert t.hearsay_usable(where) is False
    assert t.observe_direct(aid(1), where, 0.0) is None
    assert t.observe_hearsay(aid(2), where, 0.0) is False
    assert len(t) == 0 and t.peers() == []
    assert aid(1).node_id not in t and aid(2).node_id not in t
    assert t.statistics().pending == 0


def test_undialable_direct_contact_does_not_touch_an_existing_entry() -> None:
    t = RoutingTable(SELF)
    a = aid(1)
    t.observe_direct(a, addr(1), 0.0)
    t.record_failure(a.node_id, 5.0)
    assert t.observe_direct(a, ("0.0.0.0", 4121), 10.0) is None
    p = t.get(a.node_id)
    assert p is not None
    assert p.addr == addr(1) and p.last_seen == 0.0 and p.failures == 1


LOCAL: list[Addr] = [
    ("127.0.0.1", 4121),
    ("127.8.9.10", 4121),
    ("::1", 4121),
    ("169.254.1.1", 4121),
    ("fe80::1", 4121),
]


@pytest.mark.parametrize("where", LOCAL)
def test_local_addresses_are_taken_from_direct_contact(where: Addr) -> None:
    t = RoutingTable(SELF)
    assert t.observe_direct(aid(1), where, 0.0) is None
    p = t.get(aid(1).node_id)
    assert p is not None and p.addr == where and p.verified


@pytest.mark.parametrize("where", LOCAL)
def test_local_hearsay_refused_unless_allowed(where: Addr) -> None:
    strict = RoutingTable(SELF)
    assert strict.hearsay_usable(where) is False
    assert strict.observe_hearsay(aid(1), where, 0.0) is False
    assert len(strict) == 0 and strict.statistics().pending == 0
    lax = RoutingTable(SELF, allow_local_hearsay=True)
    assert lax.hearsay_usable(where) is True
    assert lax.observe_hearsay(aid(1), where, 0.0) is True
    p = lax.get(aid(1).node_id)
    assert p is not None and p.addr == where and not p.verified


@pytest.mark.parametrize(
    "where", [("192.0.2.1", 4121), ("8.8.8.8", 1), ("2001:db8::1", 65535), ("10.0.0.1", 4121)]
)
def test_public_and_private_hearsay_is_usable(where: Addr) -> None:
    t = RoutingTable(SELF)
    assert t.hearsay_usable(where) is True
    assert t.observe_hearsay(aid(1), where, 0.0) is True
    assert aid(1).node_id in t


def test_ipv4_mapped_loopback_hearsay_is_refused() -> None:
    t = RoutingTable(SELF)
    assert t.hearsay_usable(("::ffff:127.0.0.1", 4121)) is False
    assert t.observe_hearsay(aid(1), ("::ffff:127.0.0.1", 4121), 0.0) is False


# -- direct contact ---------------------------------------------------------------------


def test_direct_contact_adds_a_verified_entry() -> None:
    t = RoutingTable(SELF)
    a = aid(1)
    assert t.observe_direct(a, addr(1), 12.5) is None
    p = t.get(a.node_id)
    assert p is not None
    assert (p.aid, p.node_id, p.addr, p.verified, p.last_seen) == (
        a,
        a.node_id,
        addr(1),
        True,
        12.5,
    )
    assert health(p) is Health.GOOD and p.failures == 0
    assert a.node_id in t and len(t) == 1 and t.peers() == [p]
    assert t.bucket_size(t.bucket_index(a.node_id)) == 1
    assert t.verified_in_bucket(t.bucket_index(a.node_id)) == 1


def test_direct_contact_refreshes_an_entry() -> None:
    t = RoutingTable(SELF)
    a = aid(1)
    t.observe_direct(a, addr(1), 0.0)
    t.record_failure(a.node_id, 1.0)
    before = t.get(a.node_id)
    assert before is not None and before.failures == 1 and before.retry_at > 0
    assert t.observe_direct(a, addr(2), 50.0) is None
    p = t.get(a.node_id)
    assert p is before  # updated in place
    assert p.addr == addr(2) and p.last_seen == 50.0
    assert p.failures == 0 and p.retry_at == 0.0 and p.verified
    assert len(t) == 1


def test_direct_contact_upgrades_a_hearsay_entry() -> None:
    t = RoutingTable(SELF)
    a = aid(1)
    assert t.observe_hearsay(a, addr(1), 0.0)
    p = t.get(a.node_id)
    assert p is not None and not p.verified and health(p) is Health.UNKNOWN
    idx = t.bucket_index(a.node_id)
    assert t.verified_in_bucket(idx) == 0
    t.observe_direct(a, addr(2), 10.0)
    q = t.get(a.node_id)
    assert q is p  # updated in place
    assert q.verified and q.addr == addr(2) and q.last_seen == 10.0
    assert health(q) is Health.GOOD and t.verified_in_bucket(idx) == 1


def test_direct_contact_moves_the_peer_to_the_lru_end() -> None:
    t = RoutingTable(SELF)
    members = fill(t, 0, now=0.0)
    t.observe_direct(members[0], addr(0), 10.0)  # members[1] is now least recently seen
    late = QUESTIONABLE_AFTER_S + 100.0
    newcomer = aids_in_bucket(t, 0, 1, skip=K)[0]
    lru = t.observe_direct(newcomer, addr(99), late)
    assert lru is not None and lru.node_id == members[1].node_id


def test_bucket_holds_at_most_k() -> None:
    t = RoutingTable(SELF)
    members = aids_in_bucket(t, 0, K + 3)
    for i, a in enumerate(members):
        t.observe_direct(a, addr(i), 0.0)
    assert t.bucket_size(0) == K == len(t)
    assert all(a.node_id in t for a in members[:K])
    assert not any(a.node_id in t for a in members[K:])
    assert t.statistics().pending == 3
    assert_consistent(t)


def test_buckets_fill_independently() -> None:
    t = RoutingTable(SELF)
    fill(t, 0)
    fill(t, 1, count=3)
    assert t.bucket_size(0) == K and t.bucket_size(1) == 3 and len(t) == K + 3
    assert t.statistics().buckets_used == 2
    assert_consistent(t)


def test_full_bucket_returns_questionable_lru_for_a_ping() -> None:
    t = RoutingTable(SELF)
    members = fill(t, 0, now=0.0)
    newcomer = aids_in_bucket(t, 0, 1, skip=K)[0]
    lru = t.observe_direct(newcomer, addr(99), QUESTIONABLE_AFTER_S + 1.0)
    assert lru is not None and lru.node_id == members[0].node_id
    assert lru is t.get(members[0].node_id)  # the entry itself, still in the table
    assert newcomer.node_id not in t and len(t) == K
    assert t.statistics().pending == 1


def test_full_bucket_with_recently_seen_lru_returns_none() -> None:
    t = RoutingTable(SELF)
    fill(t, 0, now=0.0)
    newcomers = aids_in_bucket(t, 0, 2, skip=K)
    assert t.observe_direct(newcomers[0], addr(98), 10.0) is None
    # exactly QUESTIONABLE_AFTER_S of silence is not yet questionable
    assert t.observe_direct(newcomers[1], addr(99), QUESTIONABLE_AFTER_S) is None
    assert len(t) == K and not any(a.node_id in t for a in newcomers)
    assert t.statistics().pending == 2


def test_failed_ping_of_the_lru_promotes_the_newcomer() -> None:
    t = RoutingTable(SELF)
    members = fill(t, 0, now=0.0)
    newcomer = aids_in_bucket(t, 0, 1, skip=K)[0]
    now = QUESTIONABLE_AFTER_S + 1.0
    lru = t.observe_direct(newcomer, addr(99), now)
    assert lru is not None
    t.record_failure(lru.node_id, now + 1)
    assert newcomer.node_id not in t  # one failure is not enough
    t.record_failure(lru.node_id, now + 2)
    assert lru.node_id not in t and newcomer.node_id in t
    p = t.get(newcomer.node_id)
    assert p is not None and p.verified and p.addr == addr(99)
    assert t.bucket_size(0) == K and t.statistics().pending == 0
    assert members[1].node_id in t
    assert_consistent(t)


def test_bad_peer_in_full_bucket_is_replaced_by_a_direct_newcomer() -> None:
    t = RoutingTable(SELF)
    members = fill(t, 0, now=0.0)
    victim = members[5]
    t.record_failure(victim.node_id, 1.0)
    t.record_failure(victim.node_id, 2.0)  # bad; no pending to promote, so it stays
    peer = t.get(victim.node_id)
    assert peer is not None and health(peer) is Health.BAD
    newcomer = aids_in_bucket(t, 0, 1, skip=K)[0]
    # the LRU is questionable by now, but a bad entry is replaced without any PING
    assert t.observe_direct(newcomer, addr(99), QUESTIONABLE_AFTER_S * 2) is None
    assert victim.node_id not in t and t.get(victim.node_id) is None
    p = t.get(newcomer.node_id)
    assert p is not None and p.verified and health(p) is Health.GOOD
    assert t.bucket_size(0) == K == len(t)
    assert t.statistics().pending == 0 and t.statistics().bad == 0
    assert victim.node_id not in ids(t.closest(victim.node_id))
    assert_consistent(t)


# -- hearsay ----------------------------------------------------------------------------


def test_hearsay_adds_an_unverified_entry_when_there_is_room() -> None:
    t = RoutingTable(SELF)
    a = aid(1)
    assert t.observe_hearsay(a, addr(1), 7.0) is True
    p = t.get(a.node_id)
    assert p is not None
    assert not p.verified and health(p) is Health.UNKNOWN and p.last_seen == 7.0
    assert p.addr == addr(1)
    assert t.statistics().unknown == 1 and t.statistics().good == 0


def test_hearsay_never_evicts() -> None:
    t = RoutingTable(SELF)
    members = fill(t, 0, now=0.0)
    victim = members[3]
    t.record_failure(victim.node_id, 1.0)
    t.record_failure(victim.node_id, 2.0)
    newcomer = aids_in_bucket(t, 0, 1, skip=K)[0]
    assert t.observe_hearsay(newcomer, addr(99), QUESTIONABLE_AFTER_S * 2) is False
    assert victim.node_id in t  # the bad peer stays
    assert newcomer.node_id not in t
    assert t.bucket_size(0) == K and t.statistics().pending == 1
    assert_consistent(t)


def test_hearsay_never_overwrites_a_verified_address() -> None:
    t = RoutingTable(SELF)
    a = aid(1)
    t.observe_direct(a, addr(1), 0.0)
    assert t.observe_hearsay(a, addr(2), 100.0) is False
    p = t.get(a.node_id)
    assert p is not None
    assert p.addr == addr(1) and p.verified and p.last_seen == 0.0
    assert len(t) == 1


def test_hearsay_updates_an_unverified_address() -> None:
    t = RoutingTable(SELF)
    a = aid(1)
    assert t.observe_hearsay(a, addr(1), 0.0) is True
    assert t.observe_hearsay(a, addr(2), 5.0) is False  # known: not "added"
    p = t.get(a.node_id)
    assert p is not None and p.addr == addr(2) and not p.verified
    assert len(t) == 1


def test_refused_local_hearsay_does_not_update_an_unverified_address() -> None:
    t = RoutingTable(SELF)
    a = aid(1)
    t.observe_hearsay(a, addr(1), 0.0)
    assert t.observe_hearsay(a, ("127.0.0.1", 4121), 1.0) is False
    p = t.get(a.node_id)
    assert p is not None and p.addr == addr(1)


def test_hearsay_does_not_reset_failures() -> None:
    t = RoutingTable(SELF)
    a = aid(1)
    t.observe_hearsay(a, addr(1), 0.0)
    t.record_failure(a.node_id, 1.0)
    t.observe_hearsay(a, addr(2), 2.0)
    p = t.get(a.node_id)
    assert p is not None and p.failures == 1 and p.addr == addr(2)


# -- failures, success, pending ---------------------------------------------------------


def test_record_failure_backs_off_exponentially() -> None:
    t = RoutingTable(SELF)
    a = aid(1)
    t.observe_direct(a, addr(1), 0.0)
    p = t.get(a.node_id)
    assert p is not None
    t.record_failure(a.node_id, 100.0)
    assert p.failures == 1 and p.retry_at == 100.0 + BACKOFF_BASE_S
    assert health(p) is Health.GOOD  # still in the table, backing off
    t.record_failure(a.node_id, 200.0)
    assert p.failures == 2 and health(p) is Health.BAD
    assert p.retry_at == 200.0 + 2 * BACKOFF_BASE_S
    t.record_failure(a.node_id, 300.0)
    assert p.retry_at == 300.0 + 4 * BACKOFF_BASE_S
    assert a.node_id in t  # nothing pending: a bad peer stays
    for _ in range(20):
        t.record_failure(a.node_id, 1000.0)
    assert p.failures == 23
    assert p.retry_at == 1000.0 + BACKOFF_BASE_S * 1024  # capped at 2**10
    assert t.statistics().bad == 1


def test_record_failure_of_an_unknown_peer_is_ignored() -> None:
    t = RoutingTable(SELF)
    t.observe_direct(aid(1), addr(1), 0.0)
    t.record_failure(aid(2).node_id, 1.0)
    t.record_failure(SELF, 1.0)
    assert len(t) == 1 and aid(2).node_id not in t
    p = t.get(aid(1).node_id)
    assert p is not None and p.failures == 0


def test_record_success_resets() -> None:
    t = RoutingTable(SELF)
    a = aid(1)
    t.observe_hearsay(a, addr(1), 0.0)
    t.record_failure(a.node_id, 1.0)
    t.record_failure(a.node_id, 2.0)
    p = t.get(a.node_id)
    assert p is not None and health(p) is Health.BAD
    t.record_success(a.node_id, 9.0)
    assert p.failures == 0 and p.retry_at == 0.0
    assert p.verified and p.last_seen == 9.0 and health(p) is Health.GOOD
    assert p.addr == addr(1)
    t.record_success(aid(2).node_id, 9.0)  # unknown: ignored
    assert len(t) == 1


def test_record_success_moves_the_peer_to_the_lru_end() -> None:
    t = RoutingTable(SELF)
    members = fill(t, 0, now=0.0)
    t.record_success(members[0].node_id, 1.0)
    t.record_success(members[1].node_id, 2.0)
    newcomer = aids_in_bucket(t, 0, 1, skip=K)[0]
    lru = t.observe_direct(newcomer, addr(99), QUESTIONABLE_AFTER_S + 10.0)
    assert lru is not None and lru.node_id == members[2].node_id


def test_promotion_takes_the_newest_pending_entry() -> None:
    t = RoutingTable(SELF)
    members = fill(t, 0, now=0.0)
    older, newer = aids_in_bucket(t, 0, 2, skip=K)
    t.observe_hearsay(older, addr(50), 100.0)
    t.observe_direct(newer, addr(51), 200.0)
    assert t.statistics().pending == 2
    t.record_failure(members[4].node_id, 300.0)
    t.record_failure(members[4].node_id, 301.0)
    assert members[4].node_id not in t
    assert newer.node_id in t and older.node_id not in t
    assert t.statistics().pending == 1
    t.record_failure(members[9].node_id, 400.0)
    t.record_failure(members[9].node_id, 401.0)
    assert members[9].node_id not in t and older.node_id in t
    p = t.get(older.node_id)
    assert p is not None and not p.verified and p.addr == addr(50)  # came from hearsay
    assert t.statistics().pending == 0 and t.bucket_size(0) == K
    assert_consistent(t)


def test_expired_pending_entries_are_not_promoted() -> None:
    t = RoutingTable(SELF)
    members = fill(t, 0, now=0.0)
    stale, fresh = aids_in_bucket(t, 0, 2, skip=K)
    t.observe_hearsay(stale, addr(50), 0.0)
    t.observe_hearsay(fresh, addr(51), 5000.0)
    now = PENDING_TTL_S + 100.0  # stale is 7300 s old, fresh 2300 s
    t.record_failure(members[0].node_id, now)
    t.record_failure(members[0].node_id, now)
    assert fresh.node_id in t and members[0].node_id not in t
    t.record_failure(members[1].node_id, now)
    t.record_failure(members[1].node_id, now)
    assert stale.node_id not in t
    assert members[1].node_id in t  # nothing fresh to replace it with: stays, bad
    bad = t.get(members[1].node_id)
    assert bad is not None and health(bad) is Health.BAD
    assert t.statistics().pending == 0  # the expired entry was dropped
    assert_consistent(t)


def test_pending_entry_exactly_ttl_old_is_still_promoted() -> None:
    t = RoutingTable(SELF)
    members = fill(t, 0, now=0.0)
    newcomer = aids_in_bucket(t, 0, 1, skip=K)[0]
    t.observe_hearsay(newcomer, addr(50), 10.0)
    t.record_failure(members[0].node_id, 10.0 + PENDING_TTL_S)
    t.record_failure(members[0].node_id, 10.0 + PENDING_TTL_S)
    assert newcomer.node_id in t and members[0].node_id not in t


def test_pending_list_is_capped_and_drops_the_oldest() -> None:
    t = RoutingTable(SELF)
    members = fill(t, 0, now=0.0)
    waiting = aids_in_bucket(t, 0, PENDING_MAX + 2, skip=K)
    for i, a in enumerate(waiting):
        t.observe_hearsay(a, addr(50 + i), 10.0 + i)
    assert t.statistics().pending == PENDING_MAX
    for i in range(PENDING_MAX + 1):
        t.record_failure(members[i].node_id, 100.0)
        t.record_failure(members[i].node_id, 100.0)
    # the PENDING_MAX newest came in, newest first; the two oldest were dropped
    assert all(a.node_id in t for a in waiting[2:])
    assert not any(a.node_id in t for a in waiting[:2])
    assert members[PENDING_MAX].node_id in t  # its replacement list was empty
    assert t.statistics().pending == 0 and t.statistics().bad == 1
    assert_consistent(t)


def test_pending_is_deduplicated() -> None:
    t = RoutingTable(SELF)
    fill(t, 0, now=0.0)
    newcomer = aids_in_bucket(t, 0, 1, skip=K)[0]
    t.observe_hearsay(newcomer, addr(50), 1.0)
    t.observe_hearsay(newcomer, addr(50), 2.0)
    t.observe_direct(newcomer, addr(50), 3.0)
    assert t.statistics().pending == 1


def test_pending_lists_are_per_bucket() -> None:
    t = RoutingTable(SELF)
    fill(t, 0, now=0.0)
    ones = fill(t, 1, now=0.0)
    waiting0 = aids_in_bucket(t, 0, 1, skip=K)[0]
    t.observe_hearsay(waiting0, addr(50), 1.0)
    t.record_failure(ones[0].node_id, 2.0)
    t.record_failure(ones[0].node_id, 2.0)
    assert waiting0.node_id not in t  # bucket 1's bad peer is not replaced from bucket 0
    assert ones[0].node_id in t
    assert t.statistics().pending == 1


# -- remove -----------------------------------------------------------------------------


def test_remove() -> None:
    t = RoutingTable(SELF)
    members = fill(t, 0, now=0.0)
    gone = members[7]
    t.remove(gone.node_id)
    assert gone.node_id not in t and t.get(gone.node_id) is None
    assert len(t) == K - 1 and t.bucket_size(0) == K - 1
    assert gone.node_id not in ids(t.peers())
    assert gone.node_id not in ids(t.closest(gone.node_id, n=K))
    t.remove(gone.node_id)  # twice: no-op
    t.remove(aid(10_000).node_id)  # unknown: no-op
    assert len(t) == K - 1
    # the freed slot takes a newcomer without any PING
    newcomer = aids_in_bucket(t, 0, 1, skip=K)[0]
    assert t.observe_direct(newcomer, addr(99), QUESTIONABLE_AFTER_S * 2) is None
    assert newcomer.node_id in t and t.bucket_size(0) == K
    assert_consistent(t)


# -- closest ----------------------------------------------------------------------------


def test_closest_in_xor_order() -> None:
    t = RoutingTable(SELF)
    everyone = spread(t)
    target = aid(500).node_id
    want = sorted(everyone, key=lambda a: a.node_id.distance(target))
    assert ids(t.closest(target)) == [a.node_id for a in want[:K]]
    assert ids(t.closest(target, n=5)) == [a.node_id for a in want[:5]]
    assert ids(t.closest(target, n=100)) == [a.node_id for a in want]
    assert t.closest(target, n=0) == []
    assert ids(t.closest(everyone[3].node_id, n=1)) == [everyone[3].node_id]


def test_closest_on_an_empty_table() -> None:
    assert RoutingTable(SELF).closest(aid(1).node_id) == []
    assert RoutingTable(SELF).closest(aid(1).node_id, now=0.0) == []


def test_closest_puts_bad_peers_last() -> None:
    t = RoutingTable(SELF)
    everyone = spread(t)
    target = aid(500).node_id
    order = sorted(everyone, key=lambda a: a.node_id.distance(target))
    nearest, second = order[0], order[1]
    for bad in (nearest, second):
        t.record_failure(bad.node_id, 1.0)
        t.record_failure(bad.node_id, 1.0)
    got = ids(t.closest(target, n=len(everyone)))
    assert got == [a.node_id for a in order[2:]] + [nearest.node_id, second.node_id]
    assert ids(t.closest(target, n=3)) == [a.node_id for a in order[2:5]]
    # unverified (hearsay) peers are not demoted, only bad ones
    hearsay = RoutingTable(SELF)
    for i, a in enumerate(everyone):
        if a is nearest:
            hearsay.observe_hearsay(a, addr(i), 0.0)
        else:
            hearsay.observe_direct(a, addr(i), 0.0)
    assert ids(hearsay.closest(target, n=1)) == [nearest.node_id]


def test_closest_leaves_out_peers_backing_off_when_now_is_given() -> None:
    t = RoutingTable(SELF)
    everyone = [aid(n) for n in range(1, 11)]
    for i, a in enumerate(everyone):
        t.observe_direct(a, addr(i), 0.0)
    target = aid(500).node_id
    order = sorted(everyone, key=lambda a: a.node_id.distance(target))
    once, twice = order[0], order[1]
    t.record_failure(once.node_id, 100.0)  # retry_at 130
    t.record_failure(twice.node_id, 100.0)
    t.record_failure(twice.node_id, 100.0)  # retry_at 160, bad
    assert ids(t.closest(target, n=2)) == [once.node_id, order[2].node_id]  # no now
    assert ids(t.closest(target, n=10, now=129.0)) == [a.node_id for a in order[2:]]
    got = ids(t.closest(target, n=10, now=130.0))  # retry_at reached: back in
    assert got == [once.node_id] + [a.node_id for a in order[2:]]
    got = ids(t.closest(target, n=10, now=160.0))
    assert got == [once.node_id] + [a.node_id for a in order[2:]] + [twice.node_id]
    t.record_success(twice.node_id, 161.0)
    assert ids(t.closest(target, n=2, now=0.0)) == [twice.node_id, order[2].node_id]


def test_closest_scans_only_the_nearest() -> None:
    t = RoutingTable(SELF)
    everyone = [aid(n) for n in range(1, 11)]
    for i, a in enumerate(everyone):
        t.observe_direct(a, addr(i), 0.0)
    target = aid(500).node_id
    order = sorted(everyone, key=lambda a: a.node_id.distance(target))
    t.record_failure(order[0].node_id, 1.0)
    t.record_failure(order[0].node_id, 1.0)
    # with scan=3, the bad nearest is demoted behind the next two only
    got = ids(t.closest(target, n=10, scan=3))
    assert got == [order[1].node_id, order[2].node_id, order[0].node_id]


# -- statistics, verified_in_bucket, contains -------------------------------------------


def test_statistics() -> None:
    t = RoutingTable(SELF)
    members = fill(t, 0, now=0.0)
    ones = aids_in_bucket(t, 1, 3)
    t.observe_hearsay(ones[0], addr(60), 0.0)
    t.observe_hearsay(ones[1], addr(61), 0.0)
    t.observe_direct(ones[2], addr(62), 0.0)
    t.record_failure(members[0].node_id, 1.0)
    t.record_failure(members[0].node_id, 1.0)  # bad
    t.record_failure(members[1].node_id, 1.0)  # one failure: still good
    t.record_failure(ones[0].node_id, 1.0)
    t.record_failure(ones[0].node_id, 1.0)  # bad hearsay
    waiting = aids_in_bucket(t, 0, 2, skip=K)
    for i, a in enumerate(waiting):
        t.observe_hearsay(a, addr(70 + i), 2.0)
    stats = t.statistics()
    assert stats == RoutingStats(
        peers=K + 3, good=K, unknown=1, bad=2, pending=2, buckets_used=2
    )  # good: K - 1 in bucket 0 (one failure is still good) and ones[2]
    assert_consistent(t)


def test_verified_in_bucket() -> None:
    t = RoutingTable(SELF)
    members = fill(t, 0, count=5, now=0.0)
    assert t.verified_in_bucket(0) == 5
    assert t.verified_in_bucket(1) == 0
    hearsay = aids_in_bucket(t, 0, 2, skip=5)
    for i, a in enumerate(hearsay):
        t.observe_hearsay(a, addr(40 + i), 0.0)
    assert t.bucket_size(0) == 7 and t.verified_in_bucket(0) == 5
    t.record_failure(members[0].node_id, 1.0)  # any failure stops counting
    assert t.verified_in_bucket(0) == 4
    t.record_success(members[0].node_id, 2.0)
    t.record_success(hearsay[0].node_id, 2.0)  # now proven
    assert t.verified_in_bucket(0) == 6
    t.remove(members[1].node_id)
    assert t.verified_in_bucket(0) == 5


def test_contains_takes_only_node_ids() -> None:
    t = RoutingTable(SELF)
    a = aid(1)
    t.observe_direct(a, addr(1), 0.0)
    assert a.node_id in t
    assert NodeId(bytes(a.node_id)) in t  # equal, not identical
    assert a not in t  # an Aid is not a NodeId
    assert bytes(a.node_id) not in t
    assert str(a.node_id) not in t
    assert None not in t
    assert aid(2).node_id not in t


# -- consistency ------------------------------------------------------------------------


def test_index_stays_consistent_through_evictions_promotions_and_removals() -> None:
    t = RoutingTable(SELF)
    members = fill(t, 0, now=0.0)
    extra = aids_in_bucket(t, 0, 4, skip=K)
    fill(t, 2, count=4)
    assert_consistent(t)
    # a bad peer replaced by a direct newcomer
    t.record_failure(members[0].node_id, 1.0)
    t.record_failure(members[0].node_id, 1.0)
    assert_consistent(t)
    t.observe_direct(extra[0], addr(80), 2.0)
    assert_consistent(t)
    assert members[0].node_id not in t and extra[0].node_id in t
    # pending promotion
    t.observe_hearsay(extra[1], addr(81), 3.0)
    assert_consistent(t)
    t.record_failure(members[1].node_id, 4.0)
    t.record_failure(members[1].node_id, 4.0)
    assert_consistent(t)
    assert members[1].node_id not in t and extra[1].node_id in t
    # removals, and refilling the freed slot
    t.remove(members[2].node_id)
    t.remove(extra[0].node_id)
    assert_consistent(t)
    t.observe_hearsay(extra[2], addr(82), 5.0)
    t.observe_direct(extra[3], addr(83), 5.0)
    assert_consistent(t)
    assert len(t) == K + 4
    everything = {p.node_id for p in t.peers()}
    assert everything == {p.node_id for p in t.closest(SELF, n=100)}
    for gone in (members[0], members[1], members[2], extra[0]):
        assert t.get(gone.node_id) is None and gone.node_id not in t
        assert gone.node_id not in everything


def test_random_operations_keep_the_index_consistent() -> None:
    rng = SeededRng(7)
    t = RoutingTable(SELF)
    pool = [aid(n) for n in range(1, 80)]  # ~40 for bucket 0, ~20 for bucket 1, ...
    now = 0.0
    for step in range(1500):
        now += rng.randrange(200)
        a = pool[rng.randrange(len(pool))]
        op = rng.randrange(6)
        if op == 0:
            t.observe_direct(a, addr(step), now)
        elif op == 1:
            t.observe_hearsay(a, addr(step), now)
        elif op in (2, 3):
            t.record_failure(a.node_id, now)
        elif op == 4:
            t.record_success(a.node_id, now)
        else:
            t.remove(a.node_id)
        assert_consistent(t)
    assert t.bucket_size(0) == K  # the busiest bucket did fill up


# -- stale pending entries (bugs) -------------------------------------------------------


def test_promotion_skips_a_pending_peer_that_is_already_in_the_bucket() -> None:
    t = RoutingTable(SELF)
    members = fill(t, 0, now=0.0)
    bad, other = members[0], members[1]
    t.record_failure(bad.node_id, 1.0)
    t.record_failure(bad.node_id, 1.0)  # bad, nothing pending: stays
    x = aids_in_bucket(t, 0, 1, skip=K)[0]
    assert t.observe_hearsay(x, ("198.51.100.1", 1), 3.0) is False  # pending (hearsay)
    assert t.observe_direct(x, ("203.0.113.9", 5), 4.0) is None  # replaces the bad peer
    p = t.get(x.node_id)
    assert p is not None and p.verified and p.addr == ("203.0.113.9", 5)
    t.record_failure(other.node_id, 5.0)
    t.record_failure(other.node_id, 6.0)
    p = t.get(x.node_id)
    assert p is not None
    assert p.verified and p.addr == ("203.0.113.9", 5)
    assert len(t) == K


def test_direct_contact_refreshes_a_pending_hearsay_entry() -> None:
    t = RoutingTable(SELF)
    members = fill(t, 0, now=0.0)
    x = aids_in_bucket(t, 0, 1, skip=K)[0]
    t.observe_hearsay(x, ("198.51.100.1", 1), 1.0)
    assert t.observe_direct(x, ("203.0.113.9", 5), 2.0) is None  # LRU recent: pending
    t.record_failure(members[0].node_id, 3.0)
    t.record_failure(members[0].node_id, 3.0)
    p = t.get(x.node_id)
    assert p is not None
    assert p.verified and p.addr == ("203.0.113.9", 5)


# -- dial slots (a2al-wire §4.7) ---------------------------------------------------------


def test_dial_prefers_fresh_verified_live_then_anchor_then_live() -> None:
    t = RoutingTable(SELF)
    a = aid(1)
    t.observe_direct(a, ("198.51.100.7", 4121), now=0.0)
    assert t.set_anchor(a.node_id, ("203.0.113.9", 4121))
    peer = t.get(a.node_id)
    assert peer is not None
    assert peer.dial(now=100.0) == ("198.51.100.7", 4121)  # verified and fresh
    assert peer.dial(now=400.0) == ("203.0.113.9", 4121)  # stale: the anchor wins


def test_dial_prefers_ipv4_and_falls_back_to_live_without_anchor() -> None:
    t = RoutingTable(SELF)
    a = aid(1)
    t.observe_direct(a, ("2001:db8::7", 4121), now=0.0)
    t.observe_hearsay(a, ("198.51.100.7", 4121), now=1.0)
    peer = t.get(a.node_id)
    assert peer is not None
    assert peer.dial(now=2.0) == ("2001:db8::7", 4121)  # the only verified fresh one
    assert peer.dial(now=1000.0) == ("198.51.100.7", 4121)  # no anchor: v4 live first
    t.observe_direct(a, ("198.51.100.8", 4121), now=1001.0)
    assert peer.dial(now=1002.0) == ("198.51.100.8", 4121)


def test_hearsay_cannot_replace_a_verified_live_address_of_its_family() -> None:
    t = RoutingTable(SELF)
    a = aid(1)
    t.observe_direct(a, ("198.51.100.7", 4121), now=0.0)
    t.observe_hearsay(a, ("198.51.100.66", 4121), now=1.0)
    peer = t.get(a.node_id)
    assert peer is not None
    assert peer.live[4][0] == ("198.51.100.7", 4121)
    t.observe_hearsay(a, ("2001:db8::66", 4121), now=2.0)  # another family is free
    assert peer.live[6] == (("2001:db8::66", 4121), False, 2.0)


def test_anchor_is_never_loopback_and_needs_a_known_peer() -> None:
    t = RoutingTable(SELF, allow_local_hearsay=True)
    a = aid(1)
    assert not t.set_anchor(a.node_id, ("198.51.100.7", 4121))  # unknown peer
    t.observe_direct(a, ("127.0.0.1", 4121), now=0.0)
    assert not t.set_anchor(a.node_id, ("127.0.0.1", 4122))
    assert not t.set_anchor(a.node_id, ("fe80::1", 4122))
    assert not t.set_anchor(a.node_id, ("198.51.100.7", 0))
    peer = t.get(a.node_id)
    assert peer is not None and peer.anchors == {}


def test_observe_answer_learns_named_peers_and_names_new_near_ones_to_probe() -> None:
    t = RoutingTable(SELF)
    [near] = aids_in_bucket(t, HEARSAY_PROBE_MIN_BUCKET, 1)
    [far] = aids_in_bucket(t, HEARSAY_PROBE_MIN_BUCKET - 1, 1)
    [liar, local] = aids_in_bucket(t, HEARSAY_PROBE_MIN_BUCKET + 1, 2)
    nodes = [
        NodeInfo.of(near, addr(1)),
        NodeInfo(address=liar, node_id=far.node_id, ip=bytes([192, 0, 2, 9]), port=1),
        NodeInfo(address=liar, node_id=liar.node_id, ip=b"\x01\x02\x03", port=1),  # bad IP
        NodeInfo.of(local, ("127.0.0.1", 4121)),  # not dialable second-hand
        NodeInfo.of(far, addr(2)),
    ]
    usable, probe = t.observe_answer(nodes, 0.0)
    assert usable == [(near, addr(1)), (far, addr(2))]
    assert probe == [(addr(1), near.node_id)]  # the far one is not worth a PING
    assert {p.node_id for p in t.peers()} == {near.node_id, far.node_id}
    again, probe_again = t.observe_answer(nodes, 1.0)
    assert again == usable and probe_again == []  # known now: no second PING
