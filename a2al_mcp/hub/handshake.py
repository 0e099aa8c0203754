"""The node's answer to ``initialize``, for the stdio proxy: see :mod:`a2al_mcp.mcp_handshake`
(the builder lives there, beside the hub and the MCP server, which both answer with it)."""

from __future__ import annotations

from ..mcp_handshake import (
    INSTRUCTIONS,
    NAME,
    PROFILES,
    TITLE,
    Profile,
    answer,
    plain_request,
    sdk_version,
)

__all__ = [
    "INSTRUCTIONS",
    "NAME",
    "PROFILES",
    "TITLE",
    "Profile",
    "answer",
    "plain_request",
    "sdk_version",
]
