"""``[quic]`` settings reach both QUIC stacks and the keep-alive loop."""

from __future__ import annotations

import contextlib

import anyio
import pytest

from a2al_mcp import NodeConfig
from a2al_mcp.config import QuicConfig
from a2al_mcp.node import Node
from a2al_mcp.transport import peer

pytestmark = pytest.mark.anyio

STACKS = ("qh3", "aioquic") if peer.QH3_AVAILABLE else ("aioquic",)


@pytest.mark.parametrize("stack", STACKS)
async def test_idle_timeout_and_keepalive_are_the_configured_ones(
    monkeypatch: pytest.MonkeyPatch, stack: str
) -> None:
    monkeypatch.setattr(peer, "DEFAULT_INBOUND_STACK", stack)
    monkeypatch.setattr(peer, "DEFAULT_OUTBOUND_STACK", stack)
    with anyio.fail_after(30):
        async with contextlib.AsyncExitStack() as stack_:
            b = await stack_.enter_async_context(
                Node(NodeConfig(quic=QuicConfig(idle_timeout_s=50.0, keepalive_s=20.0)))
            )
            seed = "{}:{}".format(*b.local_addr)
            a = await stack_.enter_async_context(
                Node(
                    NodeConfig(
                        bootstrap=(seed,), quic=QuicConfig(idle_timeout_s=40.0, keepalive_s=15.0)
                    )
                )
            )
            await b.publish()
            pc = await a.connect(b.aid)
            assert any(c.__module__.startswith(stack) for c in type(pc.conn).__mro__)
            assert pc.conn.configuration.idle_timeout == 40.0
            inbound = [c for c in b.connections() if not c.is_dialer]
            assert len(inbound) == 1
            assert inbound[0].conn.configuration.idle_timeout == 50.0
            assert a._connector is not None and a._connector.keepalive_s == 15.0


@pytest.mark.parametrize("stack", STACKS)
async def test_a_keepalive_the_stack_refuses_drops_that_connection_only(
    monkeypatch: pytest.MonkeyPatch, stack: str
) -> None:
    """A pooled connection whose QUIC core refuses the keep-alive PING (qh3 raises on a
    core that closed under us) is dropped from the pool; the keep-alive loop goes on for
    the others instead of failing the round and being restarted as a contained error."""
    monkeypatch.setattr(peer, "DEFAULT_INBOUND_STACK", stack)
    monkeypatch.setattr(peer, "DEFAULT_OUTBOUND_STACK", stack)
    quic = QuicConfig(idle_timeout_s=30.0, keepalive_s=0.2)
    with anyio.fail_after(30):
        async with contextlib.AsyncExitStack() as stack_:
            b = await stack_.enter_async_context(Node(NodeConfig(quic=quic)))
            seed = "{}:{}".format(*b.local_addr)
            c = await stack_.enter_async_context(Node(NodeConfig(bootstrap=(seed,), quic=quic)))
            a = await stack_.enter_async_context(Node(NodeConfig(bootstrap=(seed,), quic=quic)))
            await b.publish()
            await c.publish()
            bad = await a.connect(b.aid)
            good = await a.connect(c.aid)

            def refuse(_uid: int) -> None:
                raise RuntimeError("connection is closed")

            monkeypatch.setattr(bad.conn, "send_ping", refuse)
            for _ in range(100):  # dropped at the next keep-alive round (no event to wait on)
                if bad.closed:
                    break
                await anyio.sleep(0.05)
            await anyio.sleep(0.5)  # two more rounds
            assert not good.closed
            assert a.status().contained_errors.loops == 0
            assert await a.connect(c.aid) is good  # still pooled
