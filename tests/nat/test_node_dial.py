"""The node's own dial strategy across NATs (issue 18, the caller's side wired into the node:
a2al_mcp.node.connect/dial_strategy/punch_paths), in the NAT testbed.

Every caller here is a plain :class:`Node` asked to ``fetch`` (or, towards a2ald, ``connect``)
an AID cold: the UDP state of every NAT router is flushed first (the TCP connections to the
hubs stay), so no mapping between the hosts is left from the DHT. The node alone decides,
from the target's endpoint record (its ``nat_type`` and ``signal``/``signals``) and its own
NAT type, to dial directly and to call the hubs at once; nothing is handed to it but the AID.

Cases: our node behind ``prc2`` (EIM + APDF) to ours behind ``prc`` through our hub on
``pub1``; the same from behind a full cone and from a public host; our node behind ``prc`` to
a2ald 0.3.5 behind ``prc2`` through a2ald's embedded hub on ``pub2`` (a2ald started only
through ``NatTestbed.a2ald_launch``); and glare: the two nodes behind ``prc``/``prc2``, both
with hubs, fetching from each other at the same moment. Each prints the time from the start
of the dial to the response (a2ald 0.3.5 needs ~2 s into a port-restricted NAT, README §3.3
of the testbed; no timing is asserted).

Every node runs in-process, each side in a thread inside its testbed host (as
tests/nat/test_node_punch.py does). Run: ``bash .ci/test -q tests/nat/test_node_dial.py``.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import pytest

from a2al_mcp import Node, NodeConfig
from a2al_mcp._clock import SystemClock
from a2al_mcp.config import NatConfig, SignalConfig
from a2al_mcp.errors import NotFound
from a2al_mcp.identity.aid import Aid
from a2al_mcp.node.http import HttpRequest, HttpResponse
from a2al_mcp.protocol.payloads import EndpointPayload
from a2al_mcp.signal.ws_server import HubServer
from a2al_mcp.testing.a2ald import A2aldPeer, poll_until
from a2al_mcp.testing.nat_testbed import NatTestbed
from tests.nat.test_node_nat import in_host, public_seeds

pytestmark = pytest.mark.nat


PUBLIC: Final = "pub1"
PORT: Final = 4121
HUB_PORT: Final = 4120
WAIT_S: Final = 60.0
CLOCK: Final = SystemClock()
ROUTERS: Final = ("prc", "prc2", "cone")
RECORD_A2ALD_S: Final = 150.0


async def hello(req: HttpRequest) -> HttpResponse:
    return HttpResponse(
        200, (("content-type", "text/plain"),), b"hello through " + req.path.encode()
    )


@pytest.fixture(scope="module")
def tb(nat_available: None) -> Iterator[NatTestbed]:
    hosts = {"pub1": "public", "pub2": "public", "prc": "prc", "prc2": "prc", "cone": "cone"}
    with NatTestbed(hosts, turn=True) as testbed:
        yield testbed


def _nat(tb: NatTestbed) -> NatConfig:
    host, port = tb.stun
    return NatConfig(stun_servers=(f"{host}:{port}",))


def _seeds(tb: NatTestbed) -> tuple[str, ...]:
    return tuple(f"{tb.addr(PUBLIC)}:{PORT + i}" for i in range(3))


def _flush_all(tb: NatTestbed) -> None:
    """Forget the UDP state of every NAT router (their TCP to the hubs stays)."""
    for host in ROUTERS:
        tb.run(tb.router(host), ["conntrack", "-D", "-p", "udp"])  # exits 1 when none


class Shared:
    """What the sides tell each other across their threads."""

    def __init__(self, tb: NatTestbed, *, dialling: int, parties: int) -> None:
        """``dialling``: sides that dial (they flush the routers together); ``parties``:
        threads that wait for the end (the public side's too)."""
        self.hub_url = f"ws://{tb.addr(PUBLIC)}:{HUB_PORT}"
        self.up = threading.Event()
        self.aids: dict[str, queue.Queue[Aid]] = {}
        self.ready = threading.Barrier(dialling, action=lambda: _flush_all(tb),
                                       timeout=WAIT_S * 2)  # fmt: skip
        self.done = threading.Barrier(parties, timeout=WAIT_S * 4)


async def _wait(event: threading.Event) -> None:
    if not await anyio.to_thread.run_sync(event.wait, WAIT_S * 2):
        raise AssertionError("the other side never got there")


async def public_side(tb: NatTestbed, shared: Shared) -> str:
    try:
        async with contextlib.AsyncExitStack() as stack:
            await public_seeds(stack, tb.addr(PUBLIC))
            hub = HubServer(SignalConfig())
            async with anyio.create_task_group() as tg:
                await tg.start(hub.serve, "0.0.0.0", HUB_PORT)
                shared.up.set()
                await anyio.to_thread.run_sync(shared.done.wait)
                tg.cancel_scope.cancel()
            return str(hub.core.stats)
    finally:
        shared.up.set()


async def _record(node: Node, target: Aid, *, hub: bool, wait_s: float) -> EndpointPayload:
    """The target's record once it names its NAT type (and a hub, when ``hub``)."""
    payload = None
    with anyio.move_on_after(wait_s):
        while True:
            with contextlib.suppress(NotFound):
                got = await node.resolve(target)
                payload = EndpointPayload.from_bytes(got.record.payload)
                if payload.nat_type and (payload.signal or not hub):
                    return payload
            await anyio.sleep(0.2)
    raise AssertionError(f"the record of {target} never named its NAT type and a hub: {payload}")


async def side(
    tb: NatTestbed, shared: Shared, host: str, *, me: str, peer: str | None,
    hubs: tuple[str, ...] = (), bootstrap: tuple[str, ...] = (), a2ald: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """One node of ours in ``host``: serves ``hello``, registers with ``hubs``; then, when
    ``peer`` names the other side, dials it cold (after the routers' flush) and fetches."""
    out: dict[str, Any] = {"host": host}
    try:
        await _wait(shared.up)
        listen = f"{tb.addr(host)}:{PORT}" if host.startswith("pub") else f"0.0.0.0:{PORT}"
        cfg = NodeConfig(listen_addr=listen, nat=_nat(tb), bootstrap=bootstrap or _seeds(tb),
                         signal=SignalConfig(hubs=hubs))  # fmt: skip
        async with Node(cfg, auto_publish=True) as node:
            node.serve(http=hello)
            with anyio.fail_after(WAIT_S):
                while hubs and node.signal_hubs() != hubs:  # noqa: ASYNC110
                    await anyio.sleep(0.1)
                while not node.status().nat.public_addrs:  # noqa: ASYNC110
                    await anyio.sleep(0.1)
            shared.aids[me].put(node.aid)
            if peer is not None:
                target = await anyio.to_thread.run_sync(shared.aids[peer].get, True, WAIT_S)
                # a2ald republishes its record (with its hubs) at its 60 s endpoint watch
                out["record"] = await _record(node, target, hub=True,
                                              wait_s=RECORD_A2ALD_S if a2ald
                                              else WAIT_S)  # fmt: skip
                out["own_nat"] = node.status().nat.nat_type
                await anyio.to_thread.run_sync(shared.ready.wait)  # both ready; flushed
                started = CLOCK.monotonic()
                with anyio.fail_after(WAIT_S):
                    if a2ald:
                        pc = await node.connect(target)
                        out["response"] = pc.ready
                    else:
                        out["response"] = await node.fetch(target, "GET", f"/{host}")
                out["took_s"] = CLOCK.monotonic() - started
                out["path"] = node.connection_path(target)
                out["tries"] = node.dial_tries(target)
            out["traversal"] = node.traversal_statistics()
            await anyio.to_thread.run_sync(shared.done.wait)
            return out
    except BaseException:
        shared.ready.abort()
        shared.done.abort()
        raise


def _report(name: str, got: dict[str, Any]) -> str:
    tries = ", ".join(t.describe() for t in got.get("tries", ()))
    line = (f"{name}: {got['host']} -> own nat {got.get('own_nat')}, target nat "
            f"{got['record'].nat_type}, path {got['path']}, time-to-response "
            f"{got['took_s']:.3f} s; tried {tries}")  # fmt: skip
    print(line)
    return line


@pytest.mark.parametrize("caller_host", ["prc2", "cone", "pub2"])
def test_our_node_fetches_cold_from_ours_behind_prc_choosing_its_paths(
    tb: NatTestbed, caller_host: str
) -> None:
    tb.prove_sealed()
    shared = Shared(tb, dialling=1, parties=3)
    shared.aids = {"callee": queue.Queue(), "caller": queue.Queue()}
    callee_ready = threading.Barrier(1)
    with (
        in_host(tb, PUBLIC, lambda: public_side(tb, shared)) as public,
        in_host(
            tb,
            "prc",
            lambda: side(
                tb,
                _CalleeView(shared, callee_ready),
                "prc",
                me="callee",
                peer=None,
                hubs=(shared.hub_url,),
            ),
        ) as callee,  # fmt: skip
        in_host(
            tb, caller_host, lambda: side(tb, shared, caller_host, me="caller", peer="callee")
        ) as caller,  # fmt: skip
    ):
        got = caller.result(timeout=240)
        callee_got = callee.result(timeout=60)
        hub_stats = public.result(timeout=60)
    _report(f"ours({caller_host})->ours(prc)", got)
    print(f"callee: {callee_got}\nhub: {hub_stats}")
    assert got["record"].nat_type == 3 and got["record"].signal == shared.hub_url
    response: HttpResponse = got["response"]
    assert (response.status, response.body) == (200, f"hello through /{caller_host}".encode())
    path = got["path"]
    # the punch (main socket) or ICE (an aioice socket, same NAT) through the hub, or direct
    assert path is not None and path.addr[0] == tb.wan("prc")
    if path.kind in ("direct", "punched"):
        assert path.addr == (tb.wan("prc"), PORT)
    kinds = {t.kind: t.outcome for t in got["tries"]}
    assert kinds[path.kind] == "won" and len(kinds) == 2 and "direct" in kinds  # both ran
    stats = callee_got["traversal"]
    assert stats is not None and stats.errors == 0
    if path.kind == "punched":
        assert stats.answered >= 1 and stats.punched >= 1


class _CalleeView(Shared):
    """The callee's view of ``shared``: it waits on its own barriers (it never dials)."""

    def __init__(self, shared: Shared, ready: threading.Barrier) -> None:
        self.__dict__.update(shared.__dict__)
        self.ready = ready


def test_our_nodes_behind_prc_and_prc2_fetching_from_each_other_at_once_both_connect(
    tb: NatTestbed,
) -> None:
    """Glare: both call each other through the hub at the same moment (the hub may pair the
    two callers in one room; the punch core settles who drives)."""
    tb.prove_sealed()
    shared = Shared(tb, dialling=2, parties=3)
    shared.aids = {"a": queue.Queue(), "b": queue.Queue()}
    hubs = (shared.hub_url,)
    with (
        in_host(tb, PUBLIC, lambda: public_side(tb, shared)) as public,
        in_host(tb, "prc", lambda: side(tb, shared, "prc", me="a", peer="b", hubs=hubs)) as a,
        in_host(tb, "prc2", lambda: side(tb, shared, "prc2", me="b", peer="a", hubs=hubs)) as b,
    ):
        got_a = a.result(timeout=240)
        got_b = b.result(timeout=240)
        hub_stats = public.result(timeout=60)
    _report("glare prc->prc2", got_a)
    _report("glare prc2->prc", got_b)
    print(f"a: {got_a['traversal']}\nb: {got_b['traversal']}\nhub: {hub_stats}")
    for got, other in ((got_a, "prc2"), (got_b, "prc")):
        response: HttpResponse = got["response"]
        assert (response.status, response.body) == (200, f"hello through /{got['host']}".encode())
        assert got["path"] is not None and got["path"].addr == (tb.wan(other), PORT)


def test_our_node_behind_prc_connects_cold_to_a2ald_behind_prc2_through_its_hub(
    tb: NatTestbed, a2ald_binary: None, tmp_path: Path
) -> None:
    tb.prove_sealed()
    shared = Shared(tb, dialling=1, parties=2)
    shared.aids = {"a2ald": queue.Queue(), "caller": queue.Queue()}
    hub = A2aldPeer(tmp_path / "pub2", udp_port=PORT, api_port=2121, bootstrap=list(_seeds(tb)),
                    launch=tb.a2ald_launch("pub2"), name="a2ald-pub2")  # fmt: skip
    target = A2aldPeer(tmp_path / "prc2", bootstrap=[f"{tb.addr('pub2')}:{PORT}", *_seeds(tb)],
                       udp_port=PORT, api_port=2122, launch=tb.a2ald_launch("prc2"),
                       name="a2ald-prc2", log_level="debug")  # fmt: skip
    with in_host(tb, PUBLIC, lambda: public_side(tb, shared)) as public:
        try:
            assert shared.up.wait(WAIT_S)
            hub.start()
            hub.wait_ready(30, require_peers=False)
            target.start()
            target.wait_ready(30, require_peers=True)
            wan = tb.wan("prc2")
            poll_until(lambda: target.request("GET", "/debug/host"), lambda h: wan in str(h),
                       timeout=30, what="prc2's external address")  # fmt: skip
            shared.aids["a2ald"].put(Aid.from_str(target.node_aid))
            with in_host(tb, "prc", lambda: side(tb, shared, "prc", me="caller", peer="a2ald",
                                                 a2ald=True)) as caller:  # fmt: skip
                got = caller.result(timeout=400)
        finally:
            log = target.log_tail(200) if target.running else ""
            target.stop()
            hub.stop()
            if not shared.done.n_waiting:
                shared.done.abort()  # the caller never got there: release the public side
        hub_stats = public.result(timeout=60)
    _report("ours(prc)->a2ald(prc2)", got)
    print(f"hub: {hub_stats}")
    # a2ald 0.3.5 publishes a port-restricted NAT as nat_type 1 (testbed README D5): our
    # dial gives direct its head start, then rings the hub
    assert got["record"].nat_type in (1, 2, 3) and got["record"].signal, log
    assert got["response"] is True
    assert got["path"] is not None and got["path"].addr == (tb.wan("prc2"), PORT), log
