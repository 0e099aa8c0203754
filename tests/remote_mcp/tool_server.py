"""A small MCP server written with the official SDK, for the remote-MCP tests and the
benchmark: ``python tool_server.py stdio`` or ``python tool_server.py http PORT``.

Tools: ``add`` (structured result), ``whoami`` (the caller AID header the node set, over
HTTP), ``fail`` (a tool error), ``big`` (an answer of N bytes), ``hang`` (never answers),
``ask`` (asks the client a question), ``crash`` (the process exits).
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

server = MCPServer("remote-test-tools")


class Sum(BaseModel):
    total: int
    terms: list[int]


@server.tool(description="Add two integers.")
def add(a: int, b: int) -> Sum:
    return Sum(total=a + b, terms=[a, b])


@server.tool(description="The caller AID the node passed in X-A2AL-Caller.")
def whoami(ctx: Context) -> dict[str, str]:
    request = ctx.request_context.request
    headers = getattr(request, "headers", None)
    return {"caller": headers.get("x-a2al-caller", "") if headers is not None else ""}


@server.tool(description="Always fails.")
def fail(reason: str) -> str:
    raise ToolError(f"refused on purpose: {reason}")


@server.tool(description="An answer of size bytes.")
def big(size: int) -> str:
    return "x" * size


@server.tool(description="Never answers.")
async def hang() -> str:
    await anyio.sleep_forever()
    return ""


class Answer(BaseModel):
    text: str


@server.tool(description="Asks the calling client a question (elicitation).")
async def ask(ctx: Context) -> str:
    result = await ctx.elicit("What is the secret?", Answer)
    return f"the client answered: {result!r}"


@server.tool(description="Ends the server process (to test restarts).")
def crash() -> str:
    os._exit(3)


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]),
                   stateless_http=True, json_response=True)  # fmt: skip
