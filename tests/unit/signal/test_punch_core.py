"""PunchAttempt (sans-I/O): exact effects and deadlines on a virtual clock, both roles, glare,
the symmetric spray, timeouts, and frames that do not fit."""

from __future__ import annotations

import pytest

from a2al_mcp.signal.frames import Frame
from a2al_mcp.signal.punch_core import (
    Cancel,
    Dial,
    ExpectAccept,
    Fail,
    Finish,
    FrameIn,
    Malformed,
    PathUp,
    PunchAttempt,
    PunchEffect,
    PunchLimits,
    SendFrame,
    SendProbe,
    Start,
    Tick,
    fire_targets,
    format_addr,
    parse_addr,
)

T0 = 1000.0
WALL = 1_796_224_562_332
OURS = (("198.51.100.21", 4121),)
THEIRS = (("198.51.100.22", 4121),)
PEER = ("198.51.100.22", 4121)
LIMITS = PunchLimits(probe_repeats=2, probe_interval_s=0.25)
ACCEPT_FOR = 8.0 + 2 * (6.0 + 1.5 + 2.5)


def _init(ts: int = WALL, addrs: tuple[str, ...] = ("198.51.100.22:4121",), nt: int = 1) -> Frame:
    return Frame("punch-init", addrs=addrs, ts=ts, nt=nt)


def _ack(ts: int = WALL, addrs: tuple[str, ...] = ("198.51.100.22:4121",), nt: int = 1) -> Frame:
    return Frame("punch-ack", addrs=addrs, ts=ts, nt=nt)


GO = Frame("punch-go")


def _fire(targets: tuple[tuple[str, int], ...] = (PEER,)) -> list[PunchEffect]:
    return [*(SendProbe(a) for a in targets), *(Dial(a, 2.5) for a in targets)]


def _caller() -> PunchAttempt:
    return PunchAttempt(initiator=True, local_addrs=OURS, nat_type=1, limits=LIMITS)


def _callee() -> PunchAttempt:
    return PunchAttempt(initiator=False, local_addrs=OURS, nat_type=3, limits=LIMITS)


# ---- the caller


def test_caller_init_ack_go_fire_finish() -> None:
    p = _caller()
    assert p.advance(Start(T0, WALL)) == [
        SendFrame(Frame("punch-init", addrs=("198.51.100.21:4121",), ts=WALL, nt=1))
    ]
    assert p.next_deadline() == T0 + 8.0
    # the ack 40 ms later: RTT 40 ms, punch-go at once, fire 20 ms later
    assert p.advance(FrameIn(_ack(), T0 + 0.04)) == [
        ExpectAccept(T0 + 0.04 + ACCEPT_FOR),
        SendFrame(GO),
    ]
    assert p.next_deadline() == pytest.approx(T0 + 0.06)
    assert p.advance(Tick(T0 + 0.05)) == []
    assert p.advance(Tick(T0 + 0.06)) == _fire()
    assert p.next_deadline() == pytest.approx(T0 + 0.31)  # the second probe
    assert p.advance(Tick(T0 + 0.31)) == [SendProbe(PEER)]
    assert p.next_deadline() == pytest.approx(T0 + 0.06 + 2.5)  # no more probes: the window
    (finish,) = p.advance(PathUp(PEER, T0 + 0.4))
    assert isinstance(finish, Finish) and (finish.addr, finish.round) == (PEER, 1)
    assert finish.rtt_s == pytest.approx(0.04)
    assert p.done and p.next_deadline() is None
    assert p.advance(FrameIn(GO, T0 + 0.5)) == []
    assert p.stats.unexpected_frames == 1


def test_caller_two_rounds_then_fails() -> None:
    p = _caller()
    p.advance(Start(T0, WALL))
    p.advance(FrameIn(_ack(), T0))  # RTT 0: fires with the punch-go
    assert p.state == "firing"
    p.advance(Tick(T0 + 0.25))
    assert p.advance(Tick(T0 + 2.5)) == []  # window over: the gap
    assert p.state == "gap" and p.next_deadline() == T0 + 4.0
    assert p.advance(Tick(T0 + 4.0)) == [SendFrame(GO), *_fire()]  # round 2
    p.advance(Tick(T0 + 4.25))
    assert p.advance(Tick(T0 + 6.5)) == [Fail("no path after 2 round(s)")]
    assert p.done


def test_caller_handshake_timeout_and_ts_mismatch_counted() -> None:
    p = _caller()
    p.advance(Start(T0, WALL))
    assert p.advance(Tick(T0 + 7.9)) == []
    assert p.advance(Tick(T0 + 8.0)) == [Fail("punch handshake timed out (await-ack)")]
    q = _caller()
    q.advance(Start(T0, WALL))
    assert q.advance(FrameIn(_ack(ts=WALL - 5), T0 + 0.01))[1] == SendFrame(GO)
    assert q.stats.ts_mismatch == 1


def test_no_external_address_sends_nothing() -> None:
    for initiator in (True, False):
        p = PunchAttempt(initiator=initiator, local_addrs=(), nat_type=1)
        assert p.advance(Start(T0, WALL)) == [
            Fail("no external address of our main socket to offer")
        ]


def test_cancel_ends_the_attempt() -> None:
    p = _caller()
    p.advance(Start(T0, WALL))
    assert p.advance(Cancel(T0 + 1)) == [Fail("cancelled")]
    assert p.advance(FrameIn(_ack(), T0 + 2)) == []


# ---- the callee


def test_callee_acks_with_echoed_ts_and_fires_on_go() -> None:
    p = _callee()
    assert p.advance(Start(T0, WALL + 999)) == []
    assert p.next_deadline() == T0 + 8.0
    out = p.advance(FrameIn(_init(ts=WALL - 7), T0 + 1))
    assert out == [
        SendFrame(Frame("punch-ack", addrs=("198.51.100.21:4121",), ts=WALL - 7, nt=3)),
        ExpectAccept(T0 + 1 + ACCEPT_FOR),
    ]
    assert p.next_deadline() == T0 + 1 + 6.0
    assert p.advance(FrameIn(GO, T0 + 1.01)) == _fire()
    assert p.advance(PathUp(("198.51.100.22", 40000), T0 + 1.2)) == [
        Finish(("198.51.100.22", 40000), 1, None)
    ]


def test_callee_waits_for_each_go_and_times_out() -> None:
    p = _callee()
    p.advance(Start(T0, WALL))
    assert p.advance(Tick(T0 + 8.0)) == [Fail("punch handshake timed out (await-init)")]
    q = _callee()
    q.advance(Start(T0, WALL))
    q.advance(FrameIn(_init(), T0))
    assert q.advance(Tick(T0 + 6.0)) == [Fail("no punch-go for round 1")]
    r = _callee()
    r.advance(Start(T0, WALL))
    r.advance(FrameIn(_init(), T0))
    r.advance(FrameIn(GO, T0 + 0.1))
    assert r.advance(Tick(T0 + 0.35)) == [SendProbe(PEER)]
    assert r.advance(Tick(T0 + 2.6)) == []
    assert r.state == "await-go" and r.next_deadline() == pytest.approx(T0 + 2.6 + 7.5)
    assert r.advance(FrameIn(GO, T0 + 4.1)) == _fire()  # round 2
    assert r.advance(Tick(T0 + 6.6)) == [Fail("no path after 2 round(s)")]


def test_callee_go_during_the_window_starts_the_next_round() -> None:
    p = _callee()
    p.advance(Start(T0, WALL))
    p.advance(FrameIn(_init(), T0))
    p.advance(FrameIn(GO, T0))
    assert p.advance(FrameIn(GO, T0 + 1.0)) == _fire()
    assert p.advance(FrameIn(GO, T0 + 1.5)) == []  # no third round
    assert p.stats.unexpected_frames == 1


def test_unexpected_foreign_and_malformed_frames_are_counted_and_ignored() -> None:
    p = _callee()
    p.advance(Start(T0, WALL))
    assert p.advance(FrameIn(GO, T0)) == []
    assert p.advance(FrameIn(_ack(), T0)) == []
    assert p.advance(FrameIn(Frame("cand", c="1 1 udp 1 10.0.0.1 1 typ host"), T0)) == []
    assert p.advance(Malformed(T0)) == []
    p.advance(FrameIn(_init(), T0))
    assert p.advance(FrameIn(_init(), T0)) == []  # a second init
    assert (p.stats.unexpected_frames, p.stats.foreign_frames, p.stats.malformed_frames) == (
        3,
        1,
        1,
    )
    assert p.state == "await-go"


def test_bad_and_excess_partner_addresses_are_dropped() -> None:
    p = PunchAttempt(initiator=False, local_addrs=OURS, nat_type=1, limits=PunchLimits(max_addrs=2))
    p.advance(Start(T0, WALL))
    addrs = ("nonsense", "1.2.3.4:0", "1.2.3.4:5", "[2001:db8::1]:7", "1.2.3.4:5", "5.6.7.8:9")
    p.advance(FrameIn(_init(addrs=addrs), T0))
    assert p.targets == (("1.2.3.4", 5), ("2001:db8::1", 7))
    assert p.stats.bad_addrs == 3  # nonsense, port 0, the third distinct one


# ---- symmetric spray


def test_spray_when_the_partner_says_symmetric() -> None:
    p = _caller()
    p.advance(Start(T0, WALL))
    addrs = ("[2001:db8::2]:4121", "198.51.100.31:4121", "10.0.0.1:1")
    out = p.advance(FrameIn(_ack(addrs=addrs, nt=4), T0))  # RTT 0: fires with the punch-go
    assert p.targets == (
        ("198.51.100.31", 4121),
        ("198.51.100.31", 4120), ("198.51.100.31", 4122),
        ("198.51.100.31", 4119), ("198.51.100.31", 4123),
        ("198.51.100.31", 4118), ("198.51.100.31", 4124),
        ("198.51.100.31", 4117), ("198.51.100.31", 4125),
        ("198.51.100.31", 4116), ("198.51.100.31", 4126),
        ("2001:db8::2", 4121),
    )  # fmt: skip
    assert [e.addr for e in out if isinstance(e, Dial)] == list(p.targets)
    low = (("1.1.1.1", 2), ("1.1.1.1", 1), ("1.1.1.1", 3), ("1.1.1.1", 4), ("1.1.1.1", 5))
    assert fire_targets((("1.1.1.1", 2),), 4, 5) == (*low, ("1.1.1.1", 6), ("1.1.1.1", 7))
    assert fire_targets((("1.1.1.1", 2),), 2, 5) == (("1.1.1.1", 2),)


def test_spray_fires_eleven_targets() -> None:
    p = _callee()
    p.advance(Start(T0, WALL))
    p.advance(FrameIn(_init(addrs=("198.51.100.31:4121",), nt=4), T0))
    out = p.advance(FrameIn(GO, T0))
    assert len([e for e in out if isinstance(e, Dial)]) == 11
    assert len([e for e in out if isinstance(e, SendProbe)]) == 11


# ---- glare


def test_glare_with_an_a2ald_caller_we_follow_its_go() -> None:
    """Two callers in one room: a2ald drops our punch-init; we answer its one and fire on its
    punch-go as the callee would."""
    p = _caller()
    p.advance(Start(T0, WALL))
    out = p.advance(FrameIn(_init(ts=WALL + 3), T0 + 0.01))
    assert out == [
        SendFrame(Frame("punch-ack", addrs=("198.51.100.21:4121",), ts=WALL + 3, nt=1)),
        ExpectAccept(T0 + 0.01 + ACCEPT_FOR),
    ]
    assert p.state == "glare" and p.stats.glare == 1
    assert p.advance(FrameIn(GO, T0 + 0.02)) == _fire()
    assert p.advance(PathUp(PEER, T0 + 0.1)) == [Finish(PEER, 1, None)]


def _glare_pair() -> tuple[PunchAttempt, PunchAttempt, list[PunchEffect], list[PunchEffect]]:
    a = PunchAttempt(
        initiator=True, local_addrs=(("198.51.100.21", 4121),), nat_type=3, limits=LIMITS
    )
    b = PunchAttempt(
        initiator=True, local_addrs=(("198.51.100.22", 4121),), nat_type=3, limits=LIMITS
    )
    (ia,) = a.advance(Start(T0, WALL))
    (ib,) = b.advance(Start(T0, WALL + 1))
    assert isinstance(ia, SendFrame) and isinstance(ib, SendFrame)
    ack_b, _ = a.advance(FrameIn(ib.frame, T0 + 0.01))  # a answers b's init
    ack_a, _ = b.advance(FrameIn(ia.frame, T0 + 0.01))
    assert isinstance(ack_a, SendFrame) and isinstance(ack_b, SendFrame)
    out_a = a.advance(FrameIn(ack_a.frame, T0 + 0.02))
    out_b = b.advance(FrameIn(ack_b.frame, T0 + 0.02))
    return a, b, out_a, out_b


def test_glare_between_two_of_ours_the_lower_init_drives() -> None:
    a, b, out_a, out_b = _glare_pair()
    assert out_a == [SendFrame(GO)]  # ts WALL < WALL + 1: a sends punch-go, fires RTT/2 later
    assert out_b == [] and b.state == "await-go"
    assert a.next_deadline() == pytest.approx(T0 + 0.03)
    assert b.advance(FrameIn(GO, T0 + 0.03)) == _fire((("198.51.100.21", 4121),))
    assert a.advance(Tick(T0 + 0.03)) == _fire((("198.51.100.22", 4121),))


def test_glare_full_tie_fires_at_once() -> None:
    a = PunchAttempt(initiator=True, local_addrs=OURS, nat_type=1, limits=LIMITS)
    a.advance(Start(T0, WALL))
    a.advance(FrameIn(_init(addrs=("198.51.100.21:4121",)), T0))  # our own twin
    assert a.advance(FrameIn(_ack(addrs=("198.51.100.21:4121",)), T0)) == _fire(OURS)


def test_glare_without_any_answer_times_out() -> None:
    p = _caller()
    p.advance(Start(T0, WALL))
    p.advance(FrameIn(_init(), T0 + 1))
    assert p.advance(Tick(T0 + 9.0)) == [Fail("punch handshake timed out (glare)")]


# ---- addresses and limits


@pytest.mark.parametrize(
    ("text", "addr"),
    [
        ("203.0.113.12:4121", ("203.0.113.12", 4121)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
        ("2001:db8::1:443", None),
        ("host:1", None),
        ("1.2.3.4:65536", None),
        ("1.2.3.4:", None),
        ("[fe80::1%eth0]:1", None),
        ("", None),
    ],
)
def test_parse_addr(text: str, addr: tuple[str, int] | None) -> None:
    assert parse_addr(text) == addr
    if addr is not None:
        assert format_addr(addr) == text


def test_limits_refuse_nonsense() -> None:
    for bad in ({"rounds": 0}, {"fire_window_s": 0}, {"spray": 65}, {"probe_repeats": -1}):
        with pytest.raises(ValueError):
            PunchLimits(**bad)
    assert PunchLimits() == PunchLimits(8.0, 2.5, 1.5, 2, 6.0, 5, 8, 3, 0.2)
