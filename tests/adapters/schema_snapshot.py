"""The committed snapshot of every tool's rendering (name, description, argument schema) and
the normalisation that makes the MCP, LangChain and CrewAI renderings comparable: JSON-schema
``title``s (each framework names its generated models differently) and the top-level
``additionalProperties`` flag are dropped; everything a model reads is kept.

``A2AL_MCP_UPDATE_SNAPSHOT=1`` rewrites the file from the MCP rendering (review the diff: these
descriptions and schemas are a contract with language models)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).with_name("tool_schemas.json")


def normalize(schema: Any, *, top: bool = True) -> Any:
    if isinstance(schema, dict):
        out = {k: normalize(v, top=False) for k, v in schema.items() if k != "title"}
        if top:
            out.pop("additionalProperties", None)
            out.setdefault("required", [])
            out["required"] = sorted(out["required"])
            out.setdefault("properties", {})
        return out
    if isinstance(schema, list):
        return [normalize(v, top=False) for v in schema]
    return schema


async def mcp_rendering(node: Any) -> dict[str, Any]:
    """The MCP server's tools as an MCP client lists them (mcp 2.x or 1.x)."""
    from a2al_mcp.mcp_server import build_server
    from a2al_mcp.mcp_server._compat import MCP_MAJOR

    server = build_server(node)
    if MCP_MAJOR == 2:
        from mcp import Client

        async with Client(server) as client:
            tools = (await client.list_tools()).tools
        return {t.name: entry(t.description or "", t.input_schema) for t in tools}
    from mcp.shared.memory import create_connected_server_and_client_session

    async with create_connected_server_and_client_session(server._mcp_server) as session:
        tools = (await session.list_tools()).tools
    return {t.name: entry(t.description or "", t.inputSchema) for t in tools}


def entry(description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "parameters": normalize(parameters)}


def expected() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SNAPSHOT.read_text())
    return data


def check(rendered: dict[str, dict[str, Any]], *, source: str) -> None:
    """Assert ``rendered`` (tool name -> entry) equals the snapshot, one tool at a time."""
    if source == "mcp" and os.environ.get("A2AL_MCP_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(rendered, indent=2, ensure_ascii=False) + "\n")
    want = expected()
    assert list(rendered) == list(want), f"{source}: tool names or order differ"
    for name, got in rendered.items():
        assert got == want[name], f"{source} renders {name!r} differently from the snapshot"
