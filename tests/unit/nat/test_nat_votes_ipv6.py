"""IPv6 observed addresses vote in their own family: they neither break the IPv4 consensus nor
the IPv4 symmetric detection, and a v6 consensus reaches the view next to the v4 one."""

from __future__ import annotations

from a2al_mcp._random import SeededRng
from a2al_mcp.nat import NatSense, NatSenseConfig, NatType
from a2al_mcp.nat.addresses import is_plausible_wan
from a2al_mcp.nat.votes import VoteTable

WAN4 = ("198.51.100.21", 4121)
WAN6 = ("2001:db8:10::2", 4121)


def wan(a) -> bool:
    return is_plausible_wan(a[0])


def rid(i: int) -> bytes:
    return i.to_bytes(20, "big")


def test_v6_votes_do_not_dilute_the_v4_consensus() -> None:
    table = VoteTable(NatSenseConfig(min_observed_peers=3))
    for i in range(3):
        table.add(rid(i), WAN4, 0.0)
    for i in range(3, 8):
        table.add(rid(i), ("2001:db8:10::2", 5000 + i), 0.0)
    assert table.trusted(True, wan) == [(WAN4, 3)]
    assert table.trusted(False, wan) == []


def test_v6_ports_do_not_make_the_v4_family_symmetric() -> None:
    table = VoteTable(NatSenseConfig())
    for i in range(3):
        table.add(rid(i), WAN4, 0.0)
        table.add(rid(10 + i), ("2001:db8:10::2", 6000 + i), 0.0)
    assert table.symmetric(True, wan) is None
    assert table.symmetric(False, wan) is not None


def test_a_v6_consensus_is_external_next_to_the_v4_one() -> None:
    sense = NatSense(NatSenseConfig(), rng=SeededRng(1))
    sense.set_local([("10.1.0.2", 4121), WAN6], 0.0)
    for i in range(3):
        sense.observe(rid(i), WAN4, 1.0 + i)
        sense.observe(rid(10 + i), WAN6, 1.0 + i)
    view = sense.view
    assert view.nat_type is NatType.PORT_RESTRICTED  # classified on v4 evidence
    assert view.external_v4 == (WAN4,)
    assert view.external_v6 == (WAN6,)
