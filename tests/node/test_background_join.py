"""Issue 16, "instant start": a node opened with ``join_in_background`` is usable at once,
even when its seed never answers (the MCP front answers ``initialize`` before the join); the
verbs that need the network wait for the join instead of failing."""

from __future__ import annotations

import anyio
import pytest

from a2al_mcp import Aid, Identity, NodeConfig, SystemRng
from a2al_mcp.errors import NotFound
from a2al_mcp.node import Node
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio


async def test_open_returns_before_a_silent_seed_times_out() -> None:
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as silent:
        host, port = silent.extra(anyio.abc.SocketAttribute.local_address)[:2]
        cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(f"{host}:{port}",))
        with anyio.fail_after(60):
            async with Node(cfg, join_in_background=True) as node:
                assert node.joining and node.status().joining  # open, still joining
                stranger = Aid.from_str(str(Identity.generate(SystemRng()).aid))
                with pytest.raises(NotFound):  # waited for the join, then looked up
                    await node.resolve(stranger)
                assert not node.joining and not node.status().joining
            async with Node(cfg) as node:  # the default: open waits for the join
                assert not node.joining


async def test_verbs_wait_for_a_join_that_succeeds() -> None:
    with anyio.fail_after(60):
        async with network(2, publish=True) as (seed, other):
            cfg = NodeConfig(listen_addr="127.0.0.1:0",
                             bootstrap=("{}:{}".format(*seed.local_addr),))  # fmt: skip
            async with Node(cfg, join_in_background=True) as node:
                found = await node.resolve(other.aid)  # waits for the join, then finds it
                assert found.endpoints and not node.joining and node.status().peers >= 1
