"""The punch sessions captured from a2ald 0.3.5 in the NAT testbed, replayed against our core.

Source: ``../shared/nat-testbed/samples/hub_ws_punch_public-prc.json`` (matrix cell
public→prc, path "punch": pub2 calls prc2's agent) and ``hub_ws_relay_prc-sym.json`` (cell
prc→sym, TURN: prc calls sym2's agent). Only the punch frames are replayed (the ICE frames in
between belong to ICE); the bytes below are the WebSocket payloads as captured. Given what one
a2ald side sent, our core in the other role must write the bytes the other a2ald side wrote,
in the same order, and fire where it fired.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from a2al_mcp.signal import frames
from a2al_mcp.signal.punch_core import (
    Dial,
    ExpectAccept,
    FrameIn,
    PunchAttempt,
    SendFrame,
    SendProbe,
    Start,
    Tick,
    parse_addr,
)


@dataclass(frozen=True)
class Session:
    name: str
    init: str  # caller → callee
    ack: str  # callee → caller
    go: str  # caller → callee
    rtt_s: float  # from the capture's timestamps, caller side


SESSIONS = [
    Session(
        "public-prc",
        init="a461746a70756e63682d696e697465616464727381713230332e302e3131332e31323a343132316274"
        "731b000001a23753b49c626e7401",
        ack="a461746970756e63682d61636b65616464727381723139382e35312e3130302e32323a34313231627473"
        "1b000001a23753b49c626e7401",
        go="a161746870756e63682d676f",
        rtt_s=0.0001,
    ),
    Session(
        "prc-sym",
        init="a461746a70756e63682d696e697465616464727381723139382e35312e3130302e32313a34313231627"
        "4731b000001a2375409c3626e7401",
        ack="a461746970756e63682d61636b65616464727381723139382e35312e3130302e33323a34313231627473"
        "1b000001a2375409c3626e7402",
        go="a161746870756e63682d676f",
        rtt_s=0.0007,
    ),
]

T0 = 5000.0


def _frame(hex_: str) -> frames.Frame:
    return frames.decode(bytes.fromhex(hex_))


def _addrs(frame: frames.Frame) -> tuple[tuple[str, int], ...]:
    out = tuple(parse_addr(a) for a in frame.addrs)
    assert None not in out
    return out  # type: ignore[return-value]


@pytest.mark.parametrize("s", SESSIONS, ids=lambda s: s.name)
def test_we_as_callee_answer_a2ald_callers_frames_with_its_callees_bytes(s: Session) -> None:
    init, ack = _frame(s.init), _frame(s.ack)
    ours = PunchAttempt(initiator=False, local_addrs=_addrs(ack), nat_type=ack.nt)
    assert ours.advance(Start(T0, 1)) == []
    out = ours.advance(FrameIn(init, T0 + 0.001))
    assert isinstance(out[0], SendFrame)
    assert frames.encode(out[0].frame).hex() == s.ack  # ts echoed, our addrs and nt
    assert isinstance(out[1], ExpectAccept)
    fired = ours.advance(FrameIn(_frame(s.go), T0 + 0.002))
    caller = _addrs(init)
    assert [e.addr for e in fired if isinstance(e, Dial)] == list(caller)
    assert [e.addr for e in fired if isinstance(e, SendProbe)] == list(caller)
    assert ours.stats.unexpected_frames == ours.stats.malformed_frames == 0


@pytest.mark.parametrize("s", SESSIONS, ids=lambda s: s.name)
def test_we_as_caller_write_a2ald_callers_bytes_and_fire_after_half_the_rtt(s: Session) -> None:
    init, ack = _frame(s.init), _frame(s.ack)
    ours = PunchAttempt(initiator=True, local_addrs=_addrs(init), nat_type=init.nt)
    (first,) = ours.advance(Start(T0, init.ts))
    assert isinstance(first, SendFrame) and frames.encode(first.frame).hex() == s.init
    out = ours.advance(FrameIn(ack, T0 + s.rtt_s))
    assert isinstance(out[0], ExpectAccept)
    assert isinstance(out[1], SendFrame) and frames.encode(out[1].frame).hex() == s.go
    assert len(out) == 2  # fires RTT/2 later, not now
    assert ours.next_deadline() == pytest.approx(T0 + s.rtt_s * 1.5)
    fired = ours.advance(Tick(T0 + s.rtt_s * 1.5))
    assert [e.addr for e in fired if isinstance(e, Dial)] == list(_addrs(ack))
    assert ours.stats.ts_mismatch == 0


def test_a_whole_captured_session_between_two_of_our_cores_gives_the_captured_bytes() -> None:
    """Our caller and our callee, wired to each other, write exactly a2ald's frames."""
    s = SESSIONS[0]
    init, ack = _frame(s.init), _frame(s.ack)
    caller = PunchAttempt(initiator=True, local_addrs=_addrs(init), nat_type=init.nt)
    callee = PunchAttempt(initiator=False, local_addrs=_addrs(ack), nat_type=ack.nt)
    callee.advance(Start(T0, 0))
    wire: list[str] = []
    pending = caller.advance(Start(T0, init.ts))
    to_callee = True
    while pending:
        sent = [e.frame for e in pending if isinstance(e, SendFrame)]
        wire += [frames.encode(f).hex() for f in sent]
        target = callee if to_callee else caller
        pending = [e for f in sent for e in target.advance(FrameIn(f, T0))]
        to_callee = not to_callee
    assert wire == [s.init, s.ack, s.go]
