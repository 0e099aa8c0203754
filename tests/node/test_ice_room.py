"""The ICE agent's side of a hub room (a2al_mcp.node.punch_paths: offer_ice, feed_ice,
connect_ice) with a stand-in agent: what it is given, what it sends, how it ends. The real
agent across NATs is in tests/nat/test_node_ice.py."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from a2al_mcp.errors import ConnectionClosed, DecodeError, LimitExceeded, Unreachable
from a2al_mcp.ice.selected import SelectedPair
from a2al_mcp.node.punch_paths import connect_ice, feed_ice, offer_ice
from a2al_mcp.signal.frames import Frame
from a2al_mcp.signal.room_mux import RoomMux

pytestmark = pytest.mark.anyio

CAND = "1906588769 1 udp 2130706431 10.5.0.2 46169 typ host"
PAIR = SelectedPair(("10.0.0.1", 1), ("10.0.0.2", 2), "host", "relay", 0.01)


class FakeIce:
    """What the room helpers use of an IceSession, recorded."""

    def __init__(self, *, connects: bool = True) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.creds = anyio.Event()
        self.connects = connects

    async def gather(self) -> list[str]:
        return [CAND, CAND.replace("10.5.0.2", "10.5.0.3")]

    def set_remote_credentials(self, ufrag: object, pwd: object) -> None:
        self.calls.append(("cred", (ufrag, pwd)))
        self.creds.set()

    async def add_remote_candidate(self, text: object) -> bool:
        if text == "bad":
            raise DecodeError("malformed ICE candidate")
        if text == "many":
            raise LimitExceeded("more than 64 remote ICE candidates")
        self.calls.append(("cand", text))
        return True

    async def end_of_candidates(self) -> None:
        self.calls.append(("eoc", None))

    async def connect(self) -> SelectedPair:
        await self.creds.wait()
        if not self.connects:
            raise Unreachable("ICE failed: no candidate pair worked")
        return PAIR


class ScriptedRoom:
    """A room that yields ``frames`` (then waits until ``leave`` is set, then closes) and
    records what is sent."""

    def __init__(self, frames: list[Frame]) -> None:
        self.frames = frames
        self.sent: list[Frame] = []
        self.leave = anyio.Event()
        self.closed_for_send = False

    async def receive(self) -> Frame:
        if self.frames:
            await anyio.lowlevel.checkpoint()
            return self.frames.pop(0)
        await self.leave.wait()
        raise ConnectionClosed("partner left")

    async def send(self, frame: Frame) -> None:
        if self.closed_for_send:
            raise ConnectionClosed("cannot send to the hub")
        self.sent.append(frame)


async def test_offer_sends_one_cand_per_candidate_then_eoc() -> None:
    room = ScriptedRoom([])
    await offer_ice(FakeIce(), room.send)  # type: ignore[arg-type]
    assert [f.t for f in room.sent] == ["cand", "cand", "eoc"]
    assert room.sent[0].c == CAND


async def test_feed_hands_on_what_the_room_carried_drops_bad_input_and_ends_candidates() -> None:
    room = ScriptedRoom([Frame("cred", u="abcd", p="p" * 22), Frame("cand", c="bad"),
                         Frame("cand", c=CAND), Frame("cand", c="many"), Frame("eoc")])  # fmt: skip
    room.leave.set()
    mux = RoomMux(room, punch=None, ice=True)  # type: ignore[arg-type]
    ice = FakeIce()
    async with anyio.create_task_group() as tg:
        tg.start_soon(mux.run)
        assert await feed_ice(ice, mux.ice_frames) is True  # type: ignore[arg-type]
    assert ice.calls == [("cred", ("abcd", "p" * 22)), ("cand", CAND), ("eoc", None),
                         ("eoc", None)]  # fmt: skip  # the room's eoc, then the room closed


async def test_connect_returns_the_pair_and_fails_when_the_room_closes_without_a_cred() -> None:
    room = ScriptedRoom([Frame("cred", u="abcd", p="p" * 22), Frame("cand", c=CAND)])
    mux = RoomMux(room, punch=None, ice=True)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(mux.run)
        pair = await connect_ice(FakeIce(), mux, room.send)  # type: ignore[arg-type]
        room.leave.set()
    assert pair == PAIR and [f.t for f in room.sent] == ["cand", "cand", "eoc"]

    silent = ScriptedRoom([])
    silent.leave.set()  # the partner left before any cred
    mux = RoomMux(silent, punch=None, ice=True)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(mux.run)
        with pytest.raises(Unreachable, match="before the peer's ICE credentials"):
            await connect_ice(FakeIce(), mux, silent.send)  # type: ignore[arg-type]


async def test_connect_raises_its_errors_as_themselves() -> None:
    room = ScriptedRoom([Frame("cred", u="abcd", p="p" * 22)])
    room.closed_for_send = True  # the room went away under our offer
    mux = RoomMux(room, punch=None, ice=True)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(mux.run)
        with pytest.raises(ConnectionClosed):
            await connect_ice(FakeIce(), mux, room.send)  # type: ignore[arg-type]
        room.leave.set()
    room = ScriptedRoom([Frame("cred", u="abcd", p="p" * 22)])
    mux = RoomMux(room, punch=None, ice=True)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(mux.run)
        with pytest.raises(Unreachable, match="no candidate pair"):
            await connect_ice(FakeIce(connects=False), mux, room.send)  # type: ignore[arg-type]
        room.leave.set()
