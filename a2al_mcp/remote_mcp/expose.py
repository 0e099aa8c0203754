"""Serving an MCP server on a local identity over A2AL streams (streamable HTTP on streams,
through the node's ASGI serving): :func:`expose_mcp`.

- ``url``: an existing streamable-HTTP MCP server on this machine. Each request is forwarded
  to it as it came, plus :data:`~.spec.CALLER_HEADER` with the verified caller AID (the
  caller's own header of that name is dropped by the node); the answer streams back.
- ``command``: a stdio MCP server the node starts and owns, behind the ``mcp`` SDK: a
  stateless streamable-HTTP server whose tool listing and calls go to the stdio server's
  session. Stdio has no per-request caller, so who may call is the node's to enforce: the
  spec's ``allow``/``deny`` (checked when a stream is admitted, for both kinds). If the
  process dies it is started again after a back-off (0.5 s doubling to 30 s, reset after a
  minute up); calls meanwhile wait for it, within their timeout. It stops when the node
  closes (its task is the node's).

With ``publish`` the identity's endpoint record is published and the server registered
under each of the spec's topics with protocol ``mcp``, so ``discover(topic,
protocols=["mcp"])`` finds it.

The same ``[[expose]]`` table with ``protocol = "a2a"`` (``--expose a2a=URL``) puts an
existing plain-HTTP A2A agent on A2AL: :func:`expose_a2a`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import anyio
import httpx2

from ..config import ExposeConfig
from ..errors import AgentCallError, DecodeError, LimitExceeded, Unreachable, UsageError
from ..protocol.payloads import AgentProfilePayload
from .spec import CALLER_HEADER, PROTOCOL, ExposeSpec, spec_from_config
from .upstream import Upstream

if TYPE_CHECKING:
    from ..identity.aid import Aid
    from ..node.node import Node

__all__ = [
    "A2A_CARD_MAX_AGE_S",
    "A2A_CARD_PATH",
    "A2A_PROTOCOL",
    "ExposedA2a",
    "ExposedMcp",
    "StdioBridge",
    "expose_a2a",
    "expose_all",
    "expose_configs",
    "expose_mcp",
    "http_forwarder",
]

logger = logging.getLogger(__name__)

BACKOFF_FIRST_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
STABLE_S: Final = 60.0
"""A stdio server up this long has its back-off reset."""
_HOP: Final = frozenset({b"host", b"connection", b"content-length", b"transfer-encoding",
                         b"keep-alive", b"upgrade"})  # fmt: skip


_RESPONSE_HOP: Final = frozenset({b"connection", b"transfer-encoding", b"keep-alive", b"upgrade"})
"""Not passed back (the node frames the body itself; a length the server gave is kept)."""


def http_forwarder(url: str, client: Upstream | httpx2.AsyncClient, *,
                   keep_path: bool = False) -> Any:  # fmt: skip
    """An ASGI app that forwards every request to the streamable-HTTP MCP server at ``url``
    (through ``client``, whose owner closes it: an :class:`~.upstream.Upstream` for a
    plain-HTTP server, kept-alive connections, or an ``httpx2`` client) with the verified
    caller in :data:`CALLER_HEADER`, streaming the answer back. With ``keep_path`` the
    request's path is kept (``url`` is then an origin, ``http://host:port``), as an A2A
    agent needs."""
    host = urlsplit(url).netloc.encode("latin-1")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        caller = scope.get("extensions", {}).get("a2al", {}).get("caller", "")
        headers = [(k, v) for k, v in scope["headers"]
                   if k.lower() not in _HOP and k.lower() != CALLER_HEADER.encode()]  # fmt: skip
        headers.append((CALLER_HEADER.encode(), caller.encode("ascii")))
        query = scope.get("query_string", b"")
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        target = (url + path if keep_path else url) + (
            ("?" + query.decode("latin-1")) if query else ""
        )
        if isinstance(client, Upstream):
            await _forward_plain(client, scope["method"], target, host, headers, bytes(body),
                                 send)  # fmt: skip
            return
        request = client.build_request(scope["method"], target, headers=headers,
                                       content=bytes(body))  # fmt: skip
        try:
            response = await client.send(request, stream=True)
        except httpx2.HTTPError as exc:
            logger.warning("expose.forward_failed url=%s error=%r", url, exc)
            await _not_answering(send)
            return
        try:
            out = [(k.encode("latin-1"), v.encode("latin-1"))
                   for k, v in response.headers.multi_items()
                   if k.lower().encode() not in _HOP]  # fmt: skip
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": out})  # fmt: skip
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    return app


async def _not_answering(send: Any) -> None:
    await send({"type": "http.response.start", "status": 502,
                "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b"the exposed server is not answering"})


async def _forward_plain(upstream: Upstream, method: str, url: str, host: bytes,
                         headers: list[tuple[bytes, bytes]], body: bytes,
                         send: Any) -> None:  # fmt: skip
    """One request through ``upstream``'s kept-alive connections; the answer streamed back
    as it comes (what is in hand sent at once, the last chunk with the end)."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [(b"host", host), *headers, (b"content-length", str(len(body)).encode())]
    try:
        response = await upstream.request(method, target, headers, body)
    except (Unreachable, DecodeError) as exc:
        logger.warning("expose.forward_failed url=%s error=%r", url, exc)
        await _not_answering(send)
        return
    out = [(k, v) for k, v in response.headers if k not in _RESPONSE_HOP]
    try:
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        async with contextlib.aclosing(response.chunks()) as chunks:
            async for chunk, more in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
    finally:  # the caller went away (its stream reset): the connection is not reused
        await response.aclose()


async def _upstream_for(node: Node, url: str) -> Upstream | httpx2.AsyncClient:
    """What forwards to ``url``: kept-alive connections for plain HTTP, an ``httpx2`` client
    for HTTPS; the node's task closes it when the node closes."""
    parts = urlsplit(url)
    client: Upstream | httpx2.AsyncClient
    if parts.scheme == "http" and parts.hostname:
        client = Upstream(parts.hostname, parts.port or 80)
    else:
        client = httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, read=None))

    async def keep() -> None:  # the node's task: the client closes with the node
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    node.spawn(keep)
    return client


class StdioBridge:
    """A stdio MCP server owned by the node, served as stateless streamable HTTP (the SDK's
    low-level server, forwarding the tool listing and calls to the stdio session)."""

    def __init__(self, command: Sequence[str], *, name: str = "a2al-exposed") -> None:
        from mcp.server.lowlevel.server import Server
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        self.command = tuple(command)
        self.starts = 0
        """How many times the process was started."""
        self._upstream: Any = None
        self._up = anyio.Event()
        self._dead = anyio.Event()
        self._schemas: dict[str, Any] = {}
        """Each tool's inputSchema from the stdio server's last listing (by name)."""
        server: Any = Server(name, on_list_tools=self._list_tools, on_call_tool=self._call_tool,
                             get_tool_input_schema=self._schemas.get)  # fmt: skip
        self._manager = StreamableHTTPSessionManager(app=server, stateless=True,
                                                     json_response=True)  # fmt: skip

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI app served on the identity."""
        await self._manager.handle_request(scope, receive, send)

    async def _session(self) -> Any:
        await self._up.wait()
        return self._upstream

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, anyio.ClosedResourceError | anyio.BrokenResourceError | OSError):
            self._dead.set()

    async def _list_tools(self, ctx: Any, params: Any) -> Any:
        upstream = await self._session()
        try:
            listed = await upstream.list_tools(cursor=params.cursor if params else None)
        except Exception as exc:
            self._failed(exc)
            raise
        self._remember(listed.tools, first_page=not (params and params.cursor))
        return listed

    def _remember(self, tools: Any, *, first_page: bool) -> None:
        """Keep the listed tools' input schemas: the SDK's server checks a call's
        ``Mcp-Param-*`` headers against them (given, it does not list the tools again, a
        round trip to the stdio server, on every call)."""
        if first_page:
            self._schemas.clear()
        self._schemas.update((t.name, t.input_schema) for t in tools)

    async def _call_tool(self, ctx: Any, params: Any) -> Any:
        """The stdio server's answer, passed on as it is (the SDK's ``call_tool`` would also
        check its structured content against the tool's output schema, listing the tools
        first when it has none: the caller's client checks it)."""
        from mcp import types

        upstream = await self._session()
        request = types.CallToolRequest(params=types.CallToolRequestParams(
            name=params.name, arguments=params.arguments or {}))  # fmt: skip
        try:
            return await upstream.session.send_request(request, types.CallToolResult)
        except Exception as exc:
            self._failed(exc)
            raise

    async def run(self) -> None:
        """Serve until cancelled: the SDK's session manager, and the stdio server started
        (again, after a back-off, whenever it dies)."""
        async with self._manager.run():
            backoff = BACKOFF_FIRST_S
            while True:
                started = anyio.current_time()
                try:
                    await self._run_once()
                except Exception as exc:
                    logger.warning("expose.stdio_failed command=%s error=%r", self.command[0],
                                   exc)  # fmt: skip
                if anyio.current_time() - started > STABLE_S:
                    backoff = BACKOFF_FIRST_S
                logger.info("expose.stdio_restart command=%s in_s=%.1f", self.command[0],
                            backoff)  # fmt: skip
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _run_once(self) -> None:
        from mcp import Client, StdioServerParameters

        params = StdioServerParameters(command=self.command[0], args=list(self.command[1:]))
        self._dead = anyio.Event()
        async with Client(_watched_stdio(params, self._dead), cache=None) as upstream:
            self.starts += 1
            with contextlib.suppress(Exception):  # a server that cannot list is still served
                self._remember((await upstream.list_tools()).tools, first_page=True)
            self._upstream = upstream
            self._up.set()
            try:
                await self._dead.wait()
            finally:
                self._up = anyio.Event()
                self._upstream = None


@contextlib.asynccontextmanager
async def _watched_stdio(params: Any, dead: anyio.Event) -> AsyncIterator[Any]:
    """The SDK's stdio transport, whose read side sets ``dead`` when the process's output
    ends (it exited): noticed without a call."""
    from mcp.client.stdio import stdio_client

    async with stdio_client(params) as (read, write):
        yield _EndWatch(read, dead), write


class _EndWatch:
    """A receive stream that sets ``dead`` when iteration over it ends."""

    def __init__(self, inner: Any, dead: anyio.Event) -> None:
        self._inner = inner
        self._dead = dead

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def __aenter__(self) -> _EndWatch:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._inner.__aexit__(*exc)

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            async for item in self._inner:
                yield item
        finally:
            self._dead.set()

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._dead.set()
            raise


class ExposedMcp:
    """An MCP server exposed on ``aid`` (what :func:`expose_mcp` returns)."""

    def __init__(self, aid: Aid, spec: ExposeSpec, bridge: StdioBridge | None) -> None:
        self.aid = aid
        self.spec = spec
        self.bridge = bridge
        """The stdio bridge (None for a URL)."""


async def expose_mcp(
    node: Node,
    spec: ExposeSpec,
    *,
    publish: bool = True,
    ttl_s: int = 3600,
) -> ExposedMcp:
    """Serve ``spec``'s MCP server on local identity ``spec.aid`` (default: the node) over
    A2AL streams, callers filtered by ``spec.allow``/``spec.deny``; with ``publish``, publish
    the identity and register it under ``spec.topics`` with protocol ``mcp``. The node must
    be open; a stdio server's process is the node's (stopped when it closes).

    Raises:
        UsageError: the identity already serves something else.
    """
    aid = spec.aid or node.aid
    bridge: StdioBridge | None = None
    if spec.command:
        bridge = StdioBridge(spec.command, name=spec.name or "a2al-exposed")
        app = bridge.app
        node.spawn(bridge.run)
    else:
        app = http_forwarder(spec.url, await _upstream_for(node, spec.url))
    node.serve(aid, app=app, allow=spec.allow, deny=spec.deny)
    if publish:
        await node.publish(aid, ttl_s=ttl_s)
        for topic in spec.topics:
            await node.register_service(topic, name=spec.name[:64], brief=spec.brief[:140],
                                        protocols=[PROTOCOL], aid=aid,
                                        ttl_s=ttl_s)  # fmt: skip
    logger.info("expose.serving aid=%s kind=%s topics=%s", aid, spec.kind, ",".join(spec.topics))
    return ExposedMcp(aid, spec, bridge)


async def expose_all(node: Node, specs: Sequence[ExposeSpec]) -> list[ExposedMcp]:
    """:func:`expose_mcp` for each of ``specs``; two on one identity are refused.

    Raises:
        UsageError: two specs on the same identity.
    """
    seen: set[Aid] = set()
    for spec in specs:
        aid = spec.aid or node.aid
        if aid in seen:
            raise UsageError(f"two MCP servers exposed on {aid}: give each its own identity "
                             "(aid)")  # fmt: skip
        seen.add(aid)
    return [await expose_mcp(node, spec) for spec in specs]


A2A_PROTOCOL: Final = "a2a"
"""The protocol name in topic and profile records of an exposed A2A agent."""
A2A_CARD_PATH: Final = "/.well-known/agent-card.json"
A2A_CARD_MAX_AGE_S: Final = 300
"""``Cache-Control: max-age`` of the card served for an exposed A2A agent."""
A2A_CARD_MAX: Final = 1 << 20
"""Largest agent card read from an exposed A2A agent, in bytes."""


class ExposedA2a:
    """A plain-HTTP A2A agent exposed on ``aid`` (what :func:`expose_a2a` returns): the card
    as served over A2AL (its interfaces pointed at ``a2al://<aid>``), its hash and topics."""

    def __init__(self, aid: Aid, spec: ExposeSpec, card: dict[str, Any], card_json: bytes,
                 topics: tuple[str, ...]) -> None:  # fmt: skip
        self.aid = aid
        self.spec = spec
        self.card = card
        self.card_json = card_json
        self.card_hash = hashlib.sha256(card_json).digest()
        """SHA-256 of the card bytes served (the profile record's ``card_hash``)."""
        self.topics = topics


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _card_over_a2al(card: dict[str, Any], aid: Aid) -> dict[str, Any]:
    """``card`` with each interface URL pointed at ``a2al://<aid>`` (its path kept), one
    JSON-RPC interface when it names none."""
    out = dict(card)
    interfaces = []
    for iface in card.get("supportedInterfaces") or []:
        if isinstance(iface, dict):
            path = urlsplit(str(iface.get("url", ""))).path
            path = "" if path == "/" else path
            interfaces.append({**iface, "url": f"a2al://{aid}{path}"})
    out["supportedInterfaces"] = interfaces or [
        {"url": f"a2al://{aid}", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
    ]
    return out


def _a2a_profile(card: dict[str, Any], topics: Sequence[str],
                 card_hash: bytes) -> AgentProfilePayload:  # fmt: skip
    name, brief = str(card.get("name", ""))[:64], str(card.get("description", ""))[:140]
    modes = card.get("defaultInputModes")
    modes = tuple(str(m) for m in modes) if isinstance(modes, list) else ()
    profile = AgentProfilePayload(name=name, brief=brief, protocols=(A2A_PROTOCOL,),
                                  skills=tuple(topics), card_hash=card_hash,
                                  modalities=modes)  # fmt: skip
    try:
        profile.to_bytes()
    except LimitExceeded:  # too many skills for the record: the card has them all
        profile = AgentProfilePayload(name=name, brief=brief, protocols=(A2A_PROTOCOL,),
                                      card_hash=card_hash)  # fmt: skip
    return profile


def _with_card(card_json: bytes, max_age_s: int, forward: Any) -> Any:
    """An ASGI app serving ``card_json`` at the card path (ETag, Cache-Control) and handing
    everything else to ``forward``."""
    etag = f'"{hashlib.sha256(card_json).hexdigest()}"'.encode()
    headers = [(b"etag", etag), (b"cache-control", f"public, max-age={max_age_s}".encode())]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != A2A_CARD_PATH or scope["method"] != "GET":
            await forward(scope, receive, send)
            return
        if etag in dict(scope["headers"]).get(b"if-none-match", b""):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), *headers]})  # fmt: skip
        await send({"type": "http.response.body", "body": card_json})

    return app


async def _read_card(client: httpx2.AsyncClient, url: str) -> dict[str, Any]:
    where = url.rstrip("/") + A2A_CARD_PATH
    try:
        resp = await client.get(where)
    except httpx2.HTTPError as exc:
        raise Unreachable(f"the A2A agent to expose does not answer at {where} ({exc!r})",
                          operation="expose_a2a") from exc  # fmt: skip
    card: Any = None
    if resp.status_code == 200 and len(resp.content) <= A2A_CARD_MAX:
        with contextlib.suppress(ValueError):
            card = json.loads(resp.content)
    if not isinstance(card, dict):
        raise AgentCallError(f"{where} serves no A2A agent card (HTTP {resp.status_code})",
                             http_status=resp.status_code,
                             operation="expose_a2a")  # fmt: skip
    return card


async def expose_a2a(
    node: Node,
    spec: ExposeSpec,
    *,
    publish: bool = True,
    ttl_s: int = 3600,
    card_max_age_s: int = A2A_CARD_MAX_AGE_S,
) -> ExposedA2a:
    """Put the plain-HTTP A2A agent at ``spec.url`` (its base URL, e.g.
    ``http://127.0.0.1:9999``) on A2AL as local identity ``spec.aid`` (default: the node):
    its card is read once, its interface URLs pointed at ``a2al://<AID>`` and served with a
    Cache-Control max-age; every other request is forwarded to the agent (path kept) with
    the verified caller AID in :data:`CALLER_HEADER`; callers are filtered by
    ``spec.allow``/``spec.deny``. With ``publish``, the identity is published, registered
    under ``spec.topics`` (default: the card's skill ids) with protocol ``a2a``, and its
    profile record carries the served card's hash, as for
    :func:`~a2al_mcp.adapters.a2a.serve_a2a`: an A2A client reaches it by AID or skill with
    no change to the agent.

    Raises:
        UsageError: ``spec`` is a command (A2A agents are exposed by URL), or the identity
            already serves something else.
        Unreachable: the agent does not answer at its URL.
        AgentCallError: it serves no agent card.
    """
    if not spec.url:
        raise UsageError("an A2A agent is exposed by its URL (http://host:port), not a command")
    aid = spec.aid or node.aid
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, read=None)) as client:
        card = _card_over_a2al(await _read_card(client, spec.url), aid)
    card_json = json.dumps(card, separators=(",", ":"), ensure_ascii=False).encode()
    skills = {str(s.get("id")): s for s in card.get("skills") or []
              if isinstance(s, dict) and s.get("id")}  # fmt: skip
    topics = tuple(spec.topics or [t for t in skills if 0 < len(t) <= 256])
    exposed = ExposedA2a(aid, spec, card, card_json, topics)
    forward = http_forwarder(_origin(spec.url), await _upstream_for(node, spec.url),
                             keep_path=True)  # fmt: skip
    node.serve(aid, app=_with_card(card_json, card_max_age_s, forward), allow=spec.allow,
               deny=spec.deny)  # fmt: skip
    if publish:
        await node.publish(aid, ttl_s=ttl_s)
        name = (spec.name or str(card.get("name", "")))[:64]
        for topic in topics:
            skill = skills.get(topic, {})
            brief = spec.brief or str(skill.get("description") or card.get("description", ""))
            tags = [str(t) for t in skill.get("tags") or []][:8]
            await node.register_service(topic, name=name, brief=brief[:140],
                                        protocols=[A2A_PROTOCOL], tags=tags, aid=aid,
                                        ttl_s=ttl_s)  # fmt: skip
        await node.set_profile(_a2a_profile(card, topics, exposed.card_hash), aid)
    logger.info("expose.serving aid=%s kind=a2a topics=%s", aid, ",".join(topics))
    return exposed


async def expose_configs(
    node: Node, configs: Sequence[ExposeConfig]
) -> list[ExposedMcp | ExposedA2a]:
    """Serve each ``[[expose]]`` table: an MCP server (:func:`expose_mcp`) or, with
    ``protocol = "a2a"``, a plain-HTTP A2A agent (:func:`expose_a2a`); two on one identity
    are refused.

    Raises:
        UsageError: two tables on the same identity.
        ConfigError: a bad AID or target.
    """
    specs = [(c.protocol, spec_from_config(dataclasses.replace(c, protocol=PROTOCOL)))
             for c in configs]  # the spec is the same for both kinds  # fmt: skip
    seen: set[Aid] = set()
    for _, spec in specs:
        aid = spec.aid or node.aid
        if aid in seen:
            raise UsageError(f"two servers exposed on {aid}: give each its own identity (aid)")
        seen.add(aid)
    out: list[ExposedMcp | ExposedA2a] = []
    for kind, spec in specs:
        out.append(await (expose_a2a(node, spec) if kind == A2A_PROTOCOL
                          else expose_mcp(node, spec)))  # fmt: skip
    return out
