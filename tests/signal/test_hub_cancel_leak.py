"""A HubServer cancelled while connections arrive, or while it holds paired rooms, closes every
socket it accepted: none is left to the garbage collector."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import warnings
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest

from a2al_mcp.config import SignalConfig
from a2al_mcp.errors import ConnectionClosed
from a2al_mcp.signal.ws_client import WebSocket, open_websocket
from a2al_mcp.signal.ws_server import HubServer
from tests.signal.test_signal_loopback import until

pytestmark = pytest.mark.anyio

ROUNDS = 20


@contextlib.asynccontextmanager
async def _nothing_left_to_the_collector() -> AsyncIterator[None]:
    """Fail if a ResourceWarning (an unclosed socket or transport) or an error of the event
    loop's callbacks comes up inside, or at a collection at its end."""
    loop = asyncio.get_running_loop()
    errors: list[str] = []  # the messages only: a kept exception would keep the socket
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context["message"]))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            yield
            await anyio.sleep(0.05)  # let the transports' close callbacks run
            gc.collect()
    finally:
        loop.set_exception_handler(previous)
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaked == []
    assert errors == []


async def _cancel_as_a_connection_lands(loop: asyncio.AbstractEventLoop) -> None:
    """One hub, cancelled inside the loop iteration whose poll reports a new connection on
    its listening socket, before the hub's accept callback of that same iteration runs.

    The order is forced, not hoped for: the cancelling callback is a reader on a socket pair
    made readable before the client connects, so the poll (epoll's ready list is in
    readiness order; every selector here reports both in one iteration) queues it first."""
    trigger, poke = socket.socketpair()
    client: socket.socket | None = None
    warm: socket.socket | None = None
    try:
        async with anyio.create_task_group() as tg:
            hub = HubServer(SignalConfig())
            host, port = await tg.start(hub.serve, "127.0.0.1", 0)
            warm = socket.create_connection((host, port))  # held by the hub as it stops
            await until(lambda: hub.core.sockets == 1)
            for _ in range(5):
                await anyio.lowlevel.checkpoint()  # the hub waits for the next connection

            def cancel() -> None:
                loop.remove_reader(trigger)
                tg.cancel_scope.cancel()

            loop.add_reader(trigger, cancel)
            poke.send(b"x")
            client = socket.create_connection((host, port))  # queued by the kernel at once
    finally:
        for sock in (trigger, poke, client, warm):
            if sock is not None:
                sock.close()


async def _cancel_with_rooms_paired() -> None:
    """One hub holding four paired rooms, cancelled: each connection's teardown tells its
    partner the room is over while the partner's writer may be gone already."""
    clients: list[WebSocket] = []
    try:
        async with anyio.create_task_group() as tg:
            hub = HubServer(SignalConfig())
            host, port = await tg.start(hub.serve, "127.0.0.1", 0)
            with anyio.fail_after(10):
                for n in range(4):
                    for _side in range(2):
                        clients.append(await open_websocket(f"ws://{host}:{port}",
                                                            f"/ice?room=r{n}"))  # fmt: skip
                await until(lambda: hub.core.stats.sessions_total == 4)
            tg.cancel_scope.cancel()
        with anyio.fail_after(10):
            for ws in clients:
                with pytest.raises(ConnectionClosed):
                    await ws.receive()  # the hub closed it
    finally:
        for ws in clients:
            await ws.aclose()


async def test_cancelling_the_hub_as_connections_arrive_leaves_no_socket_open() -> None:
    async with _nothing_left_to_the_collector():
        for _ in range(ROUNDS):
            await _cancel_as_a_connection_lands(asyncio.get_running_loop())


async def test_cancelling_the_hub_with_rooms_paired_closes_every_connection() -> None:
    async with _nothing_left_to_the_collector():
        for _ in range(ROUNDS // 4):
            await _cancel_with_rooms_paired()
