"""NAT sensing wired into real nodes on loopback: a STUN server in the test (answering with
an address the test chooses, as a NAT would rewrite it), a seed and peers that are real
nodes, and the endpoint record read back from the DHT by another node.

Nothing leaves 127.0.0.1: the STUN server, the seed and every node live on loopback; the
"public" address the STUN server reports (203.0.113.0/24, TEST-NET-3) is only written into
records, never sent to.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Callable

import anyio
import anyio.abc
import pytest
from aioice import stun

from a2al_mcp import Node, NodeConfig
from a2al_mcp._types import Addr
from a2al_mcp.config import NatConfig
from a2al_mcp.errors import NotFound, UsageError
from a2al_mcp.identity.aid import Aid
from a2al_mcp.node.status import ResolvedEndpoint
from a2al_mcp.protocol.payloads import EndpointPayload

pytestmark = pytest.mark.anyio

WAIT_S = 15.0
PUBLIC_A: Addr = ("203.0.113.5", 40000)
PUBLIC_B: Addr = ("203.0.113.77", 40123)


class StunServer:
    """A STUN Binding responder on 127.0.0.1 whose XOR-MAPPED-ADDRESS is ``mapped`` (None:
    it drops requests, like a server that cannot be reached)."""

    def __init__(self) -> None:
        self.mapped: Addr | None = None
        self.drop_first = 0
        """Requests dropped before answering (the client's retransmission is answered)."""
        self.requests = 0
        self.answered = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.setblocking(False)

    @property
    def addr(self) -> str:
        host, port = self._sock.getsockname()
        return f"{host}:{port}"

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        while True:
            await anyio.wait_readable(self._sock)
            try:
                data, source = self._sock.recvfrom(2048)
            except BlockingIOError:
                continue
            self.requests += 1
            if self.mapped is None or self.requests <= self.drop_first:
                continue
            request = stun.parse_message(data)
            answer = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE,
                                  transaction_id=request.transaction_id)  # fmt: skip
            answer.attributes["XOR-MAPPED-ADDRESS"] = self.mapped
            self._sock.sendto(bytes(answer), source)
            self.answered += 1

    def close(self) -> None:
        self._sock.close()


@contextlib.asynccontextmanager
async def network(peers: int = 3) -> AsyncIterator[tuple[StunServer, list[Node], str]]:
    """A STUN server and ``peers`` real nodes joined through the first one."""
    server = StunServer()
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(server.close)
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)
        await tg.start(server.serve)
        seed = await stack.enter_async_context(Node(NodeConfig()))
        seed_addr = f"127.0.0.1:{seed.local_addr[1]}"
        nodes = [seed]
        for _ in range(peers - 1):
            nodes.append(await stack.enter_async_context(Node(NodeConfig(bootstrap=(seed_addr,)))))
        yield server, nodes, seed_addr


async def resolved(node: Node, aid: Aid, want: str, nat_type: int) -> ResolvedEndpoint:
    """Resolve ``aid`` from ``node`` until its record's first URL is ``want`` with
    ``nat_type`` (the test's overall deadline bounds it)."""
    for _ in range(int(WAIT_S / 0.1)):
        with contextlib.suppress(NotFound):
            found = await node.resolve(aid)
            if found.endpoints[:1] == (want,) and found.nat_type == nat_type:
                return found
        await anyio.sleep(0.1)
    raise AssertionError(f"no record of {aid} with {want} and nat_type {nat_type}")


async def until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` (the node's status) until it holds; the caller's deadline bounds it."""
    for _ in range(int(WAIT_S / 0.05)):
        if predicate():
            return
        await anyio.sleep(0.05)
    raise AssertionError("the condition never held")


def nat_config(server: StunServer, **extra: object) -> NatConfig:
    return NatConfig(stun_servers=(server.addr,), **extra)  # type: ignore[arg-type]


async def test_a_wildcard_bind_says_plainly_why_it_cannot_publish_yet() -> None:
    async with Node(NodeConfig(listen_addr="0.0.0.0:0")) as node:
        with pytest.raises(UsageError, match="no peer or STUN server has told it") as err:
            await node.publish()
        assert "advertise" in str(err.value) and "nat.stun_servers" in str(err.value)
        assert node.status().published == ()
        assert node.status().nat.published_endpoints == ()


async def test_stun_tells_a_wildcard_bound_node_what_to_publish_without_advertise() -> None:
    async with network() as (server, peers, seed_addr):
        server.mapped = PUBLIC_A
        cfg = NodeConfig(listen_addr="0.0.0.0:0", bootstrap=(seed_addr,), nat=nat_config(server))
        async with Node(cfg) as node:
            with anyio.fail_after(WAIT_S):
                await until(lambda: bool(node.status().nat.public_addrs))
            st = node.status().nat
            assert st.public_addrs == (PUBLIC_A,)
            assert st.published_endpoints == ("quic://203.0.113.5:40000",)
            assert st.nat_type == 3 and st.nat_type_words == "port-restricted"
            assert not st.reachable_directly
            record = await node.publish()
            payload = EndpointPayload.from_bytes(record.payload)
            assert payload.endpoints == ("quic://203.0.113.5:40000",) and payload.nat_type == 3
            with anyio.fail_after(WAIT_S):
                await resolved(peers[1], node.aid, "quic://203.0.113.5:40000", 3)
        assert server.answered >= 1


async def test_auto_publish_puts_the_record_in_the_dht_by_itself() -> None:
    async with network() as (server, peers, seed_addr):
        server.mapped = PUBLIC_A
        cfg = NodeConfig(listen_addr="0.0.0.0:0", bootstrap=(seed_addr,), nat=nat_config(server))
        async with Node(cfg, auto_publish=True) as node:
            with anyio.fail_after(WAIT_S):
                found = await resolved(peers[2], node.aid, "quic://203.0.113.5:40000", 3)
            assert found.endpoints == ("quic://203.0.113.5:40000",)
            assert node.status().published == (node.aid,)


async def test_the_first_auto_published_record_waits_for_the_stun_answer_under_way() -> None:
    """The STUN server answers only the retransmission (~0.5 s after the node's start, after
    the join): the node's first record waits for it (auto_publish.SETTLE_MAX_S) instead of
    going out with the bound address and being replaced a moment later, so a peer polling
    from the start never sees another record."""
    async with network() as (server, peers, seed_addr):
        server.mapped = PUBLIC_A
        server.drop_first = 1
        cfg = NodeConfig(bootstrap=(seed_addr,), nat=nat_config(server))
        seen: list[tuple[str, ...]] = []
        async with Node(cfg, auto_publish=True) as node:
            with anyio.fail_after(WAIT_S):
                for _ in range(int(WAIT_S / 0.02)):
                    with contextlib.suppress(NotFound):
                        seen.append((await peers[1].resolve(node.aid)).endpoints)
                        if len(seen) >= 5:
                            break
                    await anyio.sleep(0.02)
        assert server.requests >= 2  # the first request really went unanswered
        assert seen and all(urls[:1] == ("quic://203.0.113.5:40000",) for urls in seen), seen


async def test_auto_publish_off_in_the_configuration_keeps_the_node_unlisted() -> None:
    async with network() as (server, peers, seed_addr):
        server.mapped = PUBLIC_A
        cfg = NodeConfig(bootstrap=(seed_addr,), nat=nat_config(server), auto_publish=False)
        async with Node(cfg, auto_publish=True) as node:
            with anyio.fail_after(WAIT_S):
                await until(lambda: bool(node.status().nat.public_addrs))
            assert node.status().published == ()
            with pytest.raises(NotFound):
                await peers[1].resolve(node.aid)


async def test_a_new_address_is_republished_at_once_with_every_published_identity() -> None:
    async with network() as (server, peers, seed_addr):
        cfg = NodeConfig(bootstrap=(seed_addr,), nat=nat_config(server, stun_interval_s=0.5))
        async with Node(cfg, auto_publish=True) as node:
            agent = node.create_agent().identity
            reader = peers[1]
            local = f"quic://127.0.0.1:{node.local_addr[1]}"
            with anyio.fail_after(WAIT_S):
                # the peers see the node at its own address: a LAN, no NAT on the path
                await resolved(reader, node.aid, local, 1)
            await node.publish(agent.aid)
            server.mapped = PUBLIC_A  # the STUN server now answers: behind a NAT after all
            with anyio.fail_after(WAIT_S):
                first = await resolved(reader, node.aid, "quic://203.0.113.5:40000", 3)
                await resolved(reader, agent.aid, "quic://203.0.113.5:40000", 3)
            assert first.endpoints == ("quic://203.0.113.5:40000",)  # no private address beside it
            server.mapped = PUBLIC_B  # a new network: another public address
            with anyio.fail_after(WAIT_S):
                again = await resolved(reader, node.aid, "quic://203.0.113.77:40123", 3)
            assert again.seq > first.seq
            assert node.status().nat.public_addrs == (PUBLIC_B,)


async def test_status_shows_where_the_node_stands_on_a_loopback_network() -> None:
    async with (
        network() as (_server, _peers, seed_addr),
        Node(NodeConfig(bootstrap=(seed_addr,))) as node,
    ):
        with anyio.fail_after(WAIT_S):
            await until(lambda: node.status().nat.nat_type != 0)
        st = node.status()
        assert st.nat.nat_type == 1 and st.nat.public_addrs == ()
        assert st.nat.published_endpoints == (f"quic://127.0.0.1:{node.local_addr[1]}",)
        assert any("own address" in line for line in st.nat.evidence)
        assert st.observed_addrs and st.observed_addrs[0][0] == node.local_addr
