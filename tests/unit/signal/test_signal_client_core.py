"""Registrations with hubs on a virtual clock: reg/ack, the 45 s refresh with pings, incoming."""

from __future__ import annotations

import cbor2

from a2al_mcp.config import SignalConfig
from a2al_mcp.signal import frames
from a2al_mcp.signal.client_core import SignalClient
from a2al_mcp.signal.effects import (
    Connect,
    Disconnect,
    IncomingCall,
    Ping,
    Registered,
    SendFrame,
)
from a2al_mcp.signal.frames import Frame
from a2al_mcp.signal.rooms import room_id
from a2al_mcp.testing.clock import FakeClock

H1, H2, H3 = "ws://127.0.0.1:4121", "ws://127.0.0.2:4121", "ws://127.0.0.3:4121"
NODE = "a022E36CA42e1F558D09E2F1A9FF42E8dD4805c16F"
AGENT = "a0267183b0ecB1a4Cf41f11F5BcB631dC41CE07Ad6"
CALLER = "a08725FcbB74E85FFaa91c3f770978bDC7202A2e13"
# a2ald 0.3.5's reg for NODE, as captured (nat-testbed samples)
REG_NODE = bytes.fromhex(
    "a26174637265676161782a613032324533364341343265314635353844303945324631413946463432453864"
    "443438303563313646"
)
ACK = bytes.fromhex("a161746361636b")


def reg(aid: str) -> bytes:
    return frames.encode(Frame("reg", a=aid))


def test_register_refresh_every_45_s_with_counting_pings() -> None:
    clock = FakeClock()
    client = SignalClient(SignalConfig(hubs=(H1, H2, H3)))
    assert client.hubs == (H1, H2)  # max_hubs = 2
    assert client.set_identities([NODE], clock.monotonic()) == []
    assert client.start(clock.monotonic()) == [Connect(H1), Connect(H2)]
    assert client.next_deadline() is None  # both connecting
    assert client.connected(H1, clock.monotonic()) == [SendFrame(H1, REG_NODE)]
    assert client.received(H1, ACK, clock.monotonic()) == [Registered(H1, 1)]
    assert client.registered_hubs() == (H1,)
    # an agent registered later is sent at once (as a2ald does)
    assert client.set_identities([NODE, AGENT], clock.monotonic()) == [SendFrame(H1, reg(AGENT))]
    assert client.next_deadline() == clock.monotonic() + 45.0
    clock.advance(44.9)
    assert client.tick(clock.monotonic()) == []
    clock.advance(0.1)
    assert client.tick(clock.monotonic()) == [
        SendFrame(H1, REG_NODE), SendFrame(H1, reg(AGENT)), Ping(H1, b"1")]  # fmt: skip
    clock.advance(45.0)
    assert client.tick(clock.monotonic())[-1] == Ping(H1, b"2")


def test_reconnect_backoff_doubles_and_resets() -> None:
    clock = FakeClock()
    client = SignalClient(SignalConfig(reconnect_initial_s=1.0, reconnect_max_s=4.0), hubs=[H1])
    client.set_identities([NODE], clock.monotonic())
    client.start(clock.monotonic())
    waits = []
    for _ in range(4):
        assert client.disconnected(H1, clock.monotonic()) == []
        deadline = client.next_deadline()
        assert deadline is not None
        waits.append(deadline - clock.monotonic())
        clock.advance(waits[-1])
        assert client.tick(clock.monotonic()) == [Connect(H1)]
    assert waits == [1.0, 2.0, 4.0, 4.0]
    client.connected(H1, clock.monotonic())
    client.disconnected(H1, clock.monotonic())
    assert client.next_deadline() == clock.monotonic() + 1.0
    assert client.stats.disconnects == 5


def test_incoming_is_reported_once_per_room() -> None:
    clock = FakeClock()
    client = SignalClient(SignalConfig(), hubs=[H1, H2])
    client.set_identities([AGENT], clock.monotonic())
    client.start(clock.monotonic())
    client.connected(H1, clock.monotonic())
    client.connected(H2, clock.monotonic())
    room = room_id(CALLER, AGENT)
    push = frames.encode(Frame("incoming", r=room, f=CALLER, g=AGENT))
    assert client.received(H2, push, clock.monotonic()) == [IncomingCall(H2, room, CALLER, AGENT)]
    assert client.received(H1, push, clock.monotonic()) == []
    assert client.stats.incoming_duplicates == 1
    # the same room through the same hub is a new call: a caller's retry (the room id is
    # fixed per pair of AIDs), answered even a moment later
    clock.advance(0.5)
    assert client.received(H2, push, clock.monotonic()) == [IncomingCall(H2, room, CALLER, AGENT)]
    # through another hub after the window: a new call too
    clock.advance(10.0)
    assert client.received(H1, push, clock.monotonic()) == [IncomingCall(H1, room, CALLER, AGENT)]
    assert client.stats.incoming_duplicates == 1
    # the target as the caller spelled it (any case) is ours
    lower = frames.encode(Frame("incoming", r="other", f=CALLER, g=AGENT.lower()))
    assert client.received(H1, lower, clock.monotonic()) == [
        IncomingCall(H1, "other", CALLER, AGENT.lower())]  # fmt: skip
    # not for one of ours, malformed, unknown: ignored and counted
    other = frames.encode(Frame("incoming", r=room, f=CALLER, g=NODE))
    for payload in (other, b"\xff", cbor2.dumps({"t": "nope"}), frames.encode(Frame("eoc"))):
        assert client.received(H1, payload, clock.monotonic()) == []
    assert client.stats.frames_ignored == 4
    clock.advance(60.0)
    client.tick(clock.monotonic())
    assert client.received(H1, push, clock.monotonic()) == [IncomingCall(H1, room, CALLER, AGENT)]


def test_removing_an_identity_reopens_the_sockets() -> None:
    clock = FakeClock()
    client = SignalClient(SignalConfig(), hubs=[H1])
    client.set_identities([NODE, AGENT], clock.monotonic())
    client.start(clock.monotonic())
    client.connected(H1, clock.monotonic())
    assert client.set_identities([NODE], clock.monotonic()) == [Disconnect(H1), Connect(H1)]
    assert client.connected(H1, clock.monotonic()) == [SendFrame(H1, REG_NODE)]
