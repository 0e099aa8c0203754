"""ICE with TURN run by the node itself, caller and callee (issue 18), in the NAT testbed.

Every node here is a plain :class:`Node` with ``[ice]`` (coturn as STUN and TURN server) and
``[signal]`` hubs; nothing is handed to it but the target's AID. Before each cold dial the
caller reads the target's record (DHT traffic), then the UDP conntrack state between the two
hosts is flushed on both routers (the testbed's ``--flush-ct``): the dial is a first contact.

Cells: ours→ours ``sym1→sym2``, ``prc1→sym2``, ``sym1→prc1`` (no direct path and no punch
between a symmetric NAT and a symmetric or port-restricted one: the path is a TURN relay);
a2ald 0.3.5 (``prc1``, with coturn in its ``turn_servers``) → ours behind ``sym2``; ours
behind ``sym1`` → a2ald behind ``sym2``; and a dial between two nodes of ours behind the two
symmetric NATs **without** TURN, which fails and names the paths it tried. Each cell prints
its time from the start of the dial to the response (a2ald 0.3.5 needs 2.0-4.0 s for a TURN
cell, README §3.3 of the testbed; no timing is asserted).

Ours run in-process on event loops inside their hosts (:class:`~tests.nat.interop_hosts.
HostLoop`); a2ald only through ``NatTestbed.a2ald_launch``. Run:
``bash .ci/test -q tests/nat/test_node_ice.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from typing import Any, Final

import anyio
import anyio.abc
import pytest

from a2al_mcp import Node, NodeConfig
from a2al_mcp._clock import SystemClock
from a2al_mcp.config import SignalConfig
from a2al_mcp.errors import A2ALError, NotFound
from a2al_mcp.identity.aid import Aid
from a2al_mcp.node.http import HttpRequest, HttpResponse
from a2al_mcp.node.status import ResolvedEndpoint
from a2al_mcp.protocol.payloads import EndpointPayload
from a2al_mcp.signal.ws_server import HubServer
from a2al_mcp.testing.a2ald import A2aldPeer, poll_until
from a2al_mcp.testing.nat_testbed import NatTestbed
from tests.nat.interop_a2ald import stopping
from tests.nat.interop_hosts import HostLoop

pytestmark = pytest.mark.nat

HOSTS: Final = {"pub1": "public", "pub2": "public", "prc1": "prc", "sym1": "sym", "sym2": "sym"}
PORT: Final = 4121
"""Ours (UDP/QUIC), and the seeds on pub1 at PORT, PORT+1, PORT+2."""
NO_TURN_PORT: Final = 4131
"""Ours without TURN, behind the symmetric NATs."""
HUB_PORT: Final = 4120
A2ALD_PORT: Final = 4141
A2ALD_API: Final = 2141
READY_S: Final = 60.0
FETCH_S: Final = 20.0
A2ALD_RECORD_S: Final = 150.0
"""a2ald republishes its record (with its hubs) at its 60 s endpoint watch."""
CLOCK: Final = SystemClock()


def _flush_between(tb: NatTestbed, a: str, b: str) -> None:
    """Forget the UDP state between ``a`` and ``b`` on both their routers (``--flush-ct``);
    every other mapping (seeds, hubs, TURN) stays."""
    for host, other in ((a, b), (b, a)):
        if tb.host(host).router is None:
            continue
        for flag in ("-s", "-d"):  # exits 1 when nothing matched
            tb.run(tb.router(host), ["conntrack", "-D", "-p", "udp", flag, tb.wan(other)])


def _config(tb: NatTestbed, host: str, *, port: int, seeds: tuple[str, ...],
            hubs: tuple[str, ...], turn: bool) -> NodeConfig:  # fmt: skip
    stun = "{}:{}".format(*tb.stun)
    public = tb.host(host).router is None
    servers = [{"url": u, "username": n, "credential": c} for u, n, c in tb.turn_servers]
    return NodeConfig.from_mapping({
        "listen_addr": f"{tb.addr(host)}:{port}" if public else f"0.0.0.0:{port}",
        "bootstrap": list(seeds),
        "nat": {"stun_servers": [stun]},
        "signal": {"hubs": list(hubs), "serve_hub": "off"},
        "ice": {"stun_urls": [f"stun:{stun}"], "turn_servers": servers if turn else []},
    })  # fmt: skip


async def _hello(host: str, req: HttpRequest) -> HttpResponse:
    return HttpResponse(200, (("content-type", "text/plain"),), f"{host}{req.path}".encode())


async def _ready(node: Node, hubs: tuple[str, ...]) -> None:
    with anyio.fail_after(READY_S):
        while set(node.signal_hubs()) != set(hubs):  # noqa: ASYNC110
            await anyio.sleep(0.1)


async def _serve_hub(task_status: anyio.abc.TaskStatus[HubServer]) -> None:
    hub = HubServer(SignalConfig())
    async with anyio.create_task_group() as tg:
        await tg.start(hub.serve, "0.0.0.0", HUB_PORT)
        task_status.started(hub)


@contextlib.asynccontextmanager
async def _hub_running() -> Any:
    async with anyio.create_task_group() as tg:
        hub = await tg.start(_serve_hub)
        try:
            yield hub
        finally:
            tg.cancel_scope.cancel()


async def _record(node: Node, aid: Aid, *, wait_s: float) -> ResolvedEndpoint:
    """The target's record once it names a hub (read before the flush: DHT traffic)."""
    last: object = None
    with anyio.move_on_after(wait_s):
        while True:
            try:
                last = got = await node.resolve(aid)
            except NotFound as exc:
                last = exc
            else:
                payload = EndpointPayload.from_bytes(got.record.payload)
                if payload.signal or payload.signals:
                    return got
            await anyio.sleep(0.3)
    raise AssertionError(f"the record of {aid} never named a hub: {last!r}")


@dataclasses.dataclass
class Cell:
    """One cold dial: what it reached, on which path, in how long, what it tried."""

    name: str
    ok: bool = False
    took_s: float = 0.0
    path: str = ""
    tries: str = ""
    error: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def report(self) -> str:
        line = (f"{self.name}: {'ok' if self.ok else 'FAILED'} path {self.path or '?'} "
                f"time-to-response {self.took_s:.3f} s; tried {self.tries or '-'}"
                + (f"; error {self.error}" if self.error else ""))  # fmt: skip
        print(line)
        return line


class World:
    """Seeds and our hub on pub1, ours (with and without TURN) behind the NATs, a2ald."""

    def __init__(
        self,
        tb: NatTestbed,
        loops: dict[str, HostLoop],
        ours: dict[tuple[str, int], Node],
        a2ald: dict[str, A2aldPeer],
    ) -> None:
        self.tb = tb
        self.loops = loops
        self.ours = ours
        self.a2ald = a2ald

    def ours_cold(self, name: str, src: str, dst: str, *, port: int = PORT) -> Cell:
        cell = Cell(name)
        node, target = self.ours[(src, port)], self.ours[(dst, port)].aid
        loop = self.loops[src]
        loop.call(functools.partial(_record, node, target, wait_s=READY_S))
        _flush_between(self.tb, src, dst)
        started = CLOCK.monotonic()
        try:
            response: HttpResponse = loop.call(functools.partial(
                node.fetch, target, "GET", f"/{src}", timeout_s=FETCH_S))  # fmt: skip
            cell.ok = (response.status, response.body) == (200, f"{dst}/{src}".encode())
        except (A2ALError, TimeoutError) as exc:
            cell.error = f"{type(exc).__name__}: {exc}"
        cell.took_s = CLOCK.monotonic() - started
        used = loop.call(node.connection_path, target)
        cell.path = "" if used is None else used.kind
        cell.extra["addr"] = None if used is None else used.addr
        cell.tries = ", ".join(t.describe() for t in loop.call(node.dial_tries, target))
        cell.extra["callee"] = self.loops[dst].call(self.ours[(dst, port)].traversal_statistics)
        return cell


@pytest.fixture(scope="module")
def tb(nat_available: None) -> Iterator[NatTestbed]:
    with NatTestbed(dict(HOSTS), turn=True) as testbed:
        yield testbed


@pytest.fixture(scope="module")
def world(tb: NatTestbed, a2ald_binary: None, tmp_path_factory: pytest.TempPathFactory,
          ) -> Iterator[World]:  # fmt: skip
    tb.prove_sealed()
    tb.resolve_a2ald_stun_names()  # a2ald behind a symmetric NAT publishes nothing without
    base = tmp_path_factory.mktemp("a2ald")
    pub = tb.addr("pub1")
    seeds = tuple(f"{pub}:{PORT + i}" for i in range(3))
    hubs = (f"ws://{pub}:{HUB_PORT}",)
    with contextlib.ExitStack() as stack:
        loops = {h: stack.enter_context(HostLoop(tb, h)) for h in HOSTS}
        ours: dict[tuple[str, int], Node] = {}
        for i, seed in enumerate(seeds):
            cfg = NodeConfig(listen_addr=seed, bootstrap=seeds[:i][:1])
            ours[("pub1", PORT + i)] = loops["pub1"].enter(Node(cfg))
        loops["pub1"].enter(_hub_running())
        for host in ("prc1", "sym1", "sym2"):
            for port, turn in ((PORT, True), (NO_TURN_PORT, False)):
                if port == NO_TURN_PORT and host == "prc1":
                    continue
                cfg = _config(tb, host, port=port, seeds=seeds, hubs=hubs, turn=turn)
                node = ours[(host, port)] = loops[host].enter(Node(cfg, auto_publish=True))
                http = functools.partial(_hello, host)
                loops[host].call(functools.partial(node.serve, http=http))
        a2ald = {h: A2aldPeer(base / h, udp_port=A2ALD_PORT, api_port=A2ALD_API,
                              bootstrap=[f"{tb.addr('pub2')}:{A2ALD_PORT}", *seeds],
                              launch=tb.a2ald_launch(h), name=f"a2ald-{h}", log_level="debug")
                 for h in ("pub2", "prc1", "sym2")}  # fmt: skip
        stack.enter_context(stopping(list(a2ald.values())))
        a2ald["pub2"].start()  # its embedded hub is the one the NATed a2alds register with
        a2ald["pub2"].wait_ready(READY_S, require_peers=False)
        for h in ("prc1", "sym2"):
            a2ald[h].start()
        for (host, _port), node in ours.items():
            if host != "pub1":
                loops[host].call(_ready, node, hubs)
        for h in ("prc1", "sym2"):
            a2ald[h].wait_ready(READY_S, require_peers=True)
        yield World(tb, loops, ours, a2ald)


@pytest.mark.parametrize(("src", "dst"), [("sym1", "sym2"), ("prc1", "sym2"), ("sym1", "prc1")])
def test_ours_to_ours_cold_fetch_without_a_direct_path_goes_through_the_turn_relay(
    world: World, src: str, dst: str
) -> None:
    cell = world.ours_cold(f"ours({src})->ours({dst})", src, dst)
    cell.report()
    print(f"callee: {cell.extra['callee']}")
    assert cell.ok, cell.report()
    assert cell.path == "relay", cell.report()
    callee = cell.extra["callee"]
    assert callee is not None and callee.relay_connected >= 1 and callee.errors == 0


def test_a_dial_between_two_symmetric_nats_without_turn_fails_naming_the_paths_tried(
    world: World,
) -> None:
    cell = world.ours_cold("ours(sym1)->ours(sym2) without TURN", "sym1", "sym2",
                           port=NO_TURN_PORT)  # fmt: skip
    cell.report()
    assert not cell.ok and cell.path == ""
    # behind a symmetric NAT the record has no URL to dial: the hub path alone, and it says
    # what each technique did (the punch's failure, ICE's candidates while still checking)
    assert cell.tries.startswith("punched (+"), cell.report()
    assert "punch:" in cell.tries and "ICE:" in cell.tries, cell.report()


def test_a2ald_behind_prc_fetches_cold_from_ours_behind_sym(world: World) -> None:
    peer = world.a2ald["prc1"]
    node = world.ours[("sym2", PORT)]
    aid = world.loops["sym2"].call(lambda: node.aid)
    # a2ald reads our record before the flush (its REST view does not show the hubs)
    poll_until(lambda: peer.resolve(str(aid)), lambda r: r.get("nat_type") == 4,
               timeout=READY_S, what="a2ald reading our record")  # fmt: skip
    _flush_between(world.tb, "prc1", "sym2")
    before = world.loops["sym2"].call(node.traversal_statistics)
    relayed_before = before.relay_connected + before.ice_connected if before else 0
    started = CLOCK.monotonic()
    got = peer.post(f"/fetch/{aid}", {"method": "GET", "path": "/a2ald", "body_base64": ""},
                    timeout=FETCH_S * 2)  # fmt: skip
    took = CLOCK.monotonic() - started
    stats = world.loops["sym2"].call(node.traversal_statistics)
    print(f"a2ald(prc1)->ours(sym2): status {got.get('status')} time-to-response {took:.3f} s; "
          f"callee {stats}")  # fmt: skip
    for line in peer.log_tail(600).splitlines():
        if any(w in line for w in ("path", "ice", "ICE", "punch", "dial", "fetch", "relay")):
            print("  a2ald:", line[:300])
    assert int(got.get("status") or 0) == 200, got
    assert stats is not None and stats.answered >= 1 and stats.errors == 0
    # no direct path and no punch between the two: ICE (a2ald's relay) brought it
    assert stats.relay_connected + stats.ice_connected > relayed_before, stats


def test_ours_behind_sym_connects_cold_to_a2ald_behind_sym(world: World) -> None:
    peer = world.a2ald["sym2"]
    aid = Aid.from_str(peer.node_aid)
    node = world.ours[("sym1", PORT)]
    loop = world.loops["sym1"]
    rec = loop.call(functools.partial(_record, node, aid, wait_s=A2ALD_RECORD_S))
    _flush_between(world.tb, "sym1", "sym2")
    started = CLOCK.monotonic()
    error = ""
    try:
        pc = loop.call(functools.partial(node.connect, aid))
        ok = bool(pc.ready)
    except (A2ALError, TimeoutError) as exc:
        ok, error = False, f"{type(exc).__name__}: {exc}"
    took = CLOCK.monotonic() - started
    used = loop.call(node.connection_path, aid)
    tries = ", ".join(t.describe() for t in loop.call(node.dial_tries, aid))
    print(
        f"ours(sym1)->a2ald(sym2): record nat {rec.nat_type}, path "
        f"{used.kind if used else '?'} time-to-connection {took:.3f} s; tried {tries} {error}"
    )
    assert ok, f"{error}; tried {tries}\n{peer.log_tail(200)}"
    assert used is not None and used.kind == "relay", tries
