"""An a2a-sdk client whose HTTP requests travel as HTTP/1.1 over verified A2AL streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx
from a2a.client import Client, ClientConfig, ClientFactory
from a2a.types import AgentCard
from google.protobuf.json_format import ParseDict

from a2al_mcp import AgentCallError, Aid, NetworkError, NotFound, agentcall

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


class A2ALHttpTransport(httpx.AsyncBaseTransport):
    """httpx transport: ``a2al://<AID>/path`` (or any URL whose host is an AID) becomes one
    HTTP/1.1 exchange on a new stream to that AID, sent as local identity ``local``. The
    response is returned once its head is in; its body streams."""

    def __init__(self, node: Node, *, local: Aid | None = None, timeout_s: float = 30.0) -> None:
        self._node = node
        self._local = local
        self._timeout_s = timeout_s

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        aid = Aid.from_str(request.url.host)
        body = await request.aread()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() != "host"]
        path = request.url.raw_path.decode() or "/"
        resp = await self._node.request(aid, request.method, path, headers=headers, body=body,
                                        local=self._local,
                                        timeout_s=self._timeout_s)  # fmt: skip
        return httpx.Response(resp.status, headers=list(resp.headers),
                              stream=_Body(aiter(resp), resp.aclose),
                              request=request)  # fmt: skip


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
