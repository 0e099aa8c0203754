"""PunchSession and punch_over_room (the driver): effects carried out on fakes of the node's
main socket and QUIC, frames through our hub over loopback WebSockets (127.0.0.1), ICE frames
interleaved (testbed D4), glare between two of ours, failure as Unreachable."""

from __future__ import annotations

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from a2al_mcp._clock import SystemClock
from a2al_mcp._types import Addr
from a2al_mcp.config import SignalConfig
from a2al_mcp.errors import Unreachable
from a2al_mcp.signal.client_service import answer
from a2al_mcp.signal.frames import Frame
from a2al_mcp.signal.punch_core import Finish, PunchAttempt, PunchLimits
from a2al_mcp.signal.punch_service import PunchSession, punch_over_room
from a2al_mcp.signal.room_socket import RoomSocket
from a2al_mcp.signal.ws_server import HubServer

pytestmark = pytest.mark.anyio

A: Addr = ("198.51.100.21", 4121)
B: Addr = ("198.51.100.22", 4121)
FAST = PunchLimits(handshake_timeout_s=2.0, fire_window_s=0.3, round_gap_s=0.1, go_wait_s=1.0)


class FakeNode:
    """The node's main socket and QUIC: probes recorded; a dial to ``reachable`` succeeds."""

    def __init__(self, reachable: Addr | None) -> None:
        self.reachable = reachable
        self.probes: list[Addr] = []
        self.dials: list[Addr] = []
        self.expecting: list[float] = []

    def send_probe(self, addr: Addr) -> None:
        self.probes.append(addr)

    async def dial(self, addr: Addr, timeout_s: float) -> bool:
        self.dials.append(addr)
        await anyio.lowlevel.checkpoint()
        return addr == self.reachable

    def expect_accept(self, until: float) -> None:
        self.expecting.append(until)


class Recording:
    """Wraps a room: what we sent, in order."""

    def __init__(self, room: RoomSocket) -> None:
        self._send = room.send
        self.sent: list[str] = []
        room.send = self.send  # type: ignore[method-assign]

    async def send(self, frame: Frame) -> None:
        self.sent.append(frame.t)
        await self._send(frame)


async def _room_pair(tg: anyio.abc.TaskGroup) -> tuple[RoomSocket, RoomSocket]:
    server = HubServer(SignalConfig())
    host, port = await tg.start(server.serve, "127.0.0.1", 0)
    url = f"ws://{host}:{port}"
    room = "3aa2217d9c7502910bac6dd1349b7d15"
    return await answer(url, room), await answer(url, room)


async def _run(
    room: RoomSocket, attempt: PunchAttempt, node: FakeNode, results: dict[str, object], key: str
) -> None:
    try:
        results[key] = await punch_over_room(
            room, attempt, sender=node, quic=node, clock=SystemClock()
        )
    except Unreachable as exc:
        results[key] = exc


async def test_caller_and_callee_over_our_hub_with_ice_frames_interleaved() -> None:
    results: dict[str, object] = {}
    caller_node, callee_node = FakeNode(reachable=B), FakeNode(reachable=None)  # reversal
    caller = PunchAttempt(initiator=True, local_addrs=(A,), nat_type=1, limits=FAST)
    callee = PunchAttempt(initiator=False, local_addrs=(B,), nat_type=3, limits=FAST)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            r1, r2 = await _room_pair(tg)
            # ICE's frames share the room (D4): counted, ignored
            await r2.send(Frame("cred", u="gNKODvtnyPYpGjCr", p="zgYZyPgPSdgLnqBcUtJiiqHRaOUtYljM"))
            async with anyio.create_task_group() as run:
                run.start_soon(_run, r1, caller, caller_node, results, "caller")
                run.start_soon(_run, r2, callee, callee_node, results, "callee")
            for room in (r1, r2):
                await room.aclose()
            tg.cancel_scope.cancel()
    assert results["caller"] == Finish(B, 1, caller.result.rtt_s)  # type: ignore[union-attr]
    assert caller_node.dials[0] == B and caller_node.probes[0] == B
    assert caller_node.expecting and callee_node.expecting
    assert (caller.stats.foreign_frames, caller.stats.malformed_frames) == (1, 0)
    # the callee's dials to the caller fail here; it ends when its window does (no accept
    # reported in this fake), after its rounds
    assert isinstance(results["callee"], Unreachable)
    assert "no punch-go for round 2" in str(results["callee"])
    assert callee_node.dials == [A]


async def test_glare_between_two_of_ours_over_our_hub() -> None:
    """Two callers paired by the hub: one of them drives, both fire, both find the path."""
    results: dict[str, object] = {}
    node_a, node_b = FakeNode(reachable=B), FakeNode(reachable=A)
    a = PunchAttempt(initiator=True, local_addrs=(A,), nat_type=3, limits=FAST)
    b = PunchAttempt(initiator=True, local_addrs=(B,), nat_type=3, limits=FAST)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            r1, r2 = await _room_pair(tg)
            rec1, rec2 = Recording(r1), Recording(r2)
            async with anyio.create_task_group() as run:
                run.start_soon(_run, r1, a, node_a, results, "a")
                run.start_soon(_run, r2, b, node_b, results, "b")
            for room in (r1, r2):
                await room.aclose()
            tg.cancel_scope.cancel()
    assert isinstance(results["a"], Finish) and results["a"].addr == B
    assert isinstance(results["b"], Finish) and results["b"].addr == A
    assert a.stats.glare == b.stats.glare == 1
    gos = [rec.sent.count("punch-go") for rec in (rec1, rec2)]
    assert sorted(gos) == [0, 1]  # exactly one side sent the punch-go
    assert rec1.sent[:2] == rec2.sent[:2] == ["punch-init", "punch-ack"]


async def test_a_session_fed_by_hand_and_path_up_from_an_accept() -> None:
    """When ICE reads the room, punch frames are handed to the session; an accepted QUIC
    connection (from a port the spray did not name) ends it."""
    sent: list[Frame] = []
    node = FakeNode(reachable=None)

    async def send_frame(frame: Frame) -> None:
        sent.append(frame)

    attempt = PunchAttempt(initiator=False, local_addrs=(B,), nat_type=3, limits=FAST)
    session = PunchSession(attempt, send_frame=send_frame, sender=node, quic=node,
                           clock=SystemClock())  # fmt: skip
    result: list[Finish] = []

    async def run() -> None:
        result.append(await session.run())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            session.received(Frame("punch-init", addrs=("198.51.100.31:4121",), ts=7, nt=4))
            while not sent:  # noqa: ASYNC110 (polls what the fake recorded)
                await anyio.sleep(0.01)
            session.malformed()  # what ICE's reader could not decode
            session.received(Frame("punch-go"))
            while len(node.dials) < 11:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            session.path_up(("198.51.100.31", 30001))
    assert sent == [Frame("punch-ack", addrs=("198.51.100.22:4121",), ts=7, nt=3)]
    assert len(set(node.dials)) == 11 and len(node.probes) >= 11
    assert result == [Finish(("198.51.100.31", 30001), 1, None)]
    assert attempt.stats.malformed_frames == 1


async def test_no_external_address_raises_unreachable_and_sends_nothing() -> None:
    sent: list[Frame] = []

    async def send_frame(frame: Frame) -> None:
        sent.append(frame)

    node = FakeNode(None)
    attempt = PunchAttempt(initiator=True, local_addrs=(), nat_type=1)
    session = PunchSession(attempt, send_frame=send_frame, sender=node, quic=None,
                           clock=SystemClock())  # fmt: skip
    with pytest.raises(Unreachable, match="no external address"):
        await session.run()
    assert sent == []
