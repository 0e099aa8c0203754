"""The MCP front end: the tool catalogue served over stdio or streamable HTTP."""

from .app import build_server

__all__ = ["build_server"]
