"""A QUIC service on its own loopback UDP socket, without a Node: for testing the node's
QUIC-side services (Acceptor, Dialer) alone."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import anyio.lowlevel

from a2al_mcp import SystemRng
from a2al_mcp._clock import SystemClock
from a2al_mcp._types import Addr
from a2al_mcp.identity import Identity
from a2al_mcp.node.supervision import Supervisor
from a2al_mcp.transport import tls
from a2al_mcp.transport.endpoint import UdpEndpoint
from a2al_mcp.transport.peer import InboundHandlers, QuicService


@dataclasses.dataclass
class QuicPeer:
    identity: Identity
    """The default identity (its certificate is the default one)."""
    service: QuicService
    endpoint: UdpEndpoint
    tasks: Supervisor
    """Where the service's peer-driven tasks run; counts what they raise."""
    task_group: anyio.abc.TaskGroup

    @property
    def addr(self) -> Addr:
        return self.endpoint.local_addr

    @property
    def url(self) -> str:
        host, port = self.addr
        return f"quic://{host}:{port}"

    def cert(self, identity: Identity | None = None) -> tls.LocalCertificate:
        cert = self.service.certificates.get((identity or self.identity).aid)
        assert cert is not None
        return cert


@contextlib.asynccontextmanager
async def quic_peer(
    handlers: InboundHandlers | None = None,
    *,
    identity: Identity | None = None,
    also: tuple[Identity, ...] = (),
) -> AsyncIterator[QuicPeer]:
    """A QUIC service on 127.0.0.1 (a fresh port) answering with ``handlers``, holding a
    certificate for ``identity`` (default: a new one) and for each of ``also``."""
    clock = SystemClock()
    rng = SystemRng()
    identity = identity or Identity.generate(rng)
    certs = tls.CertificateStore.generate(identity, *also, now=clock.wall(), rng=rng)
    tasks = Supervisor(clock=clock)
    endpoint: list[UdpEndpoint] = []
    service = QuicService(certificates=certs, flush=lambda: endpoint[0].flush(),
                          now=clock.monotonic, wall=clock.wall, spawn=tasks.spawn,
                          handlers=handlers, rng=rng)  # fmt: skip
    ep = UdpEndpoint(("127.0.0.1", 0), clock=clock, quic=service.host,
                     on_events=lambda _core, event: service.on_event(event))  # type: ignore[arg-type]  # fmt: skip
    endpoint.append(ep)
    async with ep, anyio.create_task_group() as tg:
        tasks.attach(tg)
        try:
            yield QuicPeer(identity, service, ep, tasks, tg)
        finally:
            tasks.detach()
            service.close_all()
            ep.flush()
            await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
