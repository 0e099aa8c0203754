"""A WebSocket upgrade cancelled half-way (a losing hub path, a closing node) closes its TCP
connection at once instead of leaving the socket to the garbage collector."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest

from a2al_mcp.errors import HandshakeFailed
from a2al_mcp.signal.ws_client import open_websocket

pytestmark = pytest.mark.anyio


async def _hub_that_never_upgrades(
    listener: anyio.abc.SocketListener, got_eof: anyio.Event, request_seen: anyio.Event
) -> None:
    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                while await stream.receive():
                    request_seen.set()  # the upgrade request: never answered
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                got_eof.set()

    await listener.serve(handle)


async def test_a_cancelled_upgrade_closes_its_connection() -> None:
    got_eof, request_seen = anyio.Event(), anyio.Event()
    with anyio.fail_after(10):
        async with (
            await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
            anyio.create_task_group() as tg,
        ):
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            tg.start_soon(_hub_that_never_upgrades, listener, got_eof, request_seen)
            async with anyio.create_task_group() as caller:
                caller.start_soon(open_websocket, f"ws://127.0.0.1:{port}", "/signal")
                await request_seen.wait()
                caller.cancel_scope.cancel()  # mid-upgrade
            await got_eof.wait()  # the hub saw the connection end: nothing left open
            tg.cancel_scope.cancel()


async def test_a_refused_upgrade_closes_its_connection() -> None:
    got_eof = anyio.Event()

    async def refuse(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            try:
                while await stream.receive():
                    pass
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                got_eof.set()

    with anyio.fail_after(10):
        async with (
            await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
            anyio.create_task_group() as tg,
        ):
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            tg.start_soon(listener.serve, refuse)
            with pytest.raises(HandshakeFailed, match="HTTP 400"):
                await open_websocket(f"ws://127.0.0.1:{port}", "/ice?room=x")
            await got_eof.wait()
            tg.cancel_scope.cancel()
