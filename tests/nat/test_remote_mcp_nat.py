"""MCP over A2AL through the NAT testbed (issue 20): a remote tool server behind a symmetric NAT,
used from behind a port-restricted NAT.

Node A (``sym1``) exposes the stdio test tool server of :mod:`tests.remote_mcp` (the official
SDK's) on its AID, registered under a topic with protocol ``mcp`` and admitting node B's AID
only (a stdio server has no per-request caller: the node checks the verified caller AID).
Node B (``prc1``) finds it with ``discover(TOPIC, protocols=["mcp"])``, reads A's record (DHT
traffic), then the UDP conntrack state between the two hosts is flushed on both routers: the
first ``remote_tools`` is a first contact. Between a symmetric NAT and a port-restricted one
there is no direct path and no punch: the connection is ICE through coturn's TURN relay (as
``resolve`` reports it, with its QUIC RTT). B lists the tools, calls ``add`` (the same
structured result as a direct call to the server) and calls again over the warm session; then A
denies B and a new session of B's is refused by A's node.

Both nodes are plain :class:`Node`\\ s with ``[ice]`` (coturn as STUN and TURN) and ``[signal]``
hubs (the helpers of :mod:`tests.nat.test_node_ice`), run in-process on event loops inside
their hosts. Times are printed (cold listing = dial + MCP handshake + listing; warm call), not
asserted. Run: ``bash .ci/test -q tests/nat/test_remote_mcp_nat.py``.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Final

import anyio
import pytest

from a2al_mcp import Node, NodeConfig
from a2al_mcp._clock import SystemClock
from a2al_mcp.errors import AccessDenied
from a2al_mcp.identity.aid import Aid
from a2al_mcp.remote_mcp import ExposeSpec
from a2al_mcp.remote_mcp.client import RemoteMcp, remote_mcp
from a2al_mcp.remote_mcp.expose import expose_mcp
from a2al_mcp.testing.nat_testbed import NatTestbed
from a2al_mcp.toolspec import call_tool
from tests.nat.interop_hosts import HostLoop
from tests.nat.test_node_ice import _config, _hub_running, _ready, _record
from tests.remote_mcp.conftest import STDIO_COMMAND
from tests.remote_mcp.test_expose_and_use import _direct, _same

pytestmark = pytest.mark.nat

HOSTS: Final = {"pub1": "public", "prc1": "prc", "sym1": "sym"}
PORT: Final = 4121
"""Ours (UDP/QUIC) behind the NATs, and the seeds on pub1 at PORT and PORT+1."""
HUB_PORT: Final = 4120
READY_S: Final = 60.0
TOPIC: Final = "test.nat-remote-tools"
CLOCK: Final = SystemClock()


async def _discovered(node: Node, aid: Aid) -> None:
    """Wait until ``aid`` is found under TOPIC with protocol ``mcp`` (and only there)."""
    found: list[Aid] = []
    with anyio.move_on_after(READY_S):
        while found != [aid]:
            found = [e.aid for e in await node.discover(TOPIC, protocols=["mcp"])]
            if found != [aid]:
                await anyio.sleep(0.3)
        assert await node.discover(TOPIC, protocols=["a2a"]) == []
        return
    raise AssertionError(f"{aid} was never discovered under {TOPIC}: {found}")


def _timed(loop: HostLoop, fn: Any, *args: Any) -> tuple[Any, float]:
    started = CLOCK.monotonic()
    got = loop.call(fn, *args)
    return got, CLOCK.monotonic() - started


def test_a_tool_server_behind_sym_used_from_behind_prc_through_the_relay(
    nat_available: None,
) -> None:
    args = {"a": 20, "b": 22}
    with NatTestbed(dict(HOSTS), turn=True) as tb, contextlib.ExitStack() as stack:
        tb.prove_sealed()
        pub = tb.addr("pub1")
        seeds = (f"{pub}:{PORT}", f"{pub}:{PORT + 1}")
        hubs = (f"ws://{pub}:{HUB_PORT}",)
        loops = {h: stack.enter_context(HostLoop(tb, h)) for h in HOSTS}
        for i, seed in enumerate(seeds):
            loops["pub1"].enter(Node(NodeConfig(listen_addr=seed, bootstrap=seeds[:i])))
        loops["pub1"].enter(_hub_running())
        a_loop, b_loop = loops["sym1"], loops["prc1"]

        def ours(host: str) -> Node:
            cfg = _config(tb, host, port=PORT, seeds=seeds, hubs=hubs, turn=True)
            return loops[host].enter(Node(cfg, auto_publish=True))

        a, b = ours("sym1"), ours("prc1")
        a_loop.call(_ready, a, hubs)
        b_loop.call(_ready, b, hubs)
        direct_tools, direct = a_loop.call(_direct, "add", args)

        expose = ExposeSpec(command=STDIO_COMMAND, topics=(TOPIC,), name="nat tools",
                            allow=(b.aid,))  # fmt: skip
        a_loop.call(functools.partial(expose_mcp, a, expose))
        b_loop.call(_discovered, b, a.aid)
        b_loop.call(functools.partial(_record, b, a.aid, wait_s=READY_S))
        tb.conntrack_flush_between("prc1", "sym1")

        remote = remote_mcp(b)
        tools, cold_s = _timed(b_loop, remote.list_tools, a.aid)
        assert tools == direct_tools
        result, first_call_s = _timed(b_loop, remote.call_tool, a.aid, "add", args)
        assert result["structuredContent"] == {"total": 42, "terms": [20, 22]}
        assert _same(result) == _same(direct)
        used = b_loop.call(b.connection_path, a.aid)
        tries = ", ".join(t.describe() for t in b_loop.call(b.dial_tries, a.aid))
        warm, warm_s = _timed(b_loop, remote.call_tool, a.aid, "add", {"a": 1, "b": 2})
        callee = a_loop.call(a.traversal_statistics)
        resolved = b_loop.call(call_tool, b, "resolve", {"aid": str(a.aid)})
        print(f"ours(prc1)->MCP on ours(sym1): path {used}; tried {tries}\n"
              f"  resolve: {resolved['connection']}\n"
              f"  cold remote_tools (dial + handshake + list) {cold_s:.3f} s, "
              f"first call {first_call_s:.3f} s, warm call {warm_s:.3f} s\n"
              f"  callee: {callee}")  # fmt: skip
        assert used is not None and used.kind == "relay", tries
        connection = resolved["connection"]  # the path as the tools report it, RTT included
        assert connection["path"] == "relay" and connection["rtt_ms"] > 0, connection
        assert warm["structuredContent"] == {"total": 3, "terms": [1, 2]}
        assert remote.sessions() == (a.aid,)  # one warm session, reused
        assert callee is not None and callee.relay_connected >= 1 and callee.errors == 0

        # the node admits each new stream by the caller's verified AID: once A denies B, a new
        # session of B's (over the same relayed connection) is refused
        a_loop.call(functools.partial(expose_mcp, a, ExposeSpec(
            command=STDIO_COMMAND, topics=(TOPIC,), deny=(b.aid,)), publish=False))  # fmt: skip
        with pytest.raises(AccessDenied, match="denied"):
            b_loop.call(RemoteMcp(b).call_tool, a.aid, "add", args)
