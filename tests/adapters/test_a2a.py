"""A2A over A2AL: a real a2a-sdk AgentExecutor on one node, the a2a-sdk client on another,
over verified QUIC streams (no HTTP server, no open TCP port)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

pytest.importorskip("a2a", reason="needs the a2a extra (a2a-sdk)")

from a2a.helpers.proto_helpers import get_message_text, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentSkill,
    Role,
    SendMessageRequest,
)
from a2al_mcp.adapters.a2a import CALLER_KEY, a2a_client, fetch_card, serve_a2a

from tests.node.loopnet import network

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class EchoExecutor(AgentExecutor):
    """Answers with the text it got and the caller's verified AID."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        caller = context.call_context.state.get(CALLER_KEY) if context.call_context else None
        text = get_message_text(context.message) if context.message else ""
        await event_queue.enqueue_event(new_text_message(f"echo {text} from {caller}"))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def card() -> AgentCard:
    return AgentCard(
        name="echo", description="echoes", version="1.0",
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=["text/plain"], default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="echo", description="echo", tags=["echo"])],
    )  # fmt: skip


async def test_send_message_over_a2al_with_the_verified_caller() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (agent_node, caller_node):
            store = InMemoryTaskStore()
            handler = DefaultRequestHandler(EchoExecutor(), store, card())
            served = serve_a2a(agent_node, handler, card())
            assert served.supported_interfaces[0].url == f"a2al://{agent_node.aid}"
            got = await fetch_card(caller_node, agent_node.aid)
            assert got.name == "echo" and got.supported_interfaces[0].url.startswith("a2al://")
            client = await a2a_client(caller_node, agent_node.aid)
            msg = new_text_message("hello", role=Role.ROLE_USER)
            replies: list[Any] = []
            async for event in client.send_message(SendMessageRequest(message=msg)):
                replies.append(event)
            texts = [get_message_text(r.message) for r in replies if r.HasField("message")]
            assert texts == [f"echo hello from {caller_node.aid}"]
