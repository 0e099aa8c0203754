"""Serve an a2a-sdk agent on an A2AL identity (no HTTP server, no open port)."""

from __future__ import annotations

import collections
import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
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
    from a2al_mcp import Clock, Node

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


REPEAT_MAX = 4096
"""``SendMessage`` answers remembered per served agent to answer a repeated ``messageId``."""
REPEAT_KEEP_S = 86400.0
"""How long one is remembered (the outbox's default TTL: a queued message is tried again at
most this long)."""
REPEAT_ANSWER_MAX = 64 * 1024
"""Largest answer remembered (a larger one lets a repeat through to the handler)."""
_SEND_METHODS = frozenset({"SendMessage", "message/send"})


def _message_key(path: str, body: bytes) -> tuple[str, Any] | None:
    """``(key, JSON-RPC id)`` of a non-streaming send (JSON-RPC ``SendMessage`` or HTTP+JSON
    ``POST …/message:send``), the key the ``messageId`` and a digest of the request's
    parameters (a sender trying again sends the same ones; a client that gives two different
    messages one id, as the A2A conformance suite does, is not answered the first's
    answer); None for anything else."""
    if not (body.startswith(b"{") and (path == "/" or path.endswith("/message:send"))):
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    rpc = path == "/"
    if rpc and doc.get("method") not in _SEND_METHODS:
        return None
    params = doc.get("params") if rpc else doc
    message = params.get("message") if isinstance(params, dict) else None
    mid = message.get("messageId") if isinstance(message, dict) else None
    if not isinstance(mid, str) or not mid:
        return None
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{mid} {digest}", doc.get("id") if rpc else None


def _delivery_id(scope: Any) -> str | None:
    """The outbox's delivery id the request carries, if any."""
    want = agentcall.DELIVERY_HEADER.encode()
    for name, value in scope.get("headers", ()):
        if name.lower() == want:
            return bytes(value).decode("latin-1")[:128]
    return None


class _Answer:
    def __init__(self, at: float) -> None:
        self.at = at
        self.done = anyio.Event()
        self.messages: list[dict[str, Any]] | None = None
        """The ASGI messages of the first answer (None: not kept)."""


class _DropRepeats:
    """ASGI middleware: a ``SendMessage`` that an A2AL outbox tries again (it carries
    :data:`~a2al_mcp.agentcall.DELIVERY_HEADER`) with the ``messageId`` the same verified
    caller sent before to the same path, i.e. over the same binding (after a crash, a lost
    answer), gets the first answer again and never reaches the handler a second time.
    Requests without the header pass untouched. A repeat that arrives while the first is
    still being answered waits for it. Bounded (:data:`REPEAT_MAX`, :data:`REPEAT_KEEP_S`);
    answers of 5xx or over :data:`REPEAT_ANSWER_MAX` are not kept."""

    def __init__(self, app: Any, clock: Clock) -> None:
        self.app = app
        self._clock = clock
        self._answers: collections.OrderedDict[tuple[str, str, str], _Answer] = (
            collections.OrderedDict()
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        delivery = _delivery_id(scope) if scope.get("type") == "http" else None
        if delivery is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            part = await receive()
            if part["type"] != "http.request":
                await self.app(scope, receive, send)
                return
            chunks.append(part.get("body", b""))
            more = part.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def again() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            message: dict[str, Any] = await receive()
            return message

        found = _message_key(scope.get("path", ""), body)
        if found is None:
            await self.app(scope, again, send)
            return
        caller = str(scope.get("extensions", {}).get("a2al", {}).get("caller", ""))
        # the path too: the same message sent over the other binding is answered in that
        # binding's shape (JSON-RPC at "/", HTTP+JSON at ".../message:send")
        key = (caller, str(scope.get("path", "")), f"{delivery} {found[0]}")
        now = self._clock.monotonic()
        while self._answers:  # forget the oldest past their time
            first = next(iter(self._answers.values()))
            if now - first.at < REPEAT_KEEP_S and len(self._answers) < REPEAT_MAX:
                break
            self._answers.popitem(last=False)
        earlier = self._answers.get(key)
        if earlier is not None:
            await earlier.done.wait()
            if earlier.messages is not None:
                for message in _with_id(earlier.messages, found[1]):
                    await send(message)
                return
            await self.app(scope, again, send)
            return
        answer = self._answers[key] = _Answer(now)
        kept: list[dict[str, Any]] | None = []
        size = 0

        async def keep(message: dict[str, Any]) -> None:
            nonlocal kept, size
            if kept is not None:
                if message["type"] == "http.response.start" and int(message["status"]) >= 500:
                    kept = None
                else:
                    size += len(message.get("body", b""))
                    kept = [*kept, dict(message)] if size <= REPEAT_ANSWER_MAX else None
            await send(message)

        try:
            await self.app(scope, again, keep)
            answer.messages = kept
        finally:
            answer.done.set()
            if answer.messages is None:
                self._answers.pop(key, None)


def _with_id(messages: list[dict[str, Any]], rpc_id: Any) -> list[dict[str, Any]]:
    """The kept answer, its JSON-RPC ``id`` made the repeat's (a body of one message)."""
    bodies = [m for m in messages if m["type"] == "http.response.body"]
    if rpc_id is None or len(bodies) != 1:
        return messages
    try:
        doc = json.loads(bodies[0].get("body", b""))
    except ValueError:
        return messages
    if not isinstance(doc, dict) or doc.get("id") == rpc_id:
        return messages
    doc["id"] = rpc_id
    raw = json.dumps(doc).encode()
    out = []
    for m in messages:
        if m["type"] == "http.response.start":
            headers = [(k, str(len(raw)).encode() if k.lower() == b"content-length" else v)
                       for k, v in m.get("headers", [])]  # fmt: skip
            m = {**m, "headers": headers}
        elif m["type"] == "http.response.body":
            m = {**m, "body": raw}
        out.append(m)
    return out


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
    drop_repeats: bool = True,
) -> ServedAgent:
    """Serve an A2A agent as local identity ``aid`` (default: the node).

    ``handler`` is an a2a-sdk ``RequestHandler`` (e.g. ``DefaultRequestHandler``), served with
    the SDK's own routes (JSON-RPC at ``/`` and HTTP+JSON beside it: both bindings), or any
    ASGI app that already speaks A2A (``bindings`` says which it speaks; default JSON-RPC).
    The card names ``a2al://<AID>`` once per binding served; it is served at
    ``/.well-known/agent-card.json`` exactly as hashed, with ``Cache-Control: public,
    max-age=<card_max_age_s>`` and an ETag.

    With ``drop_repeats`` (the default) a ``SendMessage`` that an A2AL outbox tries again
    (the ``a2al-delivery-id`` header; same caller, binding, ``messageId`` and parameters) is
    answered with the first answer and reaches the handler once. Other requests are never
    de-duplicated: a client that sends one message twice gets two tasks (the A2A
    conformance suite does).

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
    app: Any = Starlette(routes=routes)
    if drop_repeats:
        app = _DropRepeats(app, node.clock)
    node.serve(target, app=app, allow=allow, deny=deny, token=token)
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
