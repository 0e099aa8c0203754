"""VoteTable and NatSense on votes: consensus thresholds, expiry, a flood of reporters."""

from __future__ import annotations

from a2al_mcp._random import SeededRng
from a2al_mcp.nat import NatSense, NatSenseConfig, NatType, ViewChanged
from a2al_mcp.nat.addresses import is_plausible_wan
from a2al_mcp.nat.votes import VoteTable

WAN = ("198.51.100.21", 4121)
TTL = NatSenseConfig().vote_ttl_s


def wan(a) -> bool:
    return is_plausible_wan(a[0])


def rid(i: int) -> bytes:
    return i.to_bytes(20, "big")


def test_cold_start_threshold_drops_to_the_reporters_there_are() -> None:
    table = VoteTable(NatSenseConfig(min_observed_peers=3))
    table.add(rid(1), WAN, 0.0)
    assert table.trusted(True, wan) == [(WAN, 1)]  # one reporter: threshold 1
    table.add(rid(2), ("198.51.100.21", 5000), 0.0)
    assert table.trusted(True, wan) == []  # two reporters disagree: threshold 2
    table.add(rid(3), WAN, 0.0)
    table.add(rid(4), WAN, 0.0)
    assert table.trusted(True, wan) == [(WAN, 3)]  # 4 reporters: threshold 3, met


def test_a_reporter_has_one_live_vote_its_newest() -> None:
    table = VoteTable(NatSenseConfig())
    assert table.add(rid(1), WAN, 0.0)
    assert not table.add(rid(1), WAN, 1.0)  # same address: no change
    assert table.add(rid(1), ("198.51.100.22", 4121), 2.0)
    assert [a for a, _, _ in table.addresses(True, wan)] == [("198.51.100.22", 4121)]
    assert len(table) == 1


def test_ipv4_mapped_votes_count_as_ipv4() -> None:
    table = VoteTable(NatSenseConfig())
    table.add(rid(1), ("::ffff:198.51.100.21", 4121), 0.0)
    table.add(rid(2), WAN, 0.0)
    assert table.trusted(True, wan) == [(WAN, 2)] and table.trusted(False, wan) == []


def test_votes_expire_after_the_ttl_and_the_view_follows() -> None:
    sense = NatSense(NatSenseConfig(), rng=SeededRng(1))
    sense.set_local([("10.1.0.2", 4121)], 0.0)
    for i in range(3):
        sense.observe(rid(i), WAN, 100.0 + i)
    assert sense.view.nat_type is NatType.PORT_RESTRICTED
    sense.effects()
    assert sense.get_timer() == 100.0 + TTL
    sense.handle_timer(100.0 + TTL)  # the first vote goes, two still agree
    assert sense.view.external == (WAN,) and sense.effects() == []
    sense.handle_timer(102.0 + TTL)
    assert sense.view.nat_type is NatType.UNKNOWN and sense.view.external == ()
    [change] = sense.effects()
    assert isinstance(change, ViewChanged) and change.previous.external == (WAN,)
    assert sense.get_timer() is None and sense.statistics().votes == 0


def test_old_votes_do_not_count_for_a_late_input() -> None:
    """Expiry also runs on input, not only on the timer."""
    sense = NatSense(NatSenseConfig(), rng=SeededRng(1))
    sense.observe(rid(1), ("198.51.100.31", 50001), 0.0)
    sense.observe(rid(2), ("198.51.100.31", 50008), 1.0)
    sense.observe(rid(3), ("198.51.100.31", 50015), 2.0 + TTL)
    assert sense.view.nat_type is NatType.PORT_RESTRICTED  # not symmetric: two are stale


def test_a_flood_of_reporters_stays_bounded() -> None:
    cfg = NatSenseConfig(max_reporters=64)
    sense = NatSense(cfg, rng=SeededRng(1))
    sense.set_local([("10.1.0.2", 4121)], 0.0)
    for i in range(3):
        sense.observe(rid(i), WAN, 0.0)
    for i in range(10_000):  # sybils all claiming one address
        sense.observe(rid(1000 + i), ("203.0.113.66", 9999), 1.0)
    stats = sense.statistics()
    assert stats.votes == 64 and stats.votes_flooded == 10_000 + 3 - 64
    assert sense.view.observed == (("203.0.113.66", 9999),)  # they outnumber, as in a2ald
    # but they cost bounded memory and are gone after the TTL
    sense.handle_timer(1.0 + TTL)
    assert sense.statistics().votes == 0


def test_a_flood_of_ports_is_symmetric_not_a_crash() -> None:
    sense = NatSense(NatSenseConfig(max_reporters=32), rng=SeededRng(1))
    for i in range(5000):
        sense.observe(rid(i), ("198.51.100.31", 1024 + i), float(i) / 100)
    assert sense.view.nat_type is NatType.SYMMETRIC and sense.statistics().votes == 32
