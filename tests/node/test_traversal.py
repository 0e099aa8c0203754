"""The callee side of NAT traversal wired into real nodes on loopback (a2al_mcp.node.traversal).

Real hubs (:class:`HubServer`, standalone or embedded in the node), real registrations
(:class:`SignalService`), real rooms and a real punch: a node with ``[signal]`` hubs
registers its published identities, names the live hubs in its endpoint record (read back
from the DHT by another node) and republishes when they change; a caller built from the
bricks (``call`` + :class:`PunchSession` + a plain QUIC connect of another node) reaches it,
the callee's punch completes on the caller's accepted connection, and a request is served.
Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import ast
import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable

import anyio
import anyio.abc
import pytest

from a2al_mcp import Node, NodeConfig
from a2al_mcp._clock import SystemClock
from a2al_mcp._types import Addr
from a2al_mcp.config import SignalConfig
from a2al_mcp.errors import ConfigError, NotFound
from a2al_mcp.identity.aid import Aid
from a2al_mcp.nat.types import NatType, NatView
from a2al_mcp.node.http import HttpRequest, HttpResponse
from a2al_mcp.node.traversal import own_hub_url, punch_addrs
from a2al_mcp.protocol.payloads import EndpointPayload
from a2al_mcp.signal.client_service import call
from a2al_mcp.signal.punch_core import Finish, PunchAttempt
from a2al_mcp.signal.punch_service import punch_over_room
from a2al_mcp.signal.ws_server import HubServer

pytestmark = pytest.mark.anyio

WAIT_S = 15.0
CLOCK = SystemClock()


async def hello(req: HttpRequest) -> HttpResponse:
    return HttpResponse(200, (("content-type", "text/plain"),), b"hello through the hub")


@contextlib.asynccontextmanager
async def hub() -> AsyncIterator[tuple[HubServer, str]]:
    server = HubServer(SignalConfig())
    async with anyio.create_task_group() as tg:
        host, port = await tg.start(server.serve, "127.0.0.1", 0)
        yield server, f"ws://{host}:{port}"
        tg.cancel_scope.cancel()


async def until(check: Callable[[], object], what: str) -> None:
    """Poll ``check`` (the node's counters and hub list change without telling anyone)."""
    with anyio.fail_after(WAIT_S):
        while not check():  # noqa: ASYNC110
            await anyio.sleep(0.05)
    assert check(), what


async def record_of(
    reader: Node, aid: Aid, ok: Callable[[EndpointPayload], bool]
) -> EndpointPayload:
    with anyio.fail_after(WAIT_S):
        while True:
            with contextlib.suppress(NotFound):
                got = EndpointPayload.from_bytes((await reader.resolve(aid)).record.payload)
                if ok(got):
                    return got
            await anyio.sleep(0.1)


def _node(seed: str, **signal: object) -> Node:
    cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed,),
                     signal=SignalConfig(**signal))  # type: ignore[arg-type]  # fmt: skip
    return Node(cfg, auto_publish=True)


async def test_hubs_are_registered_named_in_the_record_and_republished_when_they_change() -> None:
    async with contextlib.AsyncExitStack() as stack:
        _hub_a, url_a = await stack.enter_async_context(hub())
        seed = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
        seed_addr = "{}:{}".format(*seed.local_addr)
        # the second hub is not there yet: a closed port on loopback
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.bind(("127.0.0.1", 0))
        url_b = f"ws://127.0.0.1:{probe.getsockname()[1]}"
        probe.close()
        node = await stack.enter_async_context(
            _node(seed_addr, hubs=(url_a, url_b), reconnect_max_s=1.0)  # retried every second
        )
        await until(lambda: node.signal_hubs() == (url_a,), "registered with the live hub")
        first = await record_of(seed, node.aid, lambda p: p.signal == url_a)
        assert first.signals == (url_a,)
        # the second hub comes up on its port: registered, and the record names both
        port_b = int(url_b.rsplit(":", 1)[1])
        server_b = HubServer(SignalConfig())
        async with anyio.create_task_group() as tg:
            await tg.start(server_b.serve, "127.0.0.1", port_b)
            await until(lambda: node.signal_hubs() == (url_a, url_b), "both hubs live")
            both = await record_of(seed, node.aid, lambda p: len(p.signals) == 2)
            assert (both.signal, both.signals) == (url_a, (url_a, url_b))
            tg.cancel_scope.cancel()
        # it went away again: the record names the one left
        await until(lambda: node.signal_hubs() == (url_a,), "the dead hub dropped")
        await record_of(seed, node.aid, lambda p: p.signals == (url_a,))
        stats = node.traversal_statistics()
        assert stats is not None and stats.hub_changes == 3
        assert stats.errors == stats.refused == 0


async def test_an_embedded_hub_is_served_registered_with_and_published() -> None:
    async with contextlib.AsyncExitStack() as stack:
        seed = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
        seed_addr = "{}:{}".format(*seed.local_addr)
        node = await stack.enter_async_context(_node(seed_addr, serve_hub="on"))
        own = f"ws://127.0.0.1:{node.local_addr[1]}"  # TCP, the UDP socket's port number
        await until(lambda: node.signal_hubs() == (own,), "registered with its own hub")
        got = await record_of(seed, node.aid, lambda p: p.signal == own)
        assert got.signals == (own,)


async def test_no_signal_table_means_no_traversal_and_no_hub_in_the_record() -> None:
    async with contextlib.AsyncExitStack() as stack:
        seed = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
        node = await stack.enter_async_context(
            Node(
                NodeConfig(
                    listen_addr="127.0.0.1:0", bootstrap=("{}:{}".format(*seed.local_addr),)
                ),
                auto_publish=True,
            )
        )
        got = await record_of(seed, node.aid, lambda p: bool(p.endpoints))
        assert (got.signal, got.signals) == ("", ())
        assert node.traversal_statistics() is None and node.signal_hubs() == ()


class _Probes:
    """The caller's probe sender: a plain socket on loopback (no NAT to open here)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sent = 0

    def send_probe(self, addr: Addr) -> None:
        self.sock.sendto(b"\x00", addr)
        self.sent += 1


class _CallerQuic:
    """The caller's QUIC: a plain connect of another node to the callee's address."""

    def __init__(self, node: Node, target: Aid) -> None:
        self.node = node
        self.target = target

    async def dial(self, addr: Addr, timeout_s: float) -> bool:
        with anyio.move_on_after(timeout_s):
            await self.node.connect(self.target, endpoints=[f"quic://{addr[0]}:{addr[1]}"])
            return True
        return False

    def expect_accept(self, until: float) -> None:
        """The callee dials us too; the caller's own dial is enough here."""


@pytest.mark.parametrize("callee_dials", [False, True], ids=["probes", "probes-and-dials"])
async def test_a_call_through_the_hub_is_answered_with_a_punch_and_served(
    callee_dials: bool,
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        _server, url = await stack.enter_async_context(hub())
        seed = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
        seed_addr = "{}:{}".format(*seed.local_addr)
        callee = await stack.enter_async_context(
            _node(seed_addr, hubs=(url,), callee_dials=callee_dials)
        )
        callee.serve(http=hello)
        caller = await stack.enter_async_context(
            Node(NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed_addr,)))
        )
        await until(lambda: callee.signal_hubs() == (url,), "the callee registered")
        room = await call(url, str(caller.aid), str(callee.aid))
        probes = _Probes()
        attempt = PunchAttempt(initiator=True, local_addrs=(caller.local_addr,), nat_type=1)
        try:
            with anyio.fail_after(WAIT_S):
                result = await punch_over_room(
                    room, attempt, sender=probes, quic=_CallerQuic(caller, callee.aid),
                    clock=CLOCK, on_session=lambda s: None,
                )  # fmt: skip
        finally:
            await room.aclose()
            probes.sock.close()
        assert isinstance(result, Finish) and result.addr == callee.local_addr
        # the callee's ICE agent answers in the same room: its cred (first: a2ald waits for
        # it), then its candidates and eoc, which a punch-only reader counts as foreign while
        # it reads (the punch may end before they were gathered)
        assert attempt.stats.foreign_frames >= 1
        response = await caller.fetch(callee.aid, "GET", "/")
        assert (response.status, response.body) == (200, b"hello through the hub")
        stats = callee.traversal_statistics()
        assert stats is not None
        await until(lambda: stats.punched == 1, "the callee's punch ended with a path")
        assert (stats.incoming, stats.answered, stats.punch_failed, stats.errors) == (1, 1, 0, 0)
        assert probes.sent > 0
        if callee_dials:  # it dialled the caller too: either connection completes the attempt
            assert stats.dials >= 1
        else:  # only the caller's connection, accepted by the callee, completed it
            assert stats.dials == 0 and stats.accepted_matched == 1


async def test_a_silent_callers_punch_fails_counted_and_an_unpublished_agent_is_unknown() -> None:
    async with contextlib.AsyncExitStack() as stack:
        _server, url = await stack.enter_async_context(hub())
        seed = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
        seed_addr = "{}:{}".format(*seed.local_addr)
        callee = await stack.enter_async_context(_node(seed_addr, hubs=(url,)))
        await until(lambda: callee.signal_hubs() == (url,), "the callee registered")
        agent = callee.create_agent()  # local, registered nowhere: not published
        stats = callee.traversal_statistics()
        assert stats is not None
        # a caller that never sends anything: the callee's punch gives up, counted
        room = await call(url, str(seed.aid), str(callee.aid))
        await until(lambda: stats.answered == 1, "the call answered")
        await room.aclose()
        await until(lambda: stats.punch_failed == 1, "the silent caller's punch failed")
        assert stats.punched == 0 and stats.errors == 0
        # the hub does not know the unpublished agent: noagent, nothing reaches the node
        room = await call(url, str(seed.aid), str(agent.identity.aid))
        with pytest.raises(NotFound):
            await room.receive()
        assert stats.incoming == 1


def test_own_hub_url_and_punch_addrs() -> None:
    assert own_hub_url(("0.0.0.0", 4121), public_ip="198.51.100.7", bound_host="0.0.0.0") == (
        "ws://198.51.100.7:4121"
    )
    assert own_hub_url(("127.0.0.1", 5), public_ip=None, bound_host="127.0.0.1") == (
        "ws://127.0.0.1:5"
    )
    assert own_hub_url(("::", 5), public_ip=None, bound_host="::") is None
    assert own_hub_url(None, public_ip="198.51.100.7", bound_host="x") is None
    view = NatView(nat_type=NatType.PORT_RESTRICTED, external=(("203.0.113.9", 4121),),
                   upnp=None)  # fmt: skip
    assert punch_addrs(view, ("0.0.0.0", 4121)) == (("203.0.113.9", 4121),)
    assert punch_addrs(NatView(), ("127.0.0.1", 7)) == (("127.0.0.1", 7),)
    assert punch_addrs(NatView(), ("0.0.0.0", 7)) == ()


def test_signal_config_serve_hub_and_listen_addr_are_checked() -> None:
    assert SignalConfig().serve_hub == "auto"
    with pytest.raises(ConfigError):
        SignalConfig(serve_hub="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        SignalConfig(hub_listen_addr="nope")
    with pytest.raises(ConfigError):
        SignalConfig(max_answers=0)
    cfg = NodeConfig.from_mapping(
        {"signal": {"serve_hub": "on", "hub_listen_addr": "0.0.0.0:4121"}}
    )
    assert (cfg.signal.serve_hub, cfg.signal.hub_listen_addr) == ("on", "0.0.0.0:4121")


async def test_calls_beyond_max_answers_are_refused_and_counted() -> None:
    async with contextlib.AsyncExitStack() as stack:
        _server, url = await stack.enter_async_context(hub())
        seed = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
        seed_addr = "{}:{}".format(*seed.local_addr)
        callee = await stack.enter_async_context(_node(seed_addr, hubs=(url,), max_answers=1))
        other = await stack.enter_async_context(
            Node(NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed_addr,)))
        )
        await until(lambda: callee.signal_hubs() == (url,), "the callee registered")
        stats = callee.traversal_statistics()
        assert stats is not None
        # the first caller stays silent: its answer holds the only slot
        first = await call(url, str(seed.aid), str(callee.aid))
        await until(lambda: stats.answered == 1, "the first call answered")
        second = await call(url, str(other.aid), str(callee.aid))
        await until(lambda: stats.refused == 1, "the second call refused")
        assert (stats.incoming, stats.answered) == (2, 1)
        await second.aclose()
        await first.aclose()
        await until(lambda: stats.punch_failed == 1, "the silent caller's punch failed")
        assert stats.errors == 0


async def test_a_hub_that_cannot_listen_is_counted_and_the_node_goes_on() -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        async with contextlib.AsyncExitStack() as stack:
            _server, url = await stack.enter_async_context(hub())
            seed = await stack.enter_async_context(Node(NodeConfig(listen_addr="127.0.0.1:0")))
            addr = "{}:{}".format(*taken.getsockname())
            node = await stack.enter_async_context(
                _node(
                    "{}:{}".format(*seed.local_addr),
                    serve_hub="on",
                    hub_listen_addr=addr,
                    hubs=(url,),
                )
            )
            stats = node.traversal_statistics()
            assert stats is not None
            await until(lambda: stats.hub_serve_errors == 1, "the hub's listen failed")
            # the configured hub still works; no own hub is registered or published
            await until(lambda: node.signal_hubs() == (url,), "registered with the other hub")
            got = await record_of(seed, node.aid, lambda p: p.signal == url)
            assert got.signals == (url,)
            assert stats.last_error.startswith(f"hub at {taken.getsockname()}: ")
    finally:
        taken.close()


_BRICKS = ("a2al_mcp.signal", "a2al_mcp.ice", "a2al_mcp.node.traversal", "aioice", "wsproto")


def _bricks_loaded(signal_table: str) -> list[str]:
    """Open a node (``signal=…`` given as Python source) in a fresh interpreter; which of
    :data:`_BRICKS` it loaded."""
    code = f"""
import sys
import anyio
from a2al_mcp import NodeConfig
from a2al_mcp.config import SignalConfig
from a2al_mcp.node import Node

async def main() -> None:
    async with Node(NodeConfig(listen_addr="127.0.0.1:0", signal={signal_table})):
        await anyio.sleep(0.2)

anyio.run(main)
print(sorted(m for m in {_BRICKS!r} if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)  # fmt: skip
    loaded: list[str] = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    return loaded


def test_the_bricks_load_only_when_traversal_is_configured() -> None:
    assert _bricks_loaded("SignalConfig()") == []
    assert _bricks_loaded('SignalConfig(hubs=("ws://127.0.0.1:9",))') == sorted(_BRICKS)
