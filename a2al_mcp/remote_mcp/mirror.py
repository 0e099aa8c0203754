"""``a2al-mcp proxy AID``: a stdio MCP server that mirrors one remote agent's MCP tools as if
they were local, so any MCP client mounts a remote agent with one config block.

It is an MCP client of the node's own MCP server (``a2al-mcp serve --stdio``: the shared node
of the data directory, so the remote agent sees this user's AID) and lists and calls the
remote tools through its ``remote_tools`` and ``call_remote_tool`` tools. A remote tool's
failure is a tool error whose text is the node's (``AGENT_ERROR: the remote MCP server…``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mcp import Client, StdioServerParameters, types
from mcp.server.lowlevel.server import Server

from ..errors import AgentCallError

__all__ = ["Mirror", "run_stdio_mirror"]


class Mirror:
    """The mirrored tools of agent ``aid``, served by :attr:`server` (an SDK low-level
    server), through ``node`` (an open ``mcp.Client`` of the node's MCP server)."""

    def __init__(self, node: Any, aid: str) -> None:
        self._node = node
        self._aid = aid
        self.server: Any = Server(f"a2al-proxy-{aid[:12]}", on_list_tools=self._list_tools,
                                  on_call_tool=self._call_tool)  # fmt: skip

    async def _node_call(self, tool: str, arguments: dict[str, Any]) -> Any:
        res = await self._node.call_tool(tool, arguments)
        if res.is_error:
            text = res.content[0].text if res.content else "the node failed"
            raise AgentCallError(text, operation=tool)
        return res.structured_content

    async def _list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        listed = await self._node_call("remote_tools", {"aid": self._aid})
        return types.ListToolsResult(tools=[types.Tool.model_validate(t) for t in listed["tools"]])

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> Any:
        arguments = {"aid": self._aid, "tool": params.name, "arguments": params.arguments or {}}
        res = await self._node.call_tool("call_remote_tool", arguments)
        if res.is_error:
            return types.CallToolResult(content=list(res.content), is_error=True)
        out = res.structured_content or {}
        return types.CallToolResult.model_validate({
            "content": out.get("content", []),
            **({"structuredContent": out["structured_content"]}
               if out.get("structured_content") is not None else {})})  # fmt: skip


async def run_stdio_mirror(aid: str, node_command: Sequence[str]) -> None:
    """Serve agent ``aid``'s tools on this process's stdio, through the node's MCP server
    started as ``node_command`` (``a2al-mcp serve --stdio …``)."""
    from mcp.server.stdio import stdio_server

    params = StdioServerParameters(command=node_command[0], args=list(node_command[1:]))
    async with Client(params, cache=None) as node, stdio_server() as (read, write):
        mirror = Mirror(node, aid)
        await mirror.server.run(read, write, mirror.server.create_initialization_options())
