"""Issue 14, finding 9: the HTTP front of ``a2al-mcp serve --http`` (token-protected) bounds its
connections, header time, body time and body size, and checks the token before reading the body.
A real server subprocess on loopback with small ``[limits]`` so the attacks take seconds."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream

from a2al_mcp.mcp_server._compat import MCP_MAJOR
from a2al_mcp.testing.a2ald import free_port

pytestmark = pytest.mark.anyio

if MCP_MAJOR != 2:  # pragma: no cover - bearer tokens need mcp 2.x
    pytest.skip("mcp 2.x", allow_module_level=True)

TOKEN = "s3cret-t0ken"
CONNECTIONS = 4
HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
BODY_MAX = 64 << 10
LIMITS = f"""[limits]
http_connections = {CONNECTIONS}
http_header_timeout_s = {HEADER_TIMEOUT_S}
http_body_timeout_s = {BODY_TIMEOUT_S}
http_body_max_bytes = {BODY_MAX}
"""
INIT = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "honest", "version": "1"}}}).encode()  # fmt: skip


@asynccontextmanager
async def http_server(tmp_path: Path) -> AsyncIterator[int]:
    config = tmp_path / "a2al.toml"
    config.write_text(LIMITS)
    port = free_port(udp=False)
    cmd = [sys.executable, "-m", "a2al_mcp", "serve", "--http", f"127.0.0.1:{port}",
           "--token", TOKEN, "--listen", "127.0.0.1:0", "--config", str(config),
           "--data-dir", str(tmp_path / "home")]  # fmt: skip
    async with await anyio.open_process(cmd) as proc:
        try:
            with anyio.fail_after(60):
                while True:
                    try:
                        await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                        break
                    except OSError:
                        assert proc.returncode is None, "the server did not start"
                        await anyio.sleep(0.05)
            yield port
        finally:
            proc.terminate()


def head(method: str, port: int, *lines: str) -> bytes:
    text = f"{method} /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n" + "".join(
        f"{line}\r\n" for line in lines
    )
    return text.encode()


async def read_all(stream: SocketStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while True:
        try:
            data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return data


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


async def honest_initialize(port: int) -> dict[str, Any]:
    """An authenticated MCP initialize, on its own connection."""
    import httpx2 as httpx

    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}  # fmt: skip
    async with httpx.AsyncClient() as http:
        res = await http.post(f"http://127.0.0.1:{port}/mcp", content=INIT, headers=headers)
    assert res.status_code == 200, res.text
    body = res.text
    if body.startswith("event:") or "data:" in body:  # an SSE answer
        body = next(line[5:] for line in body.splitlines() if line.startswith("data:"))
    reply: dict[str, Any] = json.loads(body)
    return reply


async def front_counters(port: int) -> dict[str, int]:
    import httpx2 as httpx
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"http://127.0.0.1:{port}/mcp"
    async with (
        httpx.AsyncClient(headers=auth) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        counters: dict[str, int] = (await client.call_tool("status", {})).structured_content[
            "mcp_front"
        ]
        return counters


async def test_slow_headers_are_cut_and_honest_requests_get_through(tmp_path: Path) -> None:
    async with http_server(tmp_path) as port:
        cut: list[int] = []

        async def slowloris(i: int, started: anyio.Event) -> None:
            """Unauthenticated, never finishes its headers: one header line every 0.1 s."""
            async with await anyio.connect_tcp("127.0.0.1", port) as s:
                await s.send(head("POST", port))
                started.set()
                n = 0
                while True:
                    try:
                        await s.send(f"X-Slow-{n}: {'a' * 10}\r\n".encode())
                        with anyio.move_on_after(0.1):
                            data = await s.receive()
                            assert status_of(data) in (0, 503), data  # never served
                            await read_all(s)
                            break
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        break
                    n += 1
            cut.append(i)

        attackers = 2 * CONNECTIONS
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(attackers):
                    started = anyio.Event()
                    tg.start_soon(slowloris, i, started)
                    await started.wait()
                # every slot is taken by a client still sending headers: an honest one gets in
                reply = await honest_initialize(port)
                assert reply["id"] == 1 and "result" in reply
                # the attackers keep dribbling; the server closes every one of them
        assert sorted(cut) == list(range(attackers))
        counters = await front_counters(port)
        assert counters["http_connections_evicted"] >= attackers - CONNECTIONS
        assert counters["http_header_timeouts"] >= 1
        # a lone slow client, with free slots: cut by the header timeout alone
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(head("GET", port, "X-One: a"))
            with anyio.fail_after(HEADER_TIMEOUT_S + 10):
                assert await read_all(s) == b""
        after = await front_counters(port)
        assert after["http_header_timeouts"] == counters["http_header_timeouts"] + 1


async def test_token_before_body_and_body_limits(tmp_path: Path) -> None:
    async with http_server(tmp_path) as port:
        auth = f"Authorization: Bearer {TOKEN}"
        with anyio.fail_after(30):
            # unauthenticated, announces 100 MB and sends none of it: 401 at once
            async with await anyio.connect_tcp("127.0.0.1", port) as s:
                await s.send(head("POST", port, "Content-Length: 100000000", ""))
                assert status_of(await read_all(s)) == 401
            # wrong token, same
            async with await anyio.connect_tcp("127.0.0.1", port) as s:
                await s.send(head("POST", port, "Authorization: Bearer nope",
                                  "Content-Length: 100000000", ""))  # fmt: skip
                assert status_of(await read_all(s)) == 401
            # authenticated, Content-Length over the cap: 413 before the body
            async with await anyio.connect_tcp("127.0.0.1", port) as s:
                await s.send(head("POST", port, auth, f"Content-Length: {BODY_MAX + 1}", ""))
                assert status_of(await read_all(s)) == 413
            # authenticated, chunked, growing past the cap: 413 once it is over
            async with await anyio.connect_tcp("127.0.0.1", port) as s:
                await s.send(head("POST", port, auth, "Transfer-Encoding: chunked", ""))
                chunk = b"x" * 8192
                for _ in range(BODY_MAX // len(chunk) + 1):  # then stop, the body unfinished
                    await s.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                assert status_of(await read_all(s)) == 413
            # authenticated, a body that trickles: 408 after the body timeout, then closed
            async with await anyio.connect_tcp("127.0.0.1", port) as s:
                await s.send(head("POST", port, auth, "Content-Type: application/json",
                                  "Content-Length: 1000", "") + b'{"jsonrpc"')  # fmt: skip
                response = b""

                async def trickle() -> None:
                    while True:
                        await anyio.sleep(0.1)
                        try:
                            await s.send(b" ")
                        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                            return

                async with anyio.create_task_group() as tg:
                    tg.start_soon(trickle)
                    response = await read_all(s)
                    tg.cancel_scope.cancel()
                assert status_of(response) == 408
            reply = await honest_initialize(port)  # the server is fine
            assert "result" in reply
            counters = await front_counters(port)
        assert counters["http_unauthorized"] == 2
        assert counters["http_too_large"] == 2
        assert counters["http_body_timeouts"] == 1
