"""Issue 7 interop: A2A over A2AL against a2ald 0.3.5, in a sealed namespace.

- a2ald's ``POST /fetch/{aid}`` carrying a JSON-RPC ``SendMessage`` reaches our a2a-sdk agent
  (plain and delegated identity) and gets a valid A2A reply naming a2ald as the caller;
  a2ald reads our profile record (rec_type 0x02) with the card hash.
- Our clients (the a2a-sdk client over streams, and the JSON-RPC client behind ``call_agent``)
  reach an a2a-sdk *HTTP* agent (uvicorn on loopback TCP) that sits behind an a2ald agent's
  ``service_tcp``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
from collections.abc import AsyncIterator

import anyio
import pytest

pytest.importorskip("a2a", reason="needs the a2a extra (a2a-sdk)")
pytest.importorskip("uvicorn")

import uvicorn
from a2a.helpers.proto_helpers import get_message_text, new_text_message
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import AgentInterface, Role, SendMessageRequest
from a2al_mcp.adapters.a2a import a2a_client
from starlette.applications import Starlette

from a2al_mcp import Aid, DelegatedIdentity, SystemRng, agentcall
from a2al_mcp.testing.a2ald import A2aldNetwork
from tests.adapters.demo_agent import DemoExecutor, card, serve_demo
from tests.interop.test_dht_interop import call, poll
from tests.interop.test_quic_interop import _agent, _fetch, our_node

pytestmark = [pytest.mark.interop, pytest.mark.anyio]


def _send_message_body(text: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 7, "method": "SendMessage", "params": {
        "message": {"messageId": "m-interop", "role": "ROLE_USER",
                    "parts": [{"text": text}]}}}).encode()  # fmt: skip


async def test_a2ald_fetch_sends_a2a_messages_to_our_agent(a2ald_net: A2aldNetwork) -> None:
    p0, p1 = a2ald_net.peers[0], a2ald_net.peers[1]
    with anyio.fail_after(120):
        async with our_node(p0.listen_addr) as node:
            agent = DelegatedIdentity.generate(SystemRng(), issued_at=0).identity
            node.add_identity(agent)
            executors = {
                node.aid: await serve_demo(node, "interop.echo"),
                agent.aid: await serve_demo(node, "interop.echo", aid=agent.aid),
            }
            headers = {"Content-Type": ["application/json"], "A2A-Version": ["1.0"]}
            for target in (node.aid, agent.aid):
                got = await poll(lambda t=target: _fetch(p1, t, "/", _send_message_body("hi"),
                                                         headers=headers),
                                 lambda r: r.get("status") == 200, 30,
                                 f"a2ald fetching {target}")  # fmt: skip
                answer = json.loads(base64.b64decode(got["body"]))
                assert answer["jsonrpc"] == "2.0" and answer["id"] == 7, answer
                message = answer["result"]["message"]
                assert message["role"] == "ROLE_AGENT"
                assert message["parts"] == [{"text": f"echo hi from {p1.node_aid}"}]
                assert executors[target].callers == [p1.node_aid]
            # a2ald reads the profile record with the hash of the card we serve
            raw = await call(_fetch, p1, agent.aid, agentcall.CARD_PATH, method="GET")
            card_bytes = base64.b64decode(raw["body"])
            want = hashlib.sha256(card_bytes).hexdigest()
            recs = await poll(lambda: p1.resolve_records(str(agent.aid), 2),
                              lambda r: bool(r.get("records")), 30,
                              "a2ald reading the profile")  # fmt: skip
            profile = recs["records"][0]["profile"]
            assert profile["card_hash"] == want, profile
            assert profile["protocols"] == ["a2a"] and profile["skills"] == ["interop.echo"]


@contextlib.asynccontextmanager
async def a2a_http_agent() -> AsyncIterator[tuple[int, DemoExecutor]]:
    """An ordinary a2a-sdk HTTP agent (Starlette + uvicorn) on loopback TCP."""
    executor = DemoExecutor()
    executor.release.set()
    sock = socket.socket()
    # accepted connections inherit it; uvicorn sets it only on sockets it creates itself
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    the_card = card("interop.http")
    url = f"http://127.0.0.1:{port}/"
    the_card.supported_interfaces.append(
        AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
    )
    handler = DefaultRequestHandler(executor, InMemoryTaskStore(), the_card)
    app = Starlette(routes=[*create_agent_card_routes(the_card),
                            *create_jsonrpc_routes(handler, rpc_url="/")])  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: server.serve(sockets=[sock]))
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no started event)
            await anyio.sleep(0.02)
        yield port, executor
        server.should_exit = True


async def test_we_call_an_a2a_http_agent_behind_a2ald(a2ald_net: A2aldNetwork) -> None:
    p0, p3 = a2ald_net.peers[0], a2ald_net.peers[3]
    with anyio.fail_after(120):
        async with a2a_http_agent() as (port, executor), our_node(p0.listen_addr) as node:
            gen = await call(_agent, p3, f"127.0.0.1:{port}")
            target = Aid.from_str(gen["aid"])
            client = await a2a_client(node, target, streaming=False)
            msg = new_text_message("over a2ald", role=Role.ROLE_USER)
            events = [e async for e in client.send_message(SendMessageRequest(message=msg))]
            await client.close()
            # the HTTP agent sees no A2AL caller (a2ald's backend is plain TCP)
            assert [get_message_text(e.message) for e in events] == ["echo over a2ald from None"]
            reply = await agentcall.send_message(node, target, "task x y")
            assert (reply.kind, reply.state, reply.text.split()) == ("task", "completed",
                                                                     ["x", "y"])  # fmt: skip
            streaming = await a2a_client(node, target, streaming=True)
            msg = new_text_message("task s t", role=Role.ROLE_USER)
            kinds = [e.WhichOneof("payload") async for e in streaming.send_message(
                SendMessageRequest(message=msg))]  # fmt: skip
            await streaming.close()
            assert kinds.count("artifact_update") == 2 and kinds[-1] == "status_update"
            assert len(executor.callers) == 3
