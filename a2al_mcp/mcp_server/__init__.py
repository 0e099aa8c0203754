"""The MCP front end: the tool catalogue served over stdio or streamable HTTP."""

from .app import build_server
from .guard import FrontStats

__all__ = ["FrontStats", "build_server"]
