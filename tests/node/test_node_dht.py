"""Real Nodes on loopback UDP: join, publish, resolve, register and discover, lifecycle."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from a2al_mcp import DelegatedIdentity, Identity, NodeConfig, SystemRng
from a2al_mcp.errors import NodeClosed, NotFound, UsageError
from a2al_mcp.node import Node
from tests.node.loopnet import network

pytestmark = pytest.mark.anyio


async def test_publish_resolve_discover_on_loopback() -> None:
    with anyio.fail_after(30):
        async with network(5) as nodes:
            for node in nodes:
                await node.publish()
            for node in nodes:
                for other in nodes:
                    found = await node.resolve(other.aid)
                    assert found.aid == other.aid
                    assert found.endpoints == (f"quic://127.0.0.1:{other.local_addr[1]}",)
            agent = DelegatedIdentity.generate(SystemRng(), issued_at=0).identity
            nodes[1].add_identity(agent)
            await nodes[1].register_service("lang.translate", name="tr", protocols=["a2a"],
                                            tags=["fr", "en"], aid=agent.aid)  # fmt: skip
            await nodes[2].register_service("lang.translate", name="tr2", protocols=["mcp"])
            got = await nodes[4].discover("lang.translate")
            assert {e.aid for e in got} == {agent.aid, nodes[2].aid}
            assert [
                e.aid for e in await nodes[3].discover("lang.translate", protocols=["a2a"])
            ] == [agent.aid]
            assert await nodes[3].discover("lang.translate", tags=["fr", "de"]) == []
            status = nodes[0].status()
            assert status.ready and status.peers >= 4 and status.published == (nodes[0].aid,)
            assert status.dht.dropped_verify == 0


async def test_resolve_unknown_is_not_found() -> None:
    with anyio.fail_after(30):
        async with network(3) as nodes:
            stranger = DelegatedIdentity.generate(SystemRng(), issued_at=0).identity.aid
            with pytest.raises(NotFound):
                await nodes[1].resolve(stranger)


async def test_lifecycle() -> None:
    node = Node(NodeConfig(listen_addr="127.0.0.1:0"))
    with pytest.raises(NodeClosed):
        node.status()
    async with node:
        assert node.status().peers == 0
        with pytest.raises(UsageError):
            await node.__aenter__()
    with pytest.raises(NodeClosed):
        await node.publish()
    await node.aclose()  # idempotent


async def test_a_restarted_identity_supersedes_its_previous_record(tmp_path: Path) -> None:
    """Replicas keep the record with the higher seq: a restart (new port) must win."""
    with anyio.fail_after(30):
        async with network(3) as nodes:
            seed = "{}:{}".format(*nodes[0].local_addr)
            ident = Identity.generate(SystemRng())
            cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed,))
            async with Node(cfg, ident) as first:
                await first.publish()
                old_port = first.local_addr[1]
            async with Node(cfg, ident) as second:
                await second.publish()
                assert second.local_addr[1] != old_port
                found = await nodes[1].resolve(ident.aid)
                assert found.endpoints == (f"quic://127.0.0.1:{second.local_addr[1]}",)
            async with Node(cfg, ident) as third:
                await third.register_service("x.y")
                await third.publish()
                assert third.unpublish() == ["x.y"] and third.status().published == ()
