"""An a2a-sdk client whose HTTP requests travel as HTTP/1.1 over verified A2AL streams.

A request with a whole answer (a ``POST`` that does not ask for server-sent events: the
JSON-RPC and HTTP+JSON unary calls) goes on a stream kept open from request to request
(:class:`~a2al_mcp.remote_mcp.stream_transport.StreamTransport`: up to 8 idle streams per
agent, one request at a time on each, once more on a new stream when a kept one died before a
byte of the answer). A new stream for each request costs about three times the datagrams
(opening and closing it, both ways): on loopback 10 against 3 per ``SendMessage``. Streaming
calls (``SendStreamingMessage``, ``SubscribeToTask``) and ``GET`` requests take a new stream
each, their body passed on as it arrives.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Final

import httpx
from a2a.client import Client, ClientConfig, ClientFactory
from a2a.types import AgentCard
from google.protobuf.json_format import ParseDict

from a2al_mcp import (
    A2AL_CODE,
    A2ALError,
    AgentCallError,
    Aid,
    NetworkError,
    NotFound,
    StreamTransport,
    agentcall,
    errors,
)

if TYPE_CHECKING:
    from a2al_mcp import Node

__all__ = ["A2ALHttpTransport", "a2a_client", "fetch_card", "send_to_skill"]


class _Body(httpx.AsyncByteStream):
    """A response body read from the stream as it arrives (SSE flows event by event)."""

    def __init__(self, chunks: AsyncIterator[bytes], close: Callable[[], Any]) -> None:
        self._chunks = chunks
        self._close = close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            yield chunk

    async def aclose(self) -> None:
        await self._close()


MAX_BODY: Final = 4 * 1024 * 1024
"""Largest answer read on a kept stream (as the node's own HTTP limit)."""

_LOCAL_STATUS: Final = frozenset({502, 504})
"""How :class:`StreamTransport` answers a failure on this side (its body names the code)."""
_STREAMING: Final = "text/event-stream"


def _error_class(code: str) -> type[A2ALError]:
    for name in errors.__all__:
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, A2ALError) and cls.code == code:
            return cls
    return A2ALError


def _local_failure(resp: httpx.Response, aid: Aid, what: str) -> A2ALError | None:
    """The A2AL error the kept-stream transport answered with (a failure on this side:
    unreachable, refused, timed out, over the size limit), or None for the agent's answer."""
    if resp.status_code not in _LOCAL_STATUS:
        return None
    try:
        error = json.loads(resp.content)["error"]
        code, text = error["data"][A2AL_CODE], str(error["message"])
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(code, str):
        return None
    text = text.removeprefix(f"{code}: ")
    cls = _error_class(code)
    if cls is AgentCallError:  # the stream broke, or the answer was not a JSON or SSE one
        return AgentCallError(f"{what} to {aid} failed: {text}", http_status=resp.status_code,
                              aid=aid, operation="a2a")  # fmt: skip
    try:
        return cls(text, aid=aid, operation="a2a")
    except TypeError:  # a class with other arguments
        return A2ALError(text, aid=aid, operation="a2a")


class A2ALHttpTransport(httpx.AsyncBaseTransport):
    """httpx transport: ``a2al://<AID>/path`` (or any URL whose host is an AID) becomes one
    HTTP/1.1 exchange on a stream to that AID, sent as local identity ``local``. A ``POST``
    not asking for server-sent events goes on a kept-alive stream and its answer is read
    whole; anything else takes a new stream and its response is returned once its head is
    in, its body streaming. A2AL failures raise the A2AL error (``NotFound``,
    ``Unreachable``, ``RequestTimeout``…). Close it (the ``httpx`` client does) to close the
    kept streams."""

    def __init__(self, node: Node, *, local: Aid | None = None, timeout_s: float = 30.0) -> None:
        self._node = node
        self._local = local
        self._timeout_s = timeout_s
        self._kept: dict[Aid, StreamTransport] = {}

    async def aclose(self) -> None:
        kept, self._kept = self._kept, {}
        for transport in kept.values():
            await transport.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        aid = Aid.from_str(request.url.host)
        if request.method == "POST" and _STREAMING not in request.headers.get("accept", ""):
            return await self._unary(aid, request)
        body = await request.aread()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() != "host"]
        path = request.url.raw_path.decode() or "/"
        resp = await self._node.request(aid, request.method, path, headers=headers, body=body,
                                        local=self._local,
                                        timeout_s=self._timeout_s)  # fmt: skip
        return httpx.Response(resp.status, headers=list(resp.headers),
                              stream=_Body(aiter(resp), resp.aclose),
                              request=request)  # fmt: skip

    async def _unary(self, aid: Aid, request: httpx.Request) -> httpx.Response:
        transport = self._kept.get(aid)
        if transport is None:
            transport = self._kept[aid] = StreamTransport(
                self._node, aid, http=httpx, local=self._local, max_body=MAX_BODY,
                timeout_s=self._timeout_s,
            )  # fmt: skip
        # the answer is passed on as read (no decoding here): ask for it as is
        request.headers["accept-encoding"] = "identity"
        resp: httpx.Response = await transport.handle_async_request(request)
        failure = _local_failure(resp, aid, f"{request.method} {request.url.raw_path.decode()}")
        if failure is not None:
            raise failure
        return resp


async def fetch_card(node: Node, aid: Aid, *, local: Aid | None = None) -> AgentCard:
    """The agent card an AID serves (over A2AL).

    Raises:
        NotFound / Unreachable: the agent is not online (the message suggests send_mailbox).
        AgentCallError: it serves no agent card.
    """
    card = AgentCard()
    ParseDict(await agentcall.get_card(node, aid, local=local), card, ignore_unknown_fields=True)
    return card


def _over_a2al(card: AgentCard, aid: Aid) -> AgentCard:
    """The card with its interface URLs pointing at ``aid`` over A2AL (path kept): an A2A HTTP
    agent behind an a2ald ``service_tcp`` names its own ``http://host:port/…``, which is
    reached through the stream all the same."""
    target = f"a2al://{aid}"
    for iface in card.supported_interfaces:
        url = httpx.URL(iface.url) if iface.url else httpx.URL("/")
        if not (url.scheme == "a2al" and url.host.lower() == str(aid).lower()):
            iface.url = target + (url.raw_path.decode() if url.raw_path != b"/" else "")
    return card


async def a2a_client(
    node: Node, aid: Aid, *, local: Aid | None = None, streaming: bool = True,
    timeout_s: float = 30.0,
) -> Client:  # fmt: skip
    """An a2a-sdk ``Client`` for the agent at ``aid`` (card fetched over A2AL). With
    ``streaming`` (and a card that allows it) ``send_message`` uses ``SendStreamingMessage``
    with server-sent events over the stream. Close it with ``await client.close()``."""
    card = _over_a2al(await fetch_card(node, aid, local=local), aid)
    http = httpx.AsyncClient(transport=A2ALHttpTransport(node, local=local, timeout_s=timeout_s),
                             headers={"A2A-Version": agentcall.A2A_VERSION},
                             timeout=None)  # fmt: skip
    return ClientFactory(ClientConfig(httpx_client=http, streaming=streaming)).create(card)


async def send_to_skill(
    node: Node,
    skill: str,
    request: Any,
    *,
    local: Aid | None = None,
    max_tries: int = 5,
    streaming: bool = False,
) -> tuple[Aid, list[Any]]:
    """Skill anycast with the SDK client: send ``request`` (a ``SendMessageRequest``) to one
    agent offering ``skill`` over A2A, trying candidates in order (live connections first,
    then the freshest) until one answers. Returns that agent's AID and its events.

    Raises:
        NotFound: nobody offers the skill.
        NetworkError: no candidate answered (the message lists who was tried).
    """
    found = await agentcall.candidates(node, skill)
    if not found:
        raise NotFound(f"no A2A agent offers {skill!r}", operation="send_to_skill")
    tried: list[str] = []
    for entry in found[:max_tries]:
        try:
            client = await a2a_client(node, entry.aid, local=local, streaming=streaming)
        except (NetworkError, NotFound, AgentCallError) as exc:
            tried.append(f"{entry.aid.short()} ({exc.message})")  # without the hint
            continue
        try:
            return entry.aid, [event async for event in client.send_message(request)]
        finally:
            await client.close()
    raise NetworkError(f"none of the agents offering {skill!r} answered: {', '.join(tried)}",
                       operation="send_to_skill")  # fmt: skip
