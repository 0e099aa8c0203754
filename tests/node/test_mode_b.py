"""Mode B on loopback (a2al-wire §4.11; a2al_mcp.node.mode_b): two of our nodes joined by a
Mode-B connection over an in-memory datagram path (the ICE pair's stand-in), DHT messages over
QUIC streams both ways with the answers on new streams; a2ald 0.3.5's misrouted raw streams on
Mode-A connections to the node AID; the limits. The hubs and ICE that bring such a connection
up run in the NAT testbed (tests/nat/test_mode_b.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import pytest

from a2al_mcp import Identity, NodeConfig, SystemRng
from a2al_mcp._types import Addr
from a2al_mcp.config import DhtConfig
from a2al_mcp.node import Node
from a2al_mcp.node.mode_b import MAX_MESSAGE, ModeB
from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.transport.peer import PeerConnection, PeerStream
from tests.unit.ice.quic_over_link import MemoryLink, link_pair

pytestmark = pytest.mark.anyio

WAIT_S = 20.0


@contextlib.contextmanager
def silent_udp() -> Iterator[Addr]:
    """An address where nothing ever answers UDP (a socket that never reads): a NATed
    peer's published address, as far as the DHT can tell."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()


async def until(check: Callable[[], object]) -> None:
    """Poll ``check`` (counters change without telling anyone)."""
    with anyio.fail_after(5):
        while not check():  # noqa: ASYNC110
            await anyio.sleep(0.01)


@dataclasses.dataclass
class Pair:
    a: Node
    b: Node
    a_pc: PeerConnection
    """A's dialled Mode-B connection to B's node."""
    b_pc: PeerConnection
    """B's accepted one."""


def mode_b(node: Node) -> ModeB:
    held = node._mode_b
    assert held is not None
    return held


@contextlib.asynccontextmanager
async def nodes(dht: DhtConfig | None = None) -> AsyncIterator[tuple[Node, Node]]:
    cfg = NodeConfig(listen_addr="127.0.0.1:0", dht=dht or DhtConfig())
    async with Node(cfg) as a, Node(cfg) as b:
        yield a, b


@contextlib.asynccontextmanager
async def connect(a: Node, b: Node, aliases: tuple[Addr, ...] = ()) -> AsyncIterator[Pair]:
    """A dials B's node over a fresh in-memory link with no route frame, as HubCaller does
    over an ICE pair; B accepts it as CalleeTraversal does for a call to its node AID."""
    assert a._quic is not None and b._quic is not None and a._certs is not None
    with link_pair() as (link_a, link_b):
        yield await _connect(a, b, link_a, link_b, aliases)


async def _connect(a: Node, b: Node, link_a: MemoryLink, link_b: MemoryLink,
                   aliases: tuple[Addr, ...]) -> Pair:  # fmt: skip
    assert a._quic is not None and b._quic is not None and a._certs is not None
    path = b._quic.accept_path(link_b, remote=("127.0.0.1", 2), dht_only=True)
    a_pc = a._quic.dial(a._certs.get(a.aid), b.aid, ("127.0.0.1", 1), path=link_a,
                        dht_only=True)  # fmt: skip
    await a_pc.wait_ready()
    b_pc = await path.wait_connection()
    await b_pc.wait_ready()
    assert mode_b(a).adopt(a_pc, aliases, dialled=True)
    assert mode_b(b).adopt(b_pc)
    return Pair(a, b, a_pc, b_pc)


async def test_dht_messages_cross_a_mode_b_connection_both_ways() -> None:
    with anyio.fail_after(WAIT_S), silent_udp() as nated:
        async with nodes() as (a, b), contextlib.AsyncExitStack() as stack:
            p = await stack.enter_async_context(connect(a, b, aliases=(nated,)))
            assert not p.a_pc.session.routed and not p.b_pc.session.routed
            assert mode_b(a).connected(b.aid) is p.a_pc
            assert nated in mode_b(a).routes()
            # A -> B: a PING to B's (silent) UDP address goes over QUIC; B's answer comes
            # back on a new stream of B's and matches the query
            assert a._dht is not None and b._dht is not None
            pong = await a._dht.ping(nated)
            assert pong.ok and pong.aid == b.aid
            # B -> A: B reaches A at the address it sees A's messages come from (the ICE
            # pair's remote address; the link's stand-in here)
            assert p.b_pc.path is not None and p.b_pc.path.remote is not None
            back = await b._dht.ping(p.b_pc.path.remote)
            assert back.ok and back.aid == a.aid
            sa, sb = mode_b(a).stats, mode_b(b).stats
            assert sa.dialled == 1 and sb.accepted == 1
            assert sa.messages_out >= 2 and sa.messages_in >= 2  # ping, pong; B's ping, pong
            assert sb.messages_out >= 2 and sb.messages_in >= 2
            assert sa.malformed == sb.malformed == 0
            # what a Mode-B peer reports as our address (its view of our ICE socket, here the
            # link's stand-in) is no NAT vote
            for node, link_remote in ((a, p.a_pc.path), (b, p.b_pc.path)):
                assert link_remote is not None
                votes = [addr for addr, _ in node._nat_service().observed.ranked()]
                assert link_remote.addr not in votes and ("127.0.0.1", 1) not in votes
                assert ("127.0.0.1", 2) not in votes
            # every message was its own stream, closed both ways: nothing lingers
            await until(lambda: not (p.a_pc.session.stream_count or p.b_pc.session.stream_count))
            # the connection closing takes its routes with it
            p.a_pc.close()
            await until(lambda: not (mode_b(a).routes() or mode_b(b).routes()))
            assert mode_b(a).connected(b.aid) is None
            assert mode_b(a).stats.connections == 0


async def test_a_mode_b_stream_must_carry_its_peers_signed_message() -> None:
    with anyio.fail_after(WAIT_S):
        async with nodes(DhtConfig(mode_b_read_timeout_s=0.5)) as (a, b), connect(a, b) as p:
            stranger = Identity.generate(SystemRng())
            foreign = dm.encode_message(dm.Ping(address=stranger.aid), tx_id=os.urandom(20),
                                        key=stranger.key)  # fmt: skip
            for payload in (b"\xa4not a message", foreign, b"\xa4" * (MAX_MESSAGE + 10)):
                stream = await p.a_pc.open_stream(admission=False)
                await stream.send(payload)
                await stream.send_eof()
            slow = await p.a_pc.open_stream(admission=False)
            await slow.send(b"\xa4" * 10)  # and never FIN
            sb = mode_b(b).stats
            await until(lambda: not (sb.malformed < 3 or sb.read_timeouts < 1))
            assert sb.messages_in == 0
            # the connection survives all of it
            assert a._dht is not None
            assert p.a_pc.path is not None and p.a_pc.path.remote is not None
            assert (await a._dht.ping(p.a_pc.path.remote)).ok


async def test_misrouted_raw_stream_to_the_node_aid_reaches_the_dht() -> None:
    with anyio.fail_after(WAIT_S):
        async with nodes() as (a, b):
            assert a._quic is not None and a._certs is not None
            pc = a._quic.dial(a._certs.get(a.aid), b.aid, b.local_addr)  # Mode A, route b
            await pc.wait_ready()
            before = b.status().dht
            ping = dm.encode_message(dm.Ping(address=a.aid), tx_id=os.urandom(20),
                                     key=a.identity.key)  # fmt: skip
            stream = await pc.open_stream(admission=False)
            await stream.send(ping)
            await stream.send_eof()
            http = await pc.open_stream(admission=False)
            await http.send(b"GET / HTTP/1.1\r\n\r\n")
            await http.send_eof()
            sb = mode_b(b).stats
            await until(lambda: not (sb.misrouted < 1 or sb.malformed < 1))
            assert b.status().dht.received > before.received  # handed to the core


async def test_mode_b_connections_are_bounded() -> None:
    with anyio.fail_after(WAIT_S):
        async with nodes(DhtConfig(mode_b_max_connections=1)) as (a, b), connect(a, b):
            assert a._quic is not None and b._quic is not None and a._certs is not None
            with link_pair() as (link_a, link_b):
                path = b._quic.accept_path(link_b, dht_only=True)
                pc = a._quic.dial(a._certs.get(a.aid), b.aid, ("127.0.0.1", 1), path=link_a,
                                  dht_only=True)  # fmt: skip
                await pc.wait_ready()
                assert not mode_b(a).adopt(pc, dialled=True)  # closed at once
                assert pc.closed
                assert mode_b(a).stats.refused == 1 and mode_b(a).stats.connections == 1
                del path


async def test_a_routed_connection_to_the_node_aid_is_told_from_mode_b_by_its_stream_0() -> None:
    """A call to the node AID may bring a Mode-A connection to the node's own service: the
    route frame on stream 0 makes it one, and its streams are served, not read as DHT."""

    async def echo(stream: PeerStream) -> None:
        await stream.send(await stream.receive())

    with anyio.fail_after(WAIT_S):
        async with nodes() as (a, b):
            b.serve(handler=echo)
            assert a._quic is not None and b._quic is not None and a._certs is not None
            with link_pair() as (link_a, link_b):
                path = b._quic.accept_path(link_b, dht_only=True)
                pc = a._quic.dial(a._certs.get(a.aid), b.aid, ("127.0.0.1", 1), path=link_a)
                stream = await pc.open_stream()
                await stream.send(b"hello")
                assert await stream.receive() == b"hello"
                accepted = await path.wait_connection()
                assert accepted.session.routed is True and pc.session.routed is True
                assert mode_b(b).stats.accepted == 0 and mode_b(b).stats.malformed == 0
