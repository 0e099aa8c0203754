"""Mode B's sending side (a2al_mcp.node.mode_b): which unanswered DHT peers are called over
the hubs, when, how many at once; what the endpoint sees of the core through it."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import pytest

from a2al_mcp import SystemRng
from a2al_mcp._types import Addr, Datagram
from a2al_mcp.config import DhtConfig
from a2al_mcp.dht import events as ev
from a2al_mcp.errors import Unreachable
from a2al_mcp.identity import Aid, Identity
from a2al_mcp.node.mode_b import MAX_DIALS, ModeB
from a2al_mcp.transport.peer import PeerConnection

pytestmark = pytest.mark.anyio


class FakeCore:
    """A DHT core that only emits what a test queues."""

    def __init__(self) -> None:
        self.events: deque[object] = deque()
        self.out: list[Datagram] = []

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        raise AssertionError("not fed here")

    def handle_timer(self, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self.out = self.out, []
        return out

    def get_timer(self) -> float | None:
        return None

    def next_event(self) -> object | None:
        return self.events.popleft() if self.events else None


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def aid() -> Aid:
    return Identity.generate(SystemRng()).aid


def unanswered(peer: Aid) -> ev.PeerUnanswered:
    return ev.PeerUnanswered(aid=peer, addr=("192.0.2.7", 4121))


async def test_unanswered_peers_are_called_once_each_and_not_again_soon_after_a_failure() -> None:
    core, clock = FakeCore(), Clock()
    calls: list[Aid] = []
    release = anyio.Event()

    async def dial(peer: Aid) -> PeerConnection | None:
        calls.append(peer)
        await release.wait()
        raise Unreachable("no path through the hubs", operation="connect")

    async with anyio.create_task_group() as tg:

        def spawn(fn: Callable[[], Awaitable[None]]) -> None:
            tg.start_soon(fn)

        mb = ModeB(core, config=DhtConfig(mode_b_retry_s=300.0), now=clock, flush=lambda: None,
                   spawn=spawn, dial=dial)  # fmt: skip
        first = aid()
        others = [aid() for _ in range(MAX_DIALS + 2)]
        observed = ev.AddressObserved(reporter=first, addr=("192.0.2.1", 1))
        core.events.extend([unanswered(first), unanswered(first), observed])
        core.events.extend(unanswered(p) for p in others)
        # the endpoint sees the other events only; PeerUnanswered stays here
        assert mb.next_event() == observed
        assert mb.next_event() is None
        await anyio.wait_all_tasks_blocked()
        assert calls[0] == first and len(calls) == MAX_DIALS  # one each, MAX_DIALS at once
        assert mb.stats.unanswered == MAX_DIALS + 4
        release.set()
        await anyio.wait_all_tasks_blocked()
        assert mb.stats.dial_failed == MAX_DIALS
        core.events.append(unanswered(first))  # failed just now: not again before retry_s
        assert mb.next_event() is None
        await anyio.wait_all_tasks_blocked()
        assert len(calls) == MAX_DIALS
        clock.t += 301.0
        release = anyio.Event()
        core.events.append(unanswered(first))
        assert mb.next_event() is None
        await anyio.wait_all_tasks_blocked()
        assert len(calls) == MAX_DIALS + 1
        release.set()


async def test_a_peer_that_does_not_qualify_is_counted_and_mode_b_off_calls_nobody() -> None:
    core, clock = FakeCore(), Clock()
    calls: list[Aid] = []

    async def dial(peer: Aid) -> PeerConnection | None:
        calls.append(peer)
        return None  # its record names no hub, or it is not behind a NAT

    async with anyio.create_task_group() as tg:

        def spawn(fn: Callable[[], Awaitable[None]]) -> None:
            tg.start_soon(fn)

        mb = ModeB(core, config=DhtConfig(), now=clock, flush=lambda: None, spawn=spawn,
                   dial=dial)  # fmt: skip
        core.events.append(unanswered(aid()))
        assert mb.next_event() is None
        await anyio.wait_all_tasks_blocked()
        assert len(calls) == 1 and mb.stats.not_eligible == 1 and mb.stats.dial_failed == 0
        off = ModeB(core, config=DhtConfig(mode_b=False), now=clock, flush=lambda: None,
                    spawn=spawn, dial=dial)  # fmt: skip
        core.events.append(unanswered(aid()))
        assert off.next_event() is None
        await anyio.wait_all_tasks_blocked()
        assert len(calls) == 1 and off.stats.unanswered == 1


def test_datagrams_to_addresses_without_a_mode_b_route_pass_through() -> None:
    core = FakeCore()
    mb = ModeB(core, config=DhtConfig(), now=Clock(), flush=lambda: None, spawn=lambda fn: None)
    core.out = [(b"\xa4x", ("192.0.2.9", 4121))]
    assert mb.datagrams_to_send(0.0) == [(b"\xa4x", ("192.0.2.9", 4121))]
    assert mb.routes() == ()
