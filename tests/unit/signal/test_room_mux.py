"""One room, two techniques (a2al_mcp.signal.room_mux): the pure demux and its reader."""

from __future__ import annotations

import anyio
import pytest

from a2al_mcp.errors import ConnectionClosed, DecodeError, NotFound
from a2al_mcp.signal.frames import Frame
from a2al_mcp.signal.room_mux import RoomDemux, RoomMux

CAND = "1906588769 1 udp 2130706431 10.5.0.2 46169 typ host"


def test_punch_and_ice_frames_interleaved_go_each_their_way() -> None:
    demux = RoomDemux()
    frames = [
        Frame("cred", u="abcd", p="p" * 22), Frame("punch-init", ts=1), Frame("cand", c=CAND),
        Frame("punch-go"), Frame("eoc"), Frame("dht", d=b"x"),
    ]  # fmt: skip
    assert [demux.route(f) for f in frames] == ["ice", "punch", "ice", "punch", "ice", "drop"]
    s = demux.stats
    assert (s.punch, s.ice, s.foreign, s.malformed, s.refused) == (2, 3, 1, 0, 0)


def test_ice_input_is_bounded_and_counted_never_raised() -> None:
    demux = RoomDemux(max_candidates=2, max_candidate_chars=64)
    assert demux.route(Frame("cred")) == "drop"  # no u/p: malformed
    assert demux.route(Frame("cand")) == "drop"  # no c: malformed
    assert demux.route(Frame("cred", u="abcd", p="p" * 22)) == "ice"
    assert demux.route(Frame("cred", u="abcd", p="p" * 22)) == "drop"  # repeat: no news
    assert demux.route(Frame("cred", u="efgh", p="q" * 22)) == "drop"  # changed: refused
    assert demux.route(Frame("cand", c="x" * 65)) == "drop"  # too long
    assert demux.route(Frame("cand", c=CAND)) == "ice"
    assert demux.route(Frame("cand", c=CAND)) == "ice"
    assert demux.route(Frame("cand", c=CAND)) == "drop"  # a third: over the count
    assert demux.route(Frame("eoc")) == "ice"
    assert demux.route(Frame("eoc")) == "drop"  # a second eoc
    s = demux.stats
    assert (s.ice, s.malformed, s.refused) == (4, 2, 4)
    demux2 = RoomDemux()
    demux2.route(Frame("eoc"))
    assert demux2.route(Frame("cand", c=CAND)) == "drop"  # after eoc
    assert demux2.stats.refused == 1


class _Room:
    """A room that yields scripted results, then closes (or raises ``end``)."""

    def __init__(self, items: list[Frame | Exception], end: Exception | None = None) -> None:
        self.items = items
        self.end = end or ConnectionClosed("partner left")

    async def receive(self) -> Frame:
        await anyio.lowlevel.checkpoint()
        if not self.items:
            raise self.end
        item = self.items.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


class _Punch:
    def __init__(self) -> None:
        self.frames: list[str] = []
        self.bad = 0

    def received(self, frame: Frame) -> None:
        self.frames.append(frame.t)

    def malformed(self) -> None:
        self.bad += 1


@pytest.mark.anyio
async def test_the_reader_feeds_both_and_ends_the_ice_stream_when_the_room_closes() -> None:
    room = _Room([Frame("cred", u="abcd", p="p" * 22), DecodeError("bad cbor"),
                  Frame("punch-ack", ts=1), Frame("cand", c=CAND), Frame("eoc")])  # fmt: skip
    punch = _Punch()
    mux = RoomMux(room, punch=punch, ice=True)  # type: ignore[arg-type]
    await mux.run()
    assert mux.closed.is_set()
    assert punch.frames == ["punch-ack"] and punch.bad == 1
    with mux.ice_frames:
        got = [f.t async for f in mux.ice_frames]
    assert got == ["cred", "cand", "eoc"]
    assert mux.stats.malformed == 1


@pytest.mark.anyio
async def test_without_ice_every_frame_goes_to_the_punch_and_noagent_propagates() -> None:
    punch = _Punch()
    room = _Room([Frame("cred", u="abcd", p="p" * 22), Frame("punch-init", ts=1)],
                 end=NotFound("noagent"))  # fmt: skip
    mux = RoomMux(room, punch=punch, ice=False)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await mux.run()
    assert punch.frames == ["cred", "punch-init"]
    assert mux.closed.is_set()


@pytest.mark.anyio
async def test_an_ice_reader_that_does_not_keep_up_costs_frames_not_the_room() -> None:
    room = _Room([Frame("cand", c=CAND) for _ in range(10)])
    mux = RoomMux(room, punch=None, ice=True, max_candidates=4)  # type: ignore[arg-type]
    await mux.run()
    with mux.ice_frames:
        got = [f.t async for f in mux.ice_frames]
    assert got == ["cand"] * 4 and mux.stats.refused == 6
