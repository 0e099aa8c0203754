"""An ICE session closed while it gathers (the race of a hub call was decided, or its deadline
came, before the STUN server answered): aioice's STUN query goes on until its own timeout, and
closing the session must not pull the socket from under it. Before, the query's next
retransmission failed in the event loop ("'NoneType' object has no attribute 'sendto'") and
the query never ended. On 127.0.0.1 only: the STUN server is a socket that never answers."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aioice.ice
import anyio
import pytest

from a2al_mcp._clock import SystemClock
from a2al_mcp._random import SeededRng
from a2al_mcp.ice.config import IceConfig
from a2al_mcp.ice.session import IceSession, settle_lingering

pytestmark = pytest.mark.anyio

AIOICE_QUERY_S = 5.0
"""aioice stops waiting for STUN and TURN answers after this."""


async def test_a_session_closed_while_gathering_is_closed_when_the_stun_query_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.setblocking(False)
        config = IceConfig(stun_servers=(silent.getsockname(),))
        try:
            ice = IceSession(config, controlling=True, clock=SystemClock(), rng=SeededRng(7))
            with anyio.move_on_after(0.3):  # the STUN server has not answered by then
                await ice.gather()
            await ice.close()
            await anyio.sleep(AIOICE_QUERY_S + 1.5)  # the query retransmits, then gives up
        finally:
            loop.set_exception_handler(previous)
        queried_from = _sources(silent)
    assert len(queried_from) == 1  # the host candidate's socket asked, and retransmitted
    assert reported == []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(queried_from.pop())  # the session's socket is closed: its port is free


async def test_settle_lingering_waits_for_a_gathering_closed_under_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the node does at close: a session closed while it gathers is done (its socket
    closed) once ``settle_lingering`` returns, so nothing outlives the node's event loop."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.setblocking(False)
        config = IceConfig(stun_servers=(silent.getsockname(),))
        ice = IceSession(config, controlling=True, clock=SystemClock(), rng=SeededRng(7))
        with anyio.move_on_after(0.3):
            await ice.gather()
        await ice.close()
        assert await settle_lingering() == 1
        assert await settle_lingering() == 0  # nothing left
        await anyio.sleep(0.1)
        queried_from = _sources(silent)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(queried_from.pop())  # closed: its port is free


def _sources(sock: socket.socket) -> set[Any]:
    """Where the datagrams waiting on ``sock`` came from (all read)."""
    sources = set()
    while True:
        try:
            sources.add(sock.recvfrom(2048)[1])
        except BlockingIOError:
            return sources
