"""One ICE session over aioice (driver): credentials and candidates out, theirs in, a pair.

:class:`IceSession` wraps an aioice :class:`~aioice.Connection` for one peer (a2al-wire §6.3:
the caller is controlling, the callee controlled).  The signalling layer carries what it
returns and feeds it what the peer sent; the session itself speaks only in pion's candidate
strings (:mod:`~a2al_mcp.ice.candidates`) and :class:`~a2al_mcp.ice.credentials.IceCredentials`::

    async with IceSession(config, controlling=True, clock=SystemClock()) as ice:
        send_cred(ice.local_credentials)                   # `cred` first, like a2ald
        for text in await ice.gather():                    # host, srflx, relay
            send_cand(text)
        send_eoc()
        ...  # as frames arrive (any order, any time, before or during connect):
        ice.set_remote_credentials(ufrag, pwd)
        await ice.add_remote_candidate(text)                # trickle
        await ice.end_of_candidates()
        pair = await ice.connect()                          # SelectedPair, or raises
        await ice.send(datagram); await ice.receive()       # the selected pair

Errors carry the operation and keep their cause: malformed remote input
:class:`~a2al_mcp.errors.DecodeError`, too many candidates
:class:`~a2al_mcp.errors.LimitExceeded`, no answer in time
:class:`~a2al_mcp.errors.RequestTimeout`, every pair failed
:class:`~a2al_mcp.errors.Unreachable`, the pair lost :class:`~a2al_mcp.errors.ConnectionClosed`.

Tasks: every call runs in the caller's task; aioice runs its connectivity checks and consent
freshness (RFC 7675) as asyncio tasks of its own, which :meth:`IceSession.close` (and leaving
the ``async with``) cancels and awaits. Gathering is the exception: aioice's STUN (srflx) and
TURN (relay) queries are tasks it leaves running when the gathering is cancelled (it waits
for them with ``asyncio.wait``), and closing their sockets under them made the STUN
retransmissions fail ("'NoneType' object has no attribute 'sendto'", the query then never
ending) and leaked a TURN allocation that came in after. So :meth:`IceSession.gather` runs
aioice's gathering as one asyncio task that is never cancelled (it ends by itself within
aioice's 5 s query timeout), and a session closed while it runs is closed when it ends. Such
a gathering is *lingering*: whoever owns sessions awaits them with :func:`settle_lingering`
when it stops (the node does at close), so none outlives its owner's event loop.

aioice's pair checks are observed through its public hooks ``check_state`` and
``check_complete`` (a subclass, :class:`_ObservedConnection`): the first nominated pair is the
selected one, and the time between its check starting and succeeding is its RTT.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import anyio
from aioice import Candidate, Connection
from aioice.ice import CandidatePair

from .._random import Rng, SystemRng
from ..errors import (
    ConnectionClosed,
    DecodeError,
    LimitExceeded,
    RequestTimeout,
    Unreachable,
    UsageError,
)
from .candidates import UnsupportedCandidate, parse_candidate, render_candidate
from .credentials import IceCredentials
from .selected import SelectedPair

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._clock import Clock
    from .config import IceConfig

__all__ = ["IceSession", "IceStatistics", "settle_lingering"]

logger = logging.getLogger(__name__)

_UNAUTHENTICATED: Final = 401
"""aioice's answer to a check whose credentials are not the session's."""


_LINGERING: set[asyncio.Future[None]] = set()
"""Gatherings of sessions closed while they ran (each closes its session when it ends)."""


async def settle_lingering(timeout_s: float = 6.0) -> int:
    """Wait, shielded and at most ``timeout_s`` (aioice's queries end within 5 s), for the
    gatherings of this event loop's sessions that were closed while gathering; they close
    their sessions' sockets and TURN allocations as they end. Returns how many were waited
    for."""
    loop = asyncio.get_running_loop()
    mine = [f for f in _LINGERING if not f.done() and f.get_loop() is loop]
    if mine:
        with anyio.CancelScope(shield=True), anyio.move_on_after(timeout_s):
            await asyncio.wait(mine)
    return len(mine)


class _ObservedConnection(Connection):
    """aioice's connection, noting check start/success times and the first nominated pair
    through its public ``check_state``/``check_complete`` methods, and counting the checks
    it refuses as unauthenticated through ``respond_error``."""

    def __init__(self, *, now: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.a2al_now = now
        self.a2al_started: dict[CandidatePair, float] = {}
        self.a2al_rtt: dict[CandidatePair, float] = {}
        self.a2al_selected: CandidatePair | None = None
        self.a2al_unauthenticated = 0
        """Binding requests refused 401: a USERNAME that is not ours, or an integrity
        check that fails with our password (RFC 8489 §9.1.3)."""

    def respond_error(
        self,
        request: Any,
        addr: tuple[str, int],
        protocol: Any,
        error_code: tuple[int, str],
    ) -> None:
        if error_code[0] == _UNAUTHENTICATED:
            self.a2al_unauthenticated += 1
        super().respond_error(request, addr, protocol, error_code)

    def check_state(self, pair: CandidatePair, state: CandidatePair.State) -> None:
        super().check_state(pair, state)
        if state is CandidatePair.State.IN_PROGRESS:
            self.a2al_started[pair] = self.a2al_now()
        elif state is CandidatePair.State.SUCCEEDED and pair in self.a2al_started:
            self.a2al_rtt[pair] = self.a2al_now() - self.a2al_started.pop(pair)

    def check_complete(self, pair: CandidatePair) -> None:
        if (
            self.a2al_selected is None
            and pair.nominated
            and pair.state is CandidatePair.State.SUCCEEDED
        ):
            self.a2al_selected = pair
        super().check_complete(pair)


@dataclasses.dataclass(frozen=True, slots=True)
class IceStatistics:
    """What a session gathered and what it was given."""

    local: dict[str, int]
    """Local candidates gathered, per type."""
    remote: dict[str, int]
    """Remote candidates accepted, per type."""
    remote_malformed: int
    remote_unsupported: int
    """Remote candidates ignored: TCP, mDNS, a component other than 1, signalled prflx."""
    remote_over_limit: int
    """Remote candidates refused past ``max_remote_candidates``."""
    remote_bad_credentials: int
    """``cred`` frames refused: malformed, or a second pair differing from the first."""
    checks_unauthenticated: int
    """Connectivity checks from the network refused 401: not our ufrag, or an integrity
    that fails with our password."""
    gather_s: float | None
    """How long gathering took (None before it ended)."""
    connect_s: float | None
    """How long :meth:`IceSession.connect` ran until it returned or raised (None before)."""
    controlling: bool
    """The role at the end (a role conflict with the peer may have switched it)."""


class IceSession:
    """One ICE agent for one peer. Use as an async context manager (closes on exit)."""

    def __init__(
        self,
        config: IceConfig,
        *,
        controlling: bool,
        clock: Clock,
        rng: Rng | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self.controlling = controlling
        self.local_credentials = IceCredentials.generate(rng or SystemRng())
        turn = config.turn_server
        self._conn = _ObservedConnection(
            now=clock.monotonic,
            ice_controlling=controlling,
            components=1,
            stun_server=config.stun_server,
            turn_server=None if turn is None else turn.addr,
            turn_username=None if turn is None else turn.username,
            turn_password=None if turn is None else turn.password,
            turn_ssl=False if turn is None else turn.tls,
            turn_transport="udp" if turn is None else turn.transport,
            use_ipv4=config.use_ipv4,
            use_ipv6=config.use_ipv6,
            local_username=self.local_credentials.ufrag,
            local_password=self.local_credentials.pwd,
        )
        self._remote_credentials: IceCredentials | None = None
        self._credentials_given: anyio.Event | None = None
        self._gathered = False
        self._gathering: asyncio.Future[None] | None = None
        """aioice's gathering, once started (never cancelled: see the module docstring)."""
        self._ended = False
        self._closed = False
        self._selected: SelectedPair | None = None
        self._local_types: Counter[str] = Counter()
        self._remote_types: Counter[str] = Counter()
        self._malformed = 0
        self._unsupported = 0
        self._over_limit = 0
        self._bad_credentials = 0
        self._gather_s: float | None = None
        self._connect_s: float | None = None

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the checks and consent, close every socket and TURN allocation. Idempotent.
        While :meth:`gather` runs (or ran and was cancelled) aioice's STUN/TURN queries, it
        returns at once and the session is closed when they end (within 5 s)."""
        if self._closed:
            return
        self._closed = True
        if self._gathering is not None and not self._gathering.done():
            _LINGERING.add(self._gathering)  # settle_lingering waits for it
            self._gathering.add_done_callback(_LINGERING.discard)
            return  # closed by _gather when aioice's queries end (see the module docstring)
        with anyio.CancelScope(shield=True):
            await self._conn.close()

    async def _gather(self) -> None:
        """aioice's gathering; if the session was closed meanwhile, close it now."""
        try:
            await self._conn.gather_candidates()
        finally:
            if self._closed:
                await self._conn.close()

    def _event(self) -> anyio.Event:
        if self._credentials_given is None:
            self._credentials_given = anyio.Event()
        return self._credentials_given

    # ------------------------------------------------------------------ local side

    async def gather(self) -> list[str]:
        """Gather host, server-reflexive (first STUN server) and relay (first TURN server)
        candidates; return them in pion's grammar, to send as ``cand`` frames.

        A STUN or TURN server that does not answer only costs its candidates (aioice waits
        up to 5 s for them). Raises :class:`~a2al_mcp.errors.RequestTimeout` after
        ``gather_timeout_s``.
        """
        if self._closed:
            raise UsageError("the ICE session is closed", operation="ICE gather")
        if self._gathered:
            raise UsageError("ICE candidates were gathered already", operation="ICE gather")
        self._gathered = True
        timeout = self._config.gather_timeout_s
        started = self._clock.monotonic()
        try:
            # aioice's own kind of task (as its checks): it must outlive a cancelled gather()
            # and ends by itself within aioice's 5 s query timeout (module docstring)
            self._gathering = asyncio.ensure_future(self._gather())  # noqa: TID251
            with anyio.fail_after(timeout):
                await asyncio.shield(self._gathering)
        except TimeoutError as exc:
            raise RequestTimeout(
                f"ICE gathering took over {timeout:g} s", operation="ICE gather"
            ) from exc
        except OSError as exc:
            raise Unreachable(f"ICE gathering failed: {exc}", operation="ICE gather") from exc
        finally:
            self._gather_s = self._clock.monotonic() - started
        texts = []
        for candidate in self._conn.local_candidates:
            self._local_types[candidate.type] += 1
            texts.append(render_candidate(candidate))
        logger.debug("ice.gathered %s", dict(self._local_types))
        return texts

    # ------------------------------------------------------------------ remote side

    def set_remote_credentials(self, ufrag: object, pwd: object) -> None:
        """The peer's ``cred`` frame. Raises :class:`~a2al_mcp.errors.DecodeError` for
        malformed values and :class:`~a2al_mcp.errors.UsageError` for a second, different
        pair (a repeat of the same is ignored)."""
        try:
            credentials = IceCredentials.parse(ufrag, pwd)
        except DecodeError:
            self._bad_credentials += 1
            raise
        if self._remote_credentials is not None:
            if credentials != self._remote_credentials:
                self._bad_credentials += 1
                raise UsageError(
                    "the peer's ICE credentials changed", operation="ICE remote credentials"
                )
            return
        self._remote_credentials = credentials
        self._conn.remote_username = credentials.ufrag
        self._conn.remote_password = credentials.pwd
        self._event().set()

    async def add_remote_candidate(self, text: object) -> bool:
        """A ``cand`` frame's candidate (trickle: before or during :meth:`connect`).

        Returns True when the candidate was added, False when it was ignored (TCP, mDNS,
        signalled prflx, a component other than 1, after end-of-candidates, or closed).
        Raises :class:`~a2al_mcp.errors.DecodeError` for a malformed string (pion drops
        those; so may the caller) and :class:`~a2al_mcp.errors.LimitExceeded` past
        ``max_remote_candidates``.
        """
        if self._closed or self._ended:
            self._unsupported += 1
            return False
        accepted = sum(self._remote_types.values())
        if accepted >= self._config.max_remote_candidates:
            self._over_limit += 1
            raise LimitExceeded(
                f"more than {self._config.max_remote_candidates} remote ICE candidates",
                operation="ICE remote candidate",
            )
        try:
            candidate = parse_candidate(text, max_chars=self._config.max_candidate_chars)  # type: ignore[arg-type]  # checked inside
        except UnsupportedCandidate:
            self._unsupported += 1
            return False
        except DecodeError:
            self._malformed += 1
            raise
        if candidate.component != 1 or candidate.type == "prflx":
            # aioice drops signalled prflx; pion never signals one.
            self._unsupported += 1
            return False
        self._remote_types[candidate.type] += 1
        await self._conn.add_remote_candidate(candidate)
        return True

    async def end_of_candidates(self) -> None:
        """The peer's ``eoc``: no more candidates (lets a failure be reported early)."""
        if self._ended or self._closed:
            return
        self._ended = True
        await self._conn.add_remote_candidate(None)

    # ------------------------------------------------------------------ connect

    async def connect(self, timeout_s: float | None = None) -> SelectedPair:
        """Wait for the peer's credentials, run the checks, return the selected pair.

        ``timeout_s`` (default ``connect_timeout_s``) bounds the whole call. Raises
        :class:`~a2al_mcp.errors.RequestTimeout` (no credentials, or no pair in time) or
        :class:`~a2al_mcp.errors.Unreachable` (every pair failed after end-of-candidates).
        """
        if not self._gathered:
            raise UsageError("gather() before connect()", operation="ICE connect")
        if self._closed:
            raise UsageError("the ICE session is closed", operation="ICE connect")
        if self._selected is not None:
            return self._selected
        if self._connect_s is not None:
            raise UsageError("connect() failed already: close the session", operation="ICE connect")
        timeout = self._config.connect_timeout_s if timeout_s is None else timeout_s
        started = self._clock.monotonic()
        try:
            with anyio.fail_after(timeout):
                if self._remote_credentials is None:
                    waited = min(timeout, self._config.credentials_timeout_s)
                    with anyio.move_on_after(waited):
                        await self._event().wait()
                    if self._remote_credentials is None:
                        raise RequestTimeout(
                            f"no ICE credentials from the peer within {waited:g} s",
                            operation="ICE connect",
                        )
                await self._conn.connect()
        except RequestTimeout:
            raise
        except TimeoutError as exc:
            raise RequestTimeout(
                f"ICE did not connect within {timeout:g} s ({self._summary()})",
                operation="ICE connect",
            ) from exc
        except ConnectionError as exc:
            took = self._clock.monotonic() - started
            raise Unreachable(
                f"ICE failed after {took:.2f} s: no candidate pair worked ({self._summary()})",
                operation="ICE connect",
            ) from exc
        finally:
            self._connect_s = self._clock.monotonic() - started
        pair = self._conn.a2al_selected
        if pair is None:  # aioice completed without a pair we saw nominated: a bug
            raise Unreachable("ICE completed without a selected pair", operation="ICE connect")
        self._selected = SelectedPair(
            local=pair.local_addr,
            remote=pair.remote_addr,
            local_type=pair.local_candidate.type,
            remote_type=pair.remote_candidate.type,
            rtt_s=self._conn.a2al_rtt.get(pair),
        )
        logger.debug("ice.selected %s", self._selected)
        return self._selected

    def _summary(self) -> str:
        local = ", ".join(f"{n} {t}" for t, n in sorted(self._local_types.items()))
        remote = ", ".join(f"{n} {t}" for t, n in sorted(self._remote_types.items()))
        return f"local: {local or 'none'}; remote: {remote or 'none'}"

    # ------------------------------------------------------------------ after connect

    @property
    def selected(self) -> SelectedPair | None:
        """The selected pair once :meth:`connect` returned."""
        return self._selected

    @property
    def local_candidates(self) -> list[Candidate]:
        """aioice's local candidates (for tests and diagnostics)."""
        return self._conn.local_candidates

    def statistics(self) -> IceStatistics:
        return IceStatistics(
            local=dict(self._local_types),
            remote=dict(self._remote_types),
            remote_malformed=self._malformed,
            remote_unsupported=self._unsupported,
            remote_over_limit=self._over_limit,
            remote_bad_credentials=self._bad_credentials,
            checks_unauthenticated=self._conn.a2al_unauthenticated,
            gather_s=self._gather_s,
            connect_s=self._connect_s,
            controlling=self._conn.ice_controlling,
        )

    async def send(self, data: bytes) -> None:
        """Send one datagram over the selected pair (through TURN for a relay pair)."""
        try:
            await self._conn.sendto(data, 1)
        except ConnectionError as exc:
            raise ConnectionClosed(f"ICE path: {exc}", operation="ICE send") from exc

    async def receive(self) -> bytes:
        """The next datagram that is not STUN, from any of our candidates."""
        try:
            data, _ = await self._conn.recvfrom()
        except ConnectionError as exc:
            raise ConnectionClosed(f"ICE path: {exc}", operation="ICE receive") from exc
        return data
