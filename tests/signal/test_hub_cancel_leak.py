"""A HubServer cancelled while connections arrive closes every socket it accepted (none is left
to the garbage collector)."""

from __future__ import annotations

import asyncio
import gc
import socket
import warnings

import anyio
import anyio.lowlevel
import pytest

from a2al_mcp.config import SignalConfig
from a2al_mcp.signal.ws_server import HubServer
from tests.signal.test_signal_loopback import until

pytestmark = pytest.mark.anyio

ROUNDS = 20


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


async def test_cancelling_the_hub_as_connections_arrive_leaves_no_socket_open() -> None:
    loop = asyncio.get_running_loop()
    errors: list[str] = []  # the messages only: a kept exception would keep the socket
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context["message"]))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            for _ in range(ROUNDS):
                await _cancel_as_a_connection_lands(loop)
            await anyio.sleep(0.05)  # let the transports' close callbacks run
            gc.collect()
    finally:
        loop.set_exception_handler(previous)
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaked == []
    assert errors == []
