"""MCP over A2AL: an agent's MCP tools served on its AID, and used by AID (issue 20).

- :mod:`.spec`: what is exposed (:class:`ExposeSpec`: a stdio command or a streamable-HTTP
  URL, its capability topics, who may call it); no SDK.
- :mod:`.expose`: :func:`expose_mcp` serves it on a local identity over A2AL streams
  (streamable HTTP on streams; a stdio server behind the ``mcp`` SDK, owned by the node).
- :mod:`.upstream`: kept-alive HTTP/1.1 connections to a server exposed by ``http://`` URL.
- :mod:`.stream_transport`: an ``httpx2`` (or ``httpx``) transport whose requests travel on
  kept-alive node streams, so the SDK's streamable-HTTP client reaches an AID.
- :mod:`.sdk_client`: the SDK's client session on mcp 2.x or 1.x.
- :mod:`.client`: :class:`RemoteMcp`, one warm SDK session per remote agent, with the limits
  (response size, call timeout, concurrent calls).

Only :mod:`.spec` loads with this package: the others import the ``mcp`` SDK (~20 MiB),
which the node's desktop path never loads.
"""

from __future__ import annotations

from .spec import CALLER_HEADER, MCP_PATH, PROTOCOL, ExposeSpec, parse_expose, spec_from_config

__all__ = [
    "CALLER_HEADER",
    "MCP_PATH",
    "PROTOCOL",
    "ExposeSpec",
    "parse_expose",
    "spec_from_config",
]
