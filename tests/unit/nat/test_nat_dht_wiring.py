"""The NAT probe end to end through two DhtCores, wired as the node wires them: effects of
one NatSense become DhtCore commands, DhtCore events become NatSense inputs. No sockets: the
datagrams are carried by hand, the requester's source address rewritten by a NAT."""

from __future__ import annotations

from a2al_mcp._random import SeededRng
from a2al_mcp.dht import events as ev
from a2al_mcp.dht.core import DhtCore
from a2al_mcp.identity import Identity
from a2al_mcp.nat import NatSense, NatSenseConfig, NatType, SendProbeEcho, SendProbeRequest
from a2al_mcp.testing.clock import FakeClock

T0 = FakeClock().monotonic()
LAN = ("10.1.0.2", 4121)
WAN = ("198.51.100.21", 4121)  # what the NAT rewrites LAN to
PUB = ("203.0.113.11", 4121)


class Side:
    def __init__(self, seed: int, local) -> None:
        self.dht = DhtCore(Identity.generate(SeededRng(seed)), rng=SeededRng(seed + 1))
        self.nat = NatSense(NatSenseConfig(), rng=SeededRng(seed + 2))
        self.nat.set_local([local], T0)
        self.nat.start(T0)

    def drive(self, now: float) -> None:
        """The node's loop: NatSense effects -> DhtCore commands; DhtCore events -> NatSense."""
        while (e := self.dht.next_event()) is not None:
            match e:
                case ev.AddressObserved(reporter=aid, addr=addr):
                    self.nat.observe(bytes(aid), addr, now)
                case ev.NatProbeRequested(addr=src, token=token, claimed=claimed):
                    self.nat.probe_requested(src, token, claimed, now)
                case ev.NatProbeEchoed(addr=src, token=token):
                    self.nat.probe_echoed(token, src, now)
        for effect in self.nat.effects():
            match effect:
                case SendProbeRequest(peer=peer, token=token, claimed=claimed):
                    self.dht.send_nat_probe(peer, token, claimed, now)
                case SendProbeEcho(addr=addr, token=token):
                    self.dht.send_nat_echo(addr, token, now)


def carry(src: Side, dst: Side, src_addr, now: float) -> int:
    n = 0
    for data, _to in src.dht.datagrams_to_send(now):
        dst.dht.receive_datagram(data, src_addr, now)
        n += 1
    return n


def test_probe_round_trip_through_two_dht_cores() -> None:
    behind, public = Side(1, LAN), Side(2, PUB)
    for i in range(3):
        behind.nat.observe(bytes([i]) * 20, WAN, T0)
    behind.nat.offer_peers([PUB], T0)
    behind.drive(T0)
    assert carry(behind, public, WAN, T0) == 1  # NAT_PROBE_REQ, source rewritten by the NAT
    public.drive(T0)
    assert carry(public, behind, PUB, T0 + 0.1) == 1  # the echo to the claimed WAN address
    behind.drive(T0 + 0.1)
    assert behind.nat.view.reachable is True
    assert behind.nat.view.nat_type is NatType.PORT_RESTRICTED
    assert public.nat.statistics().probe.echoes_sent == 1


def test_probe_claiming_someone_else_is_not_echoed() -> None:
    liar, public = Side(3, LAN), Side(4, PUB)
    liar.dht.send_nat_probe(PUB, b"z" * 8, ("192.0.2.99", 80), T0)  # reflection attempt
    carry(liar, public, WAN, T0)
    public.drive(T0)
    assert public.dht.datagrams_to_send(T0) == []
    assert public.nat.statistics().probe.refused_mismatch == 1
