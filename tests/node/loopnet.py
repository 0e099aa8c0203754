"""A small network of real Nodes on loopback UDP, for the node tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from a2al_mcp import NodeConfig
from a2al_mcp.node import Node


def quic_url(node: Node) -> str:
    """``quic://host:port`` of ``node``'s socket, for ``endpoints=[...]``."""
    host, port = node.local_addr
    return f"quic://{host}:{port}"


@contextlib.asynccontextmanager
async def network(n: int, *, publish: bool = False) -> AsyncIterator[list[Node]]:
    """``n`` nodes joined through the first; with ``publish`` each publishes its record."""
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
        seed = "{}:{}".format(*first.local_addr)
        nodes = [first]
        for _ in range(n - 1):
            cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed,))
            nodes.append(await stack.enter_async_context(Node(cfg)))
        if publish:
            for node in nodes:
                await node.publish()
        yield nodes
