"""A remote MCP tool call through A2AL vs the same call to the server over streamable HTTP on
loopback (issue 20): first call (connect, handshake, call) and warm calls. One run.

    unshare -n sh -c 'ip link set lo up && python benchmarks/bench_remote_mcp.py'

The server is tests/remote_mcp/tool_server.py (official SDK, ``MCPServer``, stateless
streamable HTTP with JSON answers) in its own process; the tool is ``add`` (structured
result). Rows:
- HTTP: the official client (``mcp.Client``, streamable HTTP, httpx2) straight to it;
- A2AL: node B's :class:`~a2al_mcp.remote_mcp.client.RemoteMcp` (the same client over A2AL
  streams, kept alive from request to request) to node A, which exposes the same server by
  URL (``expose_mcp``: each request forwarded to it with the caller's AID, over kept-alive
  TCP connections);
- A2AL, stdio bridge: node A exposes the server started over stdio instead (the node's SDK
  bridge in front of it).
Both nodes run in this process (as the client and server of the HTTP row run in two). Each
row's server side is warmed by one call from another client first; "first call" is then B's
connect (TCP, or QUIC with its handshake), the MCP session's handshake and the call.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from _common import pct
from mcp import Client

from a2al_mcp import NodeConfig
from a2al_mcp.node import Node
from a2al_mcp.remote_mcp import ExposeSpec
from a2al_mcp.remote_mcp.client import RemoteMcp
from a2al_mcp.remote_mcp.expose import expose_mcp

SERVER = Path(__file__).resolve().parents[1] / "tests" / "remote_mcp" / "tool_server.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _wait_tcp(port: int) -> None:
    for _ in range(400):
        try:
            await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
            return
        except OSError:
            await anyio.sleep(0.05)
    raise SystemExit("the tool server did not start")


async def _measure(first: Callable[[], Awaitable[Any]], call: Callable[[], Awaitable[Any]],
                   n: int) -> tuple[float, list[float]]:  # fmt: skip
    t0 = time.perf_counter()
    await first()
    first_ms = (time.perf_counter() - t0) * 1000
    for _ in range(max(5, n // 10)):  # warm-up
        await call()
    warm = []
    for i in range(n):
        t0 = time.perf_counter()
        await call(i)
        warm.append((time.perf_counter() - t0) * 1000)
    return first_ms, warm


def _row(name: str, first_ms: float, warm: list[float], base: float | None) -> None:
    p50 = pct(warm, 50)
    ratio = f"{p50 / base:.2f}x" if base else "1.00x"
    print(f"| {name} | {first_ms:.1f} | {p50:.2f} | {pct(warm, 90):.2f} | {pct(warm, 99):.2f} "
          f"| {ratio} |")  # fmt: skip


async def main(n: int) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    args = {"a": 20, "b": 22}
    async with await anyio.open_process([sys.executable, str(SERVER), "http", str(port)],
                                        stdout=None, stderr=None) as proc:  # fmt: skip
        try:
            await _wait_tcp(port)
            print(f"n={n} warm calls each; times in ms (first call: connect + handshake + call)")
            print("| path | first call | warm p50 | p90 | p99 | warm p50 vs HTTP |")
            print("|---|---|---|---|---|---|")
            async with Client(url, cache=None) as direct_probe:  # the server is up and warm
                await direct_probe.call_tool("add", args)
            client_cm = Client(url, cache=None)
            holder: dict[str, Any] = {}

            async def http_first() -> None:
                holder["c"] = await client_cm.__aenter__()
                await holder["c"].call_tool("add", args)

            async def http_call(i: int = 0) -> None:
                res = await holder["c"].call_tool("add", {"a": i, "b": 1})
                assert res.structured_content["total"] == i + 1

            first, warm = await _measure(http_first, http_call, n)
            await client_cm.__aexit__(None, None, None)
            base = pct(warm, 50)
            _row("HTTP (streamable HTTP, loopback TCP)", first, warm, None)

            stdio = ExposeSpec(command=(sys.executable, str(SERVER), "stdio"))
            for label, spec in (("A2AL (exposed by URL)", ExposeSpec(url=url)),
                                ("A2AL (stdio bridge)", stdio)):  # fmt: skip
                async with Node(NodeConfig(listen_addr="127.0.0.1:0")) as a:
                    seed = "{}:{}".format(*a.local_addr)
                    async with Node(NodeConfig(listen_addr="127.0.0.1:0",
                                               bootstrap=(seed,))) as b:  # fmt: skip
                        await expose_mcp(a, spec)
                        await b.resolve(a.aid)  # the lookup is not the call's
                        # another node's call first: the server side is up and warm (the
                        # stdio process started, this process's first QUIC connection made),
                        # as the HTTP row's server is warm before its first call
                        async with Node(NodeConfig(listen_addr="127.0.0.1:0",
                                                   bootstrap=(seed,))) as c:  # fmt: skip
                            await RemoteMcp(c).call_tool(a.aid, "add", args)
                        remote = RemoteMcp(b)

                        async def a2al_first(remote: RemoteMcp = remote, aid: Any = a.aid) -> None:
                            await remote.call_tool(aid, "add", args)

                        async def a2al_call(i: int = 0, remote: RemoteMcp = remote,
                                            aid: Any = a.aid) -> None:  # fmt: skip
                            res = await remote.call_tool(aid, "add", {"a": i, "b": 1})
                            assert res["structuredContent"]["total"] == i + 1

                        first, warm = await _measure(a2al_first, a2al_call, n)
                        _row(label, first, warm, base)
        finally:
            proc.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="warm calls per path")
    anyio.run(main, parser.parse_args().n)
