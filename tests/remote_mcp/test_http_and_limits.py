"""An exposed streamable-HTTP MCP server sees the verified caller AID; a remote server that
hangs or answers 10 MB is cut off by the caller's limits (and the next call still works)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator

import anyio
import pytest

from a2al_mcp.config import LimitsConfig
from a2al_mcp.errors import AgentCallError, LimitExceeded, RequestTimeout
from a2al_mcp.remote_mcp import ExposeSpec
from a2al_mcp.remote_mcp.client import RemoteMcp
from a2al_mcp.remote_mcp.expose import expose_mcp
from a2al_mcp.testing.a2ald import free_port
from tests.node.loopnet import network

from .conftest import SERVER, STDIO_COMMAND

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def http_tool_server() -> AsyncIterator[str]:
    """The test tool server over streamable HTTP on loopback; yields its URL."""
    port = free_port(udp=False)
    url = f"http://127.0.0.1:{port}/mcp"
    async with await anyio.open_process([sys.executable, str(SERVER), "http", str(port)],
                                        stderr=None) as proc:  # fmt: skip
        try:
            for _ in range(400):
                try:
                    await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await anyio.sleep(0.05)
            yield url
        finally:
            proc.kill()  # uvicorn would wait for the hung request to end


async def test_http_server_sees_the_verified_caller() -> None:
    with anyio.fail_after(60):
        async with http_tool_server() as url, network(3, publish=True) as (_s, a, b):
            await expose_mcp(a, ExposeSpec(url=url, topics=("test.http-tools",)))
            found = await b.discover("test.http-tools", protocols=["mcp"])
            assert [e.aid for e in found] == [a.aid]
            remote = RemoteMcp(b)
            names = [t["name"] for t in await remote.list_tools(a.aid)]
            assert names == ["add", "whoami", "fail", "big", "hang", "ask", "crash"]
            who = await remote.call_tool(a.aid, "whoami", {})
            assert who["structuredContent"] == {"caller": str(b.aid)}
            who = await RemoteMcp(_s).call_tool(a.aid, "whoami", {})
            assert who["structuredContent"] == {"caller": str(_s.aid)}


@pytest.mark.parametrize("kind", ["stdio", "http"])
async def test_hang_and_10mb_are_cut_off(kind: str) -> None:
    short = LimitsConfig(remote_mcp_call_timeout_s=3.0)
    small = LimitsConfig(remote_mcp_response_max_bytes=1 << 20)  # and the 60 s timeout
    with anyio.fail_after(90):
        async with contextlib.AsyncExitStack() as stack:
            a, b = await stack.enter_async_context(network(2, publish=True))
            if kind == "http":
                url = await stack.enter_async_context(http_tool_server())
                await expose_mcp(a, ExposeSpec(url=url))
            else:
                await expose_mcp(a, ExposeSpec(command=STDIO_COMMAND))
            remote = RemoteMcp(b, short)
            assert (await remote.call_tool(a.aid, "add", {"a": 1, "b": 1}))["isError"] is False
            with pytest.raises(RequestTimeout, match="call timeout"):
                await remote.call_tool(a.aid, "hang", {})
            with pytest.raises(LimitExceeded, match="response size limit"):
                await RemoteMcp(b, small).call_tool(a.aid, "big", {"size": 10 << 20})
            ok = await remote.call_tool(a.aid, "add", {"a": 2, "b": 2})  # still usable
            assert ok["structuredContent"]["total"] == 4


@pytest.mark.parametrize("kind", ["stdio", "http"])
async def test_the_remote_server_cannot_reach_back(kind: str) -> None:
    """A server asking the caller for input (elicitation) gets nowhere: the caller offers no
    elicitation, sampling or roots, and opens no server-to-client stream."""
    with anyio.fail_after(60):
        async with contextlib.AsyncExitStack() as stack:
            a, b = await stack.enter_async_context(network(2, publish=True))
            if kind == "http":
                url = await stack.enter_async_context(http_tool_server())
                await expose_mcp(a, ExposeSpec(url=url))
            else:
                await expose_mcp(a, ExposeSpec(command=STDIO_COMMAND))
            try:
                result = await RemoteMcp(b).call_tool(a.aid, "ask", {})
            except AgentCallError as exc:  # refused as a JSON-RPC error: the remote's
                assert "the remote MCP server" in str(exc)
            else:
                assert result["isError"] is True, result
                assert "the client answered" not in result["content"][0]["text"]


async def test_calls_share_a_kept_stream_and_a_dead_one_is_replaced() -> None:
    """Warm calls to one agent travel on one kept-alive stream (no stream per request); when
    the connection under it ends while idle, the next call opens a new one and succeeds."""
    with anyio.fail_after(60):
        async with http_tool_server() as url, network(2, publish=True) as (a, b):
            await expose_mcp(a, ExposeSpec(url=url))
            opened: list[object] = []
            open_stream = b.open_stream

            async def counting(*args: object, **kwargs: object) -> object:
                stream = await open_stream(*args, **kwargs)  # type: ignore[arg-type]
                opened.append(stream)
                return stream

            b.open_stream = counting  # type: ignore[method-assign]
            remote = RemoteMcp(b)
            for i in range(5):
                res = await remote.call_tool(a.aid, "add", {"a": i, "b": 1})
                assert res["structuredContent"]["total"] == i + 1
            assert len(opened) == 1  # the handshake and five calls on one stream
            for pc in a.connections():  # the callee ends the connection: the stream dies
                pc.close(0, "test")
            res = await remote.call_tool(a.aid, "whoami", {})
            assert res["structuredContent"] == {"caller": str(b.aid)}
            assert len(opened) == 2
