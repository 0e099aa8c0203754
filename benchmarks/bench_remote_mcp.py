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
connect (TCP, or QUIC with its handshake), the MCP session's handshake and the call. The
warm calls of the three paths are taken in turns (``--block`` calls each), so a change of
load on a shared machine falls on all three alike; the ratio is p50 over the HTTP row's.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
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
HTTP = "HTTP (streamable HTTP, loopback TCP)"


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


Call = Callable[[int], Awaitable[Any]]


async def _first(call: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    await call()
    return (time.perf_counter() - t0) * 1000


async def _interleaved(calls: dict[str, Call], n: int, block: int) -> dict[str, list[float]]:
    """``n`` warm calls of each path, taken in turns of ``block`` calls per path (so a change
    of the machine's load falls on every path alike), after a warm-up."""
    for call in calls.values():
        for i in range(max(5, n // 10)):
            await call(i)
    warm: dict[str, list[float]] = {name: [] for name in calls}
    i = 0
    while i < n:
        for name, call in calls.items():
            for j in range(i, min(n, i + block)):
                t0 = time.perf_counter()
                await call(j)
                warm[name].append((time.perf_counter() - t0) * 1000)
        i += block
    return warm


def _row(name: str, first_ms: float, warm: list[float], base: float | None) -> None:
    p50 = pct(warm, 50)
    ratio = f"{p50 / base:.2f}x" if base else "1.00x"
    print(f"| {name} | {first_ms:.1f} | {p50:.2f} | {pct(warm, 90):.2f} | {pct(warm, 99):.2f} "
          f"| {ratio} |")  # fmt: skip


async def _a2al_path(stack: contextlib.AsyncExitStack, spec: ExposeSpec,
                     args: dict[str, int]) -> tuple[float, Call]:  # fmt: skip
    """Nodes A (exposing ``spec``) and B; B's first call (timed) and its warm call."""
    a = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
    seed = "{}:{}".format(*a.local_addr)
    b = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0",
                                                        bootstrap=(seed,))))  # fmt: skip
    await expose_mcp(a, spec)
    await b.resolve(a.aid)  # the lookup is not the call's
    # another node's call first: the server side is up and warm (the stdio process started,
    # this process's first QUIC connection made), as the HTTP row's server is warm before its
    # first call
    async with Node(NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed,))) as c:
        await RemoteMcp(c).call_tool(a.aid, "add", args)
    remote = RemoteMcp(b)
    first = await _first(lambda: remote.call_tool(a.aid, "add", args))

    async def call(i: int) -> None:
        res = await remote.call_tool(a.aid, "add", {"a": i, "b": 1})
        assert res["structuredContent"]["total"] == i + 1

    return first, call


async def main(n: int, block: int) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    args = {"a": 20, "b": 22}
    async with (
        await anyio.open_process([sys.executable, str(SERVER), "http", str(port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc,
        contextlib.AsyncExitStack() as stack,
    ):  # fmt: skip
        try:
            await _wait_tcp(port)
            async with Client(url, cache=None) as direct_probe:  # the server is up and warm
                await direct_probe.call_tool("add", args)
            holder: dict[str, Any] = {}

            async def http_first() -> None:
                holder["c"] = await stack.enter_async_context(Client(url, cache=None))
                await holder["c"].call_tool("add", args)

            async def http_call(i: int) -> None:
                res = await holder["c"].call_tool("add", {"a": i, "b": 1})
                assert res.structured_content["total"] == i + 1

            firsts = {HTTP: await _first(http_first)}
            calls: dict[str, Call] = {HTTP: http_call}
            stdio = ExposeSpec(command=(sys.executable, str(SERVER), "stdio"))
            for label, spec in (("A2AL (exposed by URL)", ExposeSpec(url=url)),
                                ("A2AL (stdio bridge)", stdio)):  # fmt: skip
                firsts[label], calls[label] = await _a2al_path(stack, spec, args)
            warm = await _interleaved(calls, n, block)
            print(f"n={n} warm calls each, taken in turns of {block}; times in ms (first call: "
                  "connect + handshake + call)")  # fmt: skip
            print("| path | first call | warm p50 | p90 | p99 | warm p50 vs HTTP |")
            print("|---|---|---|---|---|---|")
            base = pct(warm[HTTP], 50)
            for label, times in warm.items():
                _row(label, firsts[label], times, None if label == HTTP else base)
        finally:
            proc.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="warm calls per path")
    parser.add_argument("--block", type=int, default=20, help="warm calls per path per turn")
    options = parser.parse_args()
    anyio.run(main, options.n, options.block)
