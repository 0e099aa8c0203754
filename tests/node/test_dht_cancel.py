"""A resolve or discover whose caller gives up stops its operation in the DHT core.

A real Node on loopback joins through one scripted peer that answers every FIND_VALUE with
a dozen peers that never answer, so a lookup is still waiting on its first round when the
caller cancels it. Without the cancel, the core would move on to the next round at the
round's deadline. The proof counts the FIND_VALUEs for the lookup's target that reach the
silent peers until a witness operation started after the cancel (a bootstrap through a silent
seed) has timed out, which is later than every deadline of the cancelled lookup, and a marker
sent to each silent peer after that has been read: only the first round may have arrived.
(Counting per target keeps the node's own background lookups, its mailbox poll, out of it.)
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import anyio.abc
import pytest

from a2al_mcp import DelegatedIdentity, Identity, NodeConfig, SystemRng
from a2al_mcp.config import DhtConfig
from a2al_mcp.errors import RequestTimeout
from a2al_mcp.identity import NodeId
from a2al_mcp.node import Node
from a2al_mcp.protocol import dht_messages as dm
from a2al_mcp.protocol.payloads import topic_key

pytestmark = pytest.mark.anyio

RPC_S = 0.5
"""The node's lookup RPC deadline: short, so the witness ends soon."""
SILENT = 12
MARK = b"marker"


@dataclass
class Peers:
    seed: str
    silent: list[tuple[str, int]]
    asked: Counter[NodeId] = field(default_factory=Counter)
    """FIND_VALUEs the silent peers received, per target."""
    marks: int = 0
    changed: anyio.Event = field(default_factory=anyio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def asked_at_least(self, target: NodeId, n: int) -> None:
        while self.asked[target] < n:
            await self.changed.wait()


async def _answer(
    sock: anyio.abc.UDPSocket, ident: Identity, nodes: tuple[dm.NodeInfo, ...]
) -> None:
    async for data, addr in sock:
        msg = dm.decode_message(data)
        body: dm.Body
        match msg.body:
            case dm.Ping():
                body = dm.Pong(address=ident.aid, observed_addr=addr)
            case dm.FindNode():
                body = dm.FindNodeResp(nodes=(), observed_addr=addr)
            case dm.FindValue():
                body = dm.FindValueResp(nodes=nodes, observed_addr=addr)
            case _:
                continue
        await sock.sendto(dm.encode_message(body, tx_id=msg.tx_id, key=ident.key), *addr)


async def _listen(sock: anyio.abc.UDPSocket, peers: Peers) -> None:
    async for data, _ in sock:
        if data == MARK:
            peers.marks += 1
            peers.notify()
            continue
        body = dm.decode_message(data).body
        if isinstance(body, dm.FindValue):
            peers.asked[body.target] += 1
            peers.notify()


def _addr(sock: anyio.abc.UDPSocket) -> tuple[str, int]:
    local = sock.extra(anyio.abc.SocketAttribute.local_address)
    assert isinstance(local, tuple)
    return local[0], local[1]


@contextlib.asynccontextmanager
async def scripted_network() -> AsyncIterator[tuple[Node, Peers]]:
    rng = SystemRng()
    async with contextlib.AsyncExitStack() as stack:
        silent = []
        for _ in range(SILENT):
            sock = await anyio.create_udp_socket(local_host="127.0.0.1")
            silent.append(await stack.enter_async_context(sock))
        nodes = tuple(dm.NodeInfo.of(Identity.generate(rng).aid, _addr(s)) for s in silent)
        answering = await stack.enter_async_context(
            await anyio.create_udp_socket(local_host="127.0.0.1")
        )
        host, port = _addr(answering)
        peers = Peers(seed=f"{host}:{port}", silent=[n.addr for n in nodes])
        tg = await stack.enter_async_context(anyio.create_task_group())  # left before the sockets
        stack.callback(tg.cancel_scope.cancel)
        tg.start_soon(_answer, answering, Identity.generate(rng), nodes)
        for s in silent:
            tg.start_soon(_listen, s, peers)
        cfg = NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(peers.seed,),
                         dht=DhtConfig(lookup_rpc_timeout_s=RPC_S))  # fmt: skip
        node = await stack.enter_async_context(Node(cfg))
        assert node.status().peers == 1
        yield node, peers


async def _after_every_deadline(node: Node, peers: Peers) -> None:
    """Return once every deadline set before the call has passed in the node's core and
    what the node sent until then has been read by the silent peers."""
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
        host, port = _addr(sock)
        # the witness: started now, its own deadlines come after every earlier one
        with pytest.raises(RequestTimeout):
            await node.bootstrap([f"{host}:{port}"])
        marks = peers.marks
        for addr in peers.silent:  # behind whatever the node sent them before
            await sock.sendto(MARK, *addr)
        while peers.marks < marks + len(peers.silent):
            await peers.changed.wait()


async def _cancel_when_asked(
    call: Callable[[], Awaitable[object]], target: NodeId, peers: Peers, alpha: int
) -> None:
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                await call()
            assert scope.cancelled_caught

        tg.start_soon(run)
        await peers.asked_at_least(target, alpha)  # its first round is out, none answered
        scope.cancel()


async def test_cancelling_a_resolve_stops_its_lookup() -> None:
    with anyio.fail_after(30):
        async with scripted_network() as (node, peers):
            aid = DelegatedIdentity.generate(SystemRng(), issued_at=0).identity.aid
            alpha = node.config.dht.lookup_concurrency
            await _cancel_when_asked(lambda: node.resolve(aid), aid.node_id, peers, alpha)
            assert node.status().dht.cancelled_ops == 1  # it was still running
            await _after_every_deadline(node, peers)
            assert peers.asked[aid.node_id] == alpha  # the first round only


async def test_cancelling_a_discover_stops_its_lookup() -> None:
    with anyio.fail_after(30):
        async with scripted_network() as (node, peers):
            target = NodeId(topic_key("lang.translate"))
            alpha = node.config.dht.lookup_concurrency
            await _cancel_when_asked(lambda: node.discover("lang.translate"), target, peers,
                                     alpha)  # fmt: skip
            assert node.status().dht.cancelled_ops == 1
            await _after_every_deadline(node, peers)
            assert peers.asked[target] == alpha


@pytest.mark.parametrize("verb", ["resolve", "discover"])
async def test_a_caller_timeout_stops_the_lookup(verb: str) -> None:
    with anyio.fail_after(30):
        async with scripted_network() as (node, peers):
            aid = DelegatedIdentity.generate(SystemRng(), issued_at=0).identity.aid
            topic = "lang.translate"
            target = NodeId(topic_key(topic)) if verb == "discover" else aid.node_id
            call = node.discover(topic) if verb == "discover" else node.resolve(aid)
            with pytest.raises(TimeoutError):
                with anyio.fail_after(RPC_S / 5):  # well inside the first round's deadline
                    await call
            assert node.status().dht.cancelled_ops == 1
            await _after_every_deadline(node, peers)
            assert peers.asked[target] <= node.config.dht.lookup_concurrency
