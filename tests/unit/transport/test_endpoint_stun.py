"""The endpoint's third core: STUN-classified datagrams reach the ``stun`` core (the node's
STUN client), whose answers leave from the same socket; without one they are dropped and
counted as before. Loopback only."""

from __future__ import annotations

import socket
from collections import deque

import anyio
import pytest

from a2al_mcp._clock import SystemClock
from a2al_mcp._types import Addr, Datagram
from a2al_mcp.transport.demux import Kind
from a2al_mcp.transport.endpoint import UdpEndpoint

LOOPBACK: Addr = ("127.0.0.1", 0)
WAIT_S = 5.0
STUN_RESPONSE = b"\x01\x01\x00\x00\x21\x12\xa4\x42" + bytes(range(12))
DHT_DATAGRAM = b"\xa4-last"


class RecordingCore:
    """A datagram core that keeps what it receives, emits it as an event and sends what it
    is told to."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, Addr]] = []
        self.outbox: list[Datagram] = []
        self.events: deque[object] = deque()

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self.received.append((data, addr))
        self.events.append(data)

    def handle_timer(self, now: float) -> None:
        return None

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self.outbox = self.outbox, []
        return out

    def get_timer(self) -> float | None:
        return None

    def next_event(self) -> object | None:
        return self.events.popleft() if self.events else None


class Seen:
    """An ``on_events`` sink that tests wait on."""

    def __init__(self) -> None:
        self.items: list[tuple[str, object]] = []
        self._changed = anyio.Event()

    def __call__(self, core: str, event: object) -> None:
        self.items.append((core, event))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(WAIT_S):
            while len(self.items) < count:
                await self._changed.wait()


@pytest.mark.anyio
async def test_a_stun_datagram_reaches_the_stun_core_and_its_events_are_named_stun() -> None:
    dht, stun = RecordingCore(), RecordingCore()
    seen = Seen()
    async with UdpEndpoint(LOOPBACK, clock=SystemClock(), dht=dht, stun=stun, on_events=seen) as ep:
        assert ep.core_names == ("dht", "stun")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.bind(LOOPBACK)
            raw.sendto(STUN_RESPONSE, ep.local_addr)
            raw.sendto(DHT_DATAGRAM, ep.local_addr)
            sender = raw.getsockname()
            await seen.wait_for(2)
        assert stun.received == [(STUN_RESPONSE, sender)]
        assert dht.received == [(DHT_DATAGRAM, sender)]
        assert ("stun", STUN_RESPONSE) in seen.items
        stats = ep.statistics()
        assert stats.received_by_kind[Kind.STUN] == 1
        assert stats.dropped[Kind.STUN] == 0


@pytest.mark.anyio
async def test_the_stun_core_sends_from_the_shared_socket() -> None:
    stun = RecordingCore()
    async with UdpEndpoint(LOOPBACK, clock=SystemClock(), stun=stun) as ep:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
            server.bind(LOOPBACK)
            server.setblocking(False)
            stun.outbox.append(
                (b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12), server.getsockname())
            )
            ep.flush()
            with anyio.fail_after(WAIT_S):
                await anyio.wait_readable(server)
            data, addr = server.recvfrom(2048)
        assert data[4:8] == b"\x21\x12\xa4\x42"
        assert addr == ep.local_addr  # the mapping a STUN server sees is the shared socket's


@pytest.mark.anyio
async def test_without_a_stun_core_stun_datagrams_are_dropped_and_counted() -> None:
    dht, seen = RecordingCore(), Seen()
    async with UdpEndpoint(LOOPBACK, clock=SystemClock(), dht=dht, on_events=seen) as ep:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.bind(LOOPBACK)
            raw.sendto(STUN_RESPONSE, ep.local_addr)
            raw.sendto(DHT_DATAGRAM, ep.local_addr)
            await seen.wait_for(1)
        stats = ep.statistics()
        assert stats.dropped[Kind.STUN] == 1
        assert stats.received_by_kind[Kind.STUN] == 1
        assert [d for d, _ in dht.received] == [DHT_DATAGRAM]


@pytest.mark.anyio
async def test_route_source_names_the_local_address_towards_a_peer_and_sends_nothing() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(LOOPBACK)
        peer.setblocking(False)
        async with UdpEndpoint(("0.0.0.0", 0), clock=SystemClock()) as ep:
            assert ep.route_source(peer.getsockname()) == "127.0.0.1"
            assert ep.route_source(("not-an-ip", 1)) is None
            assert ep.statistics().sent == 0
        with pytest.raises(BlockingIOError):
            peer.recvfrom(2048)  # the route lookup sent nothing
