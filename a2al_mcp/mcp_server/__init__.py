"""The MCP front end: the tool catalogue served over stdio or streamable HTTP.

Importing this package does not import the ``mcp`` SDK (the node's line sessions answer
without it: :mod:`.session`); :func:`build_server` (the SDK's server) imports it when first
used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core import ServerCore
from .guard import FrontStats

if TYPE_CHECKING:
    from .app import build_server

__all__ = ["FrontStats", "ServerCore", "build_server"]


def __getattr__(name: str) -> Any:
    if name == "build_server":
        from .app import build_server

        return build_server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
