"""Several of our nodes in one process, on loopback, reaching one callee over real ICE
sessions (aioice, host candidates on 127.0.0.1 only): every connection accepted over an ICE
pair is admitted on its own, not counted against one shared per-IP budget.

A path is known to the callee's QUIC host by a synthetic address ``100::<n>``
(a2al_mcp.transport.quic_paths): every one of them lies in the same IPv6 /64, the unit of the
per-IP admission limits. Counted that way, once ``connections_per_ip`` connections had come
over ICE pairs (32 by default: a symmetric-NAT node in the NAT matrix took 32 Mode-B and hub
calls while the world came up) every later INITIAL on a path was refused in silence, and each
caller saw its pair selected but QUIC over it never completing ("still QUIC over the srflx
pair") while its callee's answer failed with "no QUIC connection over the ICE pair".
Here the limits are small (two per IP, one handshake per IP) and three callers, then the
first again, dial: each comes up.
"""

from __future__ import annotations

import contextlib

import aioice.ice
import anyio
import pytest

from a2al_mcp._clock import SystemClock
from a2al_mcp._random import SeededRng
from a2al_mcp.config import LimitsConfig
from a2al_mcp.ice import accept_over_ice, dial_over_ice
from a2al_mcp.ice.config import IceConfig
from a2al_mcp.ice.session import IceSession
from a2al_mcp.transport.peer import PeerConnection
from tests.unit.ice.quic_over_link import QuicNode, echo, quic_node

pytestmark = pytest.mark.anyio

CLOCK = SystemClock()
WAIT_S = 30.0


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice gathers host candidates on 127.0.0.1 alone (its host addresses leave loopback
    out): nothing leaves the host."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


async def _connected_pair(seed: int) -> tuple[IceSession, IceSession]:
    """A caller's (controlling) and a callee's (controlled) session with a selected pair: the
    candidates and credentials the hub room would carry, handed over directly."""
    config = IceConfig(connect_timeout_s=10.0)
    caller = IceSession(config, controlling=True, clock=CLOCK, rng=SeededRng(seed))
    callee = IceSession(config, controlling=False, clock=CLOCK, rng=SeededRng(seed + 1))
    offered, answered = await caller.gather(), await callee.gather()
    caller.set_remote_credentials(callee.local_credentials.ufrag, callee.local_credentials.pwd)
    callee.set_remote_credentials(caller.local_credentials.ufrag, caller.local_credentials.pwd)
    for text in answered:
        await caller.add_remote_candidate(text)
    for text in offered:
        await callee.add_remote_candidate(text)
    await caller.end_of_candidates()
    await callee.end_of_candidates()
    async with anyio.create_task_group() as tg:
        tg.start_soon(caller.connect)
        tg.start_soon(callee.connect)
    return caller, callee


async def _call(caller: QuicNode, callee: QuicNode, seed: int, message: bytes) -> PeerConnection:
    """One call over a fresh pair of ICE sessions: the callee accepts over its session, the
    caller dials over its own; the echo of ``message`` comes back."""
    ours, theirs = await _connected_pair(seed)
    path = accept_over_ice(callee.service, theirs)
    pc = dial_over_ice(caller.service, caller.cert(), callee.aid, ours)
    assert await echo(pc, message) == b"echo:" + message
    accepted = await path.wait_connection()
    assert accepted.peer_aid == caller.aid
    assert accepted.path is path and path.remote == ours.selected.local  # type: ignore[union-attr]
    return pc


async def test_connections_over_ice_pairs_are_not_counted_as_one_source() -> None:
    limits = LimitsConfig(connections_per_ip=2, half_open_per_ip=1)
    async with contextlib.AsyncExitStack() as stack:
        callee = await stack.enter_async_context(quic_node(limits=limits))
        callers = [await stack.enter_async_context(quic_node()) for _ in range(3)]
        with anyio.fail_after(WAIT_S):
            live = [await _call(c, callee, 10 * i, b"call %d" % i) for i, c in enumerate(callers)]
            live.append(await _call(callers[0], callee, 40, b"again"))  # a second from one node
        assert all(not pc.closed for pc in live)
        assert callee.service.statistics().paths == len(live)
        counters = callee.service.counters
        assert (counters.refused_per_ip, counters.refused_half_open_per_ip) == (0, 0)
        assert counters.path_misrouted == 0
