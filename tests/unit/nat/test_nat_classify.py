"""NatSense classification, one path per NAT kind, on a virtual clock with real STUN bytes."""

from __future__ import annotations

import pytest

from a2al_mcp._random import SeededRng
from a2al_mcp.nat import NatSense, NatSenseConfig, NatType, ViewChanged
from tests.unit.nat.natlab import Lab, Nat, StunServer

LOCAL = ("10.1.0.2", 4121)
WAN = "198.51.100.21"
COTURN = StunServer("203.0.113.3", "203.0.113.4")


def lab(nat: Nat | None, *servers: StunServer, local=LOCAL, **cfg) -> Lab:
    config = NatSenseConfig(stun_servers=tuple(s.primary for s in servers), **cfg)
    sense = NatSense(config, rng=SeededRng(7))
    the_lab = Lab(sense, nat, list(servers), local=local)
    sense.set_local([local], the_lab.now)
    sense.start(the_lab.now)
    return the_lab


def views(the_lab: Lab) -> list[NatType]:
    return [e.view.nat_type for e in the_lab.other if isinstance(e, ViewChanged)]


def test_no_evidence_is_unknown() -> None:
    the_lab = lab(None)
    the_lab.run(10)
    assert the_lab.sense.view.nat_type is NatType.UNKNOWN
    assert the_lab.sense.view.external == () and the_lab.sense.get_timer() is None
    assert views(the_lab) == []


@pytest.mark.parametrize(
    ("filtering", "expected"),
    [("eif", NatType.FULL_CONE), ("adf", NatType.RESTRICTED), ("apdf", NatType.PORT_RESTRICTED)],
)
def test_rfc5780_filtering_tells_cone_restricted_and_port_restricted(filtering, expected) -> None:
    the_lab = lab(Nat(WAN, 4121, "eim", filtering), StunServer("203.0.113.3", "203.0.113.4"))
    the_lab.run(10)
    view = the_lab.sense.view
    assert view.nat_type is expected
    assert view.external == ((WAN, 4121),) and view.stun_reflected == ((WAN, 4121),)
    assert not view.public
    assert any("endpoint-independent mapping" in e for e in view.evidence)
    # first 3 (behind a NAT, filtering unproven), then the test's answer if it differs
    assert views(the_lab)[0] is NatType.PORT_RESTRICTED and views(the_lab)[-1] is expected
    assert the_lab.sense.statistics().behaviour_runs == 1


def test_filtering_tests_go_before_the_mapping_test() -> None:
    """The mapping test contacts the alternate IP, which would open an address-dependent
    filter to the change-IP answer: it must be sent after both filtering answers."""
    server = StunServer("203.0.113.3", "203.0.113.4")
    the_lab = lab(Nat(WAN, 4121, "eim", "adf"), server)
    the_lab.run(10)
    sent = [(r.attributes.get("CHANGE-REQUEST", 0), to) for r, to in server.requests]
    assert sent[:3] == [(0, server.primary), (0x06, server.primary), (0x02, server.primary)]
    mapping_at = sent.index((0, ("203.0.113.4", 3478)))
    assert sent[mapping_at - 1] == (0x06, server.primary)  # after the last change-IP retry
    assert len(sent) == mapping_at + 1
    assert the_lab.sense.view.nat_type is NatType.RESTRICTED


def test_symmetric_by_stun_mapping_test() -> None:
    the_lab = lab(Nat("198.51.100.31", 4121, "edm", "apdf"), COTURN)
    the_lab.run(10)
    view = the_lab.sense.view
    assert view.nat_type is NatType.SYMMETRIC
    assert view.external == ()  # no ip:port of ours works for a new peer
    assert view.external_ips == ("198.51.100.31",)
    assert any("depends on the destination" in e for e in view.evidence)


def test_symmetric_by_two_plain_stun_servers() -> None:
    a, b = StunServer("203.0.113.3"), StunServer("203.0.113.6")
    the_lab = lab(Nat("198.51.100.31", 4121, "edm", "apdf"), a, b)
    the_lab.run(10)
    assert the_lab.sense.view.nat_type is NatType.SYMMETRIC
    assert the_lab.sense.statistics().behaviour_runs == 0  # no OTHER-ADDRESS: no RFC 5780


def test_two_plain_stun_servers_one_port_is_not_symmetric() -> None:
    a, b = StunServer("203.0.113.3"), StunServer("203.0.113.6")
    the_lab = lab(Nat(WAN, 4121, "eim", "eif"), a, b)
    the_lab.run(10)
    view = the_lab.sense.view
    assert view.nat_type is NatType.PORT_RESTRICTED  # filtering unproven: not claimed open
    assert view.external == ((WAN, 4121),)


def test_server_ignoring_change_request_proves_nothing() -> None:
    """A server that answers a CHANGE-REQUEST from its primary address must not make a
    port-restricted NAT look open."""
    server = StunServer("203.0.113.3", "203.0.113.4", honours_change=False)
    the_lab = lab(Nat(WAN, 4121, "eim", "eif"), server)
    the_lab.run(10)
    assert the_lab.sense.view.nat_type is NatType.PORT_RESTRICTED


def test_symmetric_by_votes_within_seconds() -> None:
    the_lab = lab(None)
    sense = the_lab.sense
    for i, port in enumerate((50001, 50008, 50015)):
        sense.observe(bytes([i]) * 20, ("198.51.100.31", port), the_lab.now + i)
    assert sense.view.nat_type is NatType.SYMMETRIC
    assert sense.view.external == () and "198.51.100.31" in sense.view.external_ips


def test_symmetric_by_votes_with_agents_sharing_a_socket() -> None:
    """A node and its agents behind one remote socket see the same mapping: two reporters
    per port must not hide a symmetric NAT (a2ald's rule misses it, testbed D6)."""
    sense = lab(None).sense
    for i, port in enumerate((50001, 50001, 50008, 50008, 50015, 50015)):
        sense.observe(bytes([i]) * 20, ("198.51.100.31", port), 1000.0)
    assert sense.view.nat_type is NatType.SYMMETRIC


def test_one_rebind_is_not_symmetric() -> None:
    sense = lab(None).sense
    for i, port in enumerate((4121, 4121, 4121, 60000)):
        sense.observe(bytes([i]) * 20, (WAN, port), 1000.0)
    assert sense.view.nat_type is NatType.PORT_RESTRICTED
    assert sense.view.external == ((WAN, 4121),)


def test_mapping_test_overrides_vote_noise() -> None:
    """Endpoint-independent mapping measured by STUN beats stale votes on several ports."""
    the_lab = lab(Nat(WAN, 4121, "eim", "eif"), COTURN)
    for i, port in enumerate((4121, 61000, 62000)):
        the_lab.sense.observe(bytes([i]) * 20, (WAN, port), the_lab.now)
    the_lab.run(10)
    assert the_lab.sense.view.nat_type is NatType.FULL_CONE


def test_votes_alone_behind_nat_are_port_restricted() -> None:
    sense = lab(None).sense
    for i in range(3):
        sense.observe(bytes([i]) * 20, (WAN, 4121), 1000.0)
    view = sense.view
    assert view.nat_type is NatType.PORT_RESTRICTED
    assert view.observed == ((WAN, 4121),) and view.external == ((WAN, 4121),)
    assert "3 peers agree on 198.51.100.21:4121" in view.evidence


def test_public_bind() -> None:
    local = ("203.0.113.11", 4121)
    the_lab = lab(None, local=local)
    view = the_lab.sense.view
    assert view.nat_type is NatType.FULL_CONE and view.public and view.external == (local,)
    for i in range(3):  # peers confirm: still public
        the_lab.sense.observe(bytes([i]) * 20, local, the_lab.now)
    assert the_lab.sense.view.public and the_lab.sense.view.observed == (local,)


def test_wan_bind_with_another_external_address_is_not_public() -> None:
    sense = lab(None, local=("203.0.113.11", 4121)).sense
    sense.observe(b"r" * 20, ("198.51.100.7", 4121), 1000.0)
    assert not sense.view.public and sense.view.nat_type is NatType.PORT_RESTRICTED


def test_lan_peers_seeing_our_own_address() -> None:
    sense = lab(None, local=("127.0.0.1", 4121)).sense
    sense.observe(b"r" * 20, ("127.0.0.1", 4121), 1000.0)
    view = sense.view
    assert view.nat_type is NatType.FULL_CONE and not view.public and view.external == ()


def test_ipv6_without_nat_is_public_when_no_ipv4_evidence() -> None:
    local = ("2001:db8::5", 4121)
    sense = lab(None, local=local).sense
    sense.observe(b"r" * 20, local, 1000.0)
    assert sense.view.nat_type is NatType.FULL_CONE and sense.view.public
    assert sense.view.external_v6 == (local,) and sense.view.external_v4 == ()


def test_non_wan_observations_are_not_external() -> None:
    sense = lab(None).sense
    sense.observe(b"r" * 20, ("100.64.3.4", 1234), 1000.0)  # inside a carrier NAT
    view = sense.view
    assert view.nat_type is NatType.PORT_RESTRICTED and view.external == ()


def test_upnp_mapping_makes_us_direct_but_keeps_the_nats_own_type() -> None:
    the_lab = lab(Nat("198.51.99.41", 4121, "eim", "apdf"), COTURN)
    the_lab.run(10)
    the_lab.sense.set_upnp(("198.51.99.41", 4122), the_lab.now)
    view = the_lab.sense.view
    assert view.nat_type is NatType.PORT_RESTRICTED  # the node publishes 1 while mapped
    assert view.direct and not view.public and view.upnp == ("198.51.99.41", 4122)
    assert "UPnP maps 198.51.99.41:4122" in view.evidence


def test_upnp_behind_symmetric_only_the_mapping_is_direct() -> None:
    sense = lab(None).sense
    for i, port in enumerate((50001, 50008, 50015)):
        sense.observe(bytes([i]) * 20, ("198.51.100.31", port), 1000.0)
    sense.set_upnp(("198.51.100.31", 4121), 1001.0)
    view = sense.view
    assert view.nat_type is NatType.SYMMETRIC and view.external == () and view.direct


def test_upnp_on_a_private_gateway_address_is_no_evidence() -> None:
    sense = lab(None).sense
    sense.set_upnp(("192.168.1.1", 4121), 1000.0)  # a NAT behind a NAT
    assert sense.view.nat_type is NatType.UNKNOWN and not sense.view.direct
