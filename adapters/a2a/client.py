"""An a2a-sdk client whose HTTP requests travel as HTTP/1.1 over verified A2AL streams."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
from a2a.client import ClientConfig, ClientFactory
from a2a.types import AgentCard
from google.protobuf.json_format import ParseDict

from a2al_mcp import Aid

if TYPE_CHECKING:
    from a2al_mcp.node import Node

__all__ = ["A2ALHttpTransport", "a2a_client", "fetch_card"]

CARD_PATH = "/.well-known/agent-card.json"


class A2ALHttpTransport(httpx.AsyncBaseTransport):
    """httpx transport: ``a2al://<AID>/path`` (or any URL whose host is an AID) becomes one
    HTTP/1.1 exchange on a new stream to that AID, sent as local identity ``local``."""

    def __init__(self, node: Node, *, local: Aid | None = None) -> None:
        self._node = node
        self._local = local

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        aid = Aid.from_str(request.url.host)
        body = await request.aread()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() != "host"]
        path = request.url.raw_path.decode() or "/"
        resp = await self._node.fetch(aid, request.method, path, headers=headers, body=body,
                                      local=self._local)  # fmt: skip
        return httpx.Response(resp.status, headers=list(resp.headers), content=resp.body,
                              request=request)  # fmt: skip


async def fetch_card(node: Node, aid: Aid, *, local: Aid | None = None) -> AgentCard:
    """The agent card an AID serves (over A2AL)."""
    resp = await node.fetch(aid, "GET", CARD_PATH, local=local)
    if resp.status != 200:
        raise LookupError(f"{aid} serves no agent card (HTTP {resp.status})")
    import json

    card = AgentCard()
    ParseDict(json.loads(resp.body), card, ignore_unknown_fields=True)
    return card


async def a2a_client(
    node: Node, aid: Aid, *, local: Aid | None = None, streaming: bool = False
) -> Any:
    """An a2a-sdk ``Client`` for the agent at ``aid`` (card fetched over A2AL)."""
    card = await fetch_card(node, aid, local=local)
    http = httpx.AsyncClient(transport=A2ALHttpTransport(node, local=local),
                             headers={"A2A-Version": "1.0"})  # fmt: skip
    return ClientFactory(ClientConfig(httpx_client=http, streaming=streaming)).create(card)
