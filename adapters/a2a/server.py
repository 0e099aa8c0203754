"""Serve an a2a-sdk agent on an A2AL identity (no HTTP server, no open port)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import RequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import create_jsonrpc_routes
from a2a.server.routes.common import DefaultServerCallContextBuilder
from a2a.types import AgentCard, AgentInterface
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from a2al_mcp import AgentProfilePayload, Aid, LimitExceeded, agentcall

if TYPE_CHECKING:
    from a2al_mcp import Node

__all__ = ["CALLER_KEY", "ServedAgent", "agent_url", "card_for", "serve_a2a"]

CALLER_KEY = "a2al_caller"
"""Key of the verified caller AID (text) in ``ServerCallContext.state``."""
PROTOCOL = "a2a"
"""The protocol name in topic and profile records."""


def agent_url(aid: Aid) -> str:
    """The interface URL of an agent reached over A2AL."""
    return f"a2al://{aid}"


def card_for(card: AgentCard, aid: Aid) -> AgentCard:
    """A copy of ``card`` whose only interface is ``a2al://<aid>`` (JSON-RPC, A2A 1.0): the
    card :func:`serve_a2a` serves (give it to the request handler too)."""
    served = AgentCard()
    served.CopyFrom(card)
    del served.supported_interfaces[:]
    served.supported_interfaces.append(
        AgentInterface(url=agent_url(aid), protocol_binding="JSONRPC", protocol_version="1.0")
    )
    return served


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


class ServedAgent:
    """An agent served by :func:`serve_a2a`: its card (as served, exact bytes) and hash."""

    def __init__(self, aid: Aid, card: AgentCard, card_json: bytes, topics: tuple[str, ...]):
        self.aid = aid
        self.card = card
        self.card_json = card_json
        self.card_hash = hashlib.sha256(card_json).digest()
        """SHA-256 of the card bytes served (the profile record's ``card_hash``)."""
        self.topics = topics
        """The topics the agent registered under (its skills)."""


def _card_route(card_json: bytes, etag: str) -> Route:
    async def card(request: Request) -> Response:
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers={"etag": etag})
        return Response(card_json, media_type="application/json", headers={"etag": etag})

    return Route(agentcall.CARD_PATH, card, methods=["GET"])


def _profile(card: AgentCard, topics: Sequence[str], card_hash: bytes) -> AgentProfilePayload:
    profile = AgentProfilePayload(name=card.name[:64], brief=card.description[:140],
                                  protocols=(PROTOCOL,), skills=tuple(topics),
                                  card_hash=card_hash,
                                  modalities=tuple(card.default_input_modes))  # fmt: skip
    try:
        profile.to_bytes()
    except LimitExceeded:  # too many skills for 700 bytes: the card has them all
        profile = AgentProfilePayload(name=profile.name, brief=profile.brief,
                                      protocols=(PROTOCOL,), card_hash=card_hash)  # fmt: skip
    return profile


async def serve_a2a(
    node: Node,
    handler: Any,
    card: AgentCard,
    *,
    aid: Aid | None = None,
    topics: Sequence[str] | None = None,
    publish: bool = True,
    allow: Sequence[Aid] | None = None,
    deny: Sequence[Aid] = (),
    token: str | None = None,
) -> ServedAgent:
    """Serve an A2A agent as local identity ``aid`` (default: the node).

    ``handler`` is an a2a-sdk ``RequestHandler`` (e.g. ``DefaultRequestHandler``), served with
    the SDK's own JSON-RPC routes, or any ASGI app that already speaks A2A. The card's
    interface URL becomes ``a2al://<AID>`` (JSON-RPC binding); it is served at
    ``/.well-known/agent-card.json`` exactly as hashed.

    With ``publish`` (the default) the identity's endpoint record is published, the agent
    registers under ``topics`` (default: its skill ids) with protocol ``a2a`` so
    ``discover``/``call_agent(skill=…)`` find it, and its profile record (rec_type 0x02)
    carries the card hash. All of it is renewed while the node runs.
    """
    target = aid or node.aid
    served = card_for(card, target)
    card_json = json.dumps(agent_card_to_dict(served), separators=(",", ":")).encode()
    chosen = tuple(topics if topics is not None else [s.id for s in served.skills if s.id])
    agent = ServedAgent(target, served, card_json, chosen)
    routes: list[Any] = [_card_route(card_json, f'"{agent.card_hash.hex()}"')]
    if isinstance(handler, RequestHandler):
        routes += create_jsonrpc_routes(handler, rpc_url="/",
                                        context_builder=_CallerContextBuilder())  # fmt: skip
    else:
        routes.append(Mount("/", app=handler))
    node.serve(target, app=Starlette(routes=routes), allow=allow, deny=deny, token=token)
    if publish:
        await node.publish(target)
        skills = {s.id: s for s in served.skills}
        for topic in chosen:
            skill = skills.get(topic)
            brief = (skill.description if skill else "") or served.description
            await node.register_service(topic, name=served.name[:64], brief=brief[:140],
                                        protocols=[PROTOCOL],
                                        tags=list(skill.tags)[:8] if skill else [],
                                        aid=target)  # fmt: skip
        await node.set_profile(_profile(served, chosen, agent.card_hash), target)
    return agent
