"""The official ``mcp`` client, on whichever SDK line is installed, as :class:`RemoteMcp
<.client.RemoteMcp>` uses it: one session over a :class:`~.stream_transport.StreamTransport`,
its tool pages and calls in their JSON form.

- mcp 2.x: ``mcp.Client`` on the SDK's streamable-HTTP client, over an ``httpx2`` client;
- mcp 1.x (1.30 has what is needed: ``streamable_http_client(url, http_client=…)``):
  ``ClientSession`` on the same streamable-HTTP client, over an ``httpx`` client.

Either way the client offers the server nothing (no sampling, elicitation or roots).
Importing this module raises :class:`ImportError` naming what is missing when the installed
SDK has neither.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, Final

__all__ = ["SDK_MAJOR", "SdkError", "SdkSession", "http_module", "open_session"]


def _load() -> tuple[int, Any, Any]:
    """The SDK line, its JSON-RPC error class and the HTTP library its client takes."""
    mcp = importlib.import_module("mcp")
    exceptions = importlib.import_module("mcp.shared.exceptions")
    if hasattr(mcp, "Client"):
        return 2, exceptions.MCPError, importlib.import_module("httpx2")
    streamable = importlib.import_module("mcp.client.streamable_http")
    if not hasattr(streamable, "streamable_http_client"):
        raise ImportError("using other agents' MCP tools needs mcp 2.x, or mcp 1.x with "
                          "mcp.client.streamable_http.streamable_http_client (1.30 has it); "
                          f"this is mcp {_version()}")  # fmt: skip
    return 1, exceptions.McpError, importlib.import_module("httpx")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mcp")
    except PackageNotFoundError:  # pragma: no cover - mcp imported but not installed
        return "unknown"


_SDK: Final = _load()
SDK_MAJOR: Final[int] = _SDK[0]
"""The installed SDK line: 2 or 1."""
SdkError: Final[type[Exception]] = _SDK[1]
"""The SDK's JSON-RPC error (``MCPError`` on 2.x, ``McpError`` on 1.x); ``.error`` is the
``ErrorData`` (code, message, data) in both."""
http_module: Final[Any] = _SDK[2]
"""``httpx2`` (mcp 2.x) or ``httpx`` (mcp 1.x): the library of the client the SDK is given."""


class SdkSession:
    """One open session: the tool listing by pages and tool calls, as JSON."""

    def __init__(self, session: Any) -> None:
        self._session = session

    async def list_tools_page(self, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of tools (each as the server described it) and the next cursor."""
        if SDK_MAJOR >= 2:
            page = await self._session.list_tools(cursor=cursor, cache_mode="refresh")
        else:
            page = await self._session.list_tools(cursor)
        out = page.model_dump(mode="json", by_alias=True, exclude_none=True)
        return list(out.get("tools", [])), out.get("nextCursor")

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The result as the server gave it (``content``, ``structuredContent``,
        ``isError``), in its JSON form."""
        result = await self._session.call_tool(name, arguments)
        out: dict[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        return out


@contextlib.asynccontextmanager
async def open_session(transport: Any, url: str, *, read_timeout_s: float) -> AsyncIterator[
        SdkSession]:  # fmt: skip
    """A session with the MCP server at ``url`` reached through ``transport`` (its requests
    carried as the transport carries them), initialized, closed on exit."""
    from mcp.client.streamable_http import streamable_http_client

    async with http_module.AsyncClient(transport=transport, timeout=None) as http:
        if SDK_MAJOR >= 2:
            from mcp import Client

            async with Client(streamable_http_client(url, http_client=http), cache=None,
                              read_timeout_seconds=read_timeout_s) as client:  # fmt: skip
                yield SdkSession(client)
            return
        session_class: Any = importlib.import_module("mcp").ClientSession
        async with (
            streamable_http_client(url, http_client=http) as (read, write, *_),
            session_class(read, write,
                          read_timeout_seconds=timedelta(seconds=read_timeout_s)) as session,
        ):  # fmt: skip
            await session.initialize()
            yield SdkSession(session)
