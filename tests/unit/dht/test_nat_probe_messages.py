"""NAT_PROBE_REQ/ECHO through DhtCore: arrivals become events for the NAT layer (nothing is
sent on its own), and the two commands put the exact messages on the wire."""

from __future__ import annotations

from a2al_mcp._random import SeededRng
from a2al_mcp.dht import events as ev
from a2al_mcp.dht.core import DhtCore
from a2al_mcp.identity import Identity
from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.testing.clock import FakeClock

T0 = FakeClock().monotonic()
PEER = ("198.51.100.7", 4121)


def make_core() -> DhtCore:
    return DhtCore(Identity.generate(SeededRng(1)), rng=SeededRng(2),
                   wall_offset=FakeClock().wall_offset)  # fmt: skip


def drain(core: DhtCore) -> list[ev.DhtEvent]:
    out = []
    while (e := core.next_event()) is not None:
        out.append(e)
    return out


def test_probe_request_becomes_an_event_and_nothing_is_sent() -> None:
    core = make_core()
    peer = Identity.generate(SeededRng(50))
    body = dm.NatProbeReq(token=b"t" * 8, claimed_addr=("198.51.100.7", 5555))
    core.receive_datagram(dm.encode_message(body, tx_id=b"x" * 20, key=peer.key), PEER, T0)
    assert drain(core) == [ev.NatProbeRequested(sender=peer.aid, addr=PEER, token=b"t" * 8,
                                                claimed=("198.51.100.7", 5555))]  # fmt: skip
    assert core.datagrams_to_send(T0) == []
    assert core.statistics().dropped_unsolicited == 0
    assert core.peer_count() == 0  # a probe does not put its sender in the routing table


def test_probe_echo_becomes_an_event() -> None:
    core = make_core()
    peer = Identity.generate(SeededRng(51))
    data = dm.encode_message(dm.NatProbeEcho(token=b"k" * 8), tx_id=b"y" * 20, key=peer.key)
    core.receive_datagram(data, PEER, T0)
    assert drain(core) == [ev.NatProbeEchoed(sender=peer.aid, addr=PEER, token=b"k" * 8)]
    assert core.datagrams_to_send(T0) == []


def test_send_commands_put_signed_probe_messages_on_the_wire() -> None:
    core = make_core()
    core.send_nat_probe(PEER, b"a" * 8, ("203.0.113.9", 4121), T0)
    core.send_nat_echo(("203.0.113.9", 4121), b"b" * 8, T0)
    (req, to_peer), (echo, to_claimed) = core.datagrams_to_send(T0)
    req_msg, echo_msg = dm.decode_message(req), dm.decode_message(echo)
    req_msg.verify()
    echo_msg.verify()
    assert to_peer == PEER and req_msg.body == dm.NatProbeReq(
        token=b"a" * 8, claimed_addr=("203.0.113.9", 4121)
    )
    assert to_claimed == ("203.0.113.9", 4121) and echo_msg.body == dm.NatProbeEcho(token=b"b" * 8)
    assert req_msg.sender == core.aid and req_msg.tx_id != echo_msg.tx_id
    assert core.get_timer() is None  # no response is awaited
