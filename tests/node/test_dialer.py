"""Dialer (node/dialer.py) alone: a Connector over a real QUIC service on loopback, a resolver
given by the test, and an accepting QUIC service answering through an Acceptor. No Node."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from anyio import EndOfStream

from a2al_mcp import SystemRng
from a2al_mcp._clock import SystemClock
from a2al_mcp.errors import (
    HandshakeFailed,
    NodeClosed,
    NotFound,
    RequestTimeout,
    Unreachable,
    UsageError,
)
from a2al_mcp.identity import Identity
from a2al_mcp.identity.aid import Aid
from a2al_mcp.node.connect import Connector
from a2al_mcp.node.dialer import Dialer
from a2al_mcp.node.http import HttpRequest, HttpResponse
from a2al_mcp.node.serving import Acceptor
from a2al_mcp.protocol.session_frames import MailboxFrame
from a2al_mcp.transport.peer import InboundHandlers, PeerStream
from tests.node.quicpeer import QuicPeer, quic_peer

pytestmark = pytest.mark.anyio

WAIT_S = 20.0


async def echo(stream: PeerStream) -> None:
    try:
        while True:
            await stream.send(await stream.receive())
    except EndOfStream:
        pass


@dataclasses.dataclass(frozen=True)
class Found:
    endpoints: tuple[str, ...]


class Resolver:
    """The DHT as the dialer sees it: AID -> endpoint URLs, with the calls counted."""

    def __init__(self) -> None:
        self.records: dict[Aid, tuple[str, ...]] = {}
        self.calls: list[Aid] = []

    async def __call__(self, aid: Aid) -> Found:
        self.calls.append(aid)
        if aid not in self.records:
            raise NotFound(f"no endpoint record for {aid}", aid=aid, operation="resolve")
        return Found(self.records[aid])


@dataclasses.dataclass
class Setup:
    dialer: Dialer
    resolver: Resolver
    client: QuicPeer
    server: QuicPeer
    acceptor: Acceptor
    agent: Identity
    """A second local identity of the dialling side."""
    open: list[bool]


def _handlers(acceptor: Acceptor) -> InboundHandlers:
    async def no_mail(local: Aid | None, frame: MailboxFrame) -> bool:
        return False

    return acceptor.handlers(agent_info=lambda aid, seq: [], note_observed=lambda a: None,
                             cache_record=lambda k, r: None, on_mailbox=no_mail)  # fmt: skip


@contextlib.asynccontextmanager
async def setup(*, timeout_s: float = 10.0) -> AsyncIterator[Setup]:
    me, agent = Identity.generate(SystemRng()), Identity.generate(SystemRng())
    acceptor = Acceptor(identities={me.aid: me}, node_aid=me.aid)
    async with (
        quic_peer(_handlers(acceptor), identity=me) as server,
        quic_peer(also=(agent,)) as client,
    ):
        local = {client.identity.aid: client.identity, agent.aid: agent}

        def identity(aid: Aid | None) -> Identity:
            if aid is None:
                return client.identity
            if aid not in local:
                raise UsageError(f"{aid} is not a local identity")
            return local[aid]

        is_open = [True]

        def check_open() -> None:
            if not is_open[0]:
                raise NodeClosed("the node is closed")

        resolver = Resolver()
        resolver.records[me.aid] = (server.url,)
        connector = Connector(client.service, now=SystemClock().monotonic, ipv6=False)
        dialer = Dialer(connector, identity=identity, resolve=resolver,
                        task_group=client.task_group, check_open=check_open,
                        handshake_timeout_s=timeout_s)  # fmt: skip
        try:
            yield Setup(dialer, resolver, client, server, acceptor, agent, is_open)
        finally:
            await dialer.aclose()


@contextlib.contextmanager
def silent_udp() -> Iterator[str]:
    """A ``quic://`` URL on loopback where nothing ever answers (a bound socket that never
    reads, so not even an ICMP error comes back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield "quic://{}:{}".format(*s.getsockname())


async def test_connects_to_the_resolved_endpoint_and_pools_the_connection() -> None:
    with anyio.fail_after(WAIT_S):
        async with setup() as t:
            t.acceptor.serve(t.server.identity.aid, handler=echo)
            pc = await t.dialer.connect(t.server.identity.aid)
            assert pc.ready and pc.peer_aid == t.server.identity.aid
            assert pc.local_aid == t.client.identity.aid and pc.addr == t.server.addr
            assert await t.dialer.connect(t.server.identity.aid) is pc  # pooled
            assert t.resolver.calls == [t.server.identity.aid]  # resolved once
            assert t.dialer.connections() == [pc]
            stream = await t.dialer.open_stream(t.server.identity.aid)
            await stream.send(b"ping")
            assert await stream.receive() == b"ping"
            await stream.aclose()


async def test_a_local_agent_dials_with_its_own_certificate() -> None:
    callers: list[Aid] = []

    async def who(stream: PeerStream) -> None:
        callers.append(stream.peer)
        await stream.aclose()

    with anyio.fail_after(WAIT_S):
        async with setup() as t:
            t.acceptor.serve(t.server.identity.aid, handler=who)
            pc = await t.dialer.connect(t.server.identity.aid, local=t.agent.aid)
            assert pc.local_aid == t.agent.aid
            s = await t.dialer.open_stream(t.server.identity.aid, local=t.agent.aid)
            with pytest.raises(EndOfStream):
                await s.receive()
            assert callers == [t.agent.aid]
            with pytest.raises(UsageError):
                await t.dialer.connect(t.server.identity.aid, local=t.server.identity.aid)


async def test_given_endpoints_skip_the_resolver_and_a_dead_url_falls_through() -> None:
    with anyio.fail_after(WAIT_S), silent_udp() as dead:
        async with setup() as t:
            aid = t.server.identity.aid
            pc = await t.dialer.connect(aid, endpoints=[dead, t.server.url])
            assert pc.ready and pc.addr == t.server.addr
            assert t.resolver.calls == []
            pc.close()
            t.resolver.records[aid] = (dead, t.server.url)  # the same through the resolver
            again = await t.dialer.connect(aid)
            assert again is not pc and again.ready and again.addr == t.server.addr
            assert t.resolver.calls == [aid]


async def test_errors_name_the_aid_and_keep_their_cause() -> None:
    stranger = Identity.generate(SystemRng()).aid
    with anyio.fail_after(WAIT_S), silent_udp() as dead:
        async with setup(timeout_s=0.5) as t:
            with pytest.raises(NotFound) as nf:  # the resolver's error, unchanged
                await t.dialer.connect(stranger)
            assert nf.value.aid == stranger

            impostor = Identity.generate(SystemRng()).aid  # the server cannot prove it
            with pytest.raises(HandshakeFailed) as hf:
                await t.dialer.connect(impostor, endpoints=[t.server.url])
            assert hf.value.aid == impostor and hf.value.operation == "connect"
            assert isinstance(hf.value.__cause__, HandshakeFailed)
            with pytest.raises(Unreachable) as backoff:  # failed just now: backing off
                await t.dialer.connect(impostor, endpoints=[t.server.url])
            assert backoff.value.aid == impostor

            silent = Identity.generate(SystemRng()).aid
            t.resolver.records[silent] = (dead,)
            with pytest.raises(RequestTimeout) as rt:
                await t.dialer.connect(silent)
            assert rt.value.aid == silent and rt.value.operation == "connect"


async def test_backing_off_yields_to_a_record_that_changed() -> None:
    """After a failed dial the AID is backed off, but only while its record is the one that
    failed: an agent that comes back publishes another record, which is dialled at once."""
    with anyio.fail_after(WAIT_S), silent_udp() as dead:
        async with setup(timeout_s=0.5) as t:
            aid = t.server.identity.aid
            with pytest.raises(RequestTimeout):
                await t.dialer.connect(aid, endpoints=[dead])
            with pytest.raises(Unreachable, match="failed recently"):  # the same record
                await t.dialer.connect(aid, endpoints=[dead])
            pc = await t.dialer.connect(aid, endpoints=[dead, t.server.url])  # it came back
            assert pc.ready and pc.addr == t.server.addr


async def test_fetch_and_its_timeout() -> None:
    async def hello(req: HttpRequest) -> HttpResponse:
        if req.path == "/slow":
            await anyio.sleep_forever()
        return HttpResponse(200, (("content-type", "text/plain"),), f"hi {req.caller}".encode())

    with anyio.fail_after(WAIT_S):
        async with setup() as t:
            aid = t.server.identity.aid
            t.acceptor.serve(aid, http=hello)
            resp = await t.dialer.fetch(aid, "GET", "/")
            assert (resp.status, resp.text) == (200, f"hi {t.client.identity.aid}")
            with pytest.raises(RequestTimeout) as rt:
                await t.dialer.fetch(aid, "GET", "/slow", timeout_s=0.5)
            assert rt.value.aid == aid and rt.value.operation == "fetch"
            assert isinstance(rt.value.__cause__, TimeoutError)
            with pytest.raises(RequestTimeout) as head:
                await t.dialer.request(aid, "GET", "/slow", timeout_s=0.5)
            assert head.value.aid == aid and head.value.operation == "request"


async def test_a_tunnel_bridges_each_tcp_connection_to_a_stream() -> None:
    with anyio.fail_after(WAIT_S):
        async with setup() as t:
            aid = t.server.identity.aid
            t.acceptor.serve(aid, handler=echo)
            tunnel = await t.dialer.tunnel(aid)
            for _ in range(2):
                async with await anyio.connect_tcp(*tunnel.addr) as tcp:
                    await tcp.send(b"hello")
                    assert await tcp.receive() == b"hello"
            assert t.dialer.tunnels() == [tunnel] and tunnel.connections == 2
            await t.dialer.aclose()
            for _ in range(500):  # the listener's task ends on its next turn
                if tunnel.closed:
                    break
                await anyio.sleep(0.01)
            assert t.dialer.tunnels() == [] and t.dialer.tunnel_errors == 0


async def test_a_closed_owner_refuses_to_dial() -> None:
    with anyio.fail_after(WAIT_S):
        async with setup() as t:
            t.open[0] = False
            with pytest.raises(NodeClosed):
                await t.dialer.connect(t.server.identity.aid)
            with pytest.raises(NodeClosed):
                t.dialer.connections()
            assert t.resolver.calls == []
