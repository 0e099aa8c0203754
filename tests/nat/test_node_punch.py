"""Our node reached behind a port-restricted NAT through a signalling hub (issue 18, the
callee's side wired into the node: a2al_mcp.node.traversal), in the NAT testbed.

Public side (``pub1``): three of our nodes as seeds and our hub (:class:`HubServer`), or in
the second run the hub a fourth, public node of ours embeds (``serve_hub = "on"``), which
registers with it and names it in its own record once it knows it is public, or in the
third a2ald 0.3.5's embedded hub on ``pub2`` (a2ald started only through
``NatTestbed.a2ald_launch``). The
callee, our node behind ``prc`` (EIM + APDF), has ``signal.hubs`` set to that hub: it
registers its published identity there and names the hub in its endpoint record. The caller
behind ``prc2`` is built from the bricks: a node of ours (for the DHT and QUIC; no
``[signal]`` table), :func:`~a2al_mcp.signal.client_service.call` on the hub its record
names, :class:`PunchAttempt`/``punch_over_room`` as the initiator with the node's main socket,
and a plain QUIC dial. Between the resolve and the call, the UDP state of both NAT routers is
flushed (the TCP connections to the hub stay): no mapping between the hosts is left from the
DHT. A QUIC connection comes up and the node's HTTP service answers through it. Then
the same with a2ald 0.3.5 as the caller behind ``prc2`` (``POST /fetch/{aid}`` through its
REST API): its dial finds our hub in the record, and its punch meets ours.

Every node runs in-process, each side in a thread inside its testbed host (as
tests/nat/test_node_nat.py does). Run: ``bash .ci/test -q tests/nat/test_node_punch.py``.
"""

from __future__ import annotations

import base64
import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import pytest

from a2al_mcp import Node, NodeConfig
from a2al_mcp._clock import SystemClock
from a2al_mcp._types import Addr
from a2al_mcp.config import NatConfig, SignalConfig
from a2al_mcp.errors import NotFound
from a2al_mcp.identity.aid import Aid
from a2al_mcp.node.http import HttpRequest, HttpResponse
from a2al_mcp.node.traversal import quic_dial
from a2al_mcp.protocol.payloads import EndpointPayload
from a2al_mcp.signal.client_service import call
from a2al_mcp.signal.punch_core import Finish, PunchAttempt
from a2al_mcp.signal.punch_service import punch_over_room
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
BODY: Final = b"hello from behind prc, through the hub"


async def hello(req: HttpRequest) -> HttpResponse:
    return HttpResponse(200, (("content-type", "text/plain"),), BODY)


@pytest.fixture(scope="module")
def tb(nat_available: None) -> Iterator[NatTestbed]:
    """Seeds and the hub on a public host; the callee and the caller behind two prc NATs."""
    hosts = {"pub1": "public", "pub2": "public", "prc": "prc", "prc2": "prc"}
    with NatTestbed(hosts, turn=True) as testbed:
        yield testbed


class Shared:
    """What the three sides tell each other across their threads. ``hub``: ``standalone``
    (our :class:`HubServer` on ``pub1``), ``embedded`` (the one a public node of ours serves,
    ``serve_hub = "on"``) or ``a2ald`` (the one a2ald embeds, on ``pub2``)."""

    def __init__(self, tb: NatTestbed, *, hub: str = "standalone") -> None:
        self.embedded = hub == "embedded"
        if hub == "a2ald":
            self.hub_url = f"ws://{tb.addr('pub2')}:{PORT}"  # a2ald's listen port, on TCP
        else:  # the hub node's UDP port number, on TCP; or ours
            port = PORT + 3 if self.embedded else HUB_PORT
            self.hub_url = f"ws://{tb.addr(PUBLIC)}:{port}"
        self.up = threading.Event()
        self.callee: queue.Queue[Aid] = queue.Queue()
        self.done = threading.Event()


async def _wait(event: threading.Event) -> None:
    if not await anyio.to_thread.run_sync(event.wait, WAIT_S * 2):
        raise AssertionError("the other side never got there")


async def _until(check: Callable[[], object], what: str) -> None:
    with anyio.fail_after(WAIT_S):
        while not check():  # noqa: ASYNC110  (node state that tells nobody)
            await anyio.sleep(0.1)
    assert check(), what


def _nat(tb: NatTestbed) -> NatConfig:
    host, port = tb.stun
    return NatConfig(stun_servers=(f"{host}:{port}",))


def _seeds(tb: NatTestbed) -> tuple[str, ...]:
    return tuple(f"{tb.addr(PUBLIC)}:{PORT + i}" for i in range(3))


def _flush_udp(tb: NatTestbed, host: str) -> None:
    """Forget the UDP state of ``host``'s router (its TCP to the hub stays)."""
    tb.run(tb.router(host), ["conntrack", "-D", "-p", "udp"])  # exits 1 when there is none


async def public_side(tb: NatTestbed, shared: Shared) -> str:
    try:
        async with contextlib.AsyncExitStack() as stack:
            seeds = await public_seeds(stack, tb.addr(PUBLIC))
            if shared.embedded:
                return await _hub_node(stack, tb, shared, seeds[0])
            if shared.hub_url.endswith(f":{PORT}"):  # a2ald's, started by the test
                shared.up.set()
                await _wait(shared.done)
                return "a2ald's hub"
            hub = HubServer(SignalConfig())
            async with anyio.create_task_group() as tg:
                await tg.start(hub.serve, "0.0.0.0", HUB_PORT)
                shared.up.set()
                await _wait(shared.done)
                tg.cancel_scope.cancel()
            return str(hub.core.stats)
    finally:
        shared.up.set()


async def _hub_node(
    stack: contextlib.AsyncExitStack, tb: NatTestbed, shared: Shared, seed: Node
) -> str:
    """A public node of ours serving a hub: it registers with its own hub once it knows it
    is public, and its record names it."""
    cfg = NodeConfig(listen_addr=f"{tb.addr(PUBLIC)}:{PORT + 3}", bootstrap=_seeds(tb),
                     signal=SignalConfig(serve_hub="on"))  # fmt: skip
    node = await stack.enter_async_context(Node(cfg, auto_publish=True))
    await _until(lambda: node.signal_hubs() == (shared.hub_url,), "its own hub live")
    with anyio.fail_after(WAIT_S):
        while True:
            with contextlib.suppress(NotFound):
                got = await seed.resolve(node.aid)
                own = EndpointPayload.from_bytes(got.record.payload)
                if own.signal == shared.hub_url:
                    break
            await anyio.sleep(0.2)
    shared.up.set()
    await _wait(shared.done)
    return f"hub node {node.status().nat.nat_type_words}, record {own}"


async def callee_side(tb: NatTestbed, shared: Shared) -> dict[str, Any]:
    await _wait(shared.up)
    cfg = NodeConfig(listen_addr=f"0.0.0.0:{PORT}", nat=_nat(tb), bootstrap=_seeds(tb),
                     signal=SignalConfig(hubs=(shared.hub_url,)))  # fmt: skip
    async with Node(cfg, auto_publish=True) as node:
        node.serve(http=hello)
        await _until(lambda: node.signal_hubs() == (shared.hub_url,), "registered with the hub")
        shared.callee.put(node.aid)
        await _wait(shared.done)
        stats = node.traversal_statistics()
        return {"stats": stats, "nat_type": node.status().nat.nat_type}


class _Probes:
    """The caller's probes from its node's main socket."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.sent = 0

    def send_probe(self, addr: Addr) -> None:
        self.node._endpoint.send_datagram(b"\x00", addr)  # type: ignore[union-attr]
        self.sent += 1


class _Quic:
    """The caller's QUIC dial from its node's main socket (not through the pool, which backs
    off after a failed round)."""

    def __init__(self, node: Node, target: Aid) -> None:
        self.node = node
        self.target = target
        self.dials = 0

    async def dial(self, addr: Addr, timeout_s: float) -> bool:
        self.dials += 1
        assert self.node._quic is not None
        return await quic_dial(self.node._quic, self.node.aid, self.target, addr, timeout_s)

    def expect_accept(self, until: float) -> None:
        """The callee's connection to us would do too; our own dial is what is measured."""


async def caller_side(tb: NatTestbed, shared: Shared) -> dict[str, Any]:
    try:
        await _wait(shared.up)
        cfg = NodeConfig(listen_addr=f"0.0.0.0:{PORT}", nat=_nat(tb), bootstrap=_seeds(tb))
        async with Node(cfg) as node:
            target = await anyio.to_thread.run_sync(shared.callee.get, True, WAIT_S)
            payload: EndpointPayload | None = None
            with anyio.fail_after(WAIT_S):
                while True:
                    with contextlib.suppress(NotFound):
                        got = await node.resolve(target)
                        payload = EndpointPayload.from_bytes(got.record.payload)
                        if payload.signal and payload.nat_type == 3:
                            break
                    await anyio.sleep(0.2)
            await _until(lambda: node.status().nat.public_addrs, "our external address")
            nat = node.status().nat
            await anyio.to_thread.run_sync(_flush_udp, tb, "prc")
            await anyio.to_thread.run_sync(_flush_udp, tb, "prc2")
            started = CLOCK.monotonic()
            room = await call(payload.signal, str(node.aid), str(target))
            attempt = PunchAttempt(initiator=True, local_addrs=nat.public_addrs,
                                   nat_type=nat.nat_type)  # fmt: skip
            probes, quic = _Probes(node), _Quic(node, target)
            try:
                with anyio.fail_after(WAIT_S):
                    result: Finish = await punch_over_room(room, attempt, sender=probes,
                                                           quic=quic, clock=CLOCK)  # fmt: skip
            finally:
                await room.aclose()
            punched_s = CLOCK.monotonic() - started
            url = f"quic://{result.addr[0]}:{result.addr[1]}"
            with anyio.fail_after(20):
                response = await node.fetch(target, "GET", "/", endpoints=[url])
            return {"payload": payload, "result": result, "punched_s": punched_s,
                    "response": response, "probes": probes.sent, "dials": quic.dials,
                    "stats": attempt.stats, "own": nat.public_addrs}  # fmt: skip
    finally:
        shared.done.set()


@pytest.mark.parametrize("hub", ["standalone", "embedded", "a2ald"])
def test_a_caller_behind_prc2_reaches_our_node_behind_prc_through_a_hub(
    tb: NatTestbed, hub: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    tb.prove_sealed()
    shared = Shared(tb, hub=hub)
    with contextlib.ExitStack() as stack:
        if hub == "a2ald":  # a2ald's embedded hub on pub2, nothing else of it used
            request.getfixturevalue("a2ald_binary")
            a2ald = A2aldPeer(tmp_path / "pub2", udp_port=PORT, api_port=2121,
                              launch=tb.a2ald_launch("pub2"), name="a2ald-hub")  # fmt: skip
            stack.callback(a2ald.stop)
            a2ald.start()
            a2ald.wait_ready(30, require_peers=False)
        with (
            in_host(tb, PUBLIC, lambda: public_side(tb, shared)) as public,
            in_host(tb, "prc", lambda: callee_side(tb, shared)) as callee,
            in_host(tb, "prc2", lambda: caller_side(tb, shared)) as caller,
        ):
            got = caller.result(timeout=240)
            callee_got = callee.result(timeout=60)
            hub_stats = public.result(timeout=60)
    print(f"caller: {got}\ncallee: {callee_got}\nhub: {hub_stats}")
    payload: EndpointPayload = got["payload"]
    if hub == "embedded":  # the public node saw it is public and published its own hub
        assert "public (no NAT)" in hub_stats and f"signal='{shared.hub_url}'" in hub_stats
    # the callee's record names the hub it registered with, and its NAT type
    assert (payload.signal, payload.signals) == (shared.hub_url, (shared.hub_url,))
    assert payload.nat_type == callee_got["nat_type"] == 3
    assert got["own"][0] == (tb.wan("prc2"), PORT)
    # the punch found the callee at its NAT's external main port; the service answered
    assert got["result"].addr == (tb.wan("prc"), PORT)
    response: HttpResponse = got["response"]
    assert (response.status, response.body) == (200, BODY)
    # the callee answered once, punched, and contained nothing
    stats = callee_got["stats"]
    assert stats is not None
    assert (stats.incoming, stats.answered, stats.punched) == (1, 1, 1)
    assert (stats.punch_failed, stats.errors, stats.refused) == (0, 0, 0)
    # the callee's ICE agent answered in the same room: its cred first (a2ald needs it to
    # punch), then its candidates and eoc, which this punch-only caller counts as foreign
    # while it reads (the punch may end before the candidates are gathered)
    assert got["stats"].foreign_frames >= 1


def _a2ald_fetch(peer: A2aldPeer, aid: Aid) -> dict[str, Any]:
    got: dict[str, Any] = peer.post(
        f"/fetch/{aid}", {"method": "GET", "path": "/", "body_base64": ""}, timeout=40
    )
    return got


@pytest.mark.parametrize("hub", ["standalone", "a2ald"])
def test_a2ald_behind_prc2_fetches_from_our_node_behind_prc_through_a_hub(
    tb: NatTestbed, a2ald_binary: None, tmp_path: Path, hub: str
) -> None:
    """``standalone``: through our hub; ``a2ald``: through a2ald's embedded hub on pub2."""
    tb.prove_sealed()
    shared = Shared(tb, hub=hub)
    hub_peer = None
    if hub == "a2ald":
        hub_peer = A2aldPeer(tmp_path / "pub2", udp_port=PORT, api_port=2121,
                             launch=tb.a2ald_launch("pub2"), name="a2ald-hub")  # fmt: skip
    peer = A2aldPeer(tmp_path / "prc2", bootstrap=list(_seeds(tb)), udp_port=PORT,
                     api_port=2121, launch=tb.a2ald_launch("prc2"), name="a2ald-prc2",
                     log_level="debug")  # fmt: skip
    with (
        in_host(tb, PUBLIC, lambda: public_side(tb, shared)) as public,
        in_host(tb, "prc", lambda: callee_side(tb, shared)) as callee,
    ):
        try:
            if hub_peer is not None:
                hub_peer.start()
                hub_peer.wait_ready(30, require_peers=False)
            assert shared.up.wait(WAIT_S)
            peer.start()
            peer.wait_ready(30, require_peers=True)
            aid = shared.callee.get(timeout=WAIT_S)
            resolved = poll_until(lambda: peer.resolve(str(aid)),
                                  lambda r: int(r["nat_type"]) == 3, timeout=WAIT_S,
                                  interval=0.5, what="a2ald resolving our node")  # fmt: skip
            _flush_udp(tb, "prc")
            _flush_udp(tb, "prc2")
            started = CLOCK.monotonic()
            fetched = poll_until(lambda: _a2ald_fetch(peer, aid), lambda r: r.get("status") == 200,
                                 timeout=WAIT_S, interval=1.0, what="a2ald fetching")  # fmt: skip
            took_s = CLOCK.monotonic() - started
        finally:
            log = peer.log_tail(400) if peer.running else ""
            print(f"a2ald log:\n{log}")
            shared.done.set()
            peer.stop()
            if hub_peer is not None:
                hub_peer.stop()
        callee_got = callee.result(timeout=60)
        hub_stats = public.result(timeout=60)
    print(f"resolved: {resolved}\nfetched in {took_s:.2f} s: {fetched}\ncallee: {callee_got}"
          f"\nhub: {hub_stats}")  # fmt: skip
    assert base64.b64decode(fetched["body"]) == BODY, log
    stats = callee_got["stats"]
    assert stats is not None
    # a2ald came through our hub and the punch: our callee answered and found the path
    assert stats.answered >= 1 and stats.punched >= 1, f"{stats}\n{log}"
    assert stats.accepted_matched >= 1 and stats.errors == 0
