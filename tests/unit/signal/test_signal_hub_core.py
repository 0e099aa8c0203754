"""The hub's state machine on a virtual clock: exact effects, limits, hostile input."""

from __future__ import annotations

import cbor2
import pytest

from a2al_mcp.config import SignalConfig
from a2al_mcp.signal import frames
from a2al_mcp.signal.effects import Abort, AcceptUpgrade, Close, RejectUpgrade, Send
from a2al_mcp.signal.frames import Frame
from a2al_mcp.signal.hub_core import HubCore
from a2al_mcp.signal.rooms import ice_target, room_id
from a2al_mcp.testing.clock import FakeClock

CALLER = "a08725FcbB74E85FFaa91c3f770978bDC7202A2e13"
CALLEE = "A0267183b0ecB1a4Cf41f11F5BcB631dC41CE07Ad6"
ROOM = room_id(CALLER, CALLEE)
ACK = bytes.fromhex("a161746361636b")
REG = frames.encode(Frame("reg", a=CALLEE))
CRED = frames.encode(Frame("cred", u="ufrag", p="password"))
CAND = frames.encode(Frame("cand", c="1725900834 1 udp 2130706431 10.4.0.2 38326 typ host"))


def hub(**kw: object) -> tuple[HubCore, FakeClock]:
    return HubCore(SignalConfig(**kw)), FakeClock()  # type: ignore[arg-type]


def opened(core: HubCore, clock: FakeClock, target: str, ip: str = "127.0.0.1") -> int:
    conn = core.connect(ip, clock.monotonic())
    assert conn is not None
    assert core.request(conn, target, clock.monotonic())[0] == AcceptUpgrade(conn)
    return conn


def test_register_then_call_pairs_and_relays_in_order() -> None:
    core, clock = hub()
    now = clock.monotonic()
    callee = opened(core, clock, "/signal")
    assert core.message(callee, REG, now) == [Send(callee, ACK)]
    assert core.registered(CALLEE.lower()) and core.registrations == 1

    caller = core.connect("10.0.0.2", now)
    assert caller is not None
    target = ice_target(ROOM, caller=CALLER, target=CALLEE)
    incoming = frames.encode(Frame("incoming", r=ROOM, f=CALLER, g=CALLEE))
    assert core.request(caller, target, now) == [AcceptUpgrade(caller), Send(callee, incoming)]
    # what the caller sends before the callee joins is kept, then relayed in order
    assert core.message(caller, CRED, now) == []
    assert core.message(caller, CAND, now) == []
    joined = core.connect("10.0.0.3", now)
    assert joined is not None
    assert core.request(joined, ice_target(ROOM), now) == [
        AcceptUpgrade(joined), Send(joined, CRED), Send(joined, CAND)]  # fmt: skip
    assert core.rooms == 1 and core.stats.sessions_total == 1
    assert core.message(joined, CRED, now) == [Send(caller, CRED)]
    assert core.message(caller, b"\xa1\x61t\x63eoc", now) == [Send(joined, b"\xa1\x61t\x63eoc")]
    assert core.stats.frames_relayed == 4
    # one side leaves: the other is closed, the room is gone
    assert core.closed(caller, now) == [Close(joined, 1000, "partner left")]
    assert core.rooms == 0
    assert core.closed(joined, now) == []
    assert core.sockets == 1


def test_noagent_when_the_target_is_not_registered() -> None:
    core, clock = hub()
    caller = core.connect("127.0.0.1", clock.monotonic())
    assert caller is not None
    effects = core.request(caller, ice_target(ROOM, caller=CALLER, target=CALLEE), 0.0)
    assert effects == [AcceptUpgrade(caller), Send(caller, frames.encode(Frame("noagent"))),
                       Close(caller, 1000, "noagent")]  # fmt: skip
    assert core.stats.noagent_total == 1 and core.rooms == 0


@pytest.mark.parametrize(
    ("target", "status"),
    [("/", 404), ("/other", 404), ("/ice", 400), ("/ice?room=", 400),
     ("/ice?room=a&target=b", 400), ("/ice?room=a&room=b", 400), ("/ice?room=" + "x" * 200, 400),
     ("/signal" + "?" + "a" * 2000, 400)],
)  # fmt: skip
def test_bad_requests_are_refused(target: str, status: int) -> None:
    core, clock = hub()
    conn = core.connect("127.0.0.1", clock.monotonic())
    assert conn is not None
    (effect,) = core.request(conn, target, clock.monotonic())
    assert isinstance(effect, RejectUpgrade) and effect.status == status
    assert core.stats.upgrades_refused == 1
    assert core.message(conn, REG, clock.monotonic()) == []  # nothing more from it


def test_a_room_that_never_pairs_is_closed_at_the_pairing_timeout() -> None:
    core, clock = hub(hub_pair_timeout_s=30.0)
    lonely = opened(core, clock, ice_target(ROOM))
    assert core.next_deadline() == clock.monotonic() + 30.0
    clock.advance(29.9)
    assert core.message(lonely, CRED, clock.monotonic()) == []  # messages extend nothing
    assert core.tick(clock.monotonic()) == []
    clock.advance(0.1)
    assert core.tick(clock.monotonic()) == [Close(lonely, 1001, "no partner")]
    assert core.stats.rooms_unpaired == 1 and core.rooms == 0
    # a newcomer to that room waits afresh instead of meeting the closed socket
    newcomer = opened(core, clock, ice_target(ROOM))
    assert core.rooms == 1 and core.message(newcomer, CRED, clock.monotonic()) == []


def test_paired_room_lifetime() -> None:
    core, clock = hub(hub_room_lifetime_s=300.0)
    a = opened(core, clock, ice_target(ROOM))
    b = opened(core, clock, ice_target(ROOM))
    clock.advance(300.0)
    assert core.tick(clock.monotonic()) == [Close(a, 1001, "room lifetime"),
                                            Close(b, 1000, "partner left")]  # fmt: skip
    assert core.stats.rooms_expired == 1 and core.rooms == 0


def test_glare_pairs_whoever_comes_first_even_two_callers() -> None:
    """nat-testbed D15: two nodes calling each other share the room; the hub does not care."""
    core, clock = hub()
    now = clock.monotonic()
    for aid in (CALLER, CALLEE):
        s = opened(core, clock, "/signal")
        assert core.message(s, frames.encode(Frame("reg", a=aid)), now) == [Send(s, ACK)]
    one = core.connect("10.0.0.2", now)
    two = core.connect("10.0.0.3", now)
    assert one is not None and two is not None
    core.request(one, ice_target(ROOM, caller=CALLER, target=CALLEE), now)
    core.request(two, ice_target(ROOM, caller=CALLEE, target=CALLER), now)
    init = frames.encode(Frame("punch-init", addrs=("198.51.100.21:4121",), ts=1, nt=1))
    assert core.message(one, init, now) == [Send(two, init)]


def test_registration_refresh_expiry_and_takeover() -> None:
    core, clock = hub(hub_registration_ttl_s=120.0, hub_idle_timeout_s=60.0)
    first = opened(core, clock, "/signal")
    core.message(first, REG, clock.monotonic())
    clock.advance(45.0)
    assert core.message(first, REG, clock.monotonic()) == [Send(first, ACK)]  # refresh
    second = opened(core, clock, "/signal")
    assert core.message(second, REG, clock.monotonic()) == [Send(second, ACK)]  # takeover
    # the old socket closing no longer unregisters the AID
    assert core.closed(first, clock.monotonic()) == []
    assert core.registered(CALLEE)
    # pings keep the socket, but only a reg keeps the registration
    for _ in range(3):
        clock.advance(50.0)
        core.activity(second, clock.monotonic())
        core.tick(clock.monotonic())
    assert not core.registered(CALLEE) and core.stats.registrations_expired == 1
    clock.advance(60.0)
    assert core.tick(clock.monotonic()) == [Close(second, 1001, "idle")]
    assert core.stats.idle_closed == 1


def test_registration_limits() -> None:
    core, clock = hub(hub_max_registrations=3, hub_max_registrations_per_socket=2)
    now = clock.monotonic()
    s1 = opened(core, clock, "/signal")
    s2 = opened(core, clock, "/signal")
    acks = [core.message(s1, frames.encode(Frame("reg", a=f"aid{i}")), now) for i in range(3)]
    assert acks == [[Send(s1, ACK)], [Send(s1, ACK)], []]
    assert core.message(s2, frames.encode(Frame("reg", a="aid9")), now) == [Send(s2, ACK)]
    assert core.message(s2, frames.encode(Frame("reg", a="aid8")), now) == []
    assert core.stats.registrations_refused == 2 and core.registrations == 3
    # an empty or other frame on /signal is ignored, as a2ald ignores it
    assert core.message(s2, frames.encode(Frame("reg")), now) == []
    assert core.message(s2, frames.encode(Frame("dht", d=b"x")), now) == []


def test_hostile_frames_are_counted_not_relayed_and_close_at_the_limit() -> None:
    core, clock = hub(hub_max_bad_frames=3)
    now = clock.monotonic()
    a = opened(core, clock, ice_target(ROOM))
    b = opened(core, clock, ice_target(ROOM))
    bad = [b"\xff\x00", cbor2.dumps({"t": "hello"}), cbor2.dumps([1])]
    for payload in bad:
        assert core.message(a, payload, now) == []
    assert (core.stats.frames_malformed, core.stats.frames_unknown) == (2, 1)
    assert core.bad_message(a, now, oversized=False) == [
        Close(a, 1008, "too many bad frames"), Close(b, 1000, "partner left")]  # fmt: skip


def test_oversized_frames_close_the_socket() -> None:
    core, clock = hub(max_frame_bytes=1024)
    now = clock.monotonic()
    s = opened(core, clock, "/signal")
    big = frames.encode(Frame("cand", c="x" * 2000))
    assert core.message(s, big, now) == [Close(s, 1009, "frame too large")]
    assert core.stats.frames_oversized == 1
    t = opened(core, clock, "/signal")
    assert core.bad_message(t, now, oversized=True) == [Close(t, 1009, "frame too large")]


def test_waiting_socket_queue_is_bounded() -> None:
    core, clock = hub(hub_room_queue_bytes=100)
    s = opened(core, clock, ice_target(ROOM))
    assert core.message(s, CAND, clock.monotonic()) == []
    assert core.message(s, CAND, clock.monotonic()) == [
        Close(s, 1008, "too much before a partner came")]  # fmt: skip
    assert core.stats.queue_overflows == 1 and core.rooms == 0


def test_thousand_sockets_from_one_address_are_refused_and_the_hub_keeps_serving() -> None:
    core, clock = hub(hub_max_sockets=64, hub_max_sockets_per_ip=16)
    now = clock.monotonic()
    accepted = [c for c in (core.connect("192.0.2.7", now) for _ in range(1000)) if c]
    assert len(accepted) == 16 and core.stats.sockets_refused_per_ip == 984
    # the half-open ones are dropped at the upgrade timeout
    clock.advance(10.0)
    assert core.tick(clock.monotonic()) == [Abort(c) for c in accepted]
    assert core.stats.upgrade_timeouts == 16
    for c in accepted:
        core.closed(c, clock.monotonic())
    assert core.sockets == 0
    # others still get through, up to the total
    others = [core.connect(f"198.51.100.{i}", now) for i in range(70)]
    assert sum(c is not None for c in others) == 64 and core.stats.sockets_refused == 6
    callee = others[0]
    assert callee is not None
    core.request(callee, "/signal", clock.monotonic())
    assert core.message(callee, REG, clock.monotonic()) == [Send(callee, ACK)]


def test_room_limit() -> None:
    core, clock = hub(hub_max_rooms=2)
    opened(core, clock, ice_target("r1"))
    opened(core, clock, ice_target("r2"))
    conn = core.connect("127.0.0.1", clock.monotonic())
    assert conn is not None
    assert core.request(conn, ice_target("r3"), clock.monotonic()) == [
        RejectUpgrade(conn, 503, "too many rooms")]  # fmt: skip
    # joining an existing waiting room is still possible
    opened(core, clock, ice_target("r1"))
    assert core.rooms == 2 and core.stats.rooms_refused == 1


def test_next_deadline_is_the_earliest_timer() -> None:
    core, clock = hub()
    assert core.next_deadline() is None
    conn = core.connect("127.0.0.1", clock.monotonic())
    assert core.next_deadline() == clock.monotonic() + 10.0
    assert conn is not None
    core.request(conn, "/signal", clock.monotonic())
    assert core.next_deadline() == clock.monotonic() + 60.0
    core.message(conn, REG, clock.monotonic())
    assert core.next_deadline() == clock.monotonic() + 60.0
