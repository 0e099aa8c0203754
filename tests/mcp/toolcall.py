"""One MCP tool call through an ``mcp`` client, for the tests that drive a server."""

from __future__ import annotations

import json
from typing import Any


async def call(client: Any, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call tool ``name``; assert it succeeded; its structured result (or its text as JSON)."""
    res = await client.call_tool(name, args or {})
    assert not res.is_error, (name, res.content)
    out: dict[str, Any] = res.structured_content or json.loads(res.content[0].text)
    return out
