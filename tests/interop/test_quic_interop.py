"""Issue 4 interop: QUIC data plane against a2ald 0.3.5, both directions, in a sealed namespace.

a2ald fetches from and tunnels to our in-process services; we fetch from and tunnel to a2ald
agents' ``service_tcp`` backends; with plain and delegated identities on both sides; and a
certificate for the wrong AID is refused by whichever side checks it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio import EndOfStream

from a2al_mcp import Aid, DelegatedIdentity, NodeConfig, SystemRng
from a2al_mcp.errors import HandshakeFailed
from a2al_mcp.identity import Identity
from a2al_mcp.node import Node
from a2al_mcp.node.http import HttpRequest, HttpResponse
from a2al_mcp.protocol.payloads import EndpointPayload
from a2al_mcp.protocol.records import RecType, SignedRecord
from a2al_mcp.testing.a2ald import A2aldApiError, A2aldNetwork, A2aldPeer
from a2al_mcp.transport.peer import PeerStream
from tests.interop.test_dht_interop import call, poll

pytestmark = [pytest.mark.interop, pytest.mark.anyio]


@contextlib.asynccontextmanager
async def our_node(seed: str) -> AsyncIterator[Node]:
    async with Node(NodeConfig(listen_addr="127.0.0.1:0", bootstrap=(seed,))) as node:
        yield node


async def hello(req: HttpRequest) -> HttpResponse:
    doc = {"method": req.method, "path": req.path, "caller": str(req.caller),
           "local": str(req.local), "body": req.body.decode()}  # fmt: skip
    return HttpResponse(200, (("content-type", "application/json"),), json.dumps(doc).encode())


async def echo(stream: PeerStream) -> None:
    try:
        while True:
            await stream.send(b"ours:" + await stream.receive())
    except EndOfStream:
        pass


def _fetch(peer: A2aldPeer, aid: Aid, path: str, body: bytes = b"", **kw: Any) -> dict[str, Any]:
    req = {"method": "POST", "path": path, "body_base64": base64.b64encode(body).decode(), **kw}
    return peer.post(f"/fetch/{aid}", req)


def _agent(peer: A2aldPeer, service_tcp: str | None = None) -> dict[str, Any]:
    gen = peer.identity_generate()
    peer.register_agent(gen["operational_private_key_hex"], gen["delegation_proof_hex"],
                        service_tcp=service_tcp)  # fmt: skip
    peer.publish_agent(gen["aid"])
    return gen


async def _tcp_roundtrip(addr: tuple[str, int], data: bytes) -> bytes:
    async with await anyio.connect_tcp(*addr) as tcp:
        await tcp.send(data)
        return await tcp.receive()


@contextlib.asynccontextmanager
async def http_backend() -> AsyncIterator[int]:
    """A tiny HTTP/1.1 server on loopback TCP: the a2ald agent's ``service_tcp``."""

    async def handle(client: anyio.abc.SocketStream) -> None:
        async with client:
            data = b""
            with contextlib.suppress(EndOfStream, anyio.BrokenResourceError):
                while b"\r\n\r\n" not in data:
                    data += await client.receive()
                line = data.split(b"\r\n", 1)[0].decode()
                if line.startswith("ECHO"):
                    await client.send(b"backend:" + data)
                    while True:
                        await client.send(b"backend:" + await client.receive())
                body = json.dumps({"line": line, "from": "a2ald-backend"}).encode()
                await client.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                  b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                                  % (len(body), body))  # fmt: skip

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield port
        tg.cancel_scope.cancel()


async def test_a2ald_fetches_our_http_handler(a2ald_net: A2aldNetwork) -> None:
    p0, p1 = a2ald_net.peers[0], a2ald_net.peers[1]
    with anyio.fail_after(90):
        async with our_node(p0.listen_addr) as node:
            agent = DelegatedIdentity.generate(SystemRng(), issued_at=0).identity
            node.add_identity(agent)
            await node.publish()
            await node.publish(agent.aid)
            node.serve(http=hello)
            node.serve(agent.aid, http=hello)
            their_agent = await call(_agent, p1)
            for target in (node.aid, agent.aid):  # plain and delegated on our side
                for local in (None, their_agent["aid"]):  # plain and delegated on theirs
                    kw = {"local_aid": local} if local else {}
                    got = await poll(lambda t=target, kw=kw: _fetch(p1, t, "/x?q=1", b"hi", **kw),
                                     lambda r: r.get("status") == 200, 30,
                                     f"a2ald fetching {target}")  # fmt: skip
                    doc = json.loads(base64.b64decode(got["body"]))
                    assert doc["path"] == "/x?q=1" and doc["body"] == "hi"
                    assert doc["local"] == str(target)
                    # the caller is who a2ald really is: its node, or its delegated agent,
                    # whose proof our server verified
                    assert doc["caller"] == (local or p1.node_aid)


async def test_a2ald_tunnels_to_our_service(a2ald_net: A2aldNetwork) -> None:
    p0, p2 = a2ald_net.peers[0], a2ald_net.peers[2]
    with anyio.fail_after(90):
        async with our_node(p0.listen_addr) as node:
            await node.publish()
            node.serve(handler=echo)
            await poll(lambda: p2.resolve(str(node.aid)), bool, 30, "a2ald resolving us")
            tun = await call(p2.post, f"/tunnel/{node.aid}", {})
            assert tun["connected"] and tun["remote_aid"] == str(node.aid), tun
            host, port = tun["listen"].rsplit(":", 1)
            for i in range(3):  # every TCP connection is a new stream
                got = await _tcp_roundtrip((host, int(port)), b"ping%d" % i)
                assert got == b"ours:ping%d" % i
            con = await call(p2.post, f"/connect/{node.aid}", {})
            host, port = con["tunnel"].rsplit(":", 1)
            assert await _tcp_roundtrip((host, int(port)), b"once") == b"ours:once"


async def test_we_fetch_and_tunnel_to_an_a2ald_agent_backend(a2ald_net: A2aldNetwork) -> None:
    p0, p3 = a2ald_net.peers[0], a2ald_net.peers[3]
    with anyio.fail_after(90):
        async with http_backend() as port, our_node(p0.listen_addr) as node:
            gen = await call(_agent, p3, f"127.0.0.1:{port}")
            target = Aid.from_str(gen["aid"])
            mine = DelegatedIdentity.generate(SystemRng(), issued_at=0).identity
            node.add_identity(mine)
            for local in (None, mine.aid):
                resp = await node.fetch(target, "GET", "/hello", local=local)
                assert resp.status == 200, resp
                assert json.loads(resp.body) == {"line": "GET /hello HTTP/1.1",
                                                 "from": "a2ald-backend"}  # fmt: skip
            tunnel = await node.tunnel(target)
            got = await _tcp_roundtrip(tunnel.addr, b"ECHO x\r\n\r\n")
            assert got.startswith(b"backend:ECHO x")
            await tunnel.aclose()


async def test_wrong_aid_is_refused_both_ways(a2ald_net: A2aldNetwork) -> None:
    p0, p1 = a2ald_net.peers[0], a2ald_net.peers[1]
    with anyio.fail_after(90):
        async with our_node(p0.listen_addr) as node:
            # we dial a2ald's address expecting an AID it does not hold: our client refuses
            stranger = Identity.generate(SystemRng())
            with pytest.raises(HandshakeFailed):
                await node.connect(stranger.aid, endpoints=[f"quic://{p1.listen_addr}"])
            # a2ald dials us for an AID we do not hold (its record points at our address):
            # our server presents the node certificate and a2ald's client refuses it
            payload = EndpointPayload(endpoints=(f"quic://127.0.0.1:{node.local_addr[1]}",))
            rec = SignedRecord.sign(stranger, RecType.ENDPOINT, payload.to_bytes(), seq=1,
                                    timestamp=int(time.time()))  # fmt: skip
            await node._publish_record(rec, stranger.aid.node_id)
            await poll(lambda: p1.resolve(str(stranger.aid)), bool, 30, "a2ald resolving it")
            node.serve(http=hello)
            with pytest.raises(A2aldApiError) as info:
                await call(_fetch, p1, stranger.aid, "/")
            assert info.value.status == 502 and "connect failed" in str(info.value)
            assert not [c for c in node.connections() if not c.is_dialer and c.ready]


async def test_a2ald_refuses_a_client_without_certificate(a2ald_net: A2aldNetwork) -> None:
    p0, p1 = a2ald_net.peers[0], a2ald_net.peers[1]
    with anyio.fail_after(60):
        async with our_node(p0.listen_addr) as node:
            host, port = p1.listen_addr.rsplit(":", 1)
            assert node._quic is not None
            pc = node._quic.dial(None, Aid.from_str(p1.node_aid), (host, int(port)))
            with pytest.raises(HandshakeFailed):
                await pc.wait_ready()
            # with our certificate the same dial succeeds
            ok = await node.connect(
                Aid.from_str(p1.node_aid), endpoints=[f"quic://{p1.listen_addr}"]
            )
            assert ok.peer_aid == Aid.from_str(p1.node_aid)
