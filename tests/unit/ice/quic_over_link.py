"""A node's QUIC side for tests: one :class:`QuicService` on its own UDP socket (the shared
socket of a node), whose inbound streams are served by an echo handler, and which can dial
and accept connections over other datagram paths (an ICE pair, an in-memory link).

Used by the in-memory tests of QUIC over a path (tests/unit/transport/test_quic_path.py,
tests/unit/ice/test_ice_path.py) and by the NAT testbed's ICE driver (tests/nat/test_ice.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from a2al_mcp import SystemRng
from a2al_mcp._clock import SystemClock
from a2al_mcp._types import Addr
from a2al_mcp.config import LimitsConfig
from a2al_mcp.errors import ConnectionClosed
from a2al_mcp.identity import Aid, Identity
from a2al_mcp.node.supervision import Supervisor
from a2al_mcp.transport import tls
from a2al_mcp.transport.endpoint import UdpEndpoint
from a2al_mcp.transport.peer import InboundHandlers, PeerConnection, PeerStream, QuicService


class RecordingSocket(socket.socket):
    """A UDP socket that records every ``sendto`` (data, target) (pass ``gso=False``)."""

    sent: list[tuple[bytes, object]]

    def sendto(self, data: object, *args: object) -> int:  # type: ignore[override]
        if not hasattr(self, "sent"):
            self.sent = []
        self.sent.append((bytes(data), args[-1]))  # type: ignore[call-overload]
        return super().sendto(data, *args)  # type: ignore[arg-type, call-overload, no-any-return]


@dataclasses.dataclass
class QuicNode:
    identity: Identity
    service: QuicService
    endpoint: UdpEndpoint
    tasks: Supervisor
    sockets: list[RecordingSocket]

    @property
    def aid(self) -> Aid:
        return self.identity.aid

    @property
    def addr(self) -> Addr:
        return self.endpoint.local_addr

    def cert(self) -> tls.LocalCertificate:
        cert = self.service.certificates.get(self.identity.aid)
        assert cert is not None
        return cert


async def echo(pc: PeerConnection, message: bytes) -> bytes:
    """Open a stream on ``pc``, send ``message``, FIN, read the answer to the end."""
    await pc.wait_ready()
    stream = await pc.open_stream()
    await stream.send(message)
    await stream.send_eof()
    reply = bytearray()
    with contextlib.suppress(anyio.EndOfStream):
        while True:
            reply += await stream.receive()
    return bytes(reply)


async def _echo(pc: PeerConnection, stream: PeerStream, token: str | None) -> None:
    data = bytearray()
    with contextlib.suppress(anyio.EndOfStream):
        while True:
            data += await stream.receive()
    await stream.send(b"echo:" + bytes(data))
    await stream.send_eof()


@contextlib.asynccontextmanager
async def quic_node(
    *,
    bind: Addr = ("127.0.0.1", 0),
    identity: Identity | None = None,
    limits: LimitsConfig | None = None,
) -> AsyncIterator[QuicNode]:
    """A node's QUIC side: a service for ``identity`` (default: a new one) on a UDP socket
    bound to ``bind``, accepting connections to ``identity`` (within ``limits``) and
    echoing every stream."""
    clock = SystemClock()
    rng = SystemRng()
    identity = identity or Identity.generate(rng)
    certs = tls.CertificateStore.generate(identity, now=clock.wall(), rng=rng)
    tasks = Supervisor(clock=clock)
    endpoint: list[UdpEndpoint] = []
    handlers = InboundHandlers(route=lambda pc, route: identity.aid, service=_echo)
    service = QuicService(certificates=certs, flush=lambda: endpoint[0].flush(),
                          now=clock.monotonic, wall=clock.wall, spawn=tasks.spawn,
                          handlers=handlers, rng=rng, limits=limits)  # fmt: skip
    sockets: list[RecordingSocket] = []

    def make(family: socket.AddressFamily, kind: socket.SocketKind) -> socket.socket:
        sock = RecordingSocket(family, kind)
        sockets.append(sock)
        return sock

    ep = UdpEndpoint(bind, clock=clock, quic=service.host, gso=False, sock_factory=make,
                     on_events=lambda _core, event: service.on_event(event))  # type: ignore[arg-type]  # fmt: skip
    endpoint.append(ep)
    async with ep, anyio.create_task_group() as tg:
        tasks.attach(tg)
        try:
            yield QuicNode(identity, service, ep, tasks, sockets)
        finally:
            service.close_all()
            ep.flush()
            with anyio.move_on_after(2):  # the paths send their CONNECTION_CLOSE and end
                for path in service.paths():
                    await path.closed.wait()
            tasks.detach()
            await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()


class MemoryLink:
    """One end of an in-memory datagram link; records what it sent. As over UDP, a full
    queue drops, and what is sent to an end that was released is lost without a word."""

    def __init__(
        self, out: MemoryObjectSendStream[bytes], into: MemoryObjectReceiveStream[bytes]
    ) -> None:
        self.out, self.into = out, into
        self.sent: list[bytes] = []
        self.released = False
        self.received = 0
        self._arrival = anyio.Event()

    async def send(self, data: bytes) -> None:
        if self.released:
            raise ConnectionClosed("link released")
        try:
            self.out.send_nowait(data)
        except (anyio.WouldBlock, anyio.BrokenResourceError):
            return  # full, or the other end is gone: lost
        except anyio.ClosedResourceError as exc:
            raise ConnectionClosed("link closed") from exc
        self.sent.append(data)

    async def receive(self) -> bytes:
        try:
            data = await self.into.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError) as exc:
            raise ConnectionClosed("link closed") from exc
        self.received += 1
        self._arrival.set()
        self._arrival = anyio.Event()
        return data

    async def wait_received(self, n: int) -> None:
        """Until ``n`` datagrams were received in all (the path driver handles each one
        before it receives again, so by then it has handled the ``n``-th but the last)."""
        while self.received < n:
            await self._arrival.wait()

    async def aclose(self) -> None:
        """Release this end (what an ICE session's ``close`` is: the other end hears
        nothing)."""
        self.released = True
        self.into.close()

    async def cut(self) -> None:
        """Break the link under both ends (consent lost): both ends' ``receive`` fail."""
        self.out.close()
        self.into.close()


@contextlib.contextmanager
def link_pair() -> Iterator[tuple[MemoryLink, MemoryLink]]:
    a_out, b_in = anyio.create_memory_object_stream[bytes](256)
    b_out, a_in = anyio.create_memory_object_stream[bytes](256)
    with a_out, b_in, b_out, a_in:
        yield MemoryLink(a_out, a_in), MemoryLink(b_out, b_in)
