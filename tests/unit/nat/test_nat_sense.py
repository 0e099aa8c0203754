"""NatSense as a driver sees it: effects on view changes, timers, network changes, UPnP."""

from __future__ import annotations

from a2al_mcp._random import SeededRng
from a2al_mcp.nat import NatSense, NatSenseConfig, NatType, SendStun, ViewChanged
from tests.unit.nat.natlab import Lab, Nat, StunServer

WAN = ("198.51.100.21", 4121)


def changes(effects) -> list[ViewChanged]:
    return [e for e in effects if isinstance(e, ViewChanged)]


def test_view_changes_are_effects_once_each() -> None:
    sense = NatSense(NatSenseConfig(), rng=SeededRng(1))
    sense.set_local([("10.1.0.2", 4121)], 0.0)
    sense.start(0.0)
    assert sense.effects() == []  # no STUN server configured: nothing is sent anywhere
    sense.observe(b"a" * 20, WAN, 1.0)
    [first] = changes(sense.effects())
    assert first.previous.nat_type is NatType.UNKNOWN
    assert first.view.nat_type is NatType.PORT_RESTRICTED and first.view.external == (WAN,)
    sense.observe(b"b" * 20, WAN, 2.0)  # evidence grows, the record would not change
    assert changes(sense.effects()) == []
    sense.observe(b"a" * 20, WAN, 3.0)  # a repeat
    assert sense.effects() == []
    sense.set_upnp(("198.51.100.21", 4122), 4.0)
    [upnp] = changes(sense.effects())
    assert upnp.view.upnp == ("198.51.100.21", 4122) and upnp.view.direct
    assert "UPnP maps 198.51.100.21:4122" in upnp.view.evidence
    sense.set_upnp(None, 5.0)
    [lost] = changes(sense.effects())
    assert lost.view.upnp is None and not lost.view.direct


def test_stun_only_to_configured_servers_and_refreshed() -> None:
    server = StunServer("203.0.113.3")
    cfg = NatSenseConfig(stun_servers=(server.primary,))
    sense = NatSense(cfg, rng=SeededRng(1))
    lab = Lab(sense, Nat(WAN[0], 4121, "eim", "apdf"), [server], now=0.0)
    sense.set_local([("10.1.0.2", 4121)], 0.0)
    sense.start(0.0)
    lab.run(10)
    assert sense.view.stun_reflected == (WAN,) and sense.view.nat_type is NatType.PORT_RESTRICTED
    assert [c.view.nat_type for c in changes(lab.other)] == [NatType.PORT_RESTRICTED]
    assert len(server.requests) == 1 and lab.lost == 0
    assert sense.get_timer() == cfg.stun_refresh_s
    lab.run(cfg.stun_refresh_s)
    assert len(server.requests) == 2  # test I again after stun_refresh_s
    # the server goes silent: after its retries the reflected address is forgotten
    lab.servers = []
    lab.run(cfg.stun_refresh_s)
    assert sense.view.stun_reflected == () and sense.view.nat_type is NatType.UNKNOWN
    assert sense.statistics().stun.timeouts == 1 and lab.lost == cfg.stun_tries


def test_new_local_address_is_a_network_change() -> None:
    server = StunServer("203.0.113.3", "203.0.113.4")
    cfg = NatSenseConfig(stun_servers=(server.primary,))
    sense = NatSense(cfg, rng=SeededRng(1))
    lab = Lab(sense, Nat(WAN[0], 4121, "eim", "eif"), [server], now=0.0)
    sense.set_local([("10.1.0.2", 4121)], 0.0)
    sense.start(0.0)
    for i in range(3):
        sense.observe(bytes([i]) * 20, WAN, 0.0)
    lab.run(10)
    assert sense.view.nat_type is NatType.FULL_CONE
    # new Wi-Fi: another LAN address, another NAT of another kind
    lab.nat = Nat("198.51.100.77", 4121, "eim", "apdf")
    sense.set_local([("192.168.5.20", 4121)], lab.now)
    lab.run(10)
    view = sense.view
    assert view.external == (("198.51.100.77", 4121),)  # old votes and answers forgotten
    assert view.nat_type is NatType.PORT_RESTRICTED
    stats = sense.statistics()
    assert stats.network_changes == 1 and stats.behaviour_runs == 2
    last = changes(lab.other)[-1].view
    assert (last.nat_type, last.external) == (view.nat_type, view.external)


def test_a_new_consensus_ip_reruns_stun_at_most_every_rerun_interval() -> None:
    server = StunServer("203.0.113.3")
    cfg = NatSenseConfig(stun_servers=(server.primary,), min_observed_peers=1)
    sense = NatSense(cfg, rng=SeededRng(1))
    lab = Lab(sense, None, [server], now=0.0, local=("10.1.0.2", 4121))
    sense.set_local([("10.1.0.2", 4121)], 0.0)
    sense.start(0.0)
    lab.run(1)
    sense.observe(b"a" * 20, WAN, lab.now)
    for i in range(5):  # the whole network now sees another address
        sense.observe(bytes([i]) * 20, ("198.51.100.88", 4121), lab.now)
    lab.pump()
    assert sense.statistics().network_changes == 1 and len(server.requests) == 2
    for i in range(10):  # and back at once: no second rerun yet
        sense.observe(bytes([i]) * 20, WAN, lab.now + 1)
    lab.pump()
    assert sense.statistics().network_changes == 1


def test_timer_is_none_when_idle_and_never_in_the_past() -> None:
    sense = NatSense(NatSenseConfig(), rng=SeededRng(1))
    assert sense.get_timer() is None
    sense.start(0.0)
    assert sense.get_timer() is None  # no servers, no votes: nothing to wake for
    sense.observe(b"a" * 20, WAN, 5.0)
    timer = sense.get_timer()
    assert timer is not None and timer > 5.0
    sense.handle_timer(6.0)  # early calls are harmless
    assert sense.get_timer() == timer


def test_stun_datagrams_that_are_not_ours_change_nothing() -> None:
    sense = NatSense(NatSenseConfig(stun_servers=(("203.0.113.3", 3478),)), rng=SeededRng(1))
    sense.start(0.0)
    [send] = sense.effects()
    assert isinstance(send, SendStun) and send.addr == ("203.0.113.3", 3478)
    sense.stun_datagram(b"\x01\x01\x00\x00\x21\x12\xa4\x42" + b"\x00" * 12, send.addr, 0.1)
    sense.stun_datagram(b"garbage", send.addr, 0.1)
    stats = sense.statistics().stun
    assert stats.unmatched == 1 and stats.garbage == 1 and sense.view.nat_type is NatType.UNKNOWN
