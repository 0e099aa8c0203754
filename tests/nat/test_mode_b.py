"""Mode B — DHT messages over QUIC to and from NATed nodes (a2al-wire §4.11) — against a2ald
0.3.5 in the NAT testbed.

World: seeds of ours and our hub on ``pub1``, a2ald on ``pub2`` (whose embedded hub the NATed
a2ald registers with), our node behind ``sym1`` with TURN (coturn) and a2ald behind ``sym2``.
Between two symmetric NATs there is no direct UDP path: DHT traffic between the two nodes
needs Mode B (ICE through TURN, then QUIC with one DHT message per stream).

* a2ald → ours: a2ald calls our **node** AID through our hub (it does so on its own for a
  NATed DHT peer; a resolve of our node nudges it) and sends DHT messages over the
  connection; our node answers them on new streams (``Node.mode_b_statistics``), and a2ald's
  debug log and routing table are printed.
* ours → a2ald: with the UDP state between the two flushed, our node calls a2ald's node
  through its hubs (``Node._mode_b_dial``: the record's hubs, ICE alone, no route frame) and a
  DHT PING to a2ald's address goes over that connection and is answered.

Helpers are test_node_ice's. Run: ``bash .ci/test -q tests/nat/test_mode_b.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Iterator
from typing import Any, Final

import anyio
import pytest

from a2al_mcp import Node, NodeConfig
from a2al_mcp.identity.aid import Aid
from a2al_mcp.node.mode_b import ModeBStats
from a2al_mcp.testing.a2ald import A2aldPeer
from a2al_mcp.testing.nat_testbed import NatTestbed
from tests.nat.interop_a2ald import stopping
from tests.nat.interop_hosts import HostLoop
from tests.nat.test_node_ice import (
    A2ALD_API,
    A2ALD_PORT,
    A2ALD_RECORD_S,
    HUB_PORT,
    PORT,
    READY_S,
    _config,
    _flush_between,
    _hub_running,
    _ready,
    _record,
)

pytestmark = pytest.mark.nat

HOSTS: Final = {"pub1": "public", "pub2": "public", "sym1": "sym", "sym2": "sym"}
MODE_B_S: Final = 180.0
"""How long a2ald is given to reach our node over Mode B on its own."""


class World:
    def __init__(self, tb: NatTestbed, loops: dict[str, HostLoop], ours: Node,
                 a2ald: dict[str, A2aldPeer]) -> None:  # fmt: skip
        self.tb = tb
        self.loops = loops
        self.ours = ours
        self.a2ald = a2ald

    def stats(self) -> ModeBStats:
        got = self.loops["sym1"].call(self.ours.mode_b_statistics)
        assert got is not None
        return got


@pytest.fixture(scope="module")
def tb(nat_available: None) -> Iterator[NatTestbed]:
    with NatTestbed(dict(HOSTS), turn=True) as testbed:
        yield testbed


@pytest.fixture(scope="module")
def world(tb: NatTestbed, a2ald_binary: None, tmp_path_factory: pytest.TempPathFactory,
          ) -> Iterator[World]:  # fmt: skip
    tb.prove_sealed()
    tb.resolve_a2ald_stun_names()
    base = tmp_path_factory.mktemp("a2ald")
    pub = tb.addr("pub1")
    seeds = tuple(f"{pub}:{PORT + i}" for i in range(3))
    hubs = (f"ws://{pub}:{HUB_PORT}",)
    with contextlib.ExitStack() as stack:
        loops = {h: stack.enter_context(HostLoop(tb, h)) for h in ("pub1", "sym1")}
        for i, seed in enumerate(seeds):
            loops["pub1"].enter(Node(NodeConfig(listen_addr=seed, bootstrap=seeds[:i][:1])))
        loops["pub1"].enter(_hub_running())
        cfg = _config(tb, "sym1", port=PORT, seeds=seeds, hubs=hubs, turn=True)
        ours = loops["sym1"].enter(Node(cfg, auto_publish=True))
        a2ald = {h: A2aldPeer(base / h, udp_port=A2ALD_PORT, api_port=A2ALD_API,
                              bootstrap=[f"{tb.addr('pub2')}:{A2ALD_PORT}", *seeds],
                              launch=tb.a2ald_launch(h), name=f"a2ald-{h}", log_level="debug")
                 for h in ("pub2", "sym2")}  # fmt: skip
        stack.enter_context(stopping(list(a2ald.values())))
        a2ald["pub2"].start()
        a2ald["pub2"].wait_ready(READY_S, require_peers=False)
        a2ald["sym2"].start()
        loops["sym1"].call(_ready, ours, hubs)
        a2ald["sym2"].wait_ready(READY_S, require_peers=True)
        yield World(tb, loops, ours, a2ald)


def _a2ald_lines(peer: A2aldPeer, words: tuple[str, ...], lines: int = 3000) -> list[str]:
    return [ln[:300] for ln in peer.log_tail(lines).splitlines() if any(w in ln for w in words)]


def test_a2ald_behind_sym_reaches_our_dht_over_mode_b_and_is_answered(world: World) -> None:
    peer = world.a2ald["sym2"]
    our_aid = world.loops["sym1"].call(lambda: world.ours.aid)
    deadline = time.monotonic() + MODE_B_S
    stats = world.stats()
    while time.monotonic() < deadline:
        stats = world.stats()
        if stats.accepted >= 1 and stats.messages_in >= 1 and stats.messages_out >= 1:
            break
        with contextlib.suppress(Exception):  # a lookup of our node: DHT traffic to us
            peer.resolve(str(our_aid))
        time.sleep(2.0)
    callee = world.loops["sym1"].call(world.ours.traversal_statistics)
    print(f"ours(sym1) Mode B: {stats}; callee {callee}")
    for line in _a2ald_lines(peer, ("punch", "Mode B", "mode b", "misrouted", "ice")):
        print("  a2ald:", line)
    routing: Any = None
    with contextlib.suppress(Exception):
        routing = peer.get("/debug/routing")
    in_table = bytes(our_aid.node_id).hex() in str(routing)
    print(f"  a2ald routing table holds our node: {in_table}")
    assert stats.accepted >= 1, stats
    assert stats.messages_in >= 1 and stats.messages_out >= 1, stats
    assert stats.malformed == 0, stats


def test_ours_behind_sym_reaches_a2ald_dht_over_mode_b_when_udp_cannot(world: World) -> None:
    peer = world.a2ald["sym2"]
    aid = Aid.from_str(peer.node_aid)
    node, loop = world.ours, world.loops["sym1"]
    loop.call(functools.partial(_record, node, aid, wait_s=A2ALD_RECORD_S))
    _flush_between(world.tb, "sym1", "sym2")
    before = dataclasses.replace(world.stats())  # (a snapshot: the stats are live)
    alias = (world.tb.wan("sym2"), A2ALD_PORT)  # a2ald's address as a DHT peer sees it

    async def reach() -> tuple[bool, str, ModeBStats, ModeBStats]:
        pc = await node._mode_b_dial(aid)
        assert pc is not None, "a2ald's record names no hub or no NAT"
        mode_b = node._mode_b
        assert mode_b is not None and mode_b.adopt(pc, (alias,), dialled=True)
        assert alias in mode_b.routes() and not pc.session.routed
        dht = node._dht
        assert dht is not None
        sent = dataclasses.replace(mode_b.stats)
        with anyio.fail_after(20):
            pong = await dht.ping(alias)
        return pong.ok and pong.aid == aid, f"{pong}", sent, dataclasses.replace(mode_b.stats)

    ok, what, sent, after = loop.call(reach)
    print(f"ours(sym1)->a2ald(sym2) Mode B: {what}; before the call {before}; "
          f"before the PING {sent}; after {after}")  # fmt: skip
    for line in _a2ald_lines(peer, ("punch", "ice", "Mode B")):
        print("  a2ald:", line)
    assert ok, what
    assert after.dialled >= 1 and after.malformed == 0, after
    # the PING and its PONG went over the connection (no UDP between the two NATs)
    assert after.messages_out > sent.messages_out and after.messages_in > sent.messages_in
