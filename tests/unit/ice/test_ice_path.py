"""IceDatagramPath without sockets: a real QUIC handshake and stream between two
QuicServices whose only path is an in-memory datagram link (what an ICE pair gives)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from a2al_mcp import SystemRng
from a2al_mcp.errors import ConnectionClosed
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
