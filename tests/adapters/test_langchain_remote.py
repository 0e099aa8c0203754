"""LangChain: another agent's MCP tools loaded as LangChain tools (issue 20). Two loopback
nodes; node A exposes the remote-MCP test server (official SDK, stdio); the toolkit on node B
loads its tools and LangChain's ``ainvoke`` calls them over A2AL: the same schemas as the
server lists, the same structured result as a direct call (as the artifact), the remote
tool's error as the model's text, a denied caller refused; sync ``invoke`` from a thread."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

pytest.importorskip("langchain_core", reason="needs the langchain extra (langchain-core)")

from a2al_mcp.adapters.langchain import A2ALToolkit
from langchain_core.messages import ToolMessage
from mcp import Client, StdioServerParameters

from a2al_mcp import ToolFailure
from a2al_mcp.remote_mcp import ExposeSpec
from a2al_mcp.remote_mcp.expose import expose_mcp
from tests.node.loopnet import network
from tests.remote_mcp.conftest import STDIO_COMMAND

pytestmark = pytest.mark.anyio


def _call(name: str, args: dict[str, Any], call_id: str = "call-1") -> dict[str, Any]:
    return {"type": "tool_call", "id": call_id, "name": name, "args": args}


async def _direct(tool: str, args: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """The tool listing and one call's result, from the server straight over stdio."""
    params = StdioServerParameters(command=STDIO_COMMAND[0], args=list(STDIO_COMMAND[1:]))
    async with Client(params, cache=None) as client:
        listed = (await client.list_tools()).tools
        tools = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed]
        return tools, (await client.call_tool(tool, args)).structured_content


async def test_remote_tools_as_langchain_tools() -> None:
    with anyio.fail_after(90):
        direct_tools, direct_sum = await _direct("add", {"a": 20, "b": 22})
        async with network(2, publish=True) as (a, b):
            await expose_mcp(a, ExposeSpec(command=STDIO_COMMAND, topics=("test.lc-remote",)))
            async with A2ALToolkit(b) as kit:
                tools = {t.name: t for t in await kit.remote_tools(a.aid)}
                assert set(tools) == {t["name"] for t in direct_tools}
                for listed in direct_tools:
                    tool = tools[listed["name"]]
                    assert tool.args_schema == listed["inputSchema"]
                    assert tool.description == listed.get("description", "")
                    assert tool.metadata is not None and tool.metadata["aid"] == str(a.aid)

                add = tools["add"]
                message = await add.ainvoke(_call("add", {"a": 20, "b": 22}))
                assert isinstance(message, ToolMessage) and message.status == "success"
                assert message.artifact == {"structured_content": direct_sum}
                assert direct_sum == {"total": 42, "terms": [20, 22]}
                assert message.content[0]["type"] == "text"  # type: ignore[index]
                # plain arguments: the content blocks alone, as langchain-mcp-adapters answers
                blocks = await add.ainvoke({"a": 1, "b": 2})
                assert [b["type"] for b in blocks] == ["text"] and '"total": 3' in blocks[0][
                    "text"]  # fmt: skip

                failed = await tools["fail"].ainvoke(_call("fail", {"reason": "lc"}, "call-2"))
                assert isinstance(failed, ToolMessage) and failed.status == "error"
                assert str(failed.content).startswith("AGENT_ERROR: ")
                assert "refused on purpose: lc" in str(failed.content)

                prefixed = await kit.remote_tools(a.aid, prefix="a_")
                assert {t.name for t in prefixed} == {"a_" + t["name"] for t in direct_tools}
                # sync invoke from another thread goes through the toolkit's portal
                sync_add = next(t for t in prefixed if t.name == "a_add")
                out = await anyio.to_thread.run_sync(
                    sync_add.invoke, _call("a_add", {"a": 5, "b": 6}, "call-3")
                )
                assert out.artifact == {"structured_content": {"total": 11, "terms": [5, 6]}}


async def test_remote_tools_refused_for_a_denied_caller() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (a, b):
            await expose_mcp(a, ExposeSpec(command=STDIO_COMMAND, deny=(b.aid,)))
            async with A2ALToolkit(b) as kit:
                with pytest.raises(ToolFailure, match=r"^ACCESS_DENIED: "):
                    await kit.remote_tools(a.aid)
