"""Outbound QUIC to a2ald with each dialling stack (qh3 by default, aioquic as well).

The outbound cases of test_quic_interop run here again with aioquic dialling, so both stacks
stay proven against the reference daemon: fetch and tunnel to an a2ald agent (plain and
delegated local identities), a wrong AID refused by our client, and our missing client
certificate refused by a2ald.
"""

from __future__ import annotations

import anyio
import pytest

import tests.interop.test_quic_interop as base
from a2al_mcp.identity import Aid
from a2al_mcp.testing.a2ald import A2aldNetwork
from a2al_mcp.transport import peer
from a2al_mcp.transport.tls import A2ALQuicConnection

pytestmark = [pytest.mark.interop, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["qh3", "aioquic"])
def stack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    if name == "qh3" and not peer.QH3_AVAILABLE:
        pytest.skip("qh3 is not installed")
    monkeypatch.setattr(peer, "DEFAULT_OUTBOUND_STACK", name)
    return name


@pytest.fixture
def aioquic_dialer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer, "DEFAULT_OUTBOUND_STACK", "aioquic")


async def test_the_dialling_stack_is_the_one_chosen(a2ald_net: A2aldNetwork, stack: str) -> None:
    p0, p1 = a2ald_net.peers[0], a2ald_net.peers[1]
    with anyio.fail_after(60):
        async with base.our_node(p0.listen_addr) as node:
            target = Aid.from_str(p1.node_aid)
            pc = await node.connect(target, endpoints=[f"quic://{p1.listen_addr}"])
            assert pc.peer_aid == target and pc.ready
            assert isinstance(pc.conn, A2ALQuicConnection) == (stack == "aioquic")
            assert pc.conn.peer_identity is not None and pc.conn.peer_identity.aid == target


async def test_aioquic_fetches_and_tunnels_to_an_a2ald_agent_backend(
    a2ald_net: A2aldNetwork, aioquic_dialer: None
) -> None:
    await base.test_we_fetch_and_tunnel_to_an_a2ald_agent_backend(a2ald_net)


async def test_aioquic_refuses_a_wrong_aid_both_ways(
    a2ald_net: A2aldNetwork, aioquic_dialer: None
) -> None:
    await base.test_wrong_aid_is_refused_both_ways(a2ald_net)


async def test_a2ald_refuses_an_aioquic_client_without_certificate(
    a2ald_net: A2aldNetwork, aioquic_dialer: None
) -> None:
    await base.test_a2ald_refuses_a_client_without_certificate(a2ald_net)
