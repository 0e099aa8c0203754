"""Tool calls through the LangChain toolkit: one warm node serving many calls, vs a node per
call (what a framework gets from a generic MCP adapter that opens a session per call, minus
the process start). All nodes in one process on loopback UDP.

    unshare -n sh -c 'ip link set lo up && cd benchmarks && python bench_toolkit_calls.py'

Rows (``-n`` sequential calls each, after a warm-up):
- ``call_tool`` directly (the catalogue, no framework) — the floor;
- LangChain ``ainvoke`` on the node's loop: ``status`` (local) and ``resolve`` (a peer's record);
- LangChain sync ``invoke`` from a worker thread (through the toolkit's portal);
- a fresh node per call: open, join, ``resolve``, close (``--cold`` calls).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from _common import pct
from a2al_mcp.adapters.langchain import A2ALToolkit

from a2al_mcp import Node, NodeConfig, call_tool


@contextlib.asynccontextmanager
async def loopback(n: int) -> AsyncIterator[list[Node]]:
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
        nodes = [first]
        for _ in range(n - 1):
            cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed_of(first),))
            nodes.append(await stack.enter_async_context(Node(cfg)))
        for node in nodes:
            await node.publish()
        yield nodes


def seed_of(node: Node) -> str:
    return "{}:{}".format(*node.local_addr)


async def timed(n: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    for _ in range(min(50, n)):
        await call()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t0)
    return out


def row(name: str, xs: list[float]) -> None:
    total = sum(xs)
    print(f"| {name} | {len(xs)} | {len(xs) / total:,.0f} | {pct(xs, 50) * 1e3:.3f} | "
          f"{pct(xs, 95) * 1e3:.3f} |")  # fmt: skip


async def main(n: int, cold: int) -> None:
    opened = 0
    real_aenter = Node.__aenter__

    async def counting(self: Node) -> Node:
        nonlocal opened
        opened += 1
        return await real_aenter(self)

    Node.__aenter__ = counting  # type: ignore[method-assign]
    async with loopback(2) as (seed, peer):
        cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed_of(seed),))
        async with A2ALToolkit(config=cfg) as kit:
            tools = {t.name: t for t in kit.get_tools()}
            aid = str(peer.aid)
            before = opened
            print("| path | calls | calls/s | p50 ms | p95 ms |\n|---|---|---|---|---|")
            row("`call_tool(node, 'status')` (no framework)",
                await timed(n, lambda: call_tool(kit.node, "status", {})))  # fmt: skip
            row("LangChain `ainvoke` status",
                await timed(n, lambda: tools["status"].ainvoke({})))  # fmt: skip
            row("LangChain `ainvoke` resolve",
                await timed(n, lambda: tools["resolve"].ainvoke({"aid": aid})))  # fmt: skip

            def sync_block(name: str, args: dict[str, Any]) -> list[float]:
                for _ in range(min(50, n)):
                    tools[name].invoke(args)
                xs = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    tools[name].invoke(args)
                    xs.append(time.perf_counter() - t0)
                return xs

            row("LangChain sync `invoke` status, worker thread",
                await anyio.to_thread.run_sync(sync_block, "status", {}))  # fmt: skip
            row("LangChain sync `invoke` resolve, worker thread",
                await anyio.to_thread.run_sync(sync_block, "resolve", {"aid": aid}))  # fmt: skip
            assert opened == before, "a tool call opened a node"

        async def node_per_call() -> None:
            async with Node(NodeConfig(listen_addr="127.0.0.1:0",
                                       bootstrap=(seed_of(seed),))) as node:  # fmt: skip
                await call_tool(node, "resolve", {"aid": str(peer.aid)})

        xs = []
        for _ in range(cold):
            t0 = time.perf_counter()
            await node_per_call()
            xs.append(time.perf_counter() - t0)
        row("a fresh node per call: open, join, resolve, close", xs)
    print(f"\nnodes opened: {opened} (2 network + 1 toolkit + {cold} per-call)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="calls per warm row")
    parser.add_argument("--cold", type=int, default=20, help="node-per-call samples")
    args = parser.parse_args()
    anyio.run(main, args.n, args.cold)
