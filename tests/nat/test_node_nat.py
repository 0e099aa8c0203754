"""Our node behind each NAT kind of the testbed: it learns its external address and NAT type,
its endpoint record reaches the DHT with the right ``nat_type`` within 10 s of its start, and
a node on the public side resolves it and fetches from it wherever a direct path exists.

Every node runs in-process, each side in its own thread whose network namespace is a
testbed host (``setns`` is per thread; a thread's event loop, sockets and worker threads all
live there). Public side: three of our nodes on ``pub1`` (the seeds), the NAT side bootstraps
from them with coturn (the testbed's, RFC 5780 alternate address) as its only STUN server and,
behind a UPnP router, ``nat.upnp`` on. Expected types (issue 17): full cone 1,
port-restricted 3, symmetric 4, a UPnP-mapped host reachable as public 1.
"""

from __future__ import annotations

import base64
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread
import pytest

from a2al_mcp import Node, NodeConfig
from a2al_mcp._clock import SystemClock
from a2al_mcp.config import NatConfig
from a2al_mcp.errors import NotFound
from a2al_mcp.identity.aid import Aid
from a2al_mcp.node.http import HttpRequest, HttpResponse
from a2al_mcp.node.status import NatStatus, ResolvedEndpoint
from a2al_mcp.testing.a2ald import A2aldPeer, poll_until
from a2al_mcp.testing.nat_services import UpnpMapping
from a2al_mcp.testing.nat_testbed import NatTestbed

pytestmark = pytest.mark.nat

T = TypeVar("T")
PUBLIC_HOST: Final = "pub1"
PORT: Final = 4121
SEEDS: Final = 3
RECORD_DEADLINE_S: Final = 10.0
"""The record with the right nat_type must be in the DHT this long after the node starts."""
HANDOFF_S: Final = 60.0
CLOCK: Final = SystemClock()

# host, expected nat_type, a direct path exists (full cone, UPnP mapping)
CASES: Final = [
    ("cone", 1, True),
    ("prc", 3, False),
    ("sym", 4, False),
    ("upnp1", 1, True),
    ("upnp2", 1, True),
]


@contextlib.contextmanager
def in_host(tb: NatTestbed, host: str, main: Callable[[], Awaitable[T]]) -> Iterator[Future[T]]:
    """Run ``main`` with its own event loop in a thread inside ``host``'s namespace."""

    def run() -> T:
        with tb.netns(host):
            return anyio.run(main)

    with ThreadPoolExecutor(1, thread_name_prefix=f"tb-{host}") as pool:
        yield pool.submit(run)


async def hello(req: HttpRequest) -> HttpResponse:
    return HttpResponse(200, (("content-type", "text/plain"),), b"hello from behind the NAT")


class Handoff:
    """What the two sides tell each other across their threads."""

    def __init__(self) -> None:
        self.seeds_up = threading.Event()
        self.node: queue.Queue[tuple[Aid, float]] = queue.Queue()
        self.done = threading.Event()


async def _wait(event: threading.Event) -> None:
    if not await anyio.to_thread.run_sync(event.wait, HANDOFF_S):
        raise AssertionError("the other side never got there")


async def public_seeds(stack: contextlib.AsyncExitStack, pub: str) -> list[Node]:
    """``SEEDS`` of our nodes on the public host ``pub`` (ports ``PORT``…), joined through
    the first; closed with ``stack``."""
    first = f"{pub}:{PORT}"
    seeds = [await stack.enter_async_context(Node(NodeConfig(listen_addr=first)))]
    for i in range(1, SEEDS):
        cfg = NodeConfig(listen_addr=f"{pub}:{PORT + i}", bootstrap=(first,))
        seeds.append(await stack.enter_async_context(Node(cfg)))
    return seeds


async def public_side(
    tb: NatTestbed, handoff: Handoff, host: str, nat_type: int, direct: bool
) -> tuple[ResolvedEndpoint, HttpResponse | None, list[UpnpMapping]]:
    """Three seeds on the public host; resolve the NAT node until its record carries
    ``nat_type`` (within 10 s of its start), then fetch from it when ``direct``; the
    mappings the UPnP router holds meanwhile."""
    pub = tb.addr(PUBLIC_HOST)
    try:
        async with contextlib.AsyncExitStack() as stack:
            seeds = await public_seeds(stack, pub)
            handoff.seeds_up.set()
            aid, started = await anyio.to_thread.run_sync(handoff.node.get, True, HANDOFF_S)
            reader = seeds[-1]
            found = None
            with anyio.fail_after(max(0.1, started + RECORD_DEADLINE_S - CLOCK.monotonic())):
                while found is None:
                    with contextlib.suppress(NotFound):
                        got = await reader.resolve(aid)
                        if got.nat_type == nat_type:
                            found = got
                            break
                    await anyio.sleep(0.2)
            response = None
            if direct:
                with anyio.fail_after(20):
                    response = await reader.fetch(aid, "GET", "/")
            held = []
            if host.startswith("upnp"):
                held = await anyio.to_thread.run_sync(tb.upnp_mappings, host)
            return found, response, held
    finally:
        handoff.done.set()


async def nat_side(
    tb: NatTestbed, handoff: Handoff, host: str, *, seeds: tuple[str, ...] = ()
) -> NatStatus:
    """Our node on ``host``: wildcard bind, the public seeds (default: our three on the public
    host), coturn, UPnP behind a UPnP router, auto-publish on (as ``serve`` runs it)."""
    await _wait(handoff.seeds_up)
    pub = tb.addr(PUBLIC_HOST)
    stun_host, stun_port = tb.stun
    nat = NatConfig(stun_servers=(f"{stun_host}:{stun_port}",), upnp=host.startswith("upnp"))
    seeds = seeds or tuple(f"{pub}:{PORT + i}" for i in range(SEEDS))
    cfg = NodeConfig(listen_addr=f"0.0.0.0:{PORT}", nat=nat, bootstrap=seeds)
    started = CLOCK.monotonic()
    async with Node(cfg, auto_publish=True) as node:
        node.serve(http=hello)
        handoff.node.put((node.aid, started))
        await _wait(handoff.done)
        return node.status().nat


@pytest.mark.parametrize(("host", "nat_type", "direct"), CASES, ids=[c[0] for c in CASES])
def test_our_node_behind_a_nat_publishes_the_truth_and_is_reached_where_it_can_be(
    tb: NatTestbed, host: str, nat_type: int, direct: bool
) -> None:
    handoff = Handoff()
    with (
        in_host(
            tb, PUBLIC_HOST, lambda: public_side(tb, handoff, host, nat_type, direct)
        ) as public,
        in_host(tb, host, lambda: nat_side(tb, handoff, host)) as natted,
    ):
        found, response, held = public.result(timeout=120)
        status = natted.result(timeout=60)
    wan = tb.wan(host)
    assert found.nat_type == nat_type == status.nat_type
    assert status.reachable_directly is direct
    if nat_type == 4:
        # no ip:port of ours works for a new peer: nothing from consensus or STUN is published
        assert not any(wan in url for url in found.endpoints)
        assert status.public_addrs == ()
    else:
        assert found.endpoints, "a record without an address"
        assert found.endpoints[0].startswith(f"quic://{wan}:")
        assert status.public_addrs and status.public_addrs[0][0] == wan
    if host.startswith("upnp"):
        assert status.upnp_mapping is not None and status.upnp_mapping[0] == wan
        assert f"quic://{wan}:{status.upnp_mapping[1]}" in found.endpoints
        assert any(m.internal_port == PORT and m.protocol == "UDP" for m in held)
        # the node deleted its mapping when it closed
        assert not any(m.internal_port == PORT for m in tb.upnp_mappings(host))
    if direct:
        assert response is not None and response.status == 200
        assert response.body == b"hello from behind the NAT"


# -- the public side is a2ald (the reference daemon), both ways of reading us


def _a2ald_fetch(peer: A2aldPeer, aid: Aid) -> dict[str, Any]:
    got: dict[str, Any] = peer.post(
        f"/fetch/{aid}", {"method": "GET", "path": "/", "body_base64": ""}
    )
    return got


@pytest.mark.parametrize(("host", "nat_type", "direct"), CASES, ids=[c[0] for c in CASES])
def test_a2ald_on_the_public_side_resolves_and_fetches_our_node(
    tb: NatTestbed, a2ald_binary: None, tmp_path: Path, host: str, nat_type: int, direct: bool
) -> None:
    peers: list[A2aldPeer] = []
    handoff = Handoff()
    try:
        for i, pub in enumerate(("pub2", "pub3")):
            boot = [peers[0].listen_addr] if peers else []
            peer = A2aldPeer(tmp_path / pub, bootstrap=boot, udp_port=PORT, api_port=2121,
                             launch=tb.a2ald_launch(pub), name=f"a2ald-{i}")  # fmt: skip
            peers.append(peer)
            peer.start()
            peer.wait_ready(20, require_peers=bool(boot))
        handoff.seeds_up.set()
        seeds = tuple(p.listen_addr for p in peers)
        with in_host(tb, host, lambda: nat_side(tb, handoff, host, seeds=seeds)) as natted:
            try:
                aid, started = handoff.node.get(timeout=HANDOFF_S)
                reader = peers[-1]
                got = poll_until(lambda: reader.resolve(str(aid)),
                                 lambda r: int(r["nat_type"]) == nat_type,
                                 timeout=max(0.1, started + RECORD_DEADLINE_S - CLOCK.monotonic()),
                                 interval=0.2, what=f"a2ald resolving {host}")  # fmt: skip
                fetched = None
                if direct:
                    fetched = poll_until(lambda: _a2ald_fetch(reader, aid),
                                         lambda r: r.get("status") == 200, timeout=30,
                                         interval=0.5, what=f"a2ald fetching {host}")  # fmt: skip
            finally:
                handoff.done.set()
            status = natted.result(timeout=60)
    finally:
        for peer in peers:
            peer.stop()
    wan = tb.wan(host)
    assert status.nat_type == nat_type
    if nat_type != 4:
        assert got["endpoints"][0].startswith(f"quic://{wan}:")
    if fetched is not None:
        assert base64.b64decode(fetched["body"]) == b"hello from behind the NAT"


# -- a network change (runs last: it moves the prc host and its router, then moves them back)

NEW_WAN: Final = "198.51.100.99"


def _move(tb: NatTestbed, host: str, *, back: bool = False) -> None:
    """A new network for ``host``: a new LAN address (the route's source) behind a router
    whose WAN address changed (a new lease from the ISP). ``back`` undoes it."""
    old_lan, old_wan = tb.addr(host), tb.wan(host)
    prefix = old_lan.rsplit(".", 1)[0]
    new_lan, gateway = f"{prefix}.3", f"{prefix}.1"
    router = tb.router(host)
    wan_from, wan_to = (NEW_WAN, old_wan) if back else (old_wan, NEW_WAN)
    lan_src = old_lan if back else new_lan
    tb.run(router, ["sh", "-ec", f"""
        sysctl -qw net.ipv4.conf.wan0.promote_secondaries=1
        ip addr add {wan_to}/24 dev wan0 2>/dev/null || true
        ip addr del {wan_from}/24 dev wan0 2>/dev/null || true
        ip route replace default via 198.51.100.1 dev wan0
    """], check=True)  # fmt: skip
    tb.run(host, ["sh", "-ec", f"""
        ip addr add {new_lan}/24 dev eth0 2>/dev/null || true
        ip route replace default via {gateway} src {lan_src}
    """], check=True)  # fmt: skip


async def public_side_moving(
    tb: NatTestbed, handoff: Handoff, host: str
) -> tuple[ResolvedEndpoint, ResolvedEndpoint]:
    """Resolve the node's first record, move its network, and resolve until the record
    names the new WAN address: within 10 s of the move."""
    pub = tb.addr(PUBLIC_HOST)
    try:
        async with contextlib.AsyncExitStack() as stack:
            seeds = await public_seeds(stack, pub)
            handoff.seeds_up.set()
            aid, started = await anyio.to_thread.run_sync(handoff.node.get, True, HANDOFF_S)
            reader = seeds[-1]
            old = f"quic://{tb.wan(host)}:"
            with anyio.fail_after(max(0.1, started + RECORD_DEADLINE_S - CLOCK.monotonic())):
                before = await _resolve_until(reader, aid, lambda r: r.endpoints[:1] != ()
                                              and r.endpoints[0].startswith(old))  # fmt: skip
            await anyio.to_thread.run_sync(_move, tb, host)
            with anyio.fail_after(RECORD_DEADLINE_S):
                after = await _resolve_until(
                    reader, aid, lambda r: r.endpoints[:1] != ()
                    and r.endpoints[0].startswith(f"quic://{NEW_WAN}:"),
                )  # fmt: skip
            return before, after
    finally:
        handoff.done.set()


async def _resolve_until(
    reader: Node, aid: Aid, ok: Callable[[ResolvedEndpoint], bool]
) -> ResolvedEndpoint:
    while True:
        with contextlib.suppress(NotFound):
            got = await reader.resolve(aid)
            if ok(got):
                return got
        await anyio.sleep(0.2)


def test_a_network_change_is_republished_within_10_s(tb: NatTestbed) -> None:
    host = "prc"
    handoff = Handoff()
    try:
        with (
            in_host(tb, PUBLIC_HOST, lambda: public_side_moving(tb, handoff, host)) as public,
            in_host(tb, host, lambda: nat_side(tb, handoff, host)) as natted,
        ):
            before, after = public.result(timeout=120)
            status = natted.result(timeout=60)
    finally:
        _move(tb, host, back=True)
    assert after.seq > before.seq and after.nat_type == before.nat_type == 3
    assert status.public_addrs and status.public_addrs[0][0] == NEW_WAN
