"""Issue 6 interop: an assistant-style session through our MCP server against a2ald agents
(sealed namespace): resolve and discover an a2ald agent, send it a note, fetch from it, and
read a note it sent us."""

from __future__ import annotations

import base64
import json
from typing import Any

import anyio
import pytest

from a2al_mcp import NodeConfig
from a2al_mcp.mcp_server import build_server
from a2al_mcp.mcp_server._compat import MCP_MAJOR
from a2al_mcp.node import Node
from a2al_mcp.testing.a2ald import A2aldNetwork, A2aldPeer
from tests.interop.test_dht_interop import call as thread_call
from tests.interop.test_dht_interop import poll
from tests.interop.test_quic_interop import http_backend
from tests.mcp.toolcall import call as tool

pytestmark = [pytest.mark.interop, pytest.mark.anyio]

if MCP_MAJOR != 2:  # pragma: no cover
    pytest.skip("mcp 2.x client", allow_module_level=True)

from mcp import Client  # noqa: E402


def _agent(peer: A2aldPeer, service_tcp: str) -> dict[str, Any]:
    gen = peer.identity_generate()
    peer.register_agent(gen["operational_private_key_hex"], gen["delegation_proof_hex"],
                        service_tcp=service_tcp)  # fmt: skip
    peer.register_services(gen["aid"], ["interop.mcp.echo"], name="a2ald agent",
                           protocols=["http"], ttl=600)  # fmt: skip
    peer.publish_agent(gen["aid"])
    return gen


async def test_assistant_session_against_a2ald(a2ald_net: A2aldNetwork) -> None:
    p0, p1 = a2ald_net.peers[0], a2ald_net.peers[1]
    with anyio.fail_after(120):
        async with http_backend() as port:
            gen = await thread_call(_agent, p1, f"127.0.0.1:{port}")
            agent = gen["aid"]
            cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(p0.listen_addr,))
            async with Node(cfg) as node, Client(build_server(node)) as c:
                assert (await tool(c, "status"))["ready"]
                me = (await tool(c, "publish", {"services": ["interop.mcp.me"]}))["aid"]
                for _ in range(30):
                    disc = await tool(c, "discover", {"service": "interop.mcp.echo"})
                    if disc["count"]:
                        break
                    await anyio.sleep(0.5)
                assert [a["aid"] for a in disc["agents"]] == [agent]
                res = await tool(c, "resolve", {"aid": agent})
                assert res["aid"] == agent and res["endpoints"] == [f"quic://{p1.listen_addr}"]
                got = await tool(c, "fetch", {"aid": agent, "path": "/via-mcp"})
                assert got["status"] == 200
                assert json.loads(got["body"])["line"] == "GET /via-mcp HTTP/1.1"
                sent = await tool(c, "send_mailbox", {"to": agent, "text": "hello from MCP"})
                assert sent["delivered"] in ("direct", "both", "stored")
                polled = await poll(
                    lambda: p1.post(f"/agents/{agent}/mailbox/poll", {}),
                    lambda d: bool(d.get("messages")),
                    30,
                    "a2ald reading our note",
                )
                assert base64.b64decode(polled["messages"][0]["body_base64"]) == b"hello from MCP"
                assert polled["messages"][0]["sender"] == me
                # and a note the a2ald agent sends us, read through the MCP tool
                await thread_call(p1.post, f"/agents/{agent}/mailbox/send", {
                    "recipient": me, "msg_type": 3,
                    "body_base64": base64.b64encode(b"reply from a2ald").decode(),
                })  # fmt: skip
                for _ in range(60):
                    inbox = await tool(c, "read_mailbox", {"peek": True})
                    if inbox["count"]:
                        break
                    await node.check_mailbox()
                    await anyio.sleep(0.5)
                assert inbox["messages"][0]["from"] == agent
                assert inbox["messages"][0]["text"] == "reply from a2ald"
