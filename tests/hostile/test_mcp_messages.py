"""Issue 14, finding 10: every malformed MCP message gets a JSON-RPC error reply at once, and
the server goes on serving. Raw bytes into a real ``a2al-mcp serve`` subprocess: on stdin for
``--stdio``, POSTed for ``--http``."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from a2al_mcp.mcp_server._compat import MCP_MAJOR

pytestmark = pytest.mark.anyio

if MCP_MAJOR != 2:  # pragma: no cover
    pytest.skip("mcp 2.x client", allow_module_level=True)

REPLY_WITHIN_S = 5  # "promptly": a client's own timeout is usually 60 s or more
NESTED = '{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"a":%s}}' % (
    "[" * 10_000 + "]" * 10_000
)
SURROGATE = (
    '{"jsonrpc":"2.0","id":8,"method":"tools/call",'
    '"params":{"name":"status","arguments":{},"_meta":{"x":"\\ud800"}}}'
)
BIG_INT = '{"jsonrpc":"2.0","id":%s,"method":"tools/list"}' % ("9" * 5000)
OVERSIZED = json.dumps(  # a valid message over the default 4 MiB limits.mcp_message_max_bytes
    {"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": {"pad": "x" * (5 << 20)}}
)
GARBAGE = "this is not JSON"
NOT_AN_ENVELOPE = '{"hello": "world"}'


class StdioClient:
    def __init__(self, proc: Process) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc = proc
        self.out = BufferedByteReceiveStream(proc.stdout)

    async def send_raw(self, line: str) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send(line.encode("utf-8", "surrogatepass") + b"\n")

    async def reply(self) -> dict[str, Any]:
        with anyio.fail_after(REPLY_WITHIN_S):
            line = await self.out.receive_until(b"\n", 16 << 20)
        msg: dict[str, Any] = json.loads(line)
        return msg

    async def request(self, msg_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        await self.send_raw(json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method,
                                        "params": params}))  # fmt: skip
        got = await self.reply()
        assert got.get("id") == msg_id, got
        return got


@asynccontextmanager
async def stdio_server(home: Path) -> AsyncIterator[StdioClient]:
    cmd = [sys.executable, "-m", "a2al_mcp", "serve", "--stdio", "--grace", "1", "--listen",
           "127.0.0.1:0", "--data-dir", str(home)]  # fmt: skip
    async with await anyio.open_process(cmd) as proc:
        client = StdioClient(proc)
        try:
            with anyio.fail_after(60):  # the node starts, then the SDK is imported
                init = await client.request(0, "initialize", {
                    "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "hostile", "version": "1"}})  # fmt: skip
            assert "result" in init
            await client.send_raw('{"jsonrpc":"2.0","method":"notifications/initialized"}')
            yield client
        finally:
            proc.terminate()


async def assert_still_serving(client: StdioClient, msg_id: int) -> None:
    listed = await client.request(msg_id, "tools/list", {})
    assert {t["name"] for t in listed["result"]["tools"]} >= {"status", "discover"}


@pytest.mark.parametrize(
    ("message", "code", "msg_id"),
    [
        pytest.param(NESTED, -32700, None, id="nesting-10000"),
        pytest.param(SURROGATE, -32700, 8, id="lone-surrogate"),
        pytest.param(BIG_INT, -32700, None, id="5000-digit-integer"),
        pytest.param(OVERSIZED, -32600, None, id="oversized"),
        pytest.param(GARBAGE, -32700, None, id="not-json"),
        pytest.param(NOT_AN_ENVELOPE, -32600, None, id="not-json-rpc"),
    ],
)
async def test_stdio_answers_every_malformed_message(
    tmp_path: Path, message: str, code: int, msg_id: int | None
) -> None:
    async with stdio_server(tmp_path / "home") as client:
        await client.send_raw(message)
        got = await client.reply()  # the attack worked if this times out
        assert got["jsonrpc"] == "2.0" and got["id"] == msg_id
        assert got["error"]["code"] == code and got["error"]["message"]
        await assert_still_serving(client, 100)
        # twice in a row, then a tool call: still one reply each, in order
        await client.send_raw(message)
        assert (await client.reply())["error"]["code"] == code
        status = await client.request(101, "tools/call", {"name": "status", "arguments": {}})
        front = status["result"]["structuredContent"]["mcp_front"]
        refused = front["oversized_messages"] + front["malformed_messages"]
        assert refused == 2


async def test_http_answers_malformed_messages(tmp_path: Path) -> None:
    import httpx2 as httpx
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from a2al_mcp.testing.a2ald import free_port

    port = free_port(udp=False)
    url = f"http://127.0.0.1:{port}/mcp"
    auth = {"Authorization": "Bearer tok-en"}
    headers = {**auth, "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}  # fmt: skip
    cmd = [sys.executable, "-m", "a2al_mcp", "serve", "--http", f"127.0.0.1:{port}", "--token",
           "tok-en", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "home")]  # fmt: skip
    with anyio.fail_after(90):
        async with await anyio.open_process(cmd) as proc, httpx.AsyncClient() as http:
            try:
                for _ in range(600):
                    try:
                        await http.get(url)
                        break
                    except httpx.TransportError:
                        await anyio.sleep(0.05)
                for body, code in [(NESTED, -32700), (SURROGATE, -32700), (BIG_INT, -32700)]:
                    with anyio.fail_after(REPLY_WITHIN_S):
                        res = await http.post(url, content=body.encode("utf-8", "surrogatepass"),
                                              headers=headers)  # fmt: skip
                    assert res.status_code == 400
                    assert res.json()["error"]["code"] == code
                async with (
                    httpx.AsyncClient(headers=auth) as authed,
                    Client(streamable_http_client(url, http_client=authed)) as c,
                ):
                    assert {t.name for t in (await c.list_tools()).tools} >= {"status"}
                    front = (await c.call_tool("status", {})).structured_content["mcp_front"]
                    assert front["malformed_messages"] == 3
            finally:
                proc.terminate()
