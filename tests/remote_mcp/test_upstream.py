"""The forwarder's kept-alive connections to an exposed plain-HTTP server (upstream.py): a
connection carries the next request; one the server closed (after its answer, or while idle)
is not reused; a server that is not there is Unreachable; a body is passed on as it comes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import h11
import pytest
from anyio.abc import SocketStream

from a2al_mcp.errors import Unreachable
from a2al_mcp.remote_mcp.upstream import Upstream
from a2al_mcp.testing.a2ald import free_port

pytestmark = pytest.mark.anyio


class _Server:
    """An HTTP/1.1 server answering each request with its connection's number and the
    request's number on it; ``close_after`` answers close their connection, ``idle_close``
    connections are closed by the server after their first answer without saying so,
    ``drop_second``: see there."""

    def __init__(self, *, close_after: bool = False, idle_close: bool = False,
                 drop_second: bool = False) -> None:  # fmt: skip
        self.connections = 0
        self.close_after = close_after
        self.idle_close = idle_close
        self.drop_second = drop_second
        """A connection's second request is read and the connection closed unanswered (as
        a server closing an idle connection just as a request comes)."""
        self.closed = anyio.Event()
        """Set when the server has closed a connection."""

    async def handle(self, stream: SocketStream) -> None:
        self.connections += 1
        number = self.connections
        async with stream:
            await self._serve(stream, number)
        self.closed.set()

    async def _serve(self, stream: SocketStream, number: int) -> None:
        conn = h11.Connection(h11.SERVER)
        served = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    conn.receive_data(await stream.receive())
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                continue
            if isinstance(event, h11.Request | h11.Data):
                continue
            if not isinstance(event, h11.EndOfMessage):
                return
            served += 1
            if self.drop_second and served == 2:
                return
            body = f"{number}.{served}".encode()
            headers = [("content-length", str(len(body)))]
            if self.close_after:
                headers.append(("connection", "close"))
            await stream.send(conn.send(h11.Response(status_code=200, headers=headers))
                              + conn.send(h11.Data(data=body))
                              + conn.send(h11.EndOfMessage()))  # fmt: skip
            if self.close_after or self.idle_close:
                return
            conn.start_next_cycle()


@contextlib.asynccontextmanager
async def _serving(server: _Server) -> AsyncIterator[int]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        try:
            yield port
        finally:
            tg.cancel_scope.cancel()


async def _get(upstream: Upstream) -> tuple[int, bytes]:
    resp = await upstream.request("POST", "/mcp", [(b"host", b"x"), (b"content-length", b"2")],
                                  b"{}")  # fmt: skip
    body = b"".join([chunk async for chunk, _ in resp.chunks()])
    return resp.status, body


async def test_a_connection_carries_the_next_request() -> None:
    server = _Server()
    with anyio.fail_after(10):
        async with _serving(server) as port:
            upstream = Upstream("127.0.0.1", port)
            assert [await _get(upstream) for _ in range(3)] == [
                (200, b"1.1"), (200, b"1.2"), (200, b"1.3")]  # fmt: skip
            await upstream.aclose()
    assert server.connections == 1


async def test_connections_the_server_closed_are_not_reused() -> None:
    for server in (_Server(close_after=True), _Server(idle_close=True)):
        with anyio.fail_after(10):
            async with _serving(server) as port:
                upstream = Upstream("127.0.0.1", port)
                first = await _get(upstream)
                await server.closed.wait()  # the server has closed its side
                assert [first, await _get(upstream)] == [(200, b"1.1"), (200, b"2.1")]
                await upstream.aclose()


async def test_a_request_the_server_drops_on_a_kept_connection_goes_once_more() -> None:
    server = _Server(drop_second=True)
    with anyio.fail_after(10):
        async with _serving(server) as port:
            upstream = Upstream("127.0.0.1", port)
            assert await _get(upstream) == (200, b"1.1")
            assert await _get(upstream) == (200, b"2.1")  # on a new connection
            await upstream.aclose()
    assert server.connections == 2


async def test_no_server_is_unreachable() -> None:
    upstream = Upstream("127.0.0.1", free_port(udp=False))
    with anyio.fail_after(10), pytest.raises(Unreachable, match="does not accept"):
        await _get(upstream)
