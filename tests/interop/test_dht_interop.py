"""Issue 3 interop: our DHT node and a2ald 0.3.5 peers in one sealed namespace, both ways."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from a2al_mcp import Aid, DelegationProof, Identity, NodeConfig, NotFound, SigningKey
from a2al_mcp.node import Node
from a2al_mcp.testing.a2ald import A2aldNetwork, A2aldPeer

pytestmark = [pytest.mark.interop, pytest.mark.anyio]
T = TypeVar("T")


async def call(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """Run a blocking a2ald REST call in a thread so our node keeps serving meanwhile."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kw))


async def poll(
    fn: Callable[[], Any], until: Callable[[Any], bool], limit_s: float, what: str
) -> Any:
    last: Any = None
    with anyio.move_on_after(limit_s):
        while True:
            try:
                last = await call(fn)
                if until(last):
                    return last
            except Exception as exc:  # a2ald answers 404 until it finds the record
                last = exc
            await anyio.sleep(0.3)
    raise AssertionError(f"{what}: not reached in {limit_s} s; last: {last!r}")


@contextlib.asynccontextmanager
async def our_node(*bootstrap: str) -> AsyncIterator[Node]:
    cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=bootstrap)
    async with Node(cfg) as node:
        yield node


def _agent(peer: A2aldPeer, services: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    gen = peer.identity_generate()
    peer.register_agent(gen["operational_private_key_hex"], gen["delegation_proof_hex"])
    if services:
        peer.register_services(gen["aid"], services, **kw)
    peer.publish_agent(gen["aid"])
    return gen


async def test_a_we_join_a2ald_and_resolve_its_records(a2ald_net: A2aldNetwork) -> None:
    p0, p1 = a2ald_net.peers[0], a2ald_net.peers[1]
    gen = await call(_agent, p1)
    with anyio.fail_after(60):
        async with our_node(p0.listen_addr) as node:
            assert node.status().peers >= 1
            node_rec = await node.resolve(Aid.from_str(p1.node_aid))
            assert node_rec.endpoints == (f"quic://{p1.listen_addr}",)
            assert not node_rec.record.delegation  # a2ald's node identity is self-signed
            agent = Aid.from_str(gen["aid"])
            rec = None
            for _ in range(20):
                try:
                    rec = await node.resolve(agent)
                    break
                except NotFound:  # the publish may still be replicating
                    await anyio.sleep(0.5)
            assert rec is not None, "agent record not resolvable through the DHT"
            assert rec.record.delegation_proof() is not None
            assert rec.endpoints == (f"quic://{p1.listen_addr}",)


async def test_b_a2ald_resolves_our_record(a2ald_net: A2aldNetwork) -> None:
    p0, p2 = a2ald_net.peers[0], a2ald_net.peers[2]
    with anyio.fail_after(60):
        async with our_node(p0.listen_addr) as node:
            await node.publish()
            got = await poll(lambda: p2.resolve(str(node.aid)), bool, 30, "a2ald resolving us")
            assert got["address"] == str(node.aid)
            assert got["endpoints"] == [f"quic://127.0.0.1:{node.local_addr[1]}"]


async def test_b_record_held_only_by_our_nodes(tmp_path: Path, a2ald_available: None) -> None:
    """a2ald learns of us only through the DHT, and only our nodes hold the record."""
    with anyio.fail_after(90):
        async with contextlib.AsyncExitStack() as stack:
            first = await stack.enter_async_context(our_node())
            seed = "{}:{}".format(*first.local_addr)
            ours = [first] + [await stack.enter_async_context(our_node(seed)) for _ in range(4)]
            publisher = ours[3]
            await publisher.publish()
            # a2ald joins through our first node only, after the record was replicated
            peer = A2aldPeer(tmp_path / "late", bootstrap=[seed])
            try:
                await call(peer.start)
                await call(peer.wait_ready, 20.0)
                got = await poll(
                    lambda: peer.resolve(str(publisher.aid)), bool, 30, "a2ald resolving via us"
                )
                assert got["address"] == str(publisher.aid)
            finally:
                await call(peer.stop)


async def test_c_discover_both_ways(a2ald_net: A2aldNetwork) -> None:
    p0, p1, p3 = a2ald_net.peers[0], a2ald_net.peers[1], a2ald_net.peers[3]
    # several a2ald registrants with different protocols and tags
    await call(_agent, p1, ["interop.dht.svc"], name="a", protocols=["a2a"], tags=["fr"], ttl=600)
    await call(_agent, p3, ["interop.dht.svc"], name="b", protocols=["mcp"], tags=["fr", "en"],
               ttl=600)  # fmt: skip
    with anyio.fail_after(90):
        async with our_node(p0.listen_addr) as node:
            await node.register_service("interop.dht.svc", name="ours", protocols=["a2a"],
                                        tags=["en"])  # fmt: skip
            # a2ald finds ours among its own registrants
            entries = (
                await poll(
                    lambda: p3.discover(["interop.dht.svc"]),
                    lambda d: {e["name"] for e in d.get("entries", [])} == {"a", "b", "ours"},
                    45,
                    "a2ald discovering our registration beside its own",
                )
            )["entries"]
            assert len(entries) == 3
            filtered = await poll(
                lambda: p1.discover(["interop.dht.svc"], {"protocols": ["a2a"]}),
                lambda d: {e["name"] for e in d.get("entries", [])} == {"a", "ours"},
                45,
                "a2ald discover with a protocol filter",
            )
            assert all("a2a" in e["protocols"] for e in filtered["entries"])
            # we find a2ald's registrants, with filters
            for _ in range(20):
                mine = await node.discover("interop.dht.svc")
                if len(mine) == 3:
                    break
                await anyio.sleep(0.5)
            assert {e.name for e in mine} == {"a", "b", "ours"}
            assert {e.name for e in await node.discover("interop.dht.svc", protocols=["mcp"])} == {
                "b"
            }
            assert {e.name for e in await node.discover("interop.dht.svc", tags=["fr", "en"])} == {
                "b"
            }


async def test_d_a2ald_bootstraps_from_us_and_resolves_each_other(
    tmp_path: Path, a2ald_available: None
) -> None:
    with anyio.fail_after(90):
        async with our_node() as node:
            seed = "{}:{}".format(*node.local_addr)
            peers = [A2aldPeer(tmp_path / f"p{i}", bootstrap=[seed]) for i in range(3)]
            try:
                for p in peers:
                    await call(p.start)
                for p in peers:
                    await call(p.wait_ready, 20.0)
                agents = [await call(_agent, p) for p in peers]
                for i, p in enumerate(peers):
                    other = peers[(i + 1) % 3]
                    got = await poll(lambda p=p, o=other: p.resolve(o.node_aid), bool, 30,
                                     "a2ald resolving another a2ald through our node")  # fmt: skip
                    assert got["endpoints"] == [f"quic://{other.listen_addr}"]
                    agent = agents[(i + 2) % 3]["aid"]
                    got = await poll(lambda p=p, a=agent: p.resolve(a), bool, 30,
                                     "a2ald resolving an agent through our node")  # fmt: skip
                    assert got["address"] == agent
                assert node.status().peers >= 3
            finally:
                for p in peers:
                    p.terminate()
                for p in peers:
                    await call(p.stop)


async def test_our_store_of_an_a2ald_agent_record_is_served(a2ald_net: A2aldNetwork) -> None:
    """Our node replicates an a2ald-made delegated identity's record; a2ald resolves it."""
    p0, p2 = a2ald_net.peers[0], a2ald_net.peers[2]
    gen = await call(p0.identity_generate)
    op = SigningKey.from_go_bytes(bytes.fromhex(gen["operational_private_key_hex"]))
    proof = DelegationProof.from_bytes(bytes.fromhex(gen["delegation_proof_hex"]))
    agent = Identity.from_delegation(op, proof, now=time.time())
    with anyio.fail_after(60):
        async with our_node(p0.listen_addr) as node:
            node.add_identity(agent)
            await node.publish(agent.aid)
            got = await poll(lambda: p2.resolve(gen["aid"]), bool, 30, "a2ald resolving agent")
            assert got["endpoints"] == [f"quic://127.0.0.1:{node.local_addr[1]}"]
