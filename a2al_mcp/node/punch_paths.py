"""The hole punch from the node's main socket, both roles' shared pieces and the caller's side.

Shared with the callee (:mod:`a2al_mcp.node.traversal`): the probe datagram (:data:`PROBE`),
our external addresses for ``punch-init``/``punch-ack`` (:func:`punch_addrs`), the punch's
QUIC dial (:func:`quic_dial`), and the ICE agent's side of a room: :func:`offer_ice`
(gather, one ``cand`` per candidate, ``eoc``), :func:`feed_ice` (the peer's ``cred``,
``cand``, ``eoc`` from the room's :class:`~a2al_mcp.signal.room_mux.RoomMux`; bad input is
counted by the session and dropped) and :func:`accept_ice` (the callee: QUIC over the pair).

:class:`HubCaller` is the caller's side (issue 18): it calls the target through **every** hub
its endpoint record names at once (a2ald does all hubs in parallel; the target's traversal
answers the first and drops the same call through another hub). In each room it sends the
``cred`` of that room's own ICE agent (controlling; an a2ald callee punches only once it
holds a ``cred``), then runs two techniques over the one room: the punch as initiator
(:class:`~a2al_mcp.signal.punch_service.PunchSession`) with probes and QUIC dials from the
main socket, and ICE (:class:`~a2al_mcp.ice.session.IceSession`: host, server-reflexive and,
with ``[[ice.turn_servers]]``, relay candidates) with QUIC over its selected pair
(:func:`~a2al_mcp.ice.path.dial_over_ice`, labelled ``ice`` or ``relay``). The first verified
connection of any room and technique wins; the rest is cancelled, every ICE agent that did
not win closed (its sockets and TURN allocation released). aioice nominates aggressively when
controlling: the first pair whose check succeeds is taken, so a relay pair is taken as soon
as its check succeeds, before any fixed wait (pion's 2 s relay acceptance). The punch's
connection is one **we** dialled (the partner serves requests only on connections it
accepted, see ``signal.callee_dials``): when the punch ended through the partner's connection
to us, our dial to the same address, now through both NATs, is waited for or made again.
Glare (the partner calls us at the same moment and the hub pairs the two callers) is the
punch core's to settle; each side ends with the connection it dialled. With ``ice.enabled``
off, the ``cred`` is a throwaway and only the punch runs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream

from .._clock import Clock
from .._random import Rng
from .._types import Addr
from ..config import NodeConfig, SignalConfig
from ..errors import (
    A2ALError,
    ConnectionClosed,
    DecodeError,
    HandshakeFailed,
    LimitExceeded,
    NotFound,
    RequestTimeout,
    Unreachable,
    UsageError,
)
from ..ice.config import IceConfig, ice_config
from ..ice.credentials import IceCredentials
from ..ice.path import accept_over_ice, dial_over_ice, path_label
from ..ice.selected import SelectedPair
from ..ice.session import IceSession
from ..identity.aid import Aid
from ..nat.types import NatView
from ..signal.client_service import call
from ..signal.frames import Frame
from ..signal.punch_core import PunchAttempt, PunchLimits
from ..signal.punch_service import PunchSession
from ..signal.room_mux import RoomMux
from ..signal.room_socket import RoomSocket
from ..transport.certificates import LocalCertificate
from ..transport.peer import PeerConnection, QuicService

__all__ = [
    "PROBE",
    "HubCaller",
    "accept_ice",
    "connect_ice",
    "feed_ice",
    "node_ice",
    "offer_ice",
    "punch_addrs",
    "quic_dial",
    "room_mux",
]

log = logging.getLogger(__name__)

PROBE: Final = b"\x00"
"""A punch probe: one zero byte, which our demultiplexer hands to the DHT decoder (dropped,
counted as malformed) and a2ald's drops too."""

REPORT_MARGIN_S: Final = 0.05
"""A hub call ends this much before the enclosing deadline (the dial's), so that it reports
what each technique had done instead of being cancelled without a word."""

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


def node_ice(config: NodeConfig, nat_stun: tuple[Addr, ...]) -> IceConfig | None:
    """The ICE agent's configuration from the node's ``[ice]`` (``stun_urls`` empty: the
    ``[nat]`` STUN servers ``nat_stun`` the node asks, resolved); None with ``ice.enabled``
    off."""
    return ice_config(config.ice, nat_stun=nat_stun) if config.ice.enabled else None


def room_mux(room: RoomSocket, punch: PunchSession, ice: IceSession | None,
             config: IceConfig | None) -> RoomMux:  # fmt: skip
    """The reader of one room for the punch and, when ``ice`` runs, its ICE agent (bounded
    by ``config``'s candidate limits)."""
    if ice is None or config is None:
        return RoomMux(room, punch=punch, ice=False)
    return RoomMux(room, punch=punch, ice=True, max_candidates=config.max_remote_candidates,
                   max_candidate_chars=config.max_candidate_chars)  # fmt: skip


async def offer_ice(ice: IceSession, send: Callable[[Frame], Awaitable[None]]) -> None:
    """Gather and send our candidates (one ``cand`` each, pion's grammar), then ``eoc``."""
    for text in await ice.gather():
        await send(Frame("cand", c=text))
    await send(Frame("eoc"))


async def feed_ice(ice: IceSession, frames: MemoryObjectReceiveStream[Frame]) -> bool:
    """Hand the peer's ``cred``/``cand``/``eoc`` to ``ice`` until the room closes (then the
    candidates have ended, so that ICE fails once their checks did); whether a ``cred`` came.
    Input the session refuses (malformed, unsupported, over its limit, changed credentials)
    is counted there (:meth:`~a2al_mcp.ice.session.IceSession.statistics`) and dropped."""
    got_cred = False
    with frames:
        async for frame in frames:
            try:
                if frame.t == "cred":
                    ice.set_remote_credentials(frame.u, frame.p)
                    got_cred = True
                elif frame.t == "cand":
                    await ice.add_remote_candidate(frame.c)
                elif frame.t == "eoc":
                    await ice.end_of_candidates()
            except (DecodeError, LimitExceeded, UsageError, ValueError) as exc:
                log.debug("ice.remote_refused frame=%s error=%s", frame.t, exc)
    await ice.end_of_candidates()  # the room closed: nothing more will come
    return got_cred


async def connect_ice(ice: IceSession, mux: RoomMux,
                      send: Callable[[Frame], Awaitable[None]]) -> SelectedPair:  # fmt: skip
    """Offer our candidates into the room, feed the peer's from ``mux``, connect.

    Raises:
        Unreachable: every pair failed, or the room closed before the peer's ``cred``.
        RequestTimeout: no pair within ``connect_timeout_s``.
    """
    pair: SelectedPair | None = None
    failed: list[A2ALError | OSError] = []
    async with anyio.create_task_group() as tg:

        async def feed() -> None:
            if not await feed_ice(ice, mux.ice_frames):
                tg.cancel_scope.cancel()  # no credentials will ever come

        tg.start_soon(feed)
        try:
            await offer_ice(ice, send)
            pair = await ice.connect()
        except (A2ALError, OSError) as exc:  # raised as itself, not inside an exception group
            failed.append(exc)
        tg.cancel_scope.cancel()
    if failed:
        raise failed[0]
    if pair is None:
        raise Unreachable("the room closed before the peer's ICE credentials",
                          operation="ICE connect")  # fmt: skip
    return pair


async def accept_ice(service: QuicService, ice: IceSession, timeout_s: float, *,
                     dht_only: bool = False) -> PeerConnection:  # fmt: skip
    """The callee's QUIC over a connected ICE ``ice``: the caller's connection, served by the
    node like any accepted one, once verified within ``timeout_s``. The path owns ``ice``
    from here: without a connection in time the path is closed (and with it the session).
    ``dht_only``: the caller called our node AID: a Mode-B connection (a2al-wire §4.11), no
    route frame, its streams carry DHT messages.

    Raises:
        Unreachable: no verified connection over the pair in time.
    """
    if dht_only:
        pair = ice.selected
        if pair is None:
            raise UsageError("the ICE session has not connected")
        path = service.accept_path(ice, remote=pair.remote, label=path_label(pair),
                                   on_close=ice.close, dht_only=True)  # fmt: skip
    else:
        path = accept_over_ice(service, ice)
    try:
        with anyio.fail_after(timeout_s):
            pc = await path.wait_connection()
            await pc.wait_ready()
    except (TimeoutError, ConnectionClosed, HandshakeFailed) as exc:
        path.close("no connection over the ICE pair")
        raise Unreachable(f"no QUIC connection over the ICE pair within {timeout_s:g} s",
                          operation="ICE accept") from exc  # fmt: skip
    except BaseException:
        path.close("cancelled")
        raise
    return pc


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
        ice: called per room for the ICE agent's servers and limits (``[ice]`` and the
            node's STUN servers now); None: the punch alone.
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
        ice: Callable[[], IceConfig | None] | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._rng = rng
        self._service = service
        self._punch_addrs = punch_addrs
        self._nat_type = nat_type
        self._send_datagram = send_datagram
        self._limits = limits or PunchLimits()
        self._ice = ice
        self._expecting: dict[Aid, list[PunchSession]] = {}
        self.calls = 0
        self.punched = 0
        """Dials won by a punch."""
        self.ice_won = 0
        """Dials won by an ICE pair (direct or server-reflexive)."""
        self.relay_won = 0
        """Dials won by an ICE pair through a TURN relay."""
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
        self,
        local: LocalCertificate,
        remote: Aid,
        hubs: tuple[str, ...],
        *,
        timeout_s: float | None = None,
        relay: bool = True,
        dht_only: bool = False,
    ) -> PeerConnection:
        """A verified connection from ``local`` to ``remote`` through one of ``hubs`` (all
        called at once): a punch's (on the main socket) or an ICE pair's (its ``path`` is
        labelled ``ice`` or ``relay``). ``relay=False``: ICE gathers no relay candidate (a
        relay connection's upgrade). ``dht_only``: a Mode-B connection to a NATed node
        (a2al-wire §4.11; ``remote`` is its node AID): ICE alone, QUIC over the pair with no
        route frame.

        Raises:
            Unreachable: no hub gave a path (the reasons, per hub and technique).
            RequestTimeout: none within ``timeout_s`` or :data:`REPORT_MARGIN_S` before the
                enclosing deadline (a dial's), saying what each technique had done by then.
        """
        self.calls += 1
        began = anyio.current_time()
        won: list[PeerConnection] = []
        notes: list[str] = []

        async def through(hub: str, tg: anyio.abc.TaskGroup) -> None:
            try:
                pc = await self._through(hub, local, remote, notes, relay=relay,
                                         dht_only=dht_only)  # fmt: skip
            except _Reported:
                return
            except (Unreachable, NotFound, HandshakeFailed) as exc:
                notes.append(f"{hub}: {exc}")
                return
            except (A2ALError, DecodeError, OSError) as exc:
                notes.append(f"{hub}: {exc!r}")
                return
            if won:  # another hub's path came up in the same instant
                if pc.path is not None:
                    pc.close(0, "another path won")
                return
            won.append(pc)
            tg.cancel_scope.cancel()

        # our own deadline, just before the caller's (a dial's): report instead of vanishing
        until = anyio.current_effective_deadline() - REPORT_MARGIN_S
        if timeout_s is not None:
            until = min(until, anyio.current_time() + timeout_s)
        with anyio.move_on_after(until - anyio.current_time()) as deadline:
            async with anyio.create_task_group() as tg:
                for hub in hubs:
                    tg.start_soon(through, hub, tg)
        if won:
            kind = "punched" if won[0].path is None else won[0].path.label
            if kind == "relay":
                self.relay_won += 1
            elif kind == "ice":
                self.ice_won += 1
            else:
                self.punched += 1
            return won[0]
        self.failed += 1
        if deadline.cancelled_caught:
            took = anyio.current_time() - began
            raise RequestTimeout(f"no path through the hubs within {took:.1f} s: "
                                 + ("; ".join(notes) or "nothing answered"),
                                 aid=remote, operation="connect")  # fmt: skip
        raise Unreachable("through the hubs: " + ("; ".join(notes) or "no hub"),
                          aid=remote, operation="connect")  # fmt: skip

    async def _through(
        self,
        hub: str,
        local: LocalCertificate,
        remote: Aid,
        notes: list[str],
        *,
        relay: bool,
        dht_only: bool = False,
    ) -> PeerConnection:
        """One hub: the punch and ICE over its room, the first verified connection. When it
        is cancelled (another hub won, or the deadline), what each technique still running
        was doing goes to ``notes``."""
        room = await call(hub, str(local.aid), str(remote),
                          max_message_bytes=self._config.max_frame_bytes)  # fmt: skip
        quic = _CallerQuic(self._service, local, remote)
        sessions = self._expecting.setdefault(remote, [])
        config = None if self._ice is None else self._ice()
        if config is not None and not relay:
            config = dataclasses.replace(config, turn_servers=())
        if dht_only and config is None:
            await room.aclose()
            raise Unreachable("Mode B needs ICE ([ice] enabled)", aid=remote,
                              operation="connect")  # fmt: skip
        ice = None
        if config is not None:
            ice = IceSession(config, controlling=True, clock=self._clock, rng=self._rng)
        won: list[PeerConnection] = []
        reasons: list[str] = []
        gone: list[NotFound] = []
        running: dict[str, str] = {}
        try:
            cred = ice.local_credentials if ice is not None else IceCredentials.generate(self._rng)
            await room.send(Frame("cred", u=cred.ufrag, p=cred.pwd))  # first: a2ald waits for it
            session: PunchSession | None = None
            if dht_only:  # Mode B: ICE alone (no punch session: its frames are dropped)
                assert config is not None
                mux = RoomMux(room, punch=None, ice=True,
                              max_candidates=config.max_remote_candidates,
                              max_candidate_chars=config.max_candidate_chars)  # fmt: skip
            else:
                attempt = PunchAttempt(initiator=True, local_addrs=self._punch_addrs(),
                                       nat_type=self._nat_type(), limits=self._limits)  # fmt: skip
                session = PunchSession(attempt, send_frame=room.send, sender=self, quic=quic,
                                       clock=self._clock)  # fmt: skip
                sessions.append(session)
                mux = room_mux(room, session, ice, config)

            async def read(scope: anyio.CancelScope) -> None:
                try:
                    await mux.run()
                except NotFound as exc:  # noagent: nothing to wait for in this room
                    gone.append(exc)
                    scope.cancel()

            async def punch() -> PeerConnection:
                running["punch"] = "no path yet"
                assert session is not None
                result = await session.run()
                log.info("punch.caller_up peer=%s addr=%s round=%d", remote.short(),
                         result.addr, result.round)  # fmt: skip
                return await quic.own_connection(result.addr)

            async def over_ice() -> PeerConnection:
                assert ice is not None
                running["ICE"] = "checking"
                pair = await connect_ice(ice, mux, room.send)
                running["ICE"] = f"QUIC over the {pair.kind} pair"
                st = ice.statistics()
                log.info("ice.caller_up peer=%s kind=%s remote=%s rtt=%s gather_s=%s "
                         "connect_s=%s", remote.short(), pair.kind, pair.remote, pair.rtt_s,
                         st.gather_s, st.connect_s)  # fmt: skip
                if dht_only:  # Mode B: no route frame (a2al-wire §4.11)
                    pc = self._service.dial(local, remote, pair.remote, path=ice,
                                            path_label=path_label(pair),
                                            on_path_close=ice.close, dht_only=True)  # fmt: skip
                else:
                    pc = dial_over_ice(self._service, local, remote, ice)
                try:
                    await pc.wait_ready()
                except BaseException:
                    pc.close(0, "no connection over the ICE pair")
                    raise
                return pc

            async def contend(name: str, fn: Callable[[], Awaitable[PeerConnection]],
                              race: anyio.abc.TaskGroup) -> None:  # fmt: skip
                try:
                    pc = await fn()
                except (A2ALError, DecodeError, OSError) as exc:
                    running.pop(name, None)
                    reasons.append(f"{name}: {exc}")
                    return
                running.pop(name, None)  # (cancelled: still running, said in the notes)
                if won:
                    if pc.path is not None:
                        pc.close(0, "another path won")
                    return
                won.append(pc)
                race.cancel_scope.cancel()

            async with anyio.create_task_group() as outer:
                outer.start_soon(read, outer.cancel_scope)
                async with anyio.create_task_group() as race:
                    if not dht_only:  # a2ald's Mode B callee runs ICE alone
                        race.start_soon(contend, "punch", punch, race)
                    if ice is not None:
                        race.start_soon(contend, "ICE", over_ice, race)
                outer.cancel_scope.cancel()
        finally:
            if not won and (running or reasons):
                doing = [f"{n}: {_state(n, w, ice)}" for n, w in running.items()]
                notes.append(f"{hub}: " + "; ".join([*reasons, *doing]))
            self._expecting[remote] = [s for s in sessions if not s.attempt.done]
            if not self._expecting[remote]:
                del self._expecting[remote]
            with anyio.CancelScope(shield=True):
                await room.aclose()
                if ice is not None and not (won and won[0].path is not None):
                    await ice.close()  # its sockets and TURN allocation
        if won:
            return won[0]
        if gone:
            raise gone[0]
        raise _Reported("; ".join(reasons) or "cancelled", aid=remote, operation="connect")


class _Reported(Unreachable):
    """A hub's failure whose reasons are in the notes already."""


def _state(name: str, doing: str, ice: IceSession | None) -> str:
    """What a technique still running was doing (ICE: its candidates so far)."""
    if name != "ICE" or ice is None:
        return f"still running ({doing})"
    st = ice.statistics()
    local = ", ".join(f"{n} {t}" for t, n in sorted(st.local.items())) or "none"
    remote = ", ".join(f"{n} {t}" for t, n in sorted(st.remote.items())) or "none"
    return f"still {doing} (local: {local}; remote: {remote})"


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
