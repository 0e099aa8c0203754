"""Real Nodes on loopback: verified QUIC connections, streams, fetch, tunnel, serving, ACLs."""

from __future__ import annotations

import anyio
import pytest
from anyio import EndOfStream

from a2al_mcp import DelegatedIdentity, SystemRng
from a2al_mcp.errors import AccessDenied, HandshakeFailed, NotFound, UsageError
from a2al_mcp.identity import Identity
from a2al_mcp.node.http import HttpRequest, HttpResponse
from a2al_mcp.transport.peer import PeerStream
from tests.node.loopnet import network, quic_url

pytestmark = pytest.mark.anyio


async def echo(stream: PeerStream) -> None:
    try:
        while True:
            await stream.send(await stream.receive())
    except EndOfStream:
        pass


async def hello(req: HttpRequest) -> HttpResponse:
    text = f"{req.method} {req.path} from {req.caller} to {req.local} body={req.body!r}"
    extra = req.header("x-a2al-caller", "stripped")
    return HttpResponse(200, (("content-type", "text/plain"), ("x-seen", extra or "")),
                        text.encode())  # fmt: skip


async def test_connect_is_mutually_verified_and_pooled() -> None:
    with anyio.fail_after(30):
        async with network(2, publish=True) as (a, b):
            b.serve(handler=echo)
            pc = await a.connect(b.aid)
            assert pc.peer_aid == b.aid and pc.local_aid == a.aid and pc.ready
            assert await a.connect(b.aid) is pc  # pooled
            stream = await a.open_stream(b.aid)
            await stream.send(b"ping")
            assert await stream.receive() == b"ping"
            await stream.aclose()
            inbound = [c for c in b.connections() if not c.is_dialer]
            assert [c.peer_aid for c in inbound] == [a.aid]
            # closed by us: the pool dials anew at once (QUIC's closing period still runs)
            pc.close()
            assert pc.closed
            again = await a.connect(b.aid)
            assert again is not pc and again.ready and not again.closed


async def test_fetch_reaches_an_in_process_http_handler_with_the_verified_caller() -> None:
    with anyio.fail_after(30):
        async with network(2, publish=True) as (a, b):
            b.serve(http=hello)
            resp = await a.fetch(b.aid, "POST", "/x?y=1", body=b"hi",
                                 headers=[("X-A2AL-Caller", "forged")])  # fmt: skip
            assert resp.status == 200
            assert resp.text == f"POST /x?y=1 from {a.aid} to {b.aid} body=b'hi'"
            assert resp.header("x-seen") == "stripped"  # a caller cannot claim an identity


async def test_delegated_identities_on_both_ends() -> None:
    with anyio.fail_after(30):
        async with network(2, publish=True) as (a, b):
            agent_a = DelegatedIdentity.generate(SystemRng(), issued_at=0).identity
            agent_b = DelegatedIdentity.generate(SystemRng(), issued_at=0).identity
            a.add_identity(agent_a)
            b.add_identity(agent_b)
            await b.publish(agent_b.aid)
            b.serve(agent_b.aid, http=hello)
            resp = await a.fetch(agent_b.aid, local=agent_a.aid)
            assert resp.text.startswith(f"GET / from {agent_a.aid} to {agent_b.aid}")
            # the node identity of b does not serve: refused with a clear error
            with pytest.raises(AccessDenied):
                await a.fetch(b.aid)


async def test_asgi_app() -> None:
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        body = (await receive())["body"]
        caller = scope["extensions"]["a2al"]["caller"]
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
        await send({"type": "http.response.body", "body": caller.encode() + b":" + body})

    with anyio.fail_after(30):
        async with network(2, publish=True) as (a, b):
            b.serve(app=app)
            resp = await a.fetch(b.aid, "PUT", "/p", body=b"data")
            assert (resp.status, resp.text) == (201, f"{a.aid}:data")


async def test_tunnel_and_service_tcp_bridge() -> None:
    async def tcp_echo(client: anyio.abc.SocketStream) -> None:
        async with client:
            try:
                while True:
                    await client.send(b"echo:" + await client.receive())
            except (EndOfStream, anyio.BrokenResourceError):
                pass

    with anyio.fail_after(30):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg, network(2, publish=True) as (a, b):
            tg.start_soon(listener.serve, tcp_echo)
            b.serve(service_tcp=f"127.0.0.1:{port}")
            tunnel = await a.tunnel(b.aid)
            for _ in range(3):  # every TCP connection is its own stream
                async with await anyio.connect_tcp(*tunnel.addr) as tcp:
                    await tcp.send(b"hello")
                    assert await tcp.receive() == b"echo:hello"
            assert tunnel.connections == 3 and a.tunnels() == [tunnel]
            await tunnel.aclose()
            tg.cancel_scope.cancel()


async def test_acl_and_token() -> None:
    with anyio.fail_after(30):
        async with network(3, publish=True) as (a, b, c):
            b.serve(handler=echo, allow=[a.aid])
            assert (await a.open_stream(b.aid)) is not None
            with pytest.raises(AccessDenied):
                await c.open_stream(b.aid)
            b.serve(handler=echo, deny=[a.aid])
            with pytest.raises(AccessDenied):
                await a.open_stream(b.aid)
            b.serve(handler=echo, token="s3cret")
            with pytest.raises(AccessDenied):
                await c.open_stream(b.aid)
            s = await c.open_stream(b.aid, token="s3cret")
            await s.send(b"x")
            assert await s.receive() == b"x"


async def test_wrong_aid_at_an_endpoint_is_refused() -> None:
    with anyio.fail_after(30):
        async with network(2, publish=True) as (a, b):
            impostor = Identity.generate(SystemRng()).aid
            url = quic_url(b)
            with pytest.raises(HandshakeFailed):
                await a.connect(impostor, endpoints=[url])


async def test_errors_are_clear() -> None:
    with anyio.fail_after(30):
        async with network(2, publish=True) as (a, b):
            with pytest.raises(NotFound):
                await a.connect(Identity.generate(SystemRng()).aid)
            with pytest.raises(UsageError):
                b.serve(handler=echo, http=hello)


async def test_back_pressure_on_a_large_transfer() -> None:
    size = 8 * 1024 * 1024
    got = anyio.Event()
    received = bytearray()

    async def sink(stream: PeerStream) -> None:
        try:
            while True:
                received.extend(await stream.receive())
        except EndOfStream:
            got.set()

    with anyio.fail_after(60):
        async with network(2, publish=True) as (a, b):
            b.serve(handler=sink)
            s = await a.open_stream(b.aid)
            chunk = bytes(range(256)) * 256
            for _ in range(size // len(chunk)):
                await s.send(chunk)
                # never more than the high-water mark (plus one chunk) waits unacknowledged
                assert s.connection.service.send_buffer + len(chunk) >= _pending(s)
            await s.send_eof()
            await got.wait()
            assert len(received) == size and bytes(received[:65536]) == chunk


def _pending(s: PeerStream) -> int:
    from a2al_mcp.transport import tls

    return tls.pending_send_bytes(s.connection.conn, s.stream_id)


async def test_stream0_answer_feeds_observed_address_and_agent_info() -> None:
    from a2al_mcp.protocol.payloads import topic_key

    with anyio.fail_after(30):
        async with network(2, publish=True) as (a, b):
            rec = await b.register_service("demo.svc", name="b-svc", protocols=["http"])
            b.serve(handler=echo)
            pc = await a.connect(b.aid)
            for _ in range(500):  # the acceptor's stream-0 answer follows the handshake
                if pc.peer_control is not None:
                    break
                await anyio.sleep(0.01)
            assert pc.peer_control is not None
            assert pc.peer_control.observed_addr == a.local_addr
            assert pc.peer_control.service_capable
            assert a.local_addr in dict(a.status().observed_addrs)
            assert a.status().connections >= 1 and b.status().serving == (b.aid,)
            # b's topic record arrived on stream 0, was verified, and is cached in a's store
            assert a._dht is not None
            cached = a._dht.core.store.get(topic_key("demo.svc"), a._clock.wall(), 0x10)
            assert rec in cached


async def test_asgi_responses_stream_as_the_app_sends_them() -> None:
    release = anyio.Event()

    async def sse(scope, receive, send):  # type: ignore[no-untyped-def]
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"data: one\n\n", "more_body": True})
        await release.wait()  # the first event must reach the client before this returns
        await send({"type": "http.response.body", "body": b"data: two\n\n"})

    with anyio.fail_after(30):
        async with network(2, publish=True) as (a, b):
            b.serve(app=sse)
            s = await a.open_stream(b.aid)
            await s.send(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while b"data: one" not in got:
                got += await s.receive()
            assert b"data: two" not in got and b"transfer-encoding: chunked" in got.lower()
            release.set()
            while b"0\r\n\r\n" not in got:
                got += await s.receive()
            assert b"data: two" in got
            await s.aclose()


async def test_a_clean_close_logs_no_quic_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 16: qh3 warned ``Native peer close`` on every ordinary close (NO_ERROR); a close
    with an error code still shows."""
    import logging

    with anyio.fail_after(30):
        async with network(2, publish=True) as (a, b):
            b.serve(handler=echo)
            with caplog.at_level(logging.WARNING, logger="quic"):
                pc = await a.connect(b.aid)
                stream = await a.open_stream(b.aid)
                await stream.send(b"ping")
                assert await stream.receive() == b"ping"
                pc.close()
                for _ in range(100):  # until b's qh3 has read the CONNECTION_CLOSE
                    if not b.connections():
                        break
                    await anyio.sleep(0.05)
                assert not b.connections()
                logging.getLogger("quic").warning(
                    "Native peer close: %r", ("peer_closed", True, 0x0A, None, b"protocol")
                )
    quic = [r for r in caplog.records if r.name == "quic"]
    assert [r.args[0][2] for r in quic] == [0x0A], [r.getMessage() for r in quic]  # type: ignore[index]
