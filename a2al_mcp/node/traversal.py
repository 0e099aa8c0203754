"""Traversal: the node reachable behind a NAT through signalling hubs — the callee's side.

:class:`CalleeTraversal` wires the bricks of ``a2al_mcp.signal`` into the node:

* it registers the node's **published** identities with up to ``signal.max_hubs`` hubs
  (:class:`~a2al_mcp.signal.client_service.SignalService`): ``signal.hubs``, and first the
  node's own hub while it serves one and is public; the hubs that acknowledged a ``reg``
  are the live ones (:meth:`CalleeTraversal.live_hubs`), which endpoint records name
  (``signal`` the first, ``signals`` all); when that set changes, ``on_change`` asks for the
  endpoint records to be republished (as a NAT change does);
* it serves a hub (:class:`~a2al_mcp.signal.ws_server.HubServer`) when asked to;
* on an ``incoming`` call for one of our published identities it joins the room, sends an ICE
  ``cred`` (a2ald punches only once it holds the partner's credentials) and runs the hole
  punch as the callee (:func:`~a2al_mcp.signal.punch_service.punch_over_room`) from the
  node's main socket: probes through ``send_datagram`` (they open our NAT towards the
  caller), QUIC dials to the caller through ``dial`` only with ``signal.callee_dials``, and
  the caller's own QUIC connection, accepted by the node and reported through
  :meth:`CalleeTraversal.accepted`, completes the attempt too.

Everything runs in the task group of :meth:`CalleeTraversal.run` (the node's); every failure
of one call (a hub that went away, a room that never paired, a punch that found no path) ends
that call only and is counted in :class:`TraversalStats`. The hub set is looked at every
``watch_interval_s``: :class:`SignalService` tells nobody when a hub acknowledges or drops.
The probe, our punch addresses and the punch's QUIC dial are shared with the caller's side
(:mod:`a2al_mcp.node.punch_paths`).

With ICE (``ice``, the node's ``[ice]``), each answer also runs an ICE agent (controlled) over
the same room: its ``cred`` is the one sent first, its candidates follow as ``cand`` frames
and ``eoc``, the caller's are fed to it by the room's
:class:`~a2al_mcp.signal.room_mux.RoomMux`. When a pair is selected, QUIC is accepted over it
(``accept_ice``): the caller's connection is served by the node like any accepted one. The
caller decides which path it uses, so a punch that found its path first does not end ICE at
once: the agent keeps going until the room closes (the caller is done), ICE ends, or
:data:`ICE_AFTER_PUNCH_S` passed. An agent without a connection is closed (sockets and TURN
allocation released) when the answer ends.

Mode B (a2al-wire §4.11): with ``dht_target`` (the node's AID, registered with the hubs like
the published identities), a call for it may be a NATed node that wants to reach our DHT
(a2ald's Mode B: ICE alone, then QUIC with no route frame) or a caller of the node's own
service. It is answered as any call, and QUIC over the ICE pair is accepted by
``accept_dht``: stream 0 tells the two apart (a route frame or a DHT message), the node's DHT
takes a Mode-B connection's streams.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import anyio
import anyio.abc

from .._clock import Clock
from .._random import Rng
from .._types import Addr
from ..config import SignalConfig
from ..errors import A2ALError, DecodeError, NotFound, Unreachable
from ..ice.config import IceConfig
from ..ice.credentials import IceCredentials
from ..ice.path import path_label
from ..ice.session import IceSession
from ..identity.aid import Aid
from ..signal.client_service import SignalService, answer
from ..signal.effects import IncomingCall
from ..signal.frames import Frame
from ..signal.punch_core import PunchAttempt, PunchLimits
from ..signal.punch_service import PunchSession
from ..signal.room_socket import RoomSocket
from ..signal.ws_server import HubServer
from .punch_paths import PROBE, connect_ice, punch_addrs, quic_dial, room_mux

__all__ = ["PROBE", "CalleeTraversal", "TraversalStats", "own_hub_url", "punch_addrs", "quic_dial"]

log = logging.getLogger(__name__)

WATCH_INTERVAL_S: Final = 0.5
MAX_ANSWERS_PER_CALLER: Final = 4
"""Calls of one caller answered at once: a2ald calls again while its first call is still
running (a retry, or a DHT punch beside its dial), and a refused call costs it its 30 s
credentials wait."""
ICE_AFTER_PUNCH_S: Final = 10.0
"""After our punch found its path, how long ICE may still bring the caller's connection (the
caller takes whichever comes up first on its side)."""


@dataclasses.dataclass(slots=True)
class TraversalStats:
    """What the callee side did; every failure is here, none escapes."""

    incoming: int = 0
    """``incoming`` calls the hubs announced."""

    answered: int = 0
    """Rooms joined (the ``cred`` sent, the punch started)."""
    punched: int = 0
    """Answers whose punch found a path (a QUIC connection came up either way)."""
    ice_connected: int = 0
    """Answers where the caller's QUIC connection came up over an ICE pair (direct or
    server-reflexive)."""
    relay_connected: int = 0
    """Answers where it came up over an ICE pair through a TURN relay."""
    ice_failed: int = 0
    """Answers whose ICE agent ended without a connection (no pair, no QUIC over it)."""
    punch_failed: int = 0
    """Answers that ended without a path (neither the punch nor ICE): no handshake, no
    ``punch-go``, no packet through, the room closed, or ``answer_timeout_s``."""
    refused: int = 0
    """Calls not answered: not for a published identity, malformed AIDs,
    :data:`MAX_ANSWERS_PER_CALLER` already running for that caller, or ``max_answers``
    reached."""
    errors: int = 0
    """Contained errors of one answer (the hub could not be reached, undecodable input)."""
    dials: int = 0
    """QUIC dials to callers (with ``signal.callee_dials``)."""
    accepted_matched: int = 0
    """QUIC connections accepted from a caller while its punch expected them."""
    hub_changes: int = 0
    """Times the set of live hubs changed (each one republished the endpoint records)."""
    hub_serve_errors: int = 0
    """The hub we were to serve could not listen (e.g. its port is taken)."""
    last_error: str = ""


def own_hub_url(hub: Addr | None, *, public_ip: str | None, bound_host: str) -> str | None:
    """The URL under which others reach the hub we serve at ``hub`` (bound ``host, port``):
    at our public IPv4 ``public_ip`` while the node is public (no NAT in between), else at the
    node's bound host when that is a specific address and nothing external is known (a LAN or
    loopback network, as endpoint records fall back to it); None otherwise (behind a NAT the
    hub's TCP port is not reachable)."""
    if hub is None:
        return None
    host = public_ip or (bound_host if bound_host not in ("", "0.0.0.0", "::") else None)
    if host is None:
        return None
    return f"ws://[{host}]:{hub[1]}" if ":" in host else f"ws://{host}:{hub[1]}"


class CalleeTraversal:
    """See the module docstring.

    Args:
        config: the ``[signal]`` table.
        clock, rng: time (the punch reads both clocks) and the ICE credentials' letters.
        serve_hub: bind this ``(host, port)`` and serve a hub there; None: serve none.
        published: the identities to register (the node's published ones), read each watch.
        own_hub: given the hub's bound address, the URL others reach it at now (or None).
        punch_addrs: our main socket's external ``ip:port``\\ s now (sent in ``addrs``).
        nat_type: our NAT type now (sent in ``nt``).
        send_datagram: sends one datagram from the main socket (the probes).
        dial: ``dial(local, remote, addr, timeout_s)``: QUIC from the main socket as ``local``
            expecting ``remote``; True once verified (the node keeps the connection). None:
            the callee does not dial (``signal.callee_dials`` off), it probes and accepts.
        on_change: the set of live hubs changed (republish the endpoint records).
        limits: the punch's timings.
        ice: called per answer for the ICE agent's servers and limits; None: the punch alone.
        accept_ice: ``accept_ice(session)``: the caller's verified QUIC connection over the
            connected ICE ``session`` (raises ``Unreachable``); the node serves it. Needed
            with ``ice``.
        dht_target: the node's AID, when calls for it are Mode B (registered too).
        accept_dht: ``accept_dht(session)``: as ``accept_ice`` for a call to ``dht_target``:
            the connection may be Mode B (no route frame; the DHT takes it). Needed with
            ``dht_target``.
    """

    def __init__(
        self,
        config: SignalConfig,
        *,
        clock: Clock,
        rng: Rng,
        serve_hub: Addr | None,
        published: Callable[[], Iterable[Aid]],
        own_hub: Callable[[Addr], str | None],
        punch_addrs: Callable[[], tuple[Addr, ...]],
        nat_type: Callable[[], int],
        send_datagram: Callable[[bytes, Addr], None],
        dial: Callable[[Aid, Aid, Addr, float], Awaitable[bool]] | None,
        on_change: Callable[[], None],
        limits: PunchLimits | None = None,
        watch_interval_s: float = WATCH_INTERVAL_S,
        ice: Callable[[], IceConfig | None] | None = None,
        accept_ice: Callable[[IceSession], Awaitable[object]] | None = None,
        dht_target: Aid | None = None,
        accept_dht: Callable[[IceSession], Awaitable[object]] | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._rng = rng
        self._serve_at = serve_hub
        self._published = published
        self._own_hub = own_hub
        self._punch_addrs = punch_addrs
        self._nat_type = nat_type
        self._send_datagram = send_datagram
        self._dial = dial
        self._on_change = on_change
        self._limits = limits or PunchLimits()
        self._watch_s = watch_interval_s
        self._ice = ice if accept_ice is not None else None
        self._accept_ice = accept_ice
        self._dht_target = dht_target if accept_dht is not None and self._ice else None
        self._accept_dht = accept_dht
        self.hub: HubServer | None = None
        """The hub we serve (its ``core.stats`` count what it refused), once it listens."""
        self.hub_addr: Addr | None = None
        self.service: SignalService | None = None
        """The registrations now (replaced when the hub list changes)."""
        self.stats = TraversalStats()
        self._live: tuple[str, ...] = ()
        self._busy: Counter[Aid] = Counter()
        self._expecting: dict[Aid, tuple[float, PunchSession]] = {}

    # -- views --------------------------------------------------------------------------

    def live_hubs(self) -> tuple[str, ...]:
        """The hubs that acknowledged our registrations, the first preferred: what endpoint
        records name (``signal``, ``signals``)."""
        return self._live

    def registered(self) -> tuple[Aid, ...]:
        """The identities registered with the hubs: the published ones and, with Mode B, the
        node's own AID."""
        ids = dict.fromkeys(self._published())
        if self._dht_target is not None:
            ids[self._dht_target] = None
        return tuple(ids)

    def wanted_hubs(self) -> tuple[str, ...]:
        """The hubs to register with now: our own first (while public), then ``signal.hubs``,
        at most ``max_hubs``."""
        own = None if self.hub_addr is None else self._own_hub(self.hub_addr)
        urls = dict.fromkeys([*([own] if own else []), *self._config.hubs])
        return tuple(urls)[: self._config.max_hubs]

    # -- from the node ------------------------------------------------------------------

    def send_probe(self, addr: Addr) -> None:
        """:class:`~a2al_mcp.signal.punch_service.ProbeSender` on the main socket."""
        self._send_datagram(PROBE, addr)

    async def dial_for_punch(self, local: Aid, remote: Aid, addr: Addr, timeout_s: float) -> bool:
        """One punch dial (see ``dial``); False at once when the callee does not dial."""
        if self._dial is None:
            return False
        self.stats.dials += 1
        return await self._dial(local, remote, addr, timeout_s)

    def expect(self, peer: Aid, until: float, session: PunchSession) -> None:
        """Until ``until``, a connection accepted from ``peer`` is ``session``'s path."""
        self._expecting[peer] = (until, session)

    def unexpect(self, peer: Aid, session: PunchSession | None) -> None:
        """``session`` is over: accepted connections from ``peer`` are nobody's."""
        held = self._expecting.get(peer)
        if held is not None and held[1] is session:
            del self._expecting[peer]

    def accepted(self, peer: Aid, addr: Addr) -> None:
        """The node accepted a verified QUIC connection from ``peer`` at ``addr``: if a punch
        with ``peer`` expects one now, its path is up."""
        expected = self._expecting.get(peer)
        if expected is None:
            return
        until, session = expected
        if self._clock.monotonic() <= until:
            self.stats.accepted_matched += 1
            session.path_up(addr)

    # -- the loop -------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve the hub (if asked), keep the registrations and answer calls until
        cancelled."""
        async with anyio.create_task_group() as tg:
            if self._serve_at is not None:
                hub = HubServer(self._config, clock=self._clock)
                try:
                    bound = await tg.start(hub.serve, *self._serve_at)
                except OSError as exc:
                    self.stats.hub_serve_errors += 1
                    self.stats.last_error = f"hub at {self._serve_at}: {exc}"
                    log.warning("traversal.hub_not_served addr=%s error=%r", self._serve_at, exc)
                else:
                    self.hub, self.hub_addr = hub, (str(bound[0]), int(bound[1]))
            task_status.started()
            await self._watch(tg)

    async def _watch(self, tg: anyio.abc.TaskGroup) -> None:
        hubs: tuple[str, ...] | None = None
        scope: anyio.CancelScope | None = None
        registered: tuple[str, ...] | None = None
        while True:
            wanted = self.wanted_hubs()
            if wanted != hubs:
                if scope is not None:
                    scope.cancel()
                self.service, scope, registered = None, None, None
                if wanted:
                    self.service = SignalService(self._config, hubs=wanted, clock=self._clock)
                    scope = anyio.CancelScope()
                    tg.start_soon(self._keep, self.service, scope, tg)
                hubs = wanted
            live: tuple[str, ...] = ()
            if self.service is not None:
                ids = tuple(sorted(str(a) for a in self.registered()))
                if ids != registered:
                    self.service.set_identities(ids)
                    registered = ids
                live = self.service.core.registered_hubs()
                live = tuple(h for h in wanted if h in live)  # ours first
            if live != self._live:
                self._live = live
                self.stats.hub_changes += 1
                log.info("traversal.hubs live=%s", list(live))
                self._on_change()
            await anyio.sleep(self._watch_s)

    async def _keep(
        self, service: SignalService, scope: anyio.CancelScope, tg: anyio.abc.TaskGroup
    ) -> None:
        """Run ``service`` and hand its calls to answers in ``tg`` until ``scope`` ends."""
        with scope:
            async with anyio.create_task_group() as inner:
                await inner.start(service.run)
                async for call in service.incoming:
                    self._incoming(call, tg)

    # -- one call -------------------------------------------------------------------------

    def _incoming(self, call: IncomingCall, tg: anyio.abc.TaskGroup) -> None:
        self.stats.incoming += 1
        try:
            caller, target = Aid.from_str(call.caller), Aid.from_str(call.target)
        except (A2ALError, ValueError):
            self.stats.refused += 1
            return
        if (
            target not in set(self.registered())
            or self._busy[caller] >= MAX_ANSWERS_PER_CALLER
            or self._busy.total() >= self._config.max_answers
        ):
            self.stats.refused += 1
            return
        self._busy[caller] += 1
        tg.start_soon(self._answer, call, caller, target)

    async def _answer(self, call: IncomingCall, caller: Aid, target: Aid) -> None:
        try:
            with anyio.fail_after(self._config.answer_timeout_s):
                room = await answer(call.hub, call.room,
                                    max_message_bytes=self._config.max_frame_bytes)  # fmt: skip
                self.stats.answered += 1
                try:
                    how = await self._traverse(room, caller, target)
                finally:
                    with anyio.CancelScope(shield=True):
                        await room.aclose()
            log.info("traversal.up caller=%s path=%s", caller.short(), how)
        except (Unreachable, NotFound, TimeoutError) as exc:
            self.stats.punch_failed += 1
            self.stats.last_error = str(exc) or type(exc).__name__
            log.info("traversal.punch_failed caller=%s error=%s", caller.short(), exc)
        except (A2ALError, DecodeError, OSError) as exc:
            self.stats.errors += 1
            self.stats.last_error = str(exc) or type(exc).__name__
            log.info("traversal.answer_failed caller=%s error=%r", caller.short(), exc)
        finally:
            self._busy[caller] -= 1
            if self._busy[caller] <= 0:
                del self._busy[caller]

    async def _traverse(self, room: RoomSocket, caller: Aid, target: Aid) -> str:
        """Our ``cred`` first (a2ald waits for it before punching), then the punch and ICE
        over the room; what came up (``punched``, ``ice``, ``relay``), or raises
        ``Unreachable`` with both reasons."""
        config = None if self._ice is None else self._ice()
        mode_b = target == self._dht_target  # maybe: stream 0 decides (accept_dht)
        ice = None
        if config is not None:
            ice = IceSession(config, controlling=False, clock=self._clock, rng=self._rng)
        cred = ice.local_credentials if ice is not None else IceCredentials.generate(self._rng)
        quic = _PunchQuic(self, local=target, remote=caller)
        up: list[str] = []
        reasons: list[str] = []
        handed = False
        try:
            await room.send(Frame("cred", u=cred.ufrag, p=cred.pwd))
            attempt = PunchAttempt(initiator=False, local_addrs=self._punch_addrs(),
                                   nat_type=self._nat_type(), limits=self._limits)  # fmt: skip
            session = PunchSession(attempt, send_frame=room.send, sender=self, quic=quic,
                                   clock=self._clock)  # fmt: skip
            quic.bind(session)
            mux = room_mux(room, session, ice, config)
            ice_over = anyio.Event()

            async def read() -> None:
                with contextlib.suppress(NotFound):  # a callee's room never says noagent
                    await mux.run()

            async def punch(race: anyio.abc.TaskGroup) -> None:
                try:
                    result = await session.run()
                except Unreachable as exc:
                    reasons.append(f"punch: {exc}")
                    return
                self.stats.punched += 1
                up.append("punched")
                log.info("traversal.punched caller=%s addr=%s round=%d", caller.short(),
                         result.addr, result.round)  # fmt: skip
                if ice is not None:  # the caller may still take ICE: until it is done
                    with anyio.move_on_after(ICE_AFTER_PUNCH_S):
                        async with anyio.create_task_group() as waiting:
                            for event in (mux.closed, ice_over):
                                waiting.start_soon(_set_then_cancel, event, waiting)
                race.cancel_scope.cancel()

            async def over_ice(race: anyio.abc.TaskGroup) -> None:
                nonlocal handed
                assert ice is not None and self._accept_ice is not None
                accept = self._accept_dht if mode_b else self._accept_ice
                assert accept is not None
                try:
                    pair = await connect_ice(ice, mux, room.send)
                    handed = True  # the path owns the session now
                    await accept(ice)
                except (A2ALError, DecodeError, OSError) as exc:
                    self.stats.ice_failed += 1
                    reasons.append(f"ICE: {exc}")
                    return
                finally:
                    ice_over.set()
                kind = path_label(pair)
                if kind == "relay":
                    self.stats.relay_connected += 1
                else:
                    self.stats.ice_connected += 1
                up.append(kind)
                race.cancel_scope.cancel()

            async with anyio.create_task_group() as outer:
                outer.start_soon(read)
                async with anyio.create_task_group() as race:
                    race.start_soon(punch, race)
                    if ice is not None:
                        race.start_soon(over_ice, race)
                outer.cancel_scope.cancel()
        finally:
            quic.release()
            if ice is not None and not handed:
                with anyio.CancelScope(shield=True):
                    await ice.close()
        if not up:
            raise Unreachable("; ".join(reasons) or "cancelled", operation="answer")
        return up[-1]


async def _set_then_cancel(event: anyio.Event, tg: anyio.abc.TaskGroup) -> None:
    await event.wait()
    tg.cancel_scope.cancel()


class _PunchQuic:
    """:class:`~a2al_mcp.signal.punch_service.PunchQuic` for one answer: dials as ``local``
    expecting ``remote``; accepted connections from ``remote`` go to the session."""

    def __init__(self, owner: CalleeTraversal, *, local: Aid, remote: Aid) -> None:
        self._owner = owner
        self._local = local
        self._remote = remote
        self._session: PunchSession | None = None

    def bind(self, session: PunchSession) -> None:
        self._session = session

    async def dial(self, addr: Addr, timeout_s: float) -> bool:
        return await self._owner.dial_for_punch(self._local, self._remote, addr, timeout_s)

    def expect_accept(self, until: float) -> None:
        if self._session is not None:
            self._owner.expect(self._remote, until, self._session)

    def release(self) -> None:
        self._owner.unexpect(self._remote, self._session)
