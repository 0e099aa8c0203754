"""QUIC with a2ald on each of our stacks, both ways (qh3 by default, aioquic as well).

test_quic_interop runs on the default stacks; its cases run here again with aioquic dialling
(fetch and tunnel to an a2ald agent with plain and delegated local identities, a wrong AID
refused by our client, our missing client certificate refused by a2ald) and with aioquic
accepting (a2ald fetching our HTTP handler and tunnelling to our service, plain and delegated
on both sides), so both stacks stay proven against the reference daemon. The inbound checks
refuse a2ald's own connections never; the server-side refusals of bad client certificates
are tested against each stack in tests/unit/transport (a2ald cannot present a bad one).
"""

from __future__ import annotations

import anyio
import pytest

import tests.interop.test_quic_interop as base
from a2al_mcp.identity import Aid
from a2al_mcp.testing.a2ald import A2aldNetwork
from a2al_mcp.transport import peer
from a2al_mcp.transport.tls import A2ALQuicConnection
from a2al_mcp.transport.tls_qh3 import Qh3ServerConnection

pytestmark = [pytest.mark.interop, pytest.mark.anyio]


def _use(monkeypatch: pytest.MonkeyPatch, way: str, name: str) -> str:
    """Make ``name`` the stack of our ``way`` ("OUTBOUND"/"INBOUND") connections."""
    if name == "qh3" and not peer.QH3_AVAILABLE:
        pytest.skip("qh3 is not installed")
    monkeypatch.setattr(peer, f"DEFAULT_{way}_STACK", name)
    return name


@pytest.fixture(params=["qh3", "aioquic"])
def stack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    return _use(monkeypatch, "OUTBOUND", request.param)


@pytest.fixture
def aioquic_dialer(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, "OUTBOUND", "aioquic")


@pytest.fixture(params=["qh3", "aioquic"])
def acceptor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    return _use(monkeypatch, "INBOUND", request.param)


@pytest.fixture
def aioquic_acceptor(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, "INBOUND", "aioquic")


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


async def test_the_accepting_stack_is_the_one_chosen(
    a2ald_net: A2aldNetwork, acceptor: str
) -> None:
    p0, p2 = a2ald_net.peers[0], a2ald_net.peers[2]
    with anyio.fail_after(60):
        async with base.our_node(p0.listen_addr) as node:
            await node.publish()
            node.serve(handler=base.echo)
            await base.poll(lambda: p2.resolve(str(node.aid)), bool, 30, "a2ald resolving us")
            await base.call(p2.post, f"/connect/{node.aid}", {})
            inbound = [pc for pc in node.connections() if not pc.is_dialer]
            assert [pc.peer_aid for pc in inbound] == [Aid.from_str(p2.node_aid)]
            assert isinstance(inbound[0].conn, A2ALQuicConnection) == (acceptor == "aioquic")
            if acceptor == "qh3":
                assert isinstance(inbound[0].conn, Qh3ServerConnection)


async def test_a2ald_fetches_our_http_handler_on_aioquic(
    a2ald_net: A2aldNetwork, aioquic_acceptor: None
) -> None:
    await base.test_a2ald_fetches_our_http_handler(a2ald_net)


async def test_a2ald_tunnels_to_our_service_on_aioquic(
    a2ald_net: A2aldNetwork, aioquic_acceptor: None
) -> None:
    await base.test_a2ald_tunnels_to_our_service(a2ald_net)
