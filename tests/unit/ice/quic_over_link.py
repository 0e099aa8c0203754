"""A QUIC service over one datagram link (an ICE pair), for tests: the acceptor echoes each
stream back, the dialer sends one message and reads the echo.  Used by the in-memory test of
:class:`~a2al_mcp.ice.path.IceDatagramPath` and by the NAT testbed's ICE driver."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel

from a2al_mcp import SystemRng
from a2al_mcp._clock import SystemClock
from a2al_mcp._types import Addr
from a2al_mcp.ice import DatagramLink, IceDatagramPath
from a2al_mcp.identity import Aid, Identity
from a2al_mcp.node.supervision import Supervisor
from a2al_mcp.transport import tls
from a2al_mcp.transport.peer import InboundHandlers, PeerConnection, PeerStream, QuicService


@dataclasses.dataclass
class QuicOverLink:
    identity: Identity
    service: QuicService
    path: IceDatagramPath
    peer: Addr

    async def echo(self, expected: Aid, message: bytes) -> tuple[bytes, PeerConnection]:
        """Dial the peer (we are the QUIC client), send ``message`` on a stream, FIN, read
        to the end; the reply and the connection."""
        cert = self.service.certificates.get(self.identity.aid)
        assert cert is not None
        pc = self.service.dial(cert, expected, self.peer)
        await pc.wait_ready()
        stream = await pc.open_stream()
        await stream.send(message)
        await stream.send_eof()
        reply = bytearray()
        with contextlib.suppress(anyio.EndOfStream):
            while True:
                reply += await stream.receive()
        return bytes(reply), pc


async def _echo(pc: PeerConnection, stream: PeerStream, token: str | None) -> None:
    data = bytearray()
    with contextlib.suppress(anyio.EndOfStream):
        while True:
            data += await stream.receive()
    await stream.send(b"echo:" + bytes(data))
    await stream.send_eof()


@contextlib.asynccontextmanager
async def quic_over_link(
    link: DatagramLink, *, peer: Addr, identity: Identity, accept: bool
) -> AsyncIterator[QuicOverLink]:
    """A QUIC service for ``identity`` whose only path is ``link`` to ``peer``; with
    ``accept`` it accepts connections to ``identity`` and echoes every stream."""
    clock = SystemClock()
    rng = SystemRng()
    certs = tls.CertificateStore.generate(identity, now=clock.wall(), rng=rng)
    tasks = Supervisor(clock=clock)
    paths: list[IceDatagramPath] = []
    handlers = (
        InboundHandlers(route=lambda pc, route: identity.aid, service=_echo) if accept else None
    )
    service = QuicService(certificates=certs, flush=lambda: paths[0].flush(),
                          now=clock.monotonic, wall=clock.wall, spawn=tasks.spawn,
                          handlers=handlers, rng=rng)  # fmt: skip
    path = IceDatagramPath(link, peer=peer, clock=clock, core=service.host,
                           on_events=lambda _core, event: service.on_event(event))  # type: ignore[arg-type]  # fmt: skip
    paths.append(path)
    async with path, anyio.create_task_group() as tg:
        tasks.attach(tg)
        try:
            yield QuicOverLink(identity, service, path, peer)
        finally:
            tasks.detach()
            service.close_all()
            path.flush()
            await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
