"""``a2al-mcp proxy AID`` driven by the official MCP client: the remote agent's tools listed
and called as if they were local (same listing and structured result as the server itself)."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from a2al_mcp.remote_mcp import ExposeSpec
from a2al_mcp.remote_mcp.expose import expose_mcp
from tests.node.loopnet import network

from .conftest import STDIO_COMMAND

pytestmark = pytest.mark.anyio


async def test_proxy_mirrors_a_remote_agents_tools(tmp_path: Path) -> None:
    direct = StdioServerParameters(command=STDIO_COMMAND[0], args=list(STDIO_COMMAND[1:]))
    async with Client(direct, cache=None) as c:
        direct_tools = (await c.list_tools()).tools
        direct_add = await c.call_tool("add", {"a": 5, "b": 6})
    with anyio.fail_after(90):
        async with network(2, publish=True) as (seed, a):
            await expose_mcp(a, ExposeSpec(command=STDIO_COMMAND))
            proxy = StdioServerParameters(command=sys.executable, args=[
                "-m", "a2al_mcp", "proxy", str(a.aid), "--standalone",
                "--listen", "127.0.0.1:0", "--bootstrap", "{}:{}".format(*seed.local_addr),
                "--data-dir", str(tmp_path / "home")])  # fmt: skip
            async with Client(proxy, cache=None) as c:
                tools = (await c.list_tools()).tools
                assert [t.name for t in tools] == [t.name for t in direct_tools]
                for mine, theirs in zip(tools, direct_tools, strict=True):
                    assert mine.input_schema == theirs.input_schema
                    assert mine.description == theirs.description
                add = await c.call_tool("add", {"a": 5, "b": 6})
                assert add.structured_content == direct_add.structured_content
                assert add.content == direct_add.content and not add.is_error
                failed = await c.call_tool("fail", {"reason": "via proxy"})
                assert failed.is_error
                assert "refused on purpose: via proxy" in failed.content[0].text
