"""Issue 14 finding 6: a DHT STORE flood from many addresses and self-made identities.

Each test drives a real :class:`DhtCore` with crafted datagrams from crafted source addresses on
its virtual clock (no sockets). At 45ad18d the per-address STORE limit never triggered for
addresses spread over one /24 or /64, 110 STOREs (some dated 60 s ahead) evicted an honest
topic registration, new keys pushed an honest key out of the LRU, and records were bounded
only per key.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any

import pytest

from a2al_mcp._random import SeededRng
from a2al_mcp.config import DhtConfig
from a2al_mcp.dht.core import DhtCore
from a2al_mcp.identity import Identity, NodeId
from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.protocol.payloads import EndpointPayload, TopicPayload, topic_key
from a2al_mcp.protocol.records import SignedRecord

T0 = 1_700_000_000
NOW = 100.0
"""The core's monotonic clock in these tests; wall time is ``T0 + NOW``."""
WALL = int(T0 + NOW)

_seeds = itertools.count(10_000)


def fresh() -> Identity:
    """A self-made identity: free for an attacker."""
    return Identity.generate(SeededRng(next(_seeds)))


def make_core(**limits: Any) -> DhtCore:
    """A DHT core with the given ``LimitsConfig`` fields (at 45ad18d there was no
    ``LimitsConfig``; only the key cap existed, as ``DhtConfig.max_stored_keys``)."""
    me = Identity.generate(SeededRng(1))
    if "limits" in inspect.signature(DhtCore).parameters:
        from a2al_mcp.config import LimitsConfig

        return DhtCore(me, rng=SeededRng(2), limits=LimitsConfig(**limits), wall_offset=T0)
    old = DhtConfig(max_stored_keys=limits.get("dht_keys", 100_000))  # type: ignore[call-arg]
    return DhtCore(me, rng=SeededRng(2), config=old, wall_offset=T0)


def topic_record(who: Identity, name: str, *, ts: int = WALL, seq: int = 1) -> SignedRecord:
    payload = TopicPayload(topic=name, name=who.aid.short()).to_bytes()
    return SignedRecord.sign(who, 0x10, payload, seq=seq, timestamp=ts)


def endpoint_record(who: Identity) -> SignedRecord:
    payload = EndpointPayload(endpoints=("quic://192.0.2.1:4121",)).to_bytes()
    return SignedRecord.sign(who, 1, payload, seq=1, timestamp=WALL)


def store(
    core: DhtCore,
    sender: Identity,
    record: SignedRecord,
    addr: tuple[str, int],
    key: bytes | None = None,
    now: float = NOW,
) -> dm.StoreResp | None:
    """Send one STORE from ``addr``; the STORE_RESP, or None if the core did not answer."""
    body = dm.Store(record=record, key=None if key is None else NodeId(key))
    tx_id = next(_seeds).to_bytes(20, "big")
    core.receive_datagram(dm.encode_message(body, tx_id=tx_id, key=sender.key), addr, now)
    for out, to in core.datagrams_to_send(now):
        msg = dm.decode_message(out)
        if to == addr and msg.tx_id == tx_id and isinstance(msg.body, dm.StoreResp):
            return msg.body
    return None


def answer_ping(core: DhtCore, peer: Identity, addr: tuple[str, int]) -> None:
    """Make ``peer`` a peer that answered us: the core PINGs it and it answers."""
    core.ping(addr, NOW)
    (out, to), *_ = core.datagrams_to_send(NOW)
    ping = dm.decode_message(out)
    assert to == addr and isinstance(ping.body, dm.Ping)
    pong = dm.encode_message(dm.Pong(address=peer.aid, observed_addr=("192.0.2.9", 1)),
                             tx_id=ping.tx_id, key=peer.key)  # fmt: skip
    core.receive_datagram(pong, addr, NOW)
    core.datagrams_to_send(NOW)


def spread(i: int) -> tuple[str, int]:
    """Source address number ``i``, each in its own IPv4 /24 (past any per-prefix limit)."""
    return (f"10.{(i >> 8) & 0xFF}.{i & 0xFF}.1", 4000)


# -- rate limits per /24 and per /64 ------------------------------------------------------


@pytest.mark.parametrize(
    "addrs",
    [
        [(f"10.1.2.{n}", 4000) for n in range(1, 251)],
        [(f"2001:db8:0:1::{n:x}", 4000) for n in range(1, 251)],
        [(f"2001:db8:0:1:{n:x}:{n:x}:{n:x}:1", 4000) for n in range(1, 251)],
    ],
    ids=["ipv4-24", "ipv6-64", "ipv6-64-spread"],
)
def test_stores_from_one_prefix_share_one_rate_limit(addrs: list[tuple[str, int]]) -> None:
    core = make_core()
    records = [(who, topic_record(who, "flood")) for who in (fresh() for _ in range(8))]
    answered = 0
    for addr in addrs:  # 250 addresses x 2 STOREs, all in the same instant
        for who, rec in records[:2]:
            answered += store(core, who, rec, addr) is not None
    # default: 60/s per prefix, burst 3 s worth (180); per address 20/s would allow all 500
    assert answered == 180
    stats = core.statistics()
    assert stats.dropped_rate_limited == 500 - 180
    assert getattr(stats, "rate_limited_prefix", 0) == 500 - 180
    # another prefix is not affected; one second later the prefix has earned 60 more
    other = ("10.1.3.1", 4000) if "." in addrs[0][0] else ("2001:db8:0:2::1", 4000)
    assert store(core, *records[2], other) is not None
    later = [store(core, *records[3], a, now=NOW + 1.0) for a in addrs[:100]]
    assert sum(r is not None for r in later) == 60


def test_stores_from_one_address_are_rate_limited() -> None:
    core = make_core()
    who = fresh()
    rec = topic_record(who, "flood")
    got = [store(core, who, rec, ("10.9.9.9", 4000)) for _ in range(100)]
    assert sum(r is not None for r in got) == 60  # 20/s, burst 3 s worth
    assert getattr(core.statistics(), "rate_limited_ip", 40) == 40


# -- an honest topic registration survives a flood of self-made identities ----------------


@pytest.mark.parametrize("flood", [110, 3000])
def test_honest_topic_registration_survives_store_flood(flood: int) -> None:
    core = make_core()
    key = topic_key("lang.translate")
    honest = fresh()
    honest_rec = topic_record(honest, "lang.translate")
    resp = store(core, honest, honest_rec, ("192.0.2.50", 4121), key)
    assert resp is not None and resp.stored
    refused = 0
    for i in range(flood):  # each from its own /24, every other one dated 59 s ahead
        who = fresh()
        rec = topic_record(who, "lang.translate", ts=WALL + 59 * (i % 2))
        resp = store(core, who, rec, spread(i), key)
        assert resp is not None  # not rate limited: the store itself must hold
        if not resp.stored:
            assert resp.reason == dm.StoreReason.POLICY
            refused += 1
    held = core.store.get(key, T0 + NOW)
    assert honest_rec in held
    assert len(held) == 100  # a2ald's topic cap
    assert refused == flood + 1 - 100
    # the honest registrant still updates its registration
    update = topic_record(honest, "lang.translate", seq=2)
    resp = store(core, honest, update, ("192.0.2.50", 4121), key)
    assert resp is not None and resp.stored and update in core.store.get(key, T0 + NOW)


def test_peer_that_answered_us_still_registers_into_a_flooded_topic() -> None:
    core = make_core()
    key = topic_key("chat")
    for i in range(150):
        who = fresh()
        store(core, who, topic_record(who, "chat"), spread(i), key)
    live, addr = fresh(), ("192.0.2.60", 4121)
    answer_ping(core, live, addr)
    rec = topic_record(live, "chat")
    resp = store(core, live, rec, addr, key)
    assert resp is not None and resp.stored
    assert rec in core.store.get(key, T0 + NOW)
    assert len(core.store.get(key, T0 + NOW)) == 100


# -- an honest key survives a flood of new keys --------------------------------------------


def test_honest_key_survives_a_flood_of_new_keys() -> None:
    core = make_core(dht_keys=50)
    honest, addr = fresh(), ("192.0.2.70", 4121)
    answer_ping(core, honest, addr)
    honest_rec = endpoint_record(honest)
    resp = store(core, honest, honest_rec, addr)
    assert resp is not None and resp.stored
    for i in range(200):  # 200 new keys: each attacker identity's own endpoint record
        who = fresh()
        store(core, who, endpoint_record(who), spread(i))
    assert core.store.get(bytes(honest.aid.node_id), T0 + NOW) == [honest_rec]
    assert core.store.key_count <= 50
    # a peer that answered us still gets a key: a flooder's key makes room
    late, late_addr = fresh(), ("192.0.2.71", 4121)
    answer_ping(core, late, late_addr)
    resp = store(core, late, endpoint_record(late), late_addr)
    assert resp is not None and resp.stored
    assert core.store.get(bytes(honest.aid.node_id), T0 + NOW) == [honest_rec]
    assert core.statistics().store_refused_keys == 200 - 49


# -- total records and bytes stay bounded ---------------------------------------------------


@pytest.mark.parametrize("limit", [{"dht_records": 300}, {"dht_bytes": 40_000}])
def test_records_and_bytes_stay_bounded_over_many_keys(limit: dict[str, int]) -> None:
    core = make_core(**limit)
    keys = [topic_key(f"t{j}") for j in range(12)]
    refused = 0
    for i in range(1200):  # 12 topic keys x 100 registrants: 1,200 records without a total cap
        j = i % 12
        who = fresh()
        resp = store(core, who, topic_record(who, f"t{j}"), spread(i), keys[j])
        assert resp is not None
        refused += not resp.stored
    held = [r for k in keys for r in core.store.get(k, T0 + NOW)]
    held_bytes = sum(len(r.to_bytes()) for r in held)
    assert len(held) == len(core.store)
    assert len(held) <= limit.get("dht_records", 10**9)
    assert held_bytes <= limit.get("dht_bytes", 10**9)
    assert refused == 1200 - len(held) and refused > 800
    stats = core.statistics()
    assert stats.stored_bytes == held_bytes
    assert stats.store_refused_records + stats.store_refused_bytes == refused
