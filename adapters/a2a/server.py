"""Serve an a2a-sdk agent on an A2AL identity (no HTTP server, no open port)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import RequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import create_jsonrpc_routes, create_rest_routes
from a2a.server.routes.common import DefaultServerCallContextBuilder
from a2a.types import AgentCard, AgentInterface
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from a2al_mcp import AgentProfilePayload, Aid, LimitExceeded, agentcall

if TYPE_CHECKING:
    from a2al_mcp import Node

__all__ = [
    "BINDINGS",
    "CALLER_KEY",
    "CARD_MAX_AGE_S",
    "ServedAgent",
    "agent_url",
    "card_for",
    "serve_a2a",
]

CALLER_KEY = "a2al_caller"
"""Key of the verified caller AID (text) in ``ServerCallContext.state``."""
PROTOCOL = "a2a"
"""The protocol name in topic and profile records."""
BINDINGS = ("JSONRPC", "HTTP+JSON")
"""The A2A protocol bindings a card can name for an agent served over A2AL."""
CARD_MAX_AGE_S = 300
"""How long a client may cache the served card (``Cache-Control: max-age``, A2A §8.6.1)."""


def agent_url(aid: Aid) -> str:
    """The interface URL of an agent reached over A2AL."""
    return f"a2al://{aid}"


def card_for(card: AgentCard, aid: Aid, bindings: Sequence[str] = ("JSONRPC",)) -> AgentCard:
    """A copy of ``card`` whose interfaces are ``a2al://<aid>``, one per protocol binding the
    served app speaks (``"JSONRPC"``, ``"HTTP+JSON"``; A2A 1.0): the card :func:`serve_a2a`
    serves (give it to the request handler too).

    Raises:
        ValueError: a binding that is not one of :data:`BINDINGS`, or none at all.
    """
    unknown = [b for b in bindings if b not in BINDINGS]
    if unknown or not bindings:
        raise ValueError(f"bindings must be some of {', '.join(BINDINGS)}, got {list(bindings)}")
    served = AgentCard()
    served.CopyFrom(card)
    del served.supported_interfaces[:]
    for binding in dict.fromkeys(bindings):
        served.supported_interfaces.append(
            AgentInterface(url=agent_url(aid), protocol_binding=binding, protocol_version="1.0")
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


def _card_route(card_json: bytes, etag: str, max_age_s: int) -> Route:
    headers = {"etag": etag, "cache-control": f"public, max-age={max_age_s}"}

    async def card(request: Request) -> Response:
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(card_json, media_type="application/json", headers=headers)

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
    bindings: Sequence[str] | None = None,
    card_max_age_s: int = CARD_MAX_AGE_S,
) -> ServedAgent:
    """Serve an A2A agent as local identity ``aid`` (default: the node).

    ``handler`` is an a2a-sdk ``RequestHandler`` (e.g. ``DefaultRequestHandler``), served with
    the SDK's own routes (JSON-RPC at ``/`` and HTTP+JSON beside it: both bindings), or any
    ASGI app that already speaks A2A (``bindings`` says which it speaks; default JSON-RPC).
    The card names ``a2al://<AID>`` once per binding served; it is served at
    ``/.well-known/agent-card.json`` exactly as hashed, with ``Cache-Control: public,
    max-age=<card_max_age_s>`` and an ETag.

    With ``publish`` (the default) the identity's endpoint record is published, the agent
    registers under ``topics`` (default: its skill ids) with protocol ``a2a`` so
    ``discover``/``call_agent(skill=…)`` find it, and its profile record (rec_type 0x02)
    carries the card hash. All of it is renewed while the node runs.
    """
    target = aid or node.aid
    sdk = isinstance(handler, RequestHandler)
    served = card_for(card, target, bindings or (BINDINGS if sdk else ("JSONRPC",)))
    card_json = json.dumps(agent_card_to_dict(served), separators=(",", ":")).encode()
    chosen = tuple(topics if topics is not None else [s.id for s in served.skills if s.id])
    agent = ServedAgent(target, served, card_json, chosen)
    routes: list[Any] = [_card_route(card_json, f'"{agent.card_hash.hex()}"', card_max_age_s)]
    if sdk:
        speaks = {i.protocol_binding for i in served.supported_interfaces}
        if "JSONRPC" in speaks:
            routes += create_jsonrpc_routes(handler, rpc_url="/",
                                            context_builder=_CallerContextBuilder())  # fmt: skip
        if "HTTP+JSON" in speaks:
            routes += create_rest_routes(handler, context_builder=_CallerContextBuilder())
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
