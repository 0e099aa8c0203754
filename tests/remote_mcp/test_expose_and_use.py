"""MCP over A2AL across two loopback nodes: a stdio MCP server (written with the official
SDK) exposed on node A, found from node B by capability, listed and called through B's
:class:`RemoteMcp` (the official client over A2AL streams)."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest
from mcp import Client, StdioServerParameters

from a2al_mcp.config import LimitsConfig
from a2al_mcp.errors import AccessDenied, AgentCallError, LimitExceeded, RequestTimeout
from a2al_mcp.node.http import HttpRequest, HttpResponse
from a2al_mcp.remote_mcp import ExposeSpec
from a2al_mcp.remote_mcp.client import RemoteMcp
from a2al_mcp.remote_mcp.expose import expose_mcp
from tests.node.loopnet import network

from .conftest import STDIO_COMMAND

pytestmark = pytest.mark.anyio

TOPIC = "test.remote-tools"


def _same(result: dict[str, Any]) -> dict[str, Any]:
    """The result without the server's self-description in _meta."""
    return {k: v for k, v in result.items() if k != "_meta"}


async def _direct(tool: str, arguments: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    params = StdioServerParameters(command=STDIO_COMMAND[0], args=list(STDIO_COMMAND[1:]))
    async with Client(params, cache=None) as c:
        tools = [t.model_dump(mode="json", by_alias=True, exclude_none=True)
                 for t in (await c.list_tools()).tools]  # fmt: skip
        result = await c.call_tool(tool, arguments)
        return tools, result.model_dump(mode="json", by_alias=True, exclude_none=True)


async def test_stdio_server_exposed_found_listed_called() -> None:
    direct_tools, direct_result = await _direct("add", {"a": 20, "b": 22})
    with anyio.fail_after(60):
        async with network(3, publish=True) as (_seed, a, b):
            exposed = await expose_mcp(a, ExposeSpec(command=STDIO_COMMAND, topics=(TOPIC,),
                                                     name="test tools"))  # fmt: skip
            found = await b.discover(TOPIC, protocols=["mcp"])
            assert [e.aid for e in found] == [a.aid]
            assert await b.discover(TOPIC, protocols=["a2a"]) == []
            remote = RemoteMcp(b)
            tools = await remote.list_tools(a.aid)
            assert tools == direct_tools
            result = await remote.call_tool(a.aid, "add", {"a": 20, "b": 22})
            assert result["structuredContent"] == {"total": 42, "terms": [20, 22]}
            assert _same(result) == _same(direct_result)
            assert remote.sessions() == (a.aid,)  # one warm session, reused
            again = await remote.call_tool(a.aid, "add", {"a": 1, "b": 2})
            assert again["structuredContent"]["total"] == 3
            assert exposed.bridge is not None and exposed.bridge.starts == 1
            # a tool error is the remote's result, text kept
            failed = await remote.call_tool(a.aid, "fail", {"reason": "no"})
            assert failed["isError"] is True
            assert "refused on purpose: no" in failed["content"][0]["text"]
            unknown = await remote.call_tool(a.aid, "nope", {})
            assert unknown["isError"] is True and "nope" in unknown["content"][0]["text"]


async def test_denied_caller_is_refused_by_the_node() -> None:
    with anyio.fail_after(60):
        async with network(3, publish=True) as (_seed, a, b):
            await expose_mcp(a, ExposeSpec(command=STDIO_COMMAND, topics=(TOPIC,),
                                           deny=(b.aid,)))  # fmt: skip
            with pytest.raises(AccessDenied, match="denied"):
                await RemoteMcp(b).list_tools(a.aid)
            await expose_mcp(a, ExposeSpec(command=STDIO_COMMAND, topics=(TOPIC,),
                                           allow=(_seed.aid,)))  # fmt: skip
            with pytest.raises(AccessDenied, match="denied"):
                await RemoteMcp(b).call_tool(a.aid, "add", {"a": 1, "b": 1})


async def test_stdio_server_restarted_when_it_dies() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (a, b):
            exposed = await expose_mcp(a, ExposeSpec(command=STDIO_COMMAND))
            assert exposed.bridge is not None
            remote = RemoteMcp(b)
            assert (await remote.call_tool(a.aid, "add", {"a": 1, "b": 1}))["isError"] is False
            with pytest.raises(AgentCallError, match="the remote MCP server answered"):
                await remote.call_tool(a.aid, "crash", {})  # the process exits mid-call
            # the next call waits for the process the node starts again (after its back-off)
            again = await remote.call_tool(a.aid, "add", {"a": 2, "b": 3})
            assert again["structuredContent"]["total"] == 5
            assert exposed.bridge.starts == 2


async def test_calls_per_agent_limit() -> None:
    limits = LimitsConfig(remote_mcp_calls_per_agent=1, remote_mcp_call_timeout_s=3.0)
    with anyio.fail_after(60):
        async with network(2, publish=True) as (a, b):
            await expose_mcp(a, ExposeSpec(command=STDIO_COMMAND))
            remote = RemoteMcp(b, limits)
            hung: list[BaseException] = []

            async def hang() -> None:
                try:
                    await remote.call_tool(a.aid, "hang", {})
                except RequestTimeout as exc:
                    hung.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(hang)
                await anyio.lowlevel.checkpoint()  # it has taken its slot by now
                with pytest.raises(LimitExceeded, match="remote_mcp_calls_per_agent"):
                    await remote.call_tool(a.aid, "add", {"a": 1, "b": 1})
            assert len(hung) == 1  # cut off by the call timeout
            ok = await remote.call_tool(a.aid, "add", {"a": 1, "b": 1})  # its slot is free
            assert ok["structuredContent"]["total"] == 2


async def test_an_agent_without_mcp_is_named_as_such() -> None:
    async def hello(req: HttpRequest) -> HttpResponse:
        return HttpResponse(200, (("content-type", "text/plain"),), b"hello")

    with anyio.fail_after(60):
        async with network(2, publish=True) as (a, b):
            a.serve(http=hello)
            with pytest.raises(AgentCallError, match="does not serve MCP over A2AL"):
                await RemoteMcp(b).list_tools(a.aid)
