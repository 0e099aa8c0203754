"""NAT_PROBE in both roles: the requester's round, the responder's refusals and rate limits."""

from __future__ import annotations

from a2al_mcp._random import SeededRng
from a2al_mcp.nat import (
    NatSense,
    NatSenseConfig,
    NatType,
    SendProbeEcho,
    SendProbeRequest,
    ViewChanged,
)

WAN = ("198.51.100.21", 4121)
PEERS = [("203.0.113.11", 4121), ("203.0.113.12", 4121), ("203.0.113.13", 4121),
         ("203.0.113.14", 4121), ("10.0.0.9", 4121), ("2001:db8::1", 4121),
         ("192.168.1.1", 4121)]  # fmt: skip


def behind_nat(cfg: NatSenseConfig | None = None) -> NatSense:
    sense = NatSense(cfg or NatSenseConfig(), rng=SeededRng(5))
    sense.set_local([("10.1.0.2", 4121)], 0.0)
    sense.start(0.0)
    for i in range(3):
        sense.observe(bytes([i]) * 20, WAN, 0.0)
    return sense


def requests(sense: NatSense) -> list[SendProbeRequest]:
    return [e for e in sense.effects() if isinstance(e, SendProbeRequest)]


def test_round_asks_at_most_three_public_ipv4_peers_claiming_the_consensus() -> None:
    sense = behind_nat()
    sense.offer_peers(PEERS, 1.0)
    reqs = requests(sense)
    assert len(reqs) == 3 and all(r.claimed == WAN for r in reqs)
    assert {r.peer for r in reqs} <= set(PEERS[:4])  # never LAN, never IPv6
    assert len({r.token for r in reqs}) == 3 and all(len(r.token) == 8 for r in reqs)
    assert sense.get_timer() == 1.0 + NatSenseConfig().probe_window_s


def test_no_probe_without_an_address_to_claim_or_peers_to_ask() -> None:
    sense = NatSense(NatSenseConfig(), rng=SeededRng(5))
    sense.start(0.0)
    sense.offer_peers(PEERS, 0.0)
    assert requests(sense) == []  # nothing to claim
    sense.observe(b"a" * 20, WAN, 1.0)
    assert len(requests(sense)) == 3  # as soon as there is


def test_echo_is_reachability_evidence_not_full_cone() -> None:
    sense = behind_nat()
    sense.offer_peers(PEERS, 1.0)
    first, second, _ = requests(sense)
    sense.probe_echoed(first.token, first.peer, 2.0)
    sense.probe_echoed(second.token, second.peer, 2.1)
    assert sense.view.reachable is True
    assert sense.view.nat_type is NatType.PORT_RESTRICTED  # D5: proves nothing about filtering
    assert "NAT probe: echo from peers in contact" in sense.view.evidence
    assert sense.statistics().probe.echoes == 2
    assert not [e for e in sense.effects() if isinstance(e, ViewChanged)]  # records unchanged


def test_no_echo_in_the_window_and_the_next_round() -> None:
    cfg = NatSenseConfig()
    sense = behind_nat(cfg)
    sense.offer_peers(PEERS, 1.0)
    requests(sense)
    sense.probe_echoed(b"\x00" * 8, PEERS[0], 2.0)  # not ours
    sense.handle_timer(1.0 + cfg.probe_window_s)
    assert sense.view.reachable is False and "NAT probe: no echo" in sense.view.evidence
    stats = sense.statistics().probe
    assert stats.rounds == 1 and stats.requests_sent == 3 and stats.echoes_unmatched == 1
    assert sense.get_timer() == cfg.vote_ttl_s  # the votes of t=0 expire before the next round
    for i in range(3):  # peers keep answering
        sense.observe(bytes([i]) * 20, WAN, 1000.0)
    assert sense.get_timer() == 1.0 + cfg.probe_interval_s
    sense.handle_timer(1.0 + cfg.probe_interval_s)
    assert len(requests(sense)) == 3 and sense.statistics().probe.rounds == 2


def test_no_probe_claims_an_address_behind_a_symmetric_nat() -> None:
    sense = NatSense(NatSenseConfig(), rng=SeededRng(5))
    sense.start(0.0)
    for i, port in enumerate((50001, 50008, 50015)):
        sense.observe(bytes([i]) * 20, ("198.51.100.31", port), 0.0)
    sense.offer_peers(PEERS, 0.0)
    assert sense.view.nat_type is NatType.SYMMETRIC and requests(sense) == []


# -- responder -------------------------------------------------------------------------------


def echoes(sense: NatSense) -> list[SendProbeEcho]:
    return [e for e in sense.effects() if isinstance(e, SendProbeEcho)]


def test_responder_echoes_only_to_the_requesters_own_ip() -> None:
    sense = NatSense(NatSenseConfig(), rng=SeededRng(5))
    src = ("198.51.100.21", 4121)
    assert sense.probe_requested(src, b"t" * 8, ("198.51.100.21", 4999), 0.0)
    assert echoes(sense) == [SendProbeEcho(("198.51.100.21", 4999), b"t" * 8)]
    assert not sense.probe_requested(src, b"t" * 8, ("203.0.113.99", 4121), 0.0)  # reflection
    assert not sense.probe_requested(src, b"t" * 8, ("198.51.100.21", 0), 0.0)
    assert not sense.probe_requested(src, b"t" * 7, src, 0.0)
    assert echoes(sense) == []
    assert sense.statistics().probe.refused_mismatch == 2


def test_responder_ipv4_mapped_source_matches_plain_claim() -> None:
    sense = NatSense(NatSenseConfig(), rng=SeededRng(5))
    assert sense.probe_requested(("::ffff:198.51.100.21", 4121), b"t" * 8,
                                 ("198.51.100.21", 4121), 0.0)  # fmt: skip


def test_responder_rate_limit_per_requester() -> None:
    cfg = NatSenseConfig(echo_per_requester_s=0.1, echo_requester_burst=2.0)
    sense = NatSense(cfg, rng=SeededRng(5))
    src = ("198.51.100.21", 4121)
    answered = [sense.probe_requested(src, b"t" * 8, src, 0.0) for _ in range(5)]
    assert answered == [True, True, False, False, False]
    assert sense.probe_requested(("198.51.100.22", 4121), b"t" * 8, ("198.51.100.22", 1), 0.0)
    assert sense.probe_requested(src, b"t" * 8, src, 10.0)  # one token back after 10 s
    assert not sense.probe_requested(src, b"t" * 8, src, 10.0)
    stats = sense.statistics().probe
    assert stats.refused_requester_rate == 4 and stats.echoes_sent == 4


def test_responder_global_rate_limit() -> None:
    cfg = NatSenseConfig(echo_global_per_s=1.0, echo_global_burst=3.0)
    sense = NatSense(cfg, rng=SeededRng(5))
    ips = [(f"198.51.100.{i}", 4121) for i in range(1, 11)]
    answered = [sense.probe_requested(a, b"t" * 8, a, 0.0) for a in ips]
    assert answered.count(True) == 3 and sense.statistics().probe.refused_global_rate == 7
    assert sense.probe_requested(ips[5], b"t" * 8, ips[5], 1.0)  # refill; not charged before


def test_responder_table_is_bounded() -> None:
    cfg = NatSenseConfig(echo_requesters_max=16, echo_global_per_s=1e9, echo_global_burst=1e9)
    sense = NatSense(cfg, rng=SeededRng(5))
    for i in range(5000):
        a = (f"198.51.{i // 250}.{i % 250 + 1}", 4121)
        assert sense.probe_requested(a, b"t" * 8, a, 0.0)
    # the first requester was forgotten: it gets a fresh burst, the proof the table dropped it
    first = ("198.51.0.1", 4121)
    assert sense.probe_requested(first, b"t" * 8, first, 0.0)
