"""The a2a-sdk client over A2AL (``a2a_client``): unary calls ride kept-alive streams (one
stream for a run of calls), streaming calls still stream, and a failure on this side raises
the A2AL error rather than an SDK error."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

pytest.importorskip("a2a", reason="needs the a2a extra (a2a-sdk)")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx2")

from a2a.helpers.proto_helpers import get_message_text, new_text_message
from a2a.types import Role, SendMessageRequest
from a2al_mcp.adapters.a2a import a2a_client

from a2al_mcp import AccessDenied, Node
from a2al_mcp.remote_mcp import ExposeSpec
from a2al_mcp.remote_mcp.expose import expose_a2a
from tests.a2a_expose.http_agent import http_a2a_agent
from tests.adapters.demo_agent import serve_demo
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio


def _request(text: str) -> SendMessageRequest:
    return SendMessageRequest(message=new_text_message(text, role=Role.ROLE_USER))


def _count_streams(node: Node) -> list[Any]:
    opened: list[Any] = []
    real = node.open_stream

    async def counting(*args: Any, **kw: Any) -> Any:
        opened.append(args)
        return await real(*args, **kw)

    node.open_stream = counting  # type: ignore[method-assign]
    return opened


async def test_unary_calls_share_a_kept_stream_and_streaming_still_streams() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (agent_node, caller):
            executor = await serve_demo(agent_node)
            executor.release.set()
            client = await a2a_client(caller, agent_node.aid, streaming=False)
            opened = _count_streams(caller)
            for i in range(5):
                events = [e async for e in client.send_message(_request(f"m{i}"))]
                assert [get_message_text(e.message) for e in events] == [
                    f"echo m{i} from {caller.aid}"
                ]
            assert len(opened) == 1  # five calls one after another: one stream
            await client.close()
            streaming = await a2a_client(caller, agent_node.aid, streaming=True)
            kinds = [e.WhichOneof("payload") async for e in streaming.send_message(
                _request("task a b"))]  # fmt: skip
            await streaming.close()
            assert kinds[0] == "task" and kinds.count("artifact_update") == 2
            assert kinds[-1] == "status_update"
            assert executor.callers == [str(caller.aid)] * 6


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
