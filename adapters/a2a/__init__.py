"""A2A over A2AL: official a2a-sdk agents reached by AID over verified QUIC streams.

- :func:`serve_a2a` serves an a2a-sdk request handler on a local identity: A2A JSON-RPC as
  HTTP/1.1 on each inbound stream, no TCP listener; the agent card at
  ``/.well-known/agent-card.json`` names ``a2al://<AID>``; the caller's verified AID reaches
  the executor as ``context.call_context.state["a2al_caller"]`` (never from a header).
- :func:`a2a_client` returns an a2a-sdk client whose HTTP goes over A2AL streams.

Needs the ``a2a`` extra (``pip install "a2al-mcp[a2a]"``).
"""

from .client import A2ALHttpTransport, a2a_client, fetch_card
from .server import CALLER_KEY, agent_url, serve_a2a

__all__ = ["CALLER_KEY", "A2ALHttpTransport", "a2a_client", "agent_url", "fetch_card", "serve_a2a"]
