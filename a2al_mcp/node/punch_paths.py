"""The hole punch from the node's main socket, both roles' shared pieces and the caller's side.

Shared with the callee (:mod:`a2al_mcp.node.traversal`): the probe datagram (:data:`PROBE`),
our external addresses for ``punch-init``/``punch-ack`` (:func:`punch_addrs`) and the punch's
QUIC dial (:func:`quic_dial`).

:class:`HubCaller` is the caller's side (issue 18): it calls the target through **every** hub
its endpoint record names at once (a2ald does all hubs in parallel; the target's traversal
answers the first and drops the same call through another hub), sends our ICE ``cred`` (an
a2ald callee punches only once it holds it) and runs the punch as initiator
(:func:`~a2al_mcp.signal.punch_service.punch_over_room`) with probes and QUIC dials from the
main socket. The first room whose punch finds a path wins, the others are cancelled. The
connection it returns is one **we** dialled (the partner serves requests only on connections
it accepted, see ``signal.callee_dials``): when the punch ended through the partner's
connection to us, our dial to the same address, now through both NATs, is waited for or made
again. Glare (the partner calls us at the same moment and the hub pairs the two callers) is the
punch core's to settle; each side ends with the connection it dialled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import anyio
import anyio.abc

from .._clock import Clock
from .._random import Rng
from .._types import Addr
from ..config import SignalConfig
from ..errors import A2ALError, DecodeError, HandshakeFailed, NotFound, Unreachable
from ..ice.credentials import IceCredentials
from ..identity.aid import Aid
from ..nat.types import NatView
from ..signal.client_service import call
from ..signal.frames import Frame
from ..signal.punch_core import PunchAttempt, PunchLimits
from ..signal.punch_service import PunchSession, punch_over_room
from ..transport.certificates import LocalCertificate
from ..transport.peer import PeerConnection, QuicService

__all__ = ["PROBE", "HubCaller", "punch_addrs", "quic_dial"]

log = logging.getLogger(__name__)

PROBE: Final = b"\x00"
"""A punch probe: one zero byte, which our demultiplexer hands to the DHT decoder (dropped,
counted as malformed) and a2ald's drops too."""

OWN_DIAL_WAIT_S: Final = 3.0
"""After a punch that ended through the partner's connection, how long our own dial to the
same address may take."""


def punch_addrs(view: NatView, local_addr: Addr) -> tuple[Addr, ...]:
    """Our main socket's external ``ip:port``\\ s for ``punch-init``/``punch-ack``: what
    NatSense trusts, the gateway's mapping, IPv4 first; with none, the bound address when it
    is a specific one (a LAN or loopback network); else none (the punch then gives up)."""
    found = [*view.external_v4, *([view.upnp] if view.upnp else []), *view.external_v6]
    if not found and local_addr[0] not in ("", "0.0.0.0", "::"):
        found.append(local_addr)
    return tuple(dict.fromkeys(found))


async def quic_dial(service: QuicService, local: Aid, remote: Aid, addr: Addr,
                    timeout_s: float) -> bool:  # fmt: skip
    """One QUIC dial of the punch from the main socket, as ``local`` expecting ``remote``:
    True once verified within ``timeout_s``. The connection is never closed here, not even
    when the attempt ends first (cancelled) or the window passes: the partner, as the QUIC
    server, completes its handshake before we see ours confirmed and may already have
    chosen this connection (a2ald takes the first that comes up); one that never completes
    ends with QUIC's idle timeout (``quic.idle_timeout_s``)."""
    cert = service.certificates.get(local)
    if cert is None:
        return False
    pc = service.dial(cert, remote, addr)
    with anyio.move_on_after(timeout_s):
        try:
            await pc.wait_ready()
        except HandshakeFailed:
            return False
        return True
    return False


class HubCaller:
    """See the module docstring.

    Args:
        config: the ``[signal]`` table (frame limit).
        clock, rng: time and the ICE credentials' letters.
        service: the main socket's QUIC.
        punch_addrs: our main socket's external ``ip:port``\\ s now (``punch-init`` ``addrs``).
        nat_type: our NAT type now (``nt``).
        send_datagram: sends one datagram from the main socket (the probes).
        limits: the punch's timings.
    """

    def __init__(
        self,
        config: SignalConfig,
        *,
        clock: Clock,
        rng: Rng,
        service: QuicService,
        punch_addrs: Callable[[], tuple[Addr, ...]],
        nat_type: Callable[[], int],
        send_datagram: Callable[[bytes, Addr], None],
        limits: PunchLimits | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._rng = rng
        self._service = service
        self._punch_addrs = punch_addrs
        self._nat_type = nat_type
        self._send_datagram = send_datagram
        self._limits = limits or PunchLimits()
        self._expecting: dict[Aid, list[PunchSession]] = {}
        self.calls = 0
        self.punched = 0
        self.failed = 0

    # -- from the node ------------------------------------------------------------------

    def send_probe(self, addr: Addr) -> None:
        """:class:`~a2al_mcp.signal.punch_service.ProbeSender` on the main socket."""
        self._send_datagram(PROBE, addr)

    def accepted(self, peer: Aid, addr: Addr) -> None:
        """The node accepted a verified connection from ``peer``: our punches with it see
        their path up."""
        for session in self._expecting.get(peer, ()):
            session.path_up(addr)

    # -- one dial -----------------------------------------------------------------------

    async def connect(
        self, local: LocalCertificate, remote: Aid, hubs: tuple[str, ...]
    ) -> PeerConnection:
        """A verified connection from ``local`` to ``remote`` through a punch over one of
        ``hubs`` (all called at once).

        Raises:
            Unreachable: no hub's punch found a path (the reasons, per hub).
        """
        self.calls += 1
        won: list[PeerConnection] = []
        reasons: list[str] = []

        async def through(hub: str, tg: anyio.abc.TaskGroup) -> None:
            try:
                pc = await self._through(hub, local, remote)
            except (Unreachable, NotFound, HandshakeFailed) as exc:
                reasons.append(f"{hub}: {exc}")
                return
            except (A2ALError, DecodeError, OSError) as exc:
                reasons.append(f"{hub}: {exc!r}")
                return
            if not won:
                won.append(pc)
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for hub in hubs:
                tg.start_soon(through, hub, tg)
        if won:
            self.punched += 1
            return won[0]
        self.failed += 1
        raise Unreachable("punch through " + ("; ".join(reasons) or "no hub"),
                          aid=remote, operation="connect")  # fmt: skip

    async def _through(self, hub: str, local: LocalCertificate, remote: Aid) -> PeerConnection:
        room = await call(hub, str(local.aid), str(remote),
                          max_message_bytes=self._config.max_frame_bytes)  # fmt: skip
        quic = _CallerQuic(self._service, local, remote)
        sessions = self._expecting.setdefault(remote, [])
        try:
            cred = IceCredentials.generate(self._rng)
            await room.send(Frame("cred", u=cred.ufrag, p=cred.pwd))
            attempt = PunchAttempt(initiator=True, local_addrs=self._punch_addrs(),
                                   nat_type=self._nat_type(), limits=self._limits)  # fmt: skip
            result = await punch_over_room(room, attempt, sender=self, quic=quic,
                                           clock=self._clock,
                                           on_session=sessions.append)  # fmt: skip
        finally:
            self._expecting[remote] = [s for s in sessions if not s.attempt.done]
            if not self._expecting[remote]:
                del self._expecting[remote]
            with anyio.CancelScope(shield=True):
                await room.aclose()
        log.info("punch.caller_up peer=%s addr=%s round=%d", remote.short(), result.addr,
                 result.round)  # fmt: skip
        return await quic.own_connection(result.addr)


class _CallerQuic:
    """:class:`~a2al_mcp.signal.punch_service.PunchQuic` of one call: our dials, kept."""

    def __init__(self, service: QuicService, local: LocalCertificate, remote: Aid) -> None:
        self._service = service
        self._local = local
        self._remote = remote
        self.dialled: list[PeerConnection] = []

    async def dial(self, addr: Addr, timeout_s: float) -> bool:
        pc = self._service.dial(self._local, self._remote, addr)
        self.dialled.append(pc)
        with anyio.move_on_after(timeout_s):
            try:
                await pc.wait_ready()
            except HandshakeFailed:
                return False
            return True
        return False

    def expect_accept(self, until: float) -> None:
        """The owner routes every accepted connection of the partner to the session."""

    async def own_connection(self, addr: Addr) -> PeerConnection:
        """Our verified connection to the partner: a dial of the punch that is ready, else
        the first of those still under way and one new dial to ``addr`` (the punch opened
        that path; an earlier dial's Initial may have been dropped) to come up. None is
        closed here (see :func:`quic_dial`)."""
        for pc in self.dialled:
            if pc.ready and not pc.closed:
                return pc
        ready: list[PeerConnection] = []

        async def wait(pc: PeerConnection, tg: anyio.abc.TaskGroup) -> None:
            try:
                await pc.wait_ready()
            except HandshakeFailed:
                return
            if not ready:
                ready.append(pc)
                tg.cancel_scope.cancel()

        with anyio.move_on_after(OWN_DIAL_WAIT_S):
            async with anyio.create_task_group() as tg:
                for pc in [p for p in self.dialled if not p.closed]:
                    tg.start_soon(wait, pc, tg)
                fresh = self._service.dial(self._local, self._remote, addr)
                self.dialled.append(fresh)
                tg.start_soon(wait, fresh, tg)
        if not ready:
            raise Unreachable(f"the punch found {addr[0]}:{addr[1]} but our dial did not "
                              f"come up within {OWN_DIAL_WAIT_S:g} s",
                              aid=self._remote, operation="connect")  # fmt: skip
        return ready[0]
