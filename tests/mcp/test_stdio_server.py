"""The real thing: ``a2al-mcp serve --stdio`` in a subprocess, driven by the official mcp
client, on a 3-node loopback network; every line the server writes to stdout is JSON-RPC."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from a2al_mcp import Aid, Identity, SystemRng
from a2al_mcp.errors import UsageError
from a2al_mcp.mcp_server._compat import MCP_MAJOR
from a2al_mcp.node.home import DataHome
from a2al_mcp.node.http import HttpRequest, HttpResponse
from a2al_mcp.toolspec import TOOLS
from tests.adapters.demo_agent import serve_demo
from tests.mcp.toolcall import call
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio

if MCP_MAJOR != 2:  # pragma: no cover
    pytest.skip("mcp 2.x client", allow_module_level=True)

from mcp import Client, StdioServerParameters  # noqa: E402

from a2al_mcp.mcp_server.app import INBOX_URI  # noqa: E402
from tests.mcp.test_mcp_tools import passphrase_answers  # noqa: E402


async def hello(req: HttpRequest) -> HttpResponse:
    return HttpResponse(200, (), f"hello {req.caller}".encode())


async def test_stdio_server_end_to_end(tmp_path: Path) -> None:
    stdout_copy = tmp_path / "stdout.jsonl"
    with anyio.fail_after(90):
        async with network(2, publish=True) as (seed, other):
            other.serve(http=hello)
            await other.register_service("demo.stdio", name="other")
            await serve_demo(seed, "demo.stdio.a2a")  # a real a2a-sdk agent
            cmd = (
                f"{sys.executable} -m a2al_mcp serve --stdio --grace 1 --listen 127.0.0.1:0 "
                f"--bootstrap {seed.local_addr[0]}:{seed.local_addr[1]} --data-dir {tmp_path}/home"
                f" | tee {stdout_copy}"
            )
            params = StdioServerParameters(command="sh", args=["-c", cmd])
            user = passphrase_answers("stdio pass")
            async with Client(params, elicitation_callback=user) as c:
                listed = (await c.list_tools()).tools
                names = {t.name for t in listed}
                assert names == {s.name for s in TOOLS}
                assert all(t.input_schema.get("additionalProperties") is False for t in listed)
                typo = await c.call_tool("read_mailbox", {"peak": True})  # through the hub too
                assert typo.is_error and typo.content[0].text.startswith(
                    "BAD_ARGUMENTS: unknown argument 'peak' (did you mean 'peek'?)")  # fmt: skip
                st = await call(c, "status")
                assert st["ready"] and st["peers"] >= 1
                me = st["aid"]
                pub = await call(c, "publish", {"services": ["demo.stdio"], "name": "me"})
                assert pub["aid"] == me
                disc = await call(c, "discover", {"service": "demo.stdio"})
                assert {a["aid"] for a in disc["agents"]} == {me, str(other.aid)}
                res = await call(c, "resolve", {"aid": str(other.aid)})
                assert res["endpoints"]
                got = await call(c, "fetch", {"aid": str(other.aid), "path": "/"})
                assert got["status"] == 200 and got["body"] == f"hello {me}"
                con = await call(c, "connect", {"aid": str(other.aid)})
                assert con["tunnel"].startswith("127.0.0.1:")
                assert (await call(c, "tunnel_list"))["tunnels"]
                await call(c, "tunnel_close", {"tunnel": con["tunnel"]})
                reply = await call(c, "call_agent", {"skill": "demo.stdio.a2a", "text": "hi"})
                assert reply["agent"] == str(seed.aid) and reply["text"] == f"echo hi from {me}"
                task = await call(c, "call_agent", {"to": str(seed.aid), "text": "wait",
                                                    "wait": False})  # fmt: skip
                ask = {"aid": str(seed.aid), "task_id": task["task"]["id"]}
                card = await call(c, "get_agent_card", {"aid": str(seed.aid)})
                assert card["card"]["name"] == "demo" and card["checked"]
                assert (await call(c, "get_agent_task", ask))["task"]["id"] == ask["task_id"]
                assert (await call(c, "cancel_agent_task", ask))["task"]["state"] == "canceled"
                fan = await call(c, "call_agents", {"skill": "demo.stdio.a2a", "text": "all"})
                assert fan["count"] == 1 and fan["replies"][0]["agent"] == str(seed.aid)
                nobody = str(Identity.generate(SystemRng()).aid)  # never online
                later = {"to": nobody, "text": "later", "queue_if_offline": True, "timeout_s": 5}
                queued = await call(c, "call_agent", later)
                assert queued["kind"] == "queued" and queued["delivery_id"]
                assert (await call(c, "outbox_list"))["queued"] == 1
                gone = await call(c, "outbox_cancel", {"delivery_id": queued["delivery_id"]})
                assert gone["delivery"]["state"] == "canceled"
                sent = await call(c, "send_mailbox", {"to": str(other.aid), "text": "via stdio"})
                assert sent["message_id"]
                async with c.listen(resource_subscriptions=[INBOX_URI]) as sub:
                    await other.send_mailbox(Aid.from_str(me), "back to you")
                    await sub.__anext__()  # the inbox resource changed: the note is in
                inbox = await call(c, "read_mailbox", {"peek": True})
                assert inbox["messages"][0]["text"] == "back to you"
                assert (await call(c, "read_mailbox"))["count"] == 1
                made = await call(c, "identity_create")
                ids = {i["aid"] for i in (await call(c, "identity_list"))["identities"]}
                assert ids == {me, made["aid"]}
                secret = {"passphrase": "stdio pass"}  # asked of the user, not the model
                exp = await call(c, "identity_export", {"aid": made["aid"]})
                assert user.asked and made["aid"] in user.asked[0]
                res = await c.call_tool("identity_import", {"export": exp["export"], **secret})
                assert not res.is_error  # re-importing the same agent is harmless
                # other serves plain HTTP, not MCP: both remote-MCP tools say so, coded
                for name, args in (
                    ("remote_tools", {"aid": str(other.aid)}),
                    ("call_remote_tool", {"aid": str(other.aid), "tool": "x"}),
                ):
                    res = await c.call_tool(name, args)
                    text = res.content[0].text  # type: ignore[union-attr]
                    assert res.is_error and text.startswith("AGENT_ERROR: "), text
                    assert "does not serve MCP over A2AL" in text
                assert (await call(c, "unpublish"))["stopped"]
                names_called = {"status", "publish", "discover", "resolve", "fetch", "connect",
                                "tunnel_list", "tunnel_close", "send_mailbox", "read_mailbox",
                                "identity_create", "identity_list", "identity_export",
                                "identity_import", "unpublish", "call_agent", "get_agent_task",
                                "cancel_agent_task", "get_agent_card", "remote_tools",
                                "call_remote_tool", "call_agents", "outbox_list",
                                "outbox_cancel"}  # fmt: skip
                assert names_called == names  # every tool was called above
            lines = stdout_copy.read_text().splitlines()
            assert lines and all(json.loads(line).get("jsonrpc") == "2.0" for line in lines)
            # the note other got through the server is there too
            assert [n.text for n in await other.read_mailbox(peek=True)] == ["via stdio"]


async def test_data_dir_lock_names_the_other_process(tmp_path: Path) -> None:
    with DataHome(tmp_path) as home:
        with pytest.raises(UsageError, match=f"in use by process {os.getpid()}"):
            DataHome(tmp_path)
        ident = home.identity(SystemRng())
        assert home.identity(SystemRng()).aid == ident.aid  # persisted
    assert oct((tmp_path / "node.key").stat().st_mode & 0o777) == "0o600"
    DataHome(tmp_path).close()  # released on close


async def test_http_server_checks_host_and_token(tmp_path: Path) -> None:
    import httpx2 as httpx

    from a2al_mcp.testing.a2ald import free_port

    port = free_port(udp=False)
    with anyio.fail_after(60):
        async with network(1) as (seed,), await anyio.open_process([
            sys.executable, "-m", "a2al_mcp", "serve", "--http", f"127.0.0.1:{port}",
            "--token", "s3cret-token", "--listen", "127.0.0.1:0",
            "--bootstrap", f"{seed.local_addr[0]}:{seed.local_addr[1]}",
            "--data-dir", str(tmp_path / "home")]) as proc:  # fmt: skip
            url = f"http://127.0.0.1:{port}/mcp"
            auth = {"Authorization": "Bearer s3cret-token"}
            async with httpx.AsyncClient() as http:
                for _ in range(200):
                    try:
                        await http.get(url)
                        break
                    except httpx.TransportError:
                        await anyio.sleep(0.05)
                assert (await http.post(url, json={})).status_code == 401  # no token
                wrong = {"Authorization": "Bearer nope"}
                assert (await http.post(url, json={}, headers=wrong)).status_code == 401
                bad_host = {**auth, "Host": "evil.example:80"}
                ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}  # a valid message
                assert (await http.post(url, json=ping, headers=bad_host)).status_code in (403, 421)
                # a malformed one is refused before the SDK sees it, with a JSON-RPC error
                res = await http.post(url, json={}, headers=auth)
                assert res.status_code == 400 and res.json()["error"]["code"] == -32600
            async with (
                httpx.AsyncClient(headers=auth) as authed,
                Client(_http_transport(url, authed)) as c,
            ):
                assert (await c.call_tool("status", {})).structured_content["ready"]
            proc.terminate()
    # off loopback without a token: refused with a clear message
    res = await anyio.run_process([sys.executable, "-m", "a2al_mcp", "serve", "--http",
                                   "0.0.0.0:8080", "--data-dir", str(tmp_path / "h2")],
                                  check=False)  # fmt: skip
    assert res.returncode == 2 and b"needs --token" in res.stderr


def _http_transport(url: str, http_client: Any) -> Any:
    from mcp.client.streamable_http import streamable_http_client

    return streamable_http_client(url, http_client=http_client)
