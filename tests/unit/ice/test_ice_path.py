"""IceDatagramPath without sockets: a real QUIC handshake and stream between two
QuicServices whose only path is an in-memory datagram link (what an ICE pair gives)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from a2al_mcp import SystemRng
from a2al_mcp._clock import SystemClock
from a2al_mcp.errors import ConnectionClosed
from a2al_mcp.ice import IceDatagramPath
from a2al_mcp.identity import Identity
from tests.unit.ice.quic_over_link import quic_over_link

pytestmark = pytest.mark.anyio


class MemoryLink:
    """One end of an in-memory datagram link (a full queue drops, as UDP does)."""

    def __init__(
        self, out: MemoryObjectSendStream[bytes], into: MemoryObjectReceiveStream[bytes]
    ) -> None:
        self.out, self.into = out, into
        self.sent = 0

    async def send(self, data: bytes) -> None:
        try:
            self.out.send_nowait(data)
        except anyio.WouldBlock:
            return
        except (anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            raise ConnectionClosed("link closed") from exc
        self.sent += 1

    async def receive(self) -> bytes:
        try:
            return await self.into.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError) as exc:
            raise ConnectionClosed("link closed") from exc


@contextlib.contextmanager
def link_pair() -> Iterator[tuple[MemoryLink, MemoryLink]]:
    a_out, b_in = anyio.create_memory_object_stream[bytes](256)
    b_out, a_in = anyio.create_memory_object_stream[bytes](256)
    with a_out, b_in, b_out, a_in:
        yield MemoryLink(a_out, a_in), MemoryLink(b_out, b_in)


async def test_quic_handshake_and_stream_over_the_path() -> None:
    rng = SystemRng()
    caller_id, callee_id = Identity.generate(rng), Identity.generate(rng)
    with link_pair() as (caller_link, callee_link), anyio.fail_after(20):
        async with (
            quic_over_link(callee_link, peer=("10.0.0.1", 4000), identity=callee_id,
                           accept=True) as callee,
            quic_over_link(caller_link, peer=("10.0.0.2", 5000), identity=caller_id,
                           accept=False) as caller,
        ):  # fmt: skip
            reply, pc = await caller.echo(callee_id.aid, b"over ICE")
            assert reply == b"echo:over ICE"
            assert pc.peer_aid == callee_id.aid
            [accepted] = callee.service.connections()
            assert accepted.peer_aid == caller_id.aid
            caller_stats, callee_stats = caller.path.statistics(), callee.path.statistics()
    assert caller_stats.sent > 0 and caller_stats.received > 0
    assert callee_stats.sent > 0 and callee_stats.received > 0
    assert caller_stats.dropped_misaddressed == callee_stats.dropped_misaddressed == 0
    assert caller_stats.core_errors == callee_stats.core_errors == 0


async def test_the_link_closing_ends_the_path() -> None:
    rng = SystemRng()
    with link_pair() as (link, other), anyio.fail_after(10):
        async with quic_over_link(link, peer=("10.0.0.1", 4000), identity=Identity.generate(rng),
                                  accept=True) as side:  # fmt: skip
            other.out.close()
            assert side.path.closed is not None
            await side.path.closed.wait()
    assert side.path.statistics().received == 0


class ScriptedCore:
    """A datagram core that answers every datagram with one to the peer and one elsewhere,
    and has one timer that, when it fires, queues a datagram to the peer."""

    def __init__(self, peer: tuple[str, int], timer_at: float) -> None:
        self.peer = peer
        self.timer_at: float | None = timer_at
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self.out: list[tuple[bytes, tuple[str, int]]] = []
        self.events: list[str] = []
        self.fired = anyio.Event()

    def receive_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        if data == b"boom":
            raise ValueError("a core bug")
        self.received.append((data, addr))
        self.out += [(b"re:" + data, self.peer), (b"stray", ("192.0.2.9", 9))]
        self.events.append(f"got {data.decode()}")

    def handle_timer(self, now: float) -> None:
        self.timer_at = None
        self.out.append((b"tick", self.peer))
        self.fired.set()

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, tuple[str, int]]]:
        out, self.out = self.out, []
        return out

    def get_timer(self) -> float | None:
        return self.timer_at

    def next_event(self) -> str | None:
        return self.events.pop(0) if self.events else None


async def test_the_path_feeds_the_core_drops_strays_contains_errors_and_fires_timers() -> None:
    clock = SystemClock()
    peer = ("10.0.0.1", 4000)
    core = ScriptedCore(peer, timer_at=clock.monotonic() + 0.05)
    seen: list[tuple[str, object]] = []
    with link_pair() as (link, other), anyio.fail_after(10):
        path = IceDatagramPath(link, peer=peer, clock=clock, core=core,
                               on_events=lambda name, e: seen.append((name, e)))  # fmt: skip
        async with path:
            await core.fired.wait()
            assert await other.receive() == b"tick"
            await other.send(b"boom")
            await other.send(b"hello")
            assert await other.receive() == b"re:hello"
            stats = path.statistics()
    assert core.received == [(b"hello", peer)]
    assert seen == [("quic", "got hello")]
    assert (stats.received, stats.sent) == (2, 2)
    assert stats.dropped_misaddressed == 1
    assert stats.core_errors == 1
