"""QUIC of a node's own QuicService over an ICE session's selected pair, without sockets for
the pair: the session is stood in for by an in-memory link with what a connected
IceSession has (``selected``, ``send``/``receive``, ``close``). The NAT testbed runs the real
thing (tests/nat/test_ice.py)."""

from __future__ import annotations

import anyio
import pytest

from a2al_mcp.errors import UsageError
from a2al_mcp.ice import SelectedPair, accept_over_ice, dial_over_ice, path_label
from tests.unit.ice.quic_over_link import MemoryLink, echo, link_pair, quic_node

pytestmark = pytest.mark.anyio


class FakeIce:
    """What the path uses of a connected IceSession, over an in-memory link."""

    def __init__(self, link: MemoryLink, pair: SelectedPair | None) -> None:
        self._link = link
        self.selected = pair
        self.closed = False

    async def send(self, data: bytes) -> None:
        await self._link.send(data)

    async def receive(self) -> bytes:
        return await self._link.receive()

    async def close(self) -> None:
        self.closed = True
        await self._link.aclose()


def _pair(local: tuple[str, int], remote: tuple[str, int], kind: str) -> SelectedPair:
    return SelectedPair(local=local, remote=remote, local_type=kind, remote_type=kind, rtt_s=0.01)


async def test_the_nodes_service_dials_and_accepts_over_an_ice_pair() -> None:
    caller_at, callee_at = ("198.51.100.7", 50000), ("203.0.113.3", 49152)
    with link_pair() as (la, lb), anyio.fail_after(20):
        async with quic_node() as caller, quic_node() as callee:
            caller_ice = FakeIce(la, _pair(caller_at, callee_at, "relay"))
            callee_ice = FakeIce(lb, _pair(callee_at, caller_at, "relay"))
            path = accept_over_ice(callee.service, callee_ice)  # type: ignore[arg-type]
            pc = dial_over_ice(caller.service, caller.cert(), callee.aid, caller_ice)  # type: ignore[arg-type]
            assert await echo(pc, b"over ICE") == b"echo:over ICE"
            accepted = await path.wait_connection()
            assert accepted.peer_aid == caller.aid and pc.peer_aid == callee.aid
            assert pc.path is not None and pc.path.remote == callee_at
            assert pc.path.label == path.label == "relay"
            assert path.remote == caller_at
            pc.path.close("done")
            await pc.path.closed.wait()
            await path.closed.wait()
    assert caller_ice.closed and callee_ice.closed  # the paths released the sessions


async def test_an_unconnected_session_is_refused() -> None:
    with link_pair() as (la, _), anyio.fail_after(10):
        async with quic_node() as node:
            ice = FakeIce(la, None)
            with pytest.raises(UsageError, match="connect"):
                dial_over_ice(node.service, node.cert(), node.aid, ice)  # type: ignore[arg-type]
            with pytest.raises(UsageError, match="connect"):
                accept_over_ice(node.service, ice)  # type: ignore[arg-type]
            assert node.service.statistics().paths == 0


def test_the_label_names_a_relay() -> None:
    assert path_label(_pair(("10.0.0.1", 1), ("10.0.0.2", 2), "relay")) == "relay"
    assert path_label(_pair(("10.0.0.1", 1), ("10.0.0.2", 2), "srflx")) == "ice"
    assert path_label(_pair(("10.0.0.1", 1), ("10.0.0.2", 2), "host")) == "ice"
