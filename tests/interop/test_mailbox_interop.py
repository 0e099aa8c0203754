"""Issue 5 interop: mailbox notes between our agents and a2ald agents, both ways, with the
recipient online and offline at send time (sealed namespace)."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from a2al_mcp import Aid, DelegatedIdentity, Identity, NodeConfig, SystemRng
from a2al_mcp.node import Node
from a2al_mcp.testing.a2ald import A2aldNetwork, A2aldPeer
from tests.interop.test_dht_interop import call, poll

pytestmark = [pytest.mark.interop, pytest.mark.anyio]


@contextlib.asynccontextmanager
async def our_node(
    seed: str, identity: Identity | None = None, data_dir: Path | None = None
) -> AsyncIterator[Node]:
    cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed,), data_dir=data_dir)
    async with Node(cfg, identity) as node:
        yield node


def _agent(peer: A2aldPeer) -> dict[str, Any]:
    gen = peer.identity_generate()
    peer.register_agent(gen["operational_private_key_hex"], gen["delegation_proof_hex"])
    peer.publish_agent(gen["aid"])
    return gen


def _send(peer: A2aldPeer, sender: str, recipient: Aid, body: bytes) -> dict[str, Any]:
    return peer.post(f"/agents/{sender}/mailbox/send", {
        "recipient": str(recipient), "msg_type": 3,
        "body_base64": base64.b64encode(body).decode(),
    })  # fmt: skip


def _bodies(peer: A2aldPeer, aid: str) -> list[tuple[str, bytes]]:
    got = peer.post(f"/agents/{aid}/mailbox/poll", {})
    return [(m["sender"], base64.b64decode(m["body_base64"])) for m in got.get("messages", [])]


async def _note(node: Node, local: Aid | None, limit_s: float) -> list[Any]:
    with anyio.move_on_after(limit_s):
        while True:
            notes = await node.read_mailbox(local=local, peek=True)
            if notes:
                return notes
            await node.check_mailbox()
            await anyio.sleep(0.3)
    raise AssertionError(f"no note arrived in {limit_s} s")


async def test_a2ald_to_us_online(a2ald_net: A2aldNetwork) -> None:
    p0, p1 = a2ald_net.peers[0], a2ald_net.peers[1]
    with anyio.fail_after(90):
        async with our_node(p0.listen_addr) as node:
            agent = DelegatedIdentity.generate(SystemRng(), issued_at=0).identity
            node.add_identity(agent)
            await node.publish()
            await node.publish(agent.aid)
            gen = await call(_agent, p1)
            for target, local in ((node.aid, None), (agent.aid, agent.aid)):
                await poll(lambda t=target: p1.resolve(str(t)), bool, 30, "a2ald resolving us")
                body = f"from a2ald to {target}".encode()
                sent = await call(_send, p1, gen["aid"], target, body)
                assert sent.get("ok"), sent
                (note,) = await _note(node, local, 30)
                assert note.body == body and str(note.sender) == gen["aid"]
                assert note.msg_id.hex() == sent["message_id"]


async def test_a2ald_to_us_offline_then_started(a2ald_net: A2aldNetwork, tmp_path: Path) -> None:
    p0, p2 = a2ald_net.peers[0], a2ald_net.peers[2]
    ident = Identity.generate(SystemRng())
    with anyio.fail_after(120):
        async with our_node(p0.listen_addr, ident, tmp_path) as node:
            await node.publish()
        await poll(lambda: p2.resolve(str(ident.aid)), bool, 30, "a2ald resolving us")
        gen = await call(_agent, p2)
        sent = await call(_send, p2, gen["aid"], ident.aid, b"sent while you were offline")
        assert sent.get("ok"), sent
        async with our_node(p0.listen_addr, ident, tmp_path) as node:
            (note,) = await _note(node, None, 45)
            assert note.body == b"sent while you were offline"
            assert str(note.sender) == gen["aid"]


async def test_us_to_a2ald_online(a2ald_net: A2aldNetwork) -> None:
    p0, p3 = a2ald_net.peers[0], a2ald_net.peers[3]
    with anyio.fail_after(90):
        async with our_node(p0.listen_addr) as node:
            await node.publish()
            gen = await call(_agent, p3)
            target = Aid.from_str(gen["aid"])
            mine = DelegatedIdentity.generate(SystemRng(), issued_at=0).identity
            node.add_identity(mine)
            await node.publish(mine.aid)
            for local in (None, mine.aid):
                body = f"hello from {local or node.aid}".encode()
                res = await node.send_mailbox(target, body, local=local)
                assert res.delivered in ("direct", "both"), res
                got = await poll(lambda: _bodies(p3, gen["aid"]), bool, 30, "a2ald polling")
                assert (str(local or node.aid), body) in got


async def test_us_to_a2ald_offline_then_started(tmp_path: Path, a2ald_net: A2aldNetwork) -> None:
    p0 = a2ald_net.peers[0]
    late = A2aldPeer(tmp_path / "late", bootstrap=[p0.listen_addr])
    await call(late.start)
    try:
        await call(late.wait_ready, 20.0)
        gen = await call(_agent, late)
        with anyio.fail_after(120):
            async with our_node(p0.listen_addr) as node:
                await node.publish()
                target = Aid.from_str(gen["aid"])
                await node.resolve(target)
                await call(late.stop)  # the recipient goes offline
                res = await node.send_mailbox(target, b"for when you are back")
                assert res.delivered == "stored" and res.replicas >= 1, res
                await call(late.start)  # and comes back within the TTL
                await call(late.wait_ready, 20.0)
                got = await poll(lambda: _bodies(late, gen["aid"]), bool, 60, "a2ald pickup")
                assert (str(node.aid), b"for when you are back") in got
    finally:
        await call(late.stop)
