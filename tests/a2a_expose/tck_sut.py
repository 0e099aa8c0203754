"""The A2A conformance suite's System Under Test (a2aproject/a2a-tck, its 1.0 line), served
three ways for a by-hand comparison (docs/interop.md, "A2A conformance (a2a-tck)"):

- ``http``: the TCK's own executor (``TckAgentExecutor`` from the TCK's
  ``sut/a2a-python/sut_agent.py``) behind the a2a-sdk's JSON-RPC (``/``) and HTTP+JSON (root)
  routes under uvicorn on loopback: the plain-HTTP baseline;
- ``tunnel``: the same executor and request handler served on A2AL by node A
  (``serve_a2a``), reached through node B's ``connect`` tunnel (a local TCP port);
- ``tunnel-no-repeat-cache``: the same with ``serve_a2a(drop_repeats=False)``: the suite
  sends some messages twice under one ``messageId`` and wants two tasks, which the repeat
  cache (the outbox's exactly-once at the handler) answers with the first;
- ``expose``: the ``http`` agent put on A2AL by node A (``expose_a2a``, ``--expose
  a2a=URL``), reached through node B's tunnel.

Over A2AL the card names ``a2al://<AID>`` (an HTTP client cannot dial it), so for ``tunnel``
and ``expose`` a card-only server on another port serves the card read through the tunnel
with its interface URLs pointed at the tunnel (``http://127.0.0.1:<tunnel port>``, paths
kept) and its Cache-Control and ETag passed on; every other request of the TCK goes through
the tunnel. Prints the ``--sut-host`` to give the TCK, then serves until interrupted::

    .venv/bin/python -m tests.a2a_expose.tck_sut /tmp/a2a-tck http
    /tmp/tck-venv/bin/python -m pytest tests/compatibility --sut-host=URL \\
        --transport=jsonrpc,http_json   # in the TCK's directory

Loopback only; run it in ``unshare -n`` like the benchmarks.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import socket
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn
from a2a.helpers.proto_helpers import new_task
from a2a.server.agent_execution import RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes, create_rest_routes
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    TaskState,
)
from a2al_mcp.adapters.a2a import serve_a2a
from a2al_mcp.adapters.a2a.server import CARD_MAX_AGE_S
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from a2al_mcp import Node, NodeConfig, agentcall
from a2al_mcp.remote_mcp import ExposeSpec
from a2al_mcp.remote_mcp.expose import expose_a2a

MODES = ("http", "tunnel", "tunnel-no-repeat-cache", "expose")

_MISSING = ("grpc", "grpc.aio", "a2a.types.a2a_pb2_grpc", "a2a.server.apps",
            "a2a.server.request_handlers.grpc_handler")  # fmt: skip
"""What the TCK's SUT module imports for its gRPC and pre-1.0 app wiring (not used here)."""


def tck_executor_class(tck_dir: Path) -> Any:
    """``TckAgentExecutor`` from the TCK's generated Python SUT, unchanged (its gRPC and
    app imports given empty stand-ins: this harness wires the routes itself)."""
    for name in _MISSING:
        if name not in sys.modules:
            module = types.ModuleType(name)
            for attr in ("A2ARESTFastAPIApplication", "A2AStarletteApplication", "GrpcHandler"):
                setattr(module, attr, None)
            sys.modules[name] = module
    # names the SUT imports from where a2a-sdk 1.3 no longer has them (unused here)
    handlers = importlib.import_module("a2a.server.request_handlers.default_request_handler")
    if not hasattr(handlers, "DefaultRequestHandler"):
        setattr(handlers, "DefaultRequestHandler", DefaultRequestHandler)  # noqa: B010
    path = tck_dir / "sut" / "a2a-python" / "sut_agent.py"
    spec = importlib.util.spec_from_file_location("tck_sut_agent", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return _adapted(module.TckAgentExecutor)


_MESSAGE_ONLY = "tck-message-response"
"""The one scenario that answers with a message, not a task."""


def _adapted(executor_class: Any) -> Any:
    """The TCK's executor for a2a-sdk 1.3, whose request handler wants the task enqueued
    before its first status update (the generated executor leaves that to the SDK it was
    generated for): the task, submitted, is enqueued first; the scenario then runs as is."""

    class Adapted(executor_class):  # type: ignore[misc, valid-type]
        async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
            message = context.message
            if (
                context.current_task is None
                and context.task_id
                and context.context_id
                and not (message and message.message_id.startswith(_MESSAGE_ONLY))
            ):
                history = [message] if message else None
                await event_queue.enqueue_event(new_task(
                    context.task_id, context.context_id, TaskState.TASK_STATE_SUBMITTED,
                    history=history))  # fmt: skip
            await super().execute(context, event_queue)

    return Adapted


def tck_card(url: str = "") -> AgentCard:
    """The TCK SUT's card (its gRPC interface left out), interfaces at ``url`` if given."""
    card = AgentCard(
        name="A2A Python SDK System Under Test (SUT)",
        description="Auto-generated System Under Test for A2A TCK conformance", version="1.0.0",
        provider=AgentProvider(organization="A2A Project", url="https://github.com/a2aproject"),
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text"], default_output_modes=["text"],
        skills=[AgentSkill(id="tck", name="TCK Conformance",
                           description="Handles TCK conformance test messages", tags=["tck"])],
    )  # fmt: skip
    if url:
        for binding in ("JSONRPC", "HTTP+JSON"):
            card.supported_interfaces.append(
                AgentInterface(url=url, protocol_binding=binding, protocol_version="1.0")
            )
    return card


def _socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def uvicorn_app(app: Any) -> AsyncIterator[str]:
    """``app`` under uvicorn on 127.0.0.1 (an ephemeral port): yields its base URL."""
    sock = _socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: server.serve(sockets=[sock]))
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no started event)
            await anyio.sleep(0.02)
        try:
            yield url
        finally:
            server.should_exit = True


def http_app(executor_class: Any, url: str) -> Starlette:
    """The baseline: the SDK's routes for both bindings, the card with a max-age as served
    over A2AL (so the card's headers are compared like for like)."""
    card = tck_card(url)
    handler = DefaultRequestHandler(executor_class(), InMemoryTaskStore(), card)
    return Starlette(routes=[
        *create_agent_card_routes(card, cache_control=f"public, max-age={CARD_MAX_AGE_S}"),
        *create_jsonrpc_routes(handler, rpc_url="/"), *create_rest_routes(handler),
    ])  # fmt: skip


class _Lazy:
    """An ASGI app set after its server's port is known (the card names the port)."""

    app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


async def card_server(tunnel_url: str, aid: str) -> AsyncIterator[str]:
    """Serve the card read through the tunnel, its ``a2al://<AID>`` URLs made the tunnel's."""
    async with httpx.AsyncClient() as http:
        got = await http.get(tunnel_url + agentcall.CARD_PATH)
    got.raise_for_status()
    body = got.content.replace(f"a2al://{aid}".encode(), tunnel_url.encode())
    headers = {k: v for k, v in got.headers.items() if k in ("cache-control", "etag")}

    async def card(request: Request) -> Response:
        return Response(body, media_type="application/json", headers=headers)

    app = Starlette(routes=[Route(agentcall.CARD_PATH, card, methods=["GET"])])
    async with uvicorn_app(app) as url:
        yield url


async def main(tck_dir: Path, mode: str) -> None:
    executor_class = tck_executor_class(tck_dir)
    async with contextlib.AsyncExitStack() as stack:
        if mode in ("http", "expose"):
            lazy = _Lazy()
            http_url = await stack.enter_async_context(uvicorn_app(lazy))
            lazy.app = http_app(executor_class, http_url)
            sut = http_url
        if mode != "http":
            a = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
            seed = "{}:{}".format(*a.local_addr)
            b = await stack.enter_async_context(
                Node(NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed,)))
            )
            if mode.startswith("tunnel"):
                card = tck_card()
                handler = DefaultRequestHandler(executor_class(), InMemoryTaskStore(), card)
                await serve_a2a(a, handler, card, publish=False,
                                drop_repeats=mode == "tunnel")  # fmt: skip
            else:
                await expose_a2a(a, ExposeSpec(url=http_url), publish=False)
            tunnel = await b.tunnel(a.aid, endpoints=[f"quic://{seed}"])
            tunnel_url = "http://{}:{}".format(*tunnel.addr)
            sut = await stack.enter_async_context(
                contextlib.asynccontextmanager(card_server)(tunnel_url, str(a.aid))
            )
        print(f"--sut-host={sut}", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[2] not in MODES:
        raise SystemExit(f"usage: python -m tests.a2a_expose.tck_sut TCK_DIR {'|'.join(MODES)}")
    anyio.run(main, Path(sys.argv[1]), sys.argv[2])
