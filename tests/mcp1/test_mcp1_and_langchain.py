"""mcp 1.30 (what CrewAI and langchain-mcp-adapters pin): our server through the compat
module, in memory; and langchain-mcp-adapters loading our stdio server's tools and calling
them; remote_tools and call_remote_tool on 1.x (a 1.x SDK server exposed by URL). Runs in its
own venv from ``.ci/run`` (``A2AL_MCP_REQUIRE_MCP1=1`` turns the skip into a failure there)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from a2al_mcp.mcp_server._compat import MCP_MAJOR

pytestmark = pytest.mark.anyio

try:
    from langchain_mcp_adapters.client import MultiServerMCPClient
except ImportError:  # pragma: no cover
    MultiServerMCPClient = None

if MCP_MAJOR != 1 or MultiServerMCPClient is None:
    if os.environ.get("A2AL_MCP_REQUIRE_MCP1") == "1":
        pytest.fail("A2AL_MCP_REQUIRE_MCP1=1 but mcp 1.x / langchain-mcp-adapters are missing",
                    pytrace=False)  # fmt: skip
    pytest.skip("needs mcp 1.x and langchain-mcp-adapters (the mcp1 venv of .ci/run)",
                allow_module_level=True)  # fmt: skip

from mcp.shared.memory import create_connected_server_and_client_session  # noqa: E402

from a2al_mcp.mcp_server import build_server  # noqa: E402
from a2al_mcp.remote_mcp import ExposeSpec  # noqa: E402
from a2al_mcp.remote_mcp.expose import expose_mcp  # noqa: E402
from a2al_mcp.testing.a2ald import free_port  # noqa: E402
from a2al_mcp.toolspec import TOOLS  # noqa: E402
from tests.node.loopnet import network  # noqa: E402

V1_TOOL_SERVER = Path(__file__).with_name("tool_server_v1.py")


@contextlib.asynccontextmanager
async def _v1_tool_server() -> AsyncIterator[str]:
    """The 1.x SDK test server (streamable HTTP, stateless, JSON answers) in its own process;
    its URL."""
    port = free_port(udp=False)
    async with await anyio.open_process([sys.executable, str(V1_TOOL_SERVER), str(port)],
                                        stdout=None, stderr=None) as proc:  # fmt: skip
        try:
            for _ in range(200):
                try:
                    await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await anyio.sleep(0.05)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            proc.kill()


def _content(res: Any) -> tuple[bool, Any]:
    text = res.content[0].text if res.content else ""
    if res.isError:
        return False, text
    return True, res.structuredContent or json.loads(text)


async def test_every_tool_in_memory_on_mcp1() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (other, me):
            server = build_server(me)
            async with create_connected_server_and_client_session(server._mcp_server) as s:
                names = {t.name for t in (await s.list_tools()).tools}
                assert names == {t.name for t in TOOLS}
                ok, st = _content(await s.call_tool("status", {}))
                assert ok and st["aid"] == str(me.aid)
                ok, res = _content(await s.call_tool("resolve", {"aid": str(other.aid)}))
                assert ok and res["endpoints"]
                note = {"to": str(other.aid), "text": "v1"}
                ok, sent = _content(await s.call_tool("send_mailbox", note))
                assert ok and sent["message_id"]
                from a2al_mcp import Identity, SystemRng

                stranger = str(Identity.generate(SystemRng()).aid)
                for name, args, code in [
                    ("resolve", {"aid": "nope"}, "BAD_AID"),
                    ("resolve", {"aid": stranger}, "NOT_FOUND"),
                    ("send_mailbox", {"to": str(other.aid), "text": "x" * 400}, "BAD_ARGUMENTS"),
                    ("fetch", {"aid": str(other.aid)}, "ACCESS_DENIED"),
                    ("tunnel_close", {"tunnel": "127.0.0.1:1"}, "NOT_FOUND"),
                    (
                        "discover",
                        {"service": "x", "limit": 0},
                        "limit",
                    ),  # the SDK checks the schema
                ]:
                    ok, text = _content(await s.call_tool(name, args))
                    assert not ok and code in text and "Traceback" not in text, text


async def test_langchain_mcp_adapters_drive_the_stdio_server(tmp_path: Path) -> None:
    with anyio.fail_after(120):
        async with network(2, publish=True) as (seed, other):
            client = MultiServerMCPClient({"a2al": {
                "command": sys.executable,
                "args": ["-m", "a2al_mcp", "serve", "--stdio", "--grace", "1", "--listen",
                         "127.0.0.1:0",
                         "--bootstrap", f"{seed.local_addr[0]}:{seed.local_addr[1]}",
                         "--data-dir", str(tmp_path / "home")],
                "transport": "stdio",
            }})  # fmt: skip
            async with client.session("a2al") as session:
                from langchain_mcp_adapters.tools import load_mcp_tools

                tools = {t.name: t for t in await load_mcp_tools(session)}
                assert set(tools) == {t.name for t in TOOLS}

                async def call(tool_name: str, **args: Any) -> Any:
                    out = await tools[tool_name].ainvoke(args)
                    text = out if isinstance(out, str) else out[0]["text"] if isinstance(
                        out, list) else str(out)  # fmt: skip
                    return json.loads(text)

                me = (await call("publish", services=["lc.demo"], name="lc"))["aid"]
                await other.register_service("lc.demo", name="other")
                found = await call("discover", service="lc.demo")
                assert {a["aid"] for a in found["agents"]} == {me, str(other.aid)}
                assert (await call("resolve", aid=str(other.aid)))["endpoints"]
                assert (await call("send_mailbox", to=str(other.aid), text="from langchain"))[
                    "message_id"]  # fmt: skip
                from a2al_mcp import Aid

                # mcp 1 sends no resource-updated event; a direct delivery is acknowledged
                # only once the recipient has stored the note
                sent = await other.send_mailbox(Aid.from_str(me), "to langchain")
                assert sent.delivered in ("direct", "both"), sent
                inbox = await call("read_mailbox", peek=True)
                assert inbox["messages"][0]["text"] == "to langchain"


def _passphrase_answers(*answers: str) -> Any:
    """An elicitation callback (mcp 1.x) answering each request with the next passphrase."""
    from mcp import types

    asked: list[str] = []
    queue = list(answers)

    async def elicit(context: Any, params: Any) -> Any:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"passphrase": queue.pop(0)})

    elicit.asked = asked  # type: ignore[attr-defined]
    return elicit


async def test_tool_contract_on_mcp1() -> None:
    """Issue 16's contract where mcp 1.x lets us keep it: titles and the four hints, one error
    format (no SDK prefix, no validator dump, capped quotes), protocol lengths, seq as text,
    unread_mail in results, closed input schemas, and misspelt argument names refused before
    mcp 1's SDK drops them (they were dropped: ``read_mailbox {"peak": true}`` read the
    notes)."""
    with anyio.fail_after(60):
        async with network(2, publish=True) as (other, me):
            server = build_server(me)
            async with create_connected_server_and_client_session(server._mcp_server) as s:
                tools = {t.name: t for t in (await s.list_tools()).tools}
                for t in tools.values():
                    a = t.annotations
                    assert t.title and a is not None and a.title == t.title, t.name
                    assert None not in (a.readOnlyHint, a.destructiveHint, a.idempotentHint,
                                        a.openWorldHint), t.name  # fmt: skip
                a = tools["send_mailbox"].annotations
                assert a is not None
                assert (a.readOnlyHint, a.destructiveHint, a.openWorldHint) == (False, False, True)
                assert tools["resolve"].inputSchema["properties"]["aid"]["maxLength"] <= 64
                to = str(other.aid)
                for name, args in [("resolve", {"aid": "a0" + "b" * 100_000}),
                                   ("discover", {"service": "x" * 100_000}),
                                   ("send_mailbox", {"to": to, "text": "é" * 200})]:  # fmt: skip
                    ok, text = _content(await s.call_tool(name, args))
                    assert not ok and text.startswith("BAD_ARGUMENTS: "), (name, text[:200])
                    assert len(text) < 600 and "Error executing" not in text
                ok, res = _content(await s.call_tool("resolve", {"aid": str(other.aid)}))
                assert ok and isinstance(res["seq"], str) and res["unread_mail"] == 0
                assert all(t.inputSchema.get("additionalProperties") is False
                           for t in tools.values())  # fmt: skip
                await other.send_mailbox(me.aid, "still unread")
                ok, text = _content(await s.call_tool("read_mailbox", {"peak": True}))
                assert not ok and text.startswith("BAD_ARGUMENTS: ") and "'peek'" in text, text
                assert [n.text for n in await me.read_mailbox(peek=True)] == ["still unread"]
                ok, text = _content(await s.call_tool("no_such_tool", {}))
                assert not ok and text.startswith("UNKNOWN_TOOL: "), text


async def test_every_tool_once_on_mcp1() -> None:
    from a2al_mcp.node.http import HttpRequest, HttpResponse

    async def hello(req: HttpRequest) -> HttpResponse:
        return HttpResponse(200, (), b"hi")

    with anyio.fail_after(90):
        async with network(3, publish=True) as (_seed, other, me):
            other.serve(http=hello)
            await other.register_service("v1.all", name="other")
            from tests.adapters.demo_agent import serve_demo

            agent = other.create_agent().identity.aid
            await serve_demo(other, "v1.agent", aid=agent)  # a delegated a2a-sdk agent
            server = build_server(me)
            user = _passphrase_answers("12345678")
            async with create_connected_server_and_client_session(
                server._mcp_server, elicitation_callback=user
            ) as s:

                async def call(name: str, args: dict[str, Any] | None = None) -> Any:
                    ok, out = _content(await s.call_tool(name, args or {}))
                    assert ok, (name, out)
                    return out

                seen = set()
                for name, args in [
                    ("status", {}), ("publish", {"services": ["v1.mine"]}),
                    ("discover", {"service": "v1.all"}), ("resolve", {"aid": str(other.aid)}),
                    ("fetch", {"aid": str(other.aid)}), ("connect", {"aid": str(other.aid)}),
                    ("tunnel_list", {}), ("send_mailbox", {"to": str(other.aid), "text": "x"}),
                    ("read_mailbox", {"peek": True}), ("identity_create", {}),
                    ("identity_list", {}), ("unpublish", {}),
                    ("call_agent", {"skill": "v1.agent", "text": "wait", "wait": False}),
                    ("call_agents", {"skill": "v1.agent", "text": "hi"}),
                    ("call_agent", {"to": "a0" + "11" * 20, "text": "later",  # never online
                                    "queue_if_offline": True, "timeout_s": 5}),
                    ("outbox_list", {"state": "queued"}),
                ]:  # fmt: skip
                    out = await call(name, args)
                    seen.add(name)
                    if name == "connect":
                        await call("tunnel_close", {"tunnel": out["tunnel"]})
                        seen.add("tunnel_close")
                    if name == "identity_create":
                        exp = await call("identity_export", {"aid": out["aid"]})
                        assert user.asked and out["aid"] in user.asked[0]  # asked the user
                        seen.add("identity_export")
                        ok, text = _content(await s.call_tool("identity_import", {
                            "export": exp["export"], "passphrase": "12345678"}))  # fmt: skip
                        assert ok or "already" in text  # importing to the same node is fine too
                        seen.add("identity_import")
                    if name == "outbox_list":
                        assert out["count"] == 1  # the message for the AID never online
                        gone = await call("outbox_cancel", {
                            "delivery_id": out["deliveries"][0]["delivery_id"]})  # fmt: skip
                        assert gone["delivery"]["state"] == "canceled"
                        seen.add("outbox_cancel")
                    if name == "call_agent" and out["kind"] == "queued":
                        continue
                    if name == "call_agent":
                        assert out["agent"] == str(agent) and out["kind"] == "task"
                        ask = {"aid": str(agent), "task_id": out["task"]["id"]}
                        assert (await call("get_agent_task", ask))["task"]["id"] == ask["task_id"]
                        seen.add("get_agent_task")
                        done = await call("cancel_agent_task", ask)
                        assert done["task"]["state"] == "canceled"
                        seen.add("cancel_agent_task")
                        card = await call("get_agent_card", {"aid": str(agent)})
                        assert card["checked"]  # against the hash in its signed profile
                        seen.add("get_agent_card")
                # the remote-MCP client on mcp 1.x: a streamable-HTTP server written with
                # the 1.x SDK, exposed by URL on another identity of the other node
                async with _v1_tool_server() as url:
                    tools_aid = other.create_agent().identity.aid
                    await expose_mcp(other, ExposeSpec(url=url, aid=tools_aid))
                    listed = await call("remote_tools", {"aid": str(tools_aid)})
                    assert {t["name"] for t in listed["tools"]} == {"add", "whoami", "fail"}
                    add = next(t for t in listed["tools"] if t["name"] == "add")
                    assert add["inputSchema"]["required"] == ["a", "b"]
                    seen.add("remote_tools")
                    out = await call(
                        "call_remote_tool",
                        {"aid": str(tools_aid), "tool": "add", "arguments": {"a": 20, "b": 22}},
                    )
                    assert out["structured_content"] == {"total": 42, "terms": [20, 22]}
                    seen.add("call_remote_tool")
                    who = await call("call_remote_tool", {"aid": str(tools_aid),
                                                          "tool": "whoami"})  # fmt: skip
                    assert who["structured_content"] == {"caller": str(me.aid)}
                    ok, text = _content(await s.call_tool("call_remote_tool", {
                        "aid": str(tools_aid), "tool": "fail",
                        "arguments": {"reason": "v1"}}))  # fmt: skip
                    assert not ok and text.startswith("AGENT_ERROR: ") and "v1" in text, text
                assert seen == {t.name for t in TOOLS}
                assert (await call("fetch", {"aid": str(other.aid)}))["body"] == "hi"


async def test_malformed_messages_get_errors_on_mcp1(tmp_path: Path) -> None:
    """Issue 14 finding 10 on mcp 1.x: each malformed line on stdin gets its JSON-RPC error
    at once, and the server goes on (raw JSON-RPC lines, no SDK client)."""
    env = {**os.environ, "A2AL_MCP_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "a2al_mcp", "serve", "--stdio", "--grace", "1"]
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "raw", "version": "1"}}}  # fmt: skip
    bad = [
        b'{"jsonrpc":"2.0","id":7,"method":"ping","params":' + b"[" * 10_000 + b"]" * 10_000
        + b"}",
        b'{"jsonrpc":"2.0","id":8,"method":"ping","params":{"x":"\\ud800"}}',
        b'{"jsonrpc":"2.0","id":9,"method":"ping","params":{"x":' + b"9" * 5000 + b"}}",
    ]  # fmt: skip
    async with await anyio.open_process(cmd, env=env, stderr=None) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        buf = bytearray()

        async def line() -> dict[str, Any]:
            while b"\n" not in buf:
                buf.extend(await proc.stdout.receive())  # type: ignore[union-attr]
            raw, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            msg: dict[str, Any] = json.loads(raw)
            return msg

        try:
            with anyio.fail_after(30):
                await proc.stdin.send(json.dumps(init).encode() + b"\n")
                assert "result" in await line()
                await proc.stdin.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
                for data in bad:
                    await proc.stdin.send(data + b"\n")
                    reply = await line()
                    assert reply["error"]["code"] == -32700, reply
                await proc.stdin.send(b'{"jsonrpc":"2.0","id":2,"method":"tools/list"}\n')
                listed = await line()
                assert listed["id"] == 2 and len(listed["result"]["tools"]) == len(TOOLS)
        finally:
            proc.kill()


async def test_legacy_subscription_and_server_info_on_mcp1() -> None:
    """Issue 16 items 6 and 8 on mcp 1.x: ``resources/subscribe`` to the inbox works (nobody
    could subscribe under mcp 1.x) and the subscriber is told when a note arrives;
    ``serverInfo.version`` is ours (it was the SDK's)."""
    from a2al_mcp import __version__
    from a2al_mcp.mcp_server.app import INBOX_URI

    told: list[str] = []
    arrived = anyio.Event()

    async def on_message(message: Any) -> None:
        root = getattr(message, "root", message)
        if getattr(root, "method", "") == "notifications/resources/updated":
            told.append(str(root.params.uri))
            arrived.set()

    with anyio.fail_after(60):
        async with network(2, publish=True) as (other, me):
            server = build_server(me)
            async with create_connected_server_and_client_session(
                server._mcp_server, message_handler=on_message
            ) as s:
                init = await s.initialize()
                assert init.serverInfo.version == __version__
                assert init.capabilities.resources and init.capabilities.resources.subscribe
                await s.subscribe_resource(INBOX_URI)  # type: ignore[arg-type]
                await other.send_mailbox(me.aid, "for an mcp 1 subscriber")
                with anyio.fail_after(10):
                    await arrived.wait()
                assert told == [INBOX_URI]


async def test_http_token_on_mcp1(tmp_path: Path) -> None:
    """Issue 16 item 10: ``serve --http --token`` on mcp 1.x died with a traceback after the
    node started; now the token is demanded (401 without it) and the server answers with it."""
    import httpx

    from a2al_mcp.testing.a2ald import free_port

    port = free_port(udp=False)
    with anyio.fail_after(60):
        async with network(1) as (seed,), await anyio.open_process([
            sys.executable, "-m", "a2al_mcp", "serve", "--http", f"127.0.0.1:{port}",
            "--token", "s3cret", "--listen", "127.0.0.1:0",
            "--bootstrap", f"{seed.local_addr[0]}:{seed.local_addr[1]}",
            "--data-dir", str(tmp_path / "home")]) as proc:  # fmt: skip
            url = f"http://127.0.0.1:{port}/mcp"
            auth = {
                "Authorization": "Bearer s3cret",
                "Accept": "application/json, text/event-stream",
            }
            ping = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}}  # fmt: skip
            async with httpx.AsyncClient() as http:
                for _ in range(400):
                    try:
                        await http.get(url)
                        break
                    except httpx.TransportError:
                        await anyio.sleep(0.05)
                assert (await http.post(url, json=ping)).status_code == 401  # no token
                res = await http.post(url, json=ping, headers=auth)
                assert res.status_code == 200, res.text
                assert proc.returncode is None  # still serving
            proc.terminate()
