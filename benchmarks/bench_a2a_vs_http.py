"""A2A ``SendMessage`` round trip: over A2AL (verified QUIC streams) vs plain a2a-sdk over HTTP
on loopback TCP. Same agent (a2a-sdk ``DefaultRequestHandler`` + an echo ``AgentExecutor``),
same process, one run.

    unshare -n sh -c 'ip link set lo up && python benchmarks/bench_a2a_vs_http.py'

Rows:
- HTTP: the a2a-sdk client (``ClientFactory``, JSON-RPC binding, httpx) to the a2a-sdk
  Starlette app under uvicorn on 127.0.0.1 — the ordinary way to run an A2A agent;
- A2AL, SDK client: the same client over :func:`a2al_mcp.adapters.a2a.a2a_client` (pooled
  verified QUIC connection, one stream per request), agent served by ``serve_a2a``;
- A2AL, call_agent: the SDK-free JSON-RPC client behind the MCP ``call_agent`` tool.
"""

from __future__ import annotations

import argparse
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import uvicorn
from _common import pct
from a2a.client import ClientConfig, ClientFactory
from a2a.helpers.proto_helpers import get_message_text, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Role,
    SendMessageRequest,
)
from a2al_mcp.adapters.a2a import a2a_client, serve_a2a
from starlette.applications import Starlette

from a2al_mcp import Node, NodeConfig, agentcall


class Echo(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = get_message_text(context.message) if context.message else ""
        await event_queue.enqueue_event(new_text_message(f"echo {text}"))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def make_card(url: str = "") -> AgentCard:
    card = AgentCard(name="echo", description="echo", version="1.0",
                     capabilities=AgentCapabilities(streaming=False),
                     default_input_modes=["text/plain"], default_output_modes=["text/plain"],
                     skills=[AgentSkill(id="bench.echo", name="echo", description="echo",
                                        tags=["echo"])])  # fmt: skip
    if url:
        card.supported_interfaces.append(
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
        )
    return card


async def measure(name: str, one: Callable[[], Awaitable[None]], n: int) -> dict[str, Any]:
    for _ in range(max(20, n // 10)):
        await one()  # warm up: connections, caches
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await one()
        times.append((time.perf_counter() - t0) * 1000)
    row = {"row": name, "n": n, "p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}
    print(f"{name:28s} p50 {row['p50_ms']:6.2f} ms   p95 {row['p95_ms']:6.2f} ms   (n={n})")
    return row


async def main(n: int) -> None:
    msg = SendMessageRequest(message=new_text_message("hello", role=Role.ROLE_USER))

    # plain a2a-sdk over HTTP on loopback TCP
    sock = socket.socket()
    # accepted connections inherit it; uvicorn sets it only on sockets it creates itself
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    card = make_card(f"http://127.0.0.1:{port}/")
    handler = DefaultRequestHandler(Echo(), InMemoryTaskStore(), card)
    app = Starlette(routes=[*create_agent_card_routes(card),
                            *create_jsonrpc_routes(handler, rpc_url="/")])  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    rows = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: server.serve(sockets=[sock]))
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no started event)
            await anyio.sleep(0.02)
        http = httpx.AsyncClient(headers={"A2A-Version": "1.0"})
        client = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)

        async def over_http() -> None:
            events = [e async for e in client.send_message(msg)]
            assert get_message_text(events[0].message) == "echo hello"

        rows.append(await measure("HTTP (a2a-sdk, uvicorn)", over_http, n))
        await client.close()
        server.should_exit = True

    # the same agent over A2AL
    async with Node(NodeConfig(listen_addr="127.0.0.1:0")) as agent_node:
        seed = "{}:{}".format(*agent_node.local_addr)
        async with Node(NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed,))) as caller:
            handler = DefaultRequestHandler(Echo(), InMemoryTaskStore(), make_card())
            await serve_a2a(agent_node, handler, make_card())
            sdk = await a2a_client(caller, agent_node.aid, streaming=False)

            async def over_a2al() -> None:
                events = [e async for e in sdk.send_message(msg)]
                assert get_message_text(events[0].message) == "echo hello"

            rows.append(await measure("A2AL (a2a-sdk client)", over_a2al, n))
            await sdk.close()

            async def tool() -> None:
                reply = await agentcall.send_message(caller, agent_node.aid, "hello")
                assert reply.text == "echo hello"

            rows.append(await measure("A2AL (call_agent JSON-RPC)", tool, n))
    base = rows[0]["p50_ms"]
    for row in rows[1:]:
        print(f"{row['row']}: {row['p50_ms'] / base:.2f}x HTTP at p50, "
              f"{row['p95_ms'] / rows[0]['p95_ms']:.2f}x at p95")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=500, help="round trips per row")
    anyio.run(main, parser.parse_args().n)
