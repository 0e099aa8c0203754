"""The one module that imports the ``mcp`` SDK: differences between mcp 2.x and 1.x.

mcp 2 renamed FastMCP to MCPServer (``mcp.server.mcpserver``); mcp 1.30 (which CrewAI pins)
still has ``mcp.server.fastmcp``. Both take ``add_tool(fn, name=, description=,
annotations=)``, both send a :class:`ToolError`'s message to the client, and both run stdio
and streamable HTTP.
"""

from __future__ import annotations

from typing import Any

from mcp.types import ToolAnnotations

try:
    from mcp.server.mcpserver import Context
    from mcp.server.mcpserver import MCPServer as _Server
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.shared.subscriptions import ResourceUpdated

    MCP_MAJOR = 2
except ImportError:  # pragma: no cover - exercised in the mcp 1.x venv
    import importlib

    _fm: Any = importlib.import_module("mcp.server.fastmcp")
    _fx: Any = importlib.import_module("mcp.server.fastmcp.exceptions")
    Context = _fm.Context  # type: ignore[misc]
    _Server = _fm.FastMCP  # type: ignore[misc]
    ToolError = _fx.ToolError  # type: ignore[misc]
    MCP_MAJOR = 1

__all__ = [
    "MCP_MAJOR",
    "Context",
    "ToolError",
    "add_resource",
    "new_server",
    "publish_resource_updated",
    "report_progress",
    "run_http",
    "run_stdio",
    "tool_hints",
]


def add_resource(server: Any, uri: str, name: str, description: str, fn: Any) -> None:
    """Register a JSON resource read by ``fn() -> str``."""
    server.resource(uri, name=name, description=description, mime_type="application/json")(fn)


async def publish_resource_updated(server: Any, uri: str) -> None:
    """Tell subscribed clients that ``uri`` changed (mcp 2: ``subscriptions/listen``)."""
    if MCP_MAJOR == 2:
        await server._subscriptions.publish(ResourceUpdated(uri=uri))


async def report_progress(ctx: Any, progress: float, total: float, message: str) -> None:
    """Progress notification for the running tool call (ignored if the client did not ask)."""
    if ctx is None:
        return
    try:
        await ctx.report_progress(progress, total, message)
    except Exception:  # a client without a progress token, or gone: progress is best effort
        return


def tool_hints(*, read_only: bool) -> ToolAnnotations:
    """Tool hints (field names are snake_case in mcp 2, camelCase in mcp 1)."""
    if MCP_MAJOR == 2:
        return ToolAnnotations(read_only_hint=read_only)
    hints: dict[str, Any] = {"readOnlyHint": read_only}
    return ToolAnnotations(**hints)  # pragma: no cover


def new_server(name: str, instructions: str) -> Any:
    return _Server(name, instructions=instructions)


async def run_stdio(server: Any) -> None:
    await server.run_stdio_async()


async def run_http(server: Any, host: str, port: int) -> None:
    if MCP_MAJOR == 2:
        await server.run_streamable_http_async(host=host, port=port)
    else:  # pragma: no cover - mcp 1.x
        server.settings.host, server.settings.port = host, port
        await server.run_streamable_http_async()
