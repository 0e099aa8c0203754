"""A2A ``SendMessage`` round trip: over A2AL (verified QUIC streams) vs plain a2a-sdk over HTTP
on loopback TCP, and ``call_agent(url=)`` vs the bare SDK client. Same agent (a2a-sdk
``DefaultRequestHandler`` + an echo ``AgentExecutor``), same process, one run.

    unshare -n sh -c 'ip link set lo up && .venv/bin/python benchmarks/bench_a2a_vs_http.py'

Rows:
- HTTP: the a2a-sdk client (``ClientFactory``, JSON-RPC binding, httpx) to the a2a-sdk
  Starlette app under uvicorn on 127.0.0.1 — the ordinary way to run an A2A agent;
- A2AL, SDK client: the same client over :func:`a2al_mcp.adapters.a2a.a2a_client` (pooled
  verified QUIC connection), agent served by ``serve_a2a`` on another node;
- A2AL, call_agent: the SDK-free JSON-RPC client behind the MCP ``call_agent`` tool, same agent;
- A2AL, exposed: the SDK client over A2AL to the HTTP row's uvicorn agent put on A2AL by the
  other node (``expose_a2a``, i.e. ``--expose a2a=URL``): two hops, QUIC then loopback TCP;
- call_agent(url=): :func:`a2al_mcp.agentcall.send_message_url` to the HTTP row's agent (the
  MCP tool's plain-HTTP path: a new httpx client and TCP connection per call, the card kept
  for its max-age), against the bare SDK client of the HTTP row (one client, kept-alive).

Both nodes run in this process (as the client and server of the HTTP row do). The paths are
timed in turns of ``--block`` calls each after a warm-up, so a change of load on a shared
machine falls on all of them alike; ratios are p50 (and p95) over the HTTP row's.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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

from a2al_mcp import Identity, Node, NodeConfig, SystemRng, agentcall
from a2al_mcp.remote_mcp import ExposeSpec
from a2al_mcp.remote_mcp.expose import expose_a2a

HTTP = "HTTP (a2a-sdk, uvicorn)"
Call = Callable[[], Awaitable[None]]


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


@contextlib.asynccontextmanager
async def http_agent() -> AsyncIterator[tuple[str, AgentCard]]:
    """The echo agent under uvicorn on 127.0.0.1: its base URL and card."""
    sock = socket.socket()
    # accepted connections inherit it; uvicorn sets it only on sockets it creates itself
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    card = make_card(url + "/")
    handler = DefaultRequestHandler(Echo(), InMemoryTaskStore(), card)
    # the card with a max-age, as serve_a2a serves it (call_agent(url=) keeps it that long)
    app = Starlette(routes=[*create_agent_card_routes(card, cache_control="public, max-age=300"),
                            *create_jsonrpc_routes(handler, rpc_url="/")])  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: server.serve(sockets=[sock]))
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no started event)
            await anyio.sleep(0.02)
        try:
            yield url, card
        finally:
            server.should_exit = True


async def interleaved(calls: dict[str, Call], n: int, block: int) -> dict[str, list[float]]:
    """``n`` timed calls of each path, in turns of ``block`` per path, after a warm-up."""
    for call in calls.values():
        for _ in range(max(20, n // 10)):
            await call()  # connections, caches
    times: dict[str, list[float]] = {name: [] for name in calls}
    done = 0
    while done < n:
        k = min(block, n - done)
        for name, call in calls.items():
            for _ in range(k):
                t0 = time.perf_counter()
                await call()
                times[name].append((time.perf_counter() - t0) * 1000)
        done += k
    return times


async def main(n: int, block: int) -> None:
    calls: dict[str, Call] = {}

    def msg() -> SendMessageRequest:
        # a new message id each time, as every real message has (the SDK's handler answers a
        # repeated one by another path)
        return SendMessageRequest(message=new_text_message("hello", role=Role.ROLE_USER))

    def expect(events: list[Any]) -> None:
        assert get_message_text(events[-1].message) == "echo hello", events

    async with contextlib.AsyncExitStack() as stack:
        url, card = await stack.enter_async_context(http_agent())
        http = await stack.enter_async_context(httpx.AsyncClient(headers={"A2A-Version": "1.0"}))
        client = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)
        stack.push_async_callback(client.close)

        async def over_http() -> None:
            expect([e async for e in client.send_message(msg())])

        calls[HTTP] = over_http

        agent_node = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
        seed = "{}:{}".format(*agent_node.local_addr)
        caller = await stack.enter_async_context(
            Node(NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed,)))
        )
        handler = DefaultRequestHandler(Echo(), InMemoryTaskStore(), make_card())
        await serve_a2a(agent_node, handler, make_card())
        sdk = await a2a_client(caller, agent_node.aid, streaming=False)
        stack.push_async_callback(sdk.close)

        async def over_a2al() -> None:
            expect([e async for e in sdk.send_message(msg())])

        calls["A2AL (a2a-sdk client)"] = over_a2al

        async def tool() -> None:
            reply = await agentcall.send_message(caller, agent_node.aid, "hello")
            assert reply.text == "echo hello"

        calls["A2AL (call_agent JSON-RPC)"] = tool

        exposed = Identity.generate(SystemRng())
        agent_node.add_identity(exposed)
        await expose_a2a(agent_node, ExposeSpec(url=url, aid=exposed.aid))
        via = await a2a_client(caller, exposed.aid, streaming=False)
        stack.push_async_callback(via.close)

        async def over_expose() -> None:
            expect([e async for e in via.send_message(msg())])

        calls["A2AL (--expose of the HTTP agent)"] = over_expose

        async def by_url() -> None:
            reply = await agentcall.send_message_url(url, "hello")
            assert reply.text == "echo hello"

        calls["call_agent(url=) (plain HTTP)"] = by_url

        times = await interleaved(calls, n, block)
    print(f"n={n} calls per path, taken in turns of {block}; times in ms")
    print("| path | p50 | p95 | p50 vs HTTP | p95 vs HTTP |")
    print("|---|---|---|---|---|")
    b50, b95 = pct(times[HTTP], 50), pct(times[HTTP], 95)
    for name, xs in times.items():
        p50, p95 = pct(xs, 50), pct(xs, 95)
        print(f"| {name} | {p50:.2f} | {p95:.2f} | {p50 / b50:.2f}x | {p95 / b95:.2f}x |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=500, help="round trips per path")
    parser.add_argument("--block", type=int, default=25, help="round trips per path per turn")
    options = parser.parse_args()
    anyio.run(main, options.n, options.block)
