"""A tunnel runs in the node's task group: whatever one of its TCP connections raises must end
that connection only. At 45ad18d each connection ran under the listener's own task group, so an
exception other than an A2AL error (a bug, a panic in the stack below) ended the listener, the
task group the tunnel was started in, and so the node."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
import pytest

from a2al_mcp._random import SeededRng
from a2al_mcp.identity import Identity
from a2al_mcp.node.tunnel import Tunnel

pytestmark = pytest.mark.anyio
REMOTE = Identity.generate(SeededRng(5)).aid


class Panic(BaseException):
    """Stands for pyo3_runtime.PanicException (a direct BaseException subclass)."""


async def _echo_server(tg: anyio.abc.TaskGroup) -> tuple[str, int]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def echo(client: anyio.abc.SocketStream) -> None:
        async with client:
            async for chunk in client:
                await client.send(chunk)

    async def serve() -> None:
        async with listener:
            await listener.serve(echo)

    tg.start_soon(serve)
    sockname: Any = listener.extra(anyio.abc.SocketAttribute.local_address)
    return str(sockname[0]), int(sockname[1])


async def test_a_failing_tunnel_connection_ends_only_itself() -> None:
    with anyio.fail_after(20):
        async with anyio.create_task_group() as node_tg:  # stands for the node's task group
            echo = await _echo_server(node_tg)
            plan: list[BaseException | None] = [Panic("in the stack"), RuntimeError("a bug"), None]

            async def open_stream() -> Any:
                failure = plan.pop(0)
                if failure is not None:
                    raise failure
                return await anyio.connect_tcp(*echo)  # a ByteStream like PeerStream

            tunnel = Tunnel(REMOTE, open_stream)
            await tunnel.start(node_tg)
            for _ in range(2):  # two connections whose handler raises
                async with await anyio.connect_tcp(*tunnel.addr) as c:
                    with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, OSError)):
                        await c.receive()  # closed by the tunnel
            async with await anyio.connect_tcp(*tunnel.addr) as c:  # the tunnel still serves
                await c.send(b"ping")
                assert await c.receive() == b"ping"
            assert tunnel.errors == 2 and tunnel.connections == 3 and not tunnel.closed
            await tunnel.aclose()
            node_tg.cancel_scope.cancel()
        assert tunnel.closed
