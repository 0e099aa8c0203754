"""The a2a-sdk client over A2AL (``a2a_client``): a failure on this side (the agent refuses
the caller) raises the A2AL error rather than an SDK error."""

from __future__ import annotations

import anyio
import pytest

pytest.importorskip("a2a", reason="needs the a2a extra (a2a-sdk)")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx2")

from a2a.helpers.proto_helpers import new_text_message
from a2a.types import Role, SendMessageRequest
from a2al_mcp.adapters.a2a import a2a_client

from a2al_mcp import AccessDenied
from a2al_mcp.remote_mcp import ExposeSpec
from a2al_mcp.remote_mcp.expose import expose_a2a
from tests.a2a_expose.http_agent import http_a2a_agent
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio


def _request(text: str) -> SendMessageRequest:
    return SendMessageRequest(message=new_text_message(text, role=Role.ROLE_USER))


async def test_a_refused_call_raises_the_a2al_error() -> None:
    with anyio.fail_after(60):
        async with http_a2a_agent() as (url, executor), network(2, publish=True) as (a, b):
            await expose_a2a(a, ExposeSpec(url=url))
            client = await a2a_client(b, a.aid, streaming=False)  # the card read
            await expose_a2a(a, ExposeSpec(url=url, deny=(b.aid,)), publish=False)
            with pytest.raises(AccessDenied, match="denied"):
                [e async for e in client.send_message(_request("refused"))]
            await client.close()
            assert executor.headers == []


async def test_a_caller_denied_while_its_stream_is_kept_is_refused_on_the_next_call() -> None:
    """Requests ride kept streams; admission is asked again before each one, so a deny that
    comes after the stream opened refuses the next request (not only new streams)."""
    with anyio.fail_after(60):
        async with http_a2a_agent() as (url, executor), network(2, publish=True) as (a, b):
            await expose_a2a(a, ExposeSpec(url=url))
            client = await a2a_client(b, a.aid, streaming=False)
            [e async for e in client.send_message(_request("kept"))]  # opens the kept stream
            assert len(executor.headers) == 1
            await expose_a2a(a, ExposeSpec(url=url, deny=(b.aid,)), publish=False)
            with pytest.raises(AccessDenied):
                [e async for e in client.send_message(_request("now refused"))]
            await client.close()
            assert len(executor.headers) == 1
