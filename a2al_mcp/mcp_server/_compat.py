"""The one module that imports the ``mcp`` SDK: differences between mcp 2.x and 1.x.

mcp 2 renamed FastMCP to MCPServer (``mcp.server.mcpserver``); mcp 1.30 (which CrewAI pins)
still has ``mcp.server.fastmcp``. Both take ``add_tool(fn, name=, description=,
annotations=)``, both send a :class:`ToolError`'s message to the client, and both run stdio
and streamable HTTP.
"""

from __future__ import annotations

import hmac
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


async def run_http(server: Any, host: str, port: int, *, token: str | None = None) -> None:
    """Streamable HTTP at ``/mcp``. Loopback hosts get the SDK's Host/Origin checks; any
    other host gets the same checks for that host, and ``token`` (required there by the CLI)
    is demanded as ``Authorization: Bearer <token>`` on every request."""
    if MCP_MAJOR != 2:  # pragma: no cover - mcp 1.x
        if token:
            raise RuntimeError("bearer tokens need mcp 2.x")
        server.settings.host, server.settings.port = host, port
        await server.run_streamable_http_async()
        return
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings

    security = None
    if host not in ("127.0.0.1", "localhost", "::1"):
        shown = f"[{host}]" if ":" in host else host
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=[f"{shown}:*"],
            allowed_origins=[f"http://{shown}:*", f"https://{shown}:*"],
        )
    app = server.streamable_http_app(host=host, transport_security=security)
    if token:
        app = _bearer(app, token)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    await uvicorn.Server(config).serve()


def _bearer(app: Any, token: str) -> Any:
    expected = f"Bearer {token}".encode()

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers", [])).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"www-authenticate", b"Bearer")]})  # fmt: skip
                await send({"type": "http.response.body", "body": b"missing or wrong token"})
                return
        await app(scope, receive, send)

    return guarded
