"""Acceptor (node/serving.py) alone: its hooks in a real QUIC service on loopback, no Node.

The accepting side is a QuicService whose InboundHandlers come from an Acceptor; the
dialling side is a bare QuicService. What the Acceptor needs of a node (observed address,
record cache, mailbox, AgentInfo) is recorded by the test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import anyio
import pytest
from anyio import EndOfStream

from a2al_mcp import SystemRng
from a2al_mcp._types import Addr
from a2al_mcp.errors import (
    AccessDenied,
    ConfigError,
    ConnectionClosed,
    HandshakeFailed,
    UsageError,
)
from a2al_mcp.identity import Identity
from a2al_mcp.identity.aid import Aid, NodeId
from a2al_mcp.node.serving import Acceptor
from a2al_mcp.protocol.payloads import TopicPayload, topic_key
from a2al_mcp.protocol.records import RecType, SignedRecord
from a2al_mcp.protocol.session_frames import MailboxFrame
from a2al_mcp.transport.peer import InboundHandlers, PeerConnection, PeerStream
from a2al_mcp.transport.session import ERR_ACCESS_DENIED
from tests.node.quicpeer import QuicPeer, quic_peer

pytestmark = pytest.mark.anyio

WAIT_S = 20.0


async def echo(stream: PeerStream) -> None:
    try:
        while True:
            await stream.send(await stream.receive())
    except EndOfStream:
        pass


class Hooks:
    """What the acceptor hands to the node, recorded."""

    def __init__(self, agent_info: list[bytes] | None = None, mail_ok: bool = True) -> None:
        self.observed: list[Addr] = []
        self.cached: list[tuple[NodeId, SignedRecord]] = []
        self.mail: list[tuple[Aid | None, MailboxFrame]] = []
        self._agent_info = agent_info or []
        self.mail_ok = mail_ok

    def handlers(self, acceptor: Acceptor) -> InboundHandlers:
        async def on_mailbox(local: Aid | None, frame: MailboxFrame) -> bool:
            self.mail.append((local, frame))
            return self.mail_ok

        return acceptor.handlers(agent_info=lambda aid, seq: list(self._agent_info),
                                 note_observed=self.observed.append,
                                 cache_record=lambda k, r: self.cached.append((k, r)),
                                 on_mailbox=on_mailbox)  # fmt: skip


def _acceptor(*identities: Identity) -> Acceptor:
    return Acceptor(identities={i.aid: i for i in identities}, node_aid=identities[0].aid)


def _new() -> Identity:
    return Identity.generate(SystemRng())


async def _until(cond: Callable[[], bool]) -> None:
    for _ in range(1000):  # WAIT_S bounds it too
        if cond():
            return
        await anyio.sleep(0.01)
    raise AssertionError("the condition never held")


async def _dial(client: QuicPeer, server: QuicPeer, aid: Aid | None = None) -> PeerConnection:
    pc = client.service.dial(client.cert(), aid or server.identity.aid, server.addr)
    await pc.wait_ready()
    return pc


async def test_serves_a_stream_to_the_verified_caller_and_unserve_refuses_the_next() -> None:
    callers: list[Aid] = []

    async def handler(stream: PeerStream) -> None:
        callers.append(stream.peer)
        await echo(stream)

    me = _new()
    acceptor = _acceptor(me)
    hooks = Hooks()
    with anyio.fail_after(WAIT_S):
        async with (
            quic_peer(hooks.handlers(acceptor), identity=me) as server,
            quic_peer() as client,
        ):
            acceptor.serve(me.aid, handler=handler)
            assert acceptor.serving() == (me.aid,)
            pc = await _dial(client, server)
            stream = await pc.open_stream()
            await stream.send(b"ping")
            assert await stream.receive() == b"ping"
            await stream.aclose()
            assert callers == [client.identity.aid]

            acceptor.remove(me.aid)
            assert acceptor.serving() == ()
            with pytest.raises(AccessDenied) as info:
                await pc.open_stream()
            assert info.value.reason == "no service here"
            assert not pc.closed  # refusing a stream leaves the connection up


async def test_a_route_to_an_aid_that_is_not_local_is_refused() -> None:
    me, other = _new(), _new()
    acceptor = _acceptor(me)  # the socket holds a certificate for `other` but does not act as it
    with anyio.fail_after(WAIT_S):
        async with (
            quic_peer(Hooks().handlers(acceptor), identity=me, also=(other,)) as server,
            quic_peer() as client,
        ):
            acceptor.serve(me.aid, handler=echo)
            pc = client.service.dial(client.cert(), other.aid, server.addr)
            with contextlib.suppress(HandshakeFailed):  # closed before or after it confirms
                await pc.wait_ready()
            await _until(lambda: pc.closed)
            assert server.service.refused_connections == 1
            ok = await _dial(client, server)  # the served identity still answers
            s = await ok.open_stream()
            await s.send(b"x")
            assert await s.receive() == b"x"


async def test_handler_errors_end_only_their_stream() -> None:
    calls = 0

    async def flaky(stream: PeerStream) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("a handler bug")
        await echo(stream)

    me = _new()
    acceptor = _acceptor(me)
    with anyio.fail_after(WAIT_S):
        async with (
            quic_peer(Hooks().handlers(acceptor), identity=me) as server,
            quic_peer() as client,
        ):
            acceptor.serve(me.aid, handler=flaky)
            pc = await _dial(client, server)
            broken = await pc.open_stream()
            with pytest.raises((anyio.BrokenResourceError, ConnectionClosed, EndOfStream)):
                await broken.send(b"first")  # the handler may have failed already
                while True:
                    await broken.receive()
            fine = await pc.open_stream()
            await fine.send(b"second")
            assert await fine.receive() == b"second"
            assert not pc.closed and calls == 2


async def test_allow_deny_and_token() -> None:
    me = _new()
    acceptor = _acceptor(me)
    with anyio.fail_after(WAIT_S):
        async with (
            quic_peer(Hooks().handlers(acceptor), identity=me) as server,
            quic_peer() as a,
            quic_peer() as b,
        ):
            pa, pb = await _dial(a, server), await _dial(b, server)

            acceptor.serve(me.aid, handler=echo, allow=[a.identity.aid])
            await (await pa.open_stream()).aclose()
            with pytest.raises(AccessDenied) as info:
                await pb.open_stream()
            assert info.value.reason == "denied"

            acceptor.serve(me.aid, handler=echo, deny=[a.identity.aid])  # replaces the allow
            with pytest.raises(AccessDenied):
                await pa.open_stream()
            await (await pb.open_stream()).aclose()

            acceptor.serve(me.aid, handler=echo, token="s3cret")
            with pytest.raises(AccessDenied) as info:
                await pb.open_stream()
            assert info.value.reason == "access token required"
            s = await pb.open_stream("s3cret")
            await s.send(b"t")
            assert await s.receive() == b"t"


def test_serve_takes_exactly_one_way_to_answer() -> None:
    ident = _new()
    acceptor = _acceptor(ident)
    with pytest.raises(UsageError):
        acceptor.serve(ident.aid, handler=echo, service_tcp="127.0.0.1:80")
    with pytest.raises(UsageError):
        acceptor.serve(ident.aid)
    with pytest.raises(ConfigError):
        acceptor.serve(ident.aid, service_tcp="no-port")
    assert acceptor.serving() == ()
    serving = acceptor.serve(ident.aid, service_tcp="http://127.0.0.1:8080", deny=[ident.aid])
    assert serving.service_tcp == ("127.0.0.1", 8080)
    assert serving.allow is None and serving.deny == frozenset({ident.aid})
    assert acceptor.serving() == (ident.aid,)


def _topic(ident: Identity, topic: str) -> SignedRecord:
    payload = TopicPayload(topic=topic, name="n", brief="", protocols=("http",), tags=(), meta={})
    return SignedRecord.sign(ident, RecType.TOPIC, payload.to_bytes(), seq=1, timestamp=1,
                             ttl=600)  # fmt: skip


async def test_the_acceptors_stream0_answer_feeds_observed_address_and_its_own_records() -> None:
    me, you, stranger = _new(), _new(), _new()
    own = _topic(me, "demo.svc")
    forged = _topic(stranger, "demo.svc")  # valid, but not the acceptor's own
    server_hooks = Hooks(agent_info=[own.to_bytes(), forged.to_bytes(), b"\xffjunk"])
    client_hooks = Hooks()
    with anyio.fail_after(WAIT_S):
        async with (
            quic_peer(server_hooks.handlers(_acceptor(me)), identity=me) as server,
            quic_peer(client_hooks.handlers(_acceptor(you)), identity=you) as client,
        ):
            pc = await _dial(client, server)
            await _until(lambda: pc.peer_control is not None)
            assert client_hooks.observed == [client.addr]
            assert client_hooks.cached == [(NodeId(topic_key("demo.svc")), own)]


async def test_mailbox_frames_reach_the_node_with_the_routed_identity() -> None:
    frame = MailboxFrame(b"\x01" * 32, b"\xa0")
    me = _new()
    hooks = Hooks()
    with anyio.fail_after(WAIT_S):
        async with (
            quic_peer(hooks.handlers(_acceptor(me)), identity=me) as server,
            quic_peer() as client,
        ):
            pc = await _dial(client, server)
            await pc.send_mailbox(frame)  # acknowledged: the node kept it
            hooks.mail_ok = False
            with pytest.raises(ConnectionClosed) as info:
                await pc.send_mailbox(frame)
            assert info.value.error_code == ERR_ACCESS_DENIED
            assert hooks.mail == [(server.identity.aid, frame)] * 2
