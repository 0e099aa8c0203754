"""A2A over A2AL: official a2a-sdk agents reached by AID over verified QUIC streams.

- :func:`serve_a2a` serves an a2a-sdk request handler on a local identity: A2A JSON-RPC (and
  HTTP+JSON) as HTTP/1.1 on each inbound stream, no TCP listener; the agent card at
  ``/.well-known/agent-card.json`` names ``a2al://<AID>`` once per binding, with a
  Cache-Control max-age; the caller's verified AID reaches
  the executor as ``context.call_context.state["a2al_caller"]`` (never from a header).
- :func:`a2a_client` returns an a2a-sdk client whose HTTP goes over A2AL streams (streaming
  replies as server-sent events over the stream); :func:`send_to_skill` sends to any agent that
  offers a skill, trying candidates until one answers.
- :func:`serve_a2a` also publishes the agent: its endpoint, a topic record per skill with
  protocol ``a2a``, and a profile record carrying the card hash.

Without the SDK, :mod:`a2al_mcp.agentcall` speaks the same JSON-RPC (the MCP tools use it).

Needs the ``a2a`` extra (``pip install "a2al-mcp[a2a]"``).
"""

from .client import A2ALHttpTransport, a2a_client, fetch_card, send_to_skill
from .server import (
    BINDINGS,
    CALLER_KEY,
    CARD_MAX_AGE_S,
    ServedAgent,
    agent_url,
    card_for,
    serve_a2a,
)

__all__ = [
    "BINDINGS",
    "CALLER_KEY",
    "CARD_MAX_AGE_S",
    "A2ALHttpTransport",
    "ServedAgent",
    "a2a_client",
    "agent_url",
    "card_for",
    "fetch_card",
    "send_to_skill",
    "serve_a2a",
]
