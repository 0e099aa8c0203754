"""An ordinary a2a-sdk HTTP agent (Starlette + uvicorn) on loopback TCP, for the tests of
calling and exposing plain-HTTP A2A agents; it records the request headers it was given."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import uvicorn
from a2a.server.agent_execution import RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import AgentCard, AgentInterface
from starlette.applications import Starlette

from tests.adapters.demo_agent import DemoExecutor, card


class HeaderExecutor(DemoExecutor):
    """The demo agent, also keeping the headers of each request (lower-cased names)."""

    def __init__(self) -> None:
        super().__init__()
        self.release.set()
        self.headers: list[dict[str, Any]] = []
        self.card_reads = 0
        """Times the agent card was served."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        state = context.call_context.state if context.call_context else {}
        raw = state.get("headers") or {}
        self.headers.append({str(k).lower(): v for k, v in dict(raw).items()})
        await super().execute(context, event_queue)


@contextlib.asynccontextmanager
async def http_a2a_agent(
    skill: str = "http.echo", *, cache_control: str | None = None
) -> AsyncIterator[tuple[str, HeaderExecutor]]:
    """Serve the agent on 127.0.0.1 (an ephemeral port), its card with ``cache_control`` if
    given; yields its base URL and executor."""
    executor = HeaderExecutor()
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    the_card = card(skill)
    the_card.supported_interfaces.append(
        AgentInterface(url=url + "/", protocol_binding="JSONRPC", protocol_version="1.0")
    )
    handler = DefaultRequestHandler(executor, InMemoryTaskStore(), the_card)

    async def counted(card: AgentCard) -> AgentCard:
        executor.card_reads += 1
        return card

    card_routes = create_agent_card_routes(the_card, card_modifier=counted,
                                           cache_control=cache_control)  # fmt: skip
    app = Starlette(routes=[*card_routes,
                            *create_jsonrpc_routes(handler, rpc_url="/")])  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: server.serve(sockets=[sock]))
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no started event)
            await anyio.sleep(0.02)
        try:
            yield url, executor
        finally:
            server.should_exit = True
