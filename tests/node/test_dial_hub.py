"""The caller's side of NAT traversal on loopback: :class:`HubCaller` (a2al_mcp.node.punch_paths)
against a real node's callee side through a real hub, and the node's ``status`` telling which
path its dials took. Nothing leaves 127.0.0.1 (the NAT cases: tests/nat/test_node_dial.py)."""

from __future__ import annotations

import contextlib

import anyio
import pytest

from a2al_mcp import Node, NodeConfig, SystemRng
from a2al_mcp._clock import SystemClock
from a2al_mcp.config import SignalConfig
from a2al_mcp.errors import Unreachable
from a2al_mcp.identity import Identity
from a2al_mcp.node.punch_paths import HubCaller
from a2al_mcp.signal.punch_core import PunchLimits
from a2al_mcp.toolspec import call_tool
from tests.node.quicpeer import quic_peer
from tests.node.test_traversal import _node, hello, hub, record_of, until

pytestmark = pytest.mark.anyio

WAIT_S = 30.0
CLOCK = SystemClock()


async def test_the_hub_caller_punches_through_every_named_hub_to_a_registered_node() -> None:
    with anyio.fail_after(WAIT_S):
        async with contextlib.AsyncExitStack() as stack:
            _server, url = await stack.enter_async_context(hub())
            seed = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
            seed_addr = "{}:{}".format(*seed.local_addr)
            callee = await stack.enter_async_context(_node(seed_addr, hubs=(url,)))
            callee.serve(http=hello)
            await until(lambda: callee.signal_hubs() == (url,), "the callee registered")
            client = await stack.enter_async_context(quic_peer())
            caller = HubCaller(SignalConfig(), clock=CLOCK, rng=SystemRng(),
                               service=client.service, punch_addrs=lambda: (client.addr,),
                               nat_type=lambda: 1,
                               send_datagram=client.endpoint.send_datagram)  # fmt: skip
            # a second hub that nobody listens on: its failure does not hold the dial back
            dead = "ws://127.0.0.1:9"
            pc = await caller.connect(client.cert(), callee.aid, (dead, url))
            assert pc.ready and pc.is_dialer and pc.peer_aid == callee.aid
            assert pc.addr == callee.local_addr
            stream = await pc.open_stream()
            await stream.aclose()
            assert (caller.calls, caller.punched, caller.failed) == (1, 1, 0)
            stats = callee.traversal_statistics()
            assert stats is not None
            await until(lambda: stats.punched == 1, "the callee's side found the path")

            # an identity the hub does not know: noagent through every hub, one failure
            stranger = Identity.generate(SystemRng()).aid
            short = HubCaller(SignalConfig(), clock=CLOCK, rng=SystemRng(),
                              service=client.service, punch_addrs=lambda: (client.addr,),
                              nat_type=lambda: 1, send_datagram=client.endpoint.send_datagram,
                              limits=PunchLimits(handshake_timeout_s=1.0))  # fmt: skip
            with pytest.raises(Unreachable) as exc:
                await short.connect(client.cert(), stranger, (url,))
            assert exc.value.aid == stranger and url in str(exc.value)
            assert short.failed == 1


async def test_status_and_the_node_say_which_path_a_dial_took() -> None:
    with anyio.fail_after(WAIT_S):
        async with contextlib.AsyncExitStack() as stack:
            _server, url = await stack.enter_async_context(hub())
            seed = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
            seed_addr = "{}:{}".format(*seed.local_addr)
            callee = await stack.enter_async_context(_node(seed_addr, hubs=(url,)))
            callee.serve(http=hello)
            await until(lambda: callee.signal_hubs() == (url,), "the callee registered")
            await record_of(seed, callee.aid, lambda p: p.signal == url)
            caller = await stack.enter_async_context(
                Node(NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed_addr,)))
            )
            response = await caller.fetch(callee.aid, "GET", "/")
            assert response.status == 200
            path = caller.connection_path(callee.aid)
            assert path is not None and path.addr == callee.local_addr
            # loopback: the record's type is not restricted, so direct had its head start
            assert path.kind == "direct"
            tries = caller.dial_tries(callee.aid)
            assert ("direct", "won") in [(t.kind, t.outcome) for t in tries]
            st = caller.status().traversal
            assert st.direct_wins == 1 and st.punch_wins == 0 and st.callee is None
            assert [(p.peer, p.path.kind) for p in st.paths] == [(callee.aid, "direct")]
            cst = callee.status().traversal
            assert cst.live_hubs == (url,) and cst.callee is not None
            # the MCP tools say it too
            host, port = callee.local_addr
            got = await call_tool(caller, "resolve", {"aid": str(callee.aid)})
            assert got["signal_hubs"] == [url]
            assert got["connection"]["path"] == "direct"
            assert got["connection"]["addr"] == f"{host}:{port}"
            got = await call_tool(caller, "connect", {"aid": str(callee.aid)})
            assert (got["path"], got["addr"]) == ("direct", f"{host}:{port}")
            got = await call_tool(caller, "status", {})
            assert got["traversal"]["direct_wins"] == 1
            assert [p["path"] for p in got["traversal"]["paths"]] == ["direct"]
            got = await call_tool(callee, "status", {})
            assert got["traversal"]["live_hubs"] == [url]
            assert got["traversal"]["callee"]["hub_changes"] >= 1
