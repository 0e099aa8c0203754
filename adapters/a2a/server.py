"""Serve an a2a-sdk agent on an A2AL identity (no HTTP server, no open port)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from a2a.server.context import ServerCallContext
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.routes.common import DefaultServerCallContextBuilder
from a2a.types import AgentCard, AgentInterface
from starlette.applications import Starlette
from starlette.requests import Request

from a2al_mcp import Aid

if TYPE_CHECKING:
    from a2al_mcp.node import Node

__all__ = ["CALLER_KEY", "agent_url", "serve_a2a"]

CALLER_KEY = "a2al_caller"
"""Key of the verified caller AID (text) in ``ServerCallContext.state``."""


def agent_url(aid: Aid) -> str:
    """The interface URL of an agent reached over A2AL."""
    return f"a2al://{aid}"


class _CallerContextBuilder(DefaultServerCallContextBuilder):
    """The SDK's context, plus the caller AID taken from the verified connection."""

    def build(self, request: Request) -> ServerCallContext:
        ctx = super().build(request)
        a2al = request.scope.get("extensions", {}).get("a2al", {})
        ctx.state[CALLER_KEY] = a2al.get("caller")
        headers = ctx.state.get("headers")
        if isinstance(headers, dict):  # nothing a caller can write claims an identity
            for name in [h for h in headers if h.lower().startswith("x-a2al-")]:
                del headers[name]
        return ctx


def serve_a2a(node: Node, handler: Any, card: AgentCard, *, aid: Aid | None = None) -> AgentCard:
    """Serve ``handler`` (an a2a-sdk ``RequestHandler``) as local identity ``aid`` (default:
    the node). The card's interface URL is set to ``a2al://<AID>`` (JSON-RPC binding).
    Returns the card as served."""
    target = aid or node.aid
    served = AgentCard()
    served.CopyFrom(card)
    del served.supported_interfaces[:]
    served.supported_interfaces.append(
        AgentInterface(url=agent_url(target), protocol_binding="JSONRPC", protocol_version="1.0")
    )
    routes = [
        *create_agent_card_routes(served),
        *create_jsonrpc_routes(handler, rpc_url="/", context_builder=_CallerContextBuilder()),
    ]
    node.serve(target, app=Starlette(routes=routes))
    return served
