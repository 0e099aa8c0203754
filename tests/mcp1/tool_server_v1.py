"""A small streamable-HTTP MCP server written with the official SDK 1.x (``FastMCP``), for the
mcp 1.x remote-MCP test: ``python tool_server_v1.py PORT``. Tools: ``add`` (structured
result), ``whoami`` (the caller AID header the node set), ``fail`` (a tool error)."""

from __future__ import annotations

import sys

from mcp.server.fastmcp import Context, FastMCP
from pydantic import BaseModel

server = FastMCP("remote-test-tools-v1", host="127.0.0.1", port=int(sys.argv[1]),
                 stateless_http=True, json_response=True, log_level="WARNING")  # fmt: skip


class Sum(BaseModel):
    total: int
    terms: list[int]


@server.tool(description="Add two integers.")
def add(a: int, b: int) -> Sum:
    return Sum(total=a + b, terms=[a, b])


@server.tool(description="The caller AID the node passed in X-A2AL-Caller.")
def whoami(ctx: Context) -> dict[str, str]:  # type: ignore[type-arg]
    request = ctx.request_context.request
    headers = getattr(request, "headers", None)
    return {"caller": headers.get("x-a2al-caller", "") if headers is not None else ""}


@server.tool(description="Always fails.")
def fail(reason: str) -> str:
    raise ValueError(f"refused on purpose: {reason}")


if __name__ == "__main__":
    server.run("streamable-http")
