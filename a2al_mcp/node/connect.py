"""AID → verified QUIC connection: dial targets, Happy Eyeballs, a pool, back-off (§5.5).

:class:`Connector` keeps one connection per ``(local AID, remote AID)``. A new connection dials
every ``quic://``/``udp://`` endpoint of the remote's endpoint record (IP literals, de-duplicated,
IPv6 only where our socket can send it), starting one attempt every 250 ms until one is
verified; the others are closed. When the record names signalling hubs and a ``hub_path`` is
given, a call through them (hole punch and ICE, :mod:`a2al_mcp.node.punch_paths`) runs beside
the direct dial, started at once or after a head start as
:func:`~a2al_mcp.node.dial_strategy.plan_dial` decides; the first verified connection wins,
the other path is cancelled. The winning path (kind: ``direct``, ``punched``, ``ice`` or
``relay``; the peer's address on it; time) is kept per connection (:meth:`Connector.path`)
and per peer in a bounded, expiring :class:`~a2al_mcp.node.dial_strategy.PathCache` that
orders the next cold dial; a failed dial names every path it tried and how long each took
(:attr:`Connector.last_tries`). Failed dials back off 15 s, doubling to 5 min. Pooled
connections are pinged every ``quic.keepalive_s`` (25 s, §5.1) and closed after 5 min without
use. The timers are a2ald's (:mod:`a2al_mcp.protocol.timers`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeAlias
from urllib.parse import urlsplit

import anyio
import anyio.abc

from .._containment import containable
from .._dataclass import dataclass
from .._types import Addr
from ..errors import A2ALError, HandshakeFailed, RequestTimeout, Unreachable
from ..identity.aid import Aid
from ..protocol.timers import (
    DIAL_BACKOFF_MAX_S,
    DIAL_BACKOFF_START_S,
    DIAL_STAGGER_S,
    POOL_IDLE_EVICT_S,
    QUIC_KEEPALIVE_S,
)
from ..transport.certificates import LocalCertificate
from ..transport.peer import PeerConnection, QuicService
from .dial_strategy import (
    DIRECT,
    ICE,
    PUNCHED,
    RELAY,
    PathCache,
    PathKind,
    PathTry,
    UsedPath,
    plan_dial,
)

__all__ = ["Connector", "DialTarget", "HubPath", "dial_targets", "hub_kind"]

logger = logging.getLogger(__name__)

_STOPPED: Final = "stopped"
"""A path cancelled: ``lost`` when another won, ``no answer`` when the time ran out."""

UPGRADE_WINDOW_S: Final = 30.0
"""After a connection came up through a TURN relay, how long the hubs are called again for a
path without the relay (DCUtR style)."""
UPGRADE_FIRST_S: Final = 2.0
"""The first such call, this long after the relay won."""
UPGRADE_RETRY_S: Final = 10.0
"""Between two calls."""
UPGRADE_TRY_S: Final = 8.0
"""One call gives up after this."""
UPGRADE_TICK_S: Final = 0.5

DIAL_TIMEOUT_S: Final = 10.0
"""Default limit on one dial (a2ald waits 60 s, §5.5; a tool call should not)."""


def dial_targets(endpoints: Sequence[str], *, ipv6: bool = True) -> list[Addr]:
    """The UDP addresses to dial from an endpoint record's URLs, in order, de-duplicated.

    Only ``quic://`` and ``udp://`` URLs with an IP-literal host and a port count; IPv6 ones
    only when ``ipv6``. Hostnames are skipped: we never resolve names for peers.
    """
    out: list[Addr] = []
    for url in endpoints:
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            continue
        if parts.scheme not in ("quic", "udp") or not host or not port:
            continue
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            continue
        if ip.version == 6 and not ipv6:
            continue
        addr = (str(ip), port)
        if addr not in out:
            out.append(addr)
    return out


@dataclass(frozen=True, slots=True)
class DialTarget:
    """What a dial reads of the target's endpoint record."""

    urls: tuple[str, ...]
    nat_type: int = 0
    """The record's ``nat_type`` (0 unknown)."""
    hubs: tuple[str, ...] = ()
    """The hubs it names (``signal`` first, then ``signals``)."""
    seq: int | None = None
    """The record's sequence number (None: not from a record)."""


def _dial_target(got: Sequence[str] | DialTarget) -> DialTarget:
    return got if isinstance(got, DialTarget) else DialTarget(tuple(got))


HubPath: TypeAlias = Callable[[LocalCertificate, Aid, tuple[str, ...]], Awaitable[PeerConnection]]
"""``hub_path(local, remote, hubs)``: a verified connection through ``hubs`` (raises
``Unreachable``, or ``RequestTimeout`` naming what each technique had done when the dial's
deadline, ``anyio.current_effective_deadline()``, came near): a punch's on the main socket,
or one over an ICE pair (its ``path`` labelled ``ice`` or ``relay``);
:meth:`a2al_mcp.node.punch_paths.HubCaller.connect`."""


def hub_kind(pc: PeerConnection) -> tuple[PathKind, Addr]:
    """What a connection from the hubs came up on, and the peer's address on it."""
    path = pc.path
    if path is None:
        return PUNCHED, pc.addr
    kind: PathKind = RELAY if path.label == RELAY else ICE
    return kind, path.remote or pc.addr


@dataclass(slots=True)
class _Upgrade:
    """A pooled relay connection whose peer is called again for a path without the relay."""

    local: LocalCertificate
    hubs: tuple[str, ...]
    relay: PeerConnection
    until: float
    next: float
    running: bool = False


@dataclass(slots=True)
class _Backoff:
    until: float
    delay: float
    tried: DialTarget | None = None
    """What the failed dial read of the record (None: it failed before it had it). While
    backing off, a newer record is dialled at once: the agent came back (a restarted agent
    publishes a new endpoint record, with a higher sequence number or other endpoints)."""


class Connector:
    """Connections to remote AIDs, pooled per (local, remote)."""

    def __init__(
        self,
        service: QuicService,
        *,
        now: Callable[[], float],
        ipv6: bool,
        keepalive_s: float = QUIC_KEEPALIVE_S,
        own_nat: Callable[[], int] = lambda: 0,
        hub_path: HubPath | None = None,
        paths: PathCache | None = None,
        upgrade_path: HubPath | None = None,
    ) -> None:
        """``keepalive_s``: how often pooled connections are pinged (``quic.keepalive_s``);
        it must stay under the peers' QUIC idle timeout. ``own_nat``: our NAT type now (the
        record's value). ``hub_path``: dials through hubs (None: direct only). ``paths``: what
        worked per peer. ``upgrade_path``: a call through the hubs that never takes a relay;
        with it, a connection that came up through a TURN relay is upgraded in the background
        (:meth:`maintain`): the hubs are called again for ``upgrade_window_s``, and a
        connection that comes up without the relay replaces it in the pool (new streams use
        it; the relay connection is closed once it has no stream)."""
        self.service = service
        self.keepalive_s = keepalive_s
        self._now = now
        self._ipv6 = ipv6
        self._pool: dict[tuple[Aid, Aid], PeerConnection] = {}
        self._backoff: dict[tuple[Aid, Aid], _Backoff] = {}
        self._dialing: dict[tuple[Aid, Aid], anyio.Event] = {}
        self._own_nat = own_nat
        self._hub_path = hub_path
        self.paths = paths or PathCache()
        """The last path that worked per peer."""
        self._used: dict[PeerConnection, UsedPath] = {}
        self.last_tries: dict[Aid, tuple[PathTry, ...]] = {}
        """Per peer, the paths its last dial tried (bounded with :attr:`paths`' capacity)."""
        self.dials = 0
        self.dial_failures = 0
        self.direct_wins = 0
        self.punch_wins = 0
        self.hub_dials = 0
        self._upgrade_path = upgrade_path
        self._upgrading: dict[tuple[Aid, Aid], _Upgrade] = {}
        self.upgrade_window_s = UPGRADE_WINDOW_S
        self.upgrade_first_s = UPGRADE_FIRST_S
        self.upgrade_retry_s = UPGRADE_RETRY_S
        self.upgrade_try_s = UPGRADE_TRY_S
        self.upgrades = 0
        """Relay connections replaced by a connection without the relay."""
        self.upgrade_tries = 0

    def pooled(self, local: Aid, remote: Aid) -> bool:
        """Whether a live connection from ``local`` to ``remote`` is in the pool now."""
        pc = self._pool.get((local, remote))
        return pc is not None and not pc.closed

    def pooled_connection(self, local: Aid, remote: Aid) -> PeerConnection | None:
        """The live pooled connection from ``local`` to ``remote``, if any."""
        pc = self._pool.get((local, remote))
        return None if pc is None or pc.closed else pc

    def dialled_paths(self) -> list[tuple[Aid, Aid, UsedPath]]:
        """``(local, remote, path)`` of every live pooled connection we dialled."""
        out = []
        for (local, remote), pc in self._pool.items():
            used = None if pc.closed else self._used.get(pc)
            if used is not None:
                out.append((local, remote, used))
        return out

    def path(self, pc: PeerConnection) -> UsedPath | None:
        """The path a connection this connector dialled came up on (None: not ours, or the
        connection is gone)."""
        used = self._used.get(pc)
        if used is not None and pc.closed:
            del self._used[pc]
            return None
        return used

    async def connect(
        self,
        local: LocalCertificate,
        remote: Aid,
        endpoints: Callable[[], Awaitable[Sequence[str] | DialTarget]],
        *,
        timeout_s: float = DIAL_TIMEOUT_S,
    ) -> PeerConnection:
        """A verified connection from ``local`` to ``remote`` (pooled, or dialled now).

        ``endpoints`` is called only when a dial is needed (it resolves the record: its URLs,
        or with its NAT type and hubs a :class:`DialTarget`).

        Raises:
            Unreachable: no endpoint, back-off after recent failures, or every path failed
                without a timeout or handshake failure.
            HandshakeFailed: every endpoint answered but none proved ``remote`` (the cause
                is the last attempt's failure).
            RequestTimeout: nothing was verified within ``timeout_s``.

        Failures name every path tried and how long each took.

        Each names ``remote`` (``aid``) and the ``connect`` operation.
        """
        key = (local.aid, remote)
        fresh: DialTarget | None = None  # a record that changed since the last failure
        while True:
            pc = self._pool.get(key)
            if pc is not None and not pc.closed:
                pc.last_used = self._now()
                return pc
            pending = self._dialing.get(key)
            if pending is not None:
                await pending.wait()  # someone else dials: share the outcome
                if key in self._pool:
                    continue
            bo = self._backoff.get(key)
            if fresh is not None or bo is None or bo.until <= self._now():
                break
            fresh = _dial_target(await endpoints())
            if bo.tried is None or bo.tried == fresh:
                raise Unreachable(
                    f"{remote} failed recently; next attempt in {bo.until - self._now():.0f} s "
                    "(or as soon as it publishes other endpoints)",
                    aid=remote, operation="connect",
                )  # fmt: skip
            # its record changed since the failure (it came back): dial it now
        bo = self._backoff.get(key)
        done = self._dialing[key] = anyio.Event()
        target: DialTarget | None = None
        try:
            target = fresh if fresh is not None else _dial_target(await endpoints())
            targets = dial_targets(target.urls, ipv6=self._ipv6)
            hubs = target.hubs if self._hub_path is not None else ()
            if not targets and not hubs:
                raise Unreachable(f"{remote} publishes no endpoint we can dial "
                                  f"({list(target.urls)})", aid=remote,
                                  operation="connect")  # fmt: skip
            pc = await self._dial(local, remote, target, targets, hubs, timeout_s)
        except (Unreachable, HandshakeFailed, RequestTimeout):
            self.dial_failures += 1
            delay = min(bo.delay * 2, DIAL_BACKOFF_MAX_S) if bo else DIAL_BACKOFF_START_S
            self._backoff[key] = _Backoff(self._now() + delay, delay, target)
            raise
        finally:
            del self._dialing[key]
            done.set()
        self._backoff.pop(key, None)
        self._pool[key] = pc
        return pc

    async def _dial(
        self,
        local: LocalCertificate,
        remote: Aid,
        target: DialTarget,
        targets: list[Addr],
        hubs: tuple[str, ...],
        timeout_s: float,
    ) -> PeerConnection:
        """Direct and hub paths as planned; the first verified connection wins."""
        start = self._now()
        cached = self.paths.get(remote, start)
        plan = plan_dial(target_nat=target.nat_type, hubs=hubs, own_nat=self._own_nat(),
                         has_direct=bool(targets), cached=cached)  # fmt: skip
        if plan.direct_first in targets:
            targets = [plan.direct_first, *(t for t in targets if t != plan.direct_first)]
        won: list[tuple[PeerConnection, PathKind, Addr]] = []
        tries: list[PathTry] = []
        failures: list[BaseException] = []
        direct_over = anyio.Event()

        def record(kind: PathKind, began: float, outcome: str) -> None:
            tries.append(PathTry(kind, began - start, self._now() - began, outcome))

        async def direct(tg: anyio.abc.TaskGroup) -> None:
            began = self._now()
            try:
                pc = await self._happy_eyeballs(local, remote, targets, math.inf)
            except (HandshakeFailed, RequestTimeout, Unreachable) as exc:
                record(DIRECT, began, str(exc))
                failures.append(exc)
                direct_over.set()
                return
            except BaseException:
                record(DIRECT, began, _STOPPED)
                raise
            won.append((pc, DIRECT, pc.addr))
            record(DIRECT, began, "won")
            tg.cancel_scope.cancel()

        hub_path = self._hub_path

        async def punched(tg: anyio.abc.TaskGroup, after: float) -> None:
            assert hub_path is not None  # planned only with hubs, which need one
            with anyio.move_on_after(after):
                await direct_over.wait()  # direct gave up early: no head start to wait for
            began = self._now()
            self.hub_dials += 1
            try:
                pc = await hub_path(local, remote, hubs)
            except (HandshakeFailed, RequestTimeout, Unreachable) as exc:
                record(PUNCHED, began, str(exc))
                failures.append(exc)
                return
            except BaseException:
                record(PUNCHED, began, _STOPPED)
                raise
            kind, addr = hub_kind(pc)
            won.append((pc, kind, addr))
            record(kind, began, "won")
            tg.cancel_scope.cancel()

        with anyio.move_on_after(timeout_s):
            async with anyio.create_task_group() as tg:
                if targets:
                    tg.start_soon(direct, tg)
                if plan.hub_after_s is not None:
                    tg.start_soon(punched, tg, plan.hub_after_s)
        took = self._now() - start
        self.last_tries.pop(remote, None)
        while len(self.last_tries) >= self.paths.capacity:
            del self.last_tries[next(iter(self.last_tries))]
        if won:
            self.last_tries[remote] = tuple(
                dataclasses.replace(t, outcome="lost") if t.outcome == _STOPPED else t
                for t in tries
            )
            pc, kind, addr = won[0]
            for extra, extra_kind, _ in won[1:]:  # both paths came up in the same instant
                if extra_kind != PUNCHED:  # a punch's dial stays (see punch_paths.quic_dial)
                    extra.close(0, "another path won")
            used = UsedPath(kind, addr, took, took)
            self._used = {c: u for c, u in self._used.items() if not c.closed}
            self._used[pc] = used
            self.paths.put(remote, used, self._now())
            if kind == RELAY and self._upgrade_path is not None and hubs:
                now = self._now()
                self._upgrading[(local.aid, remote)] = _Upgrade(
                    local, hubs, pc, now + self.upgrade_window_s, now + self.upgrade_first_s
                )
            if kind == DIRECT:
                self.direct_wins += 1
            else:
                self.punch_wins += 1
            logger.info("connect.up peer=%s path=%s addr=%s took=%.3f plan=%s", remote.short(),
                        kind, addr, took, plan.reason)  # fmt: skip
            return pc
        self.paths.forget(remote)
        tries = [t if t.outcome != _STOPPED else dataclasses.replace(t, outcome="no answer")
                 for t in tries]  # fmt: skip
        self.last_tries[remote] = tuple(tries)
        tried = "; ".join(t.describe() for t in tries) or "nothing"
        if plan.hub_after_s is None and failures:  # direct only, and it failed: its error
            f = failures[-1]
            assert isinstance(f, A2ALError)
            raise type(f)(f"{f.message} (direct path, {took:.2f} s)", aid=remote,
                          operation="connect") from (f.__cause__ or f)  # fmt: skip
        cause = failures[-1] if failures else None
        if len(failures) < bool(targets) + (plan.hub_after_s is not None):
            at = ", ".join(f"{h}:{p}" for h, p in targets)
            raise RequestTimeout(f"no connection to {remote} within {timeout_s:g} s"
                                 + (f" at {at}" if at else "") + f"; tried {tried}",
                                 aid=remote, operation="connect") from cause  # fmt: skip
        if any(isinstance(f, HandshakeFailed) for f in failures):
            raise HandshakeFailed(f"could not verify {remote}; tried {tried}", aid=remote,
                                  operation="connect") from cause  # fmt: skip
        if any(isinstance(f, RequestTimeout) for f in failures):
            raise RequestTimeout(f"no connection to {remote}; tried {tried}", aid=remote,
                                 operation="connect") from cause  # fmt: skip
        raise Unreachable(f"could not reach {remote}; tried {tried}", aid=remote,
                          operation="connect") from cause  # fmt: skip

    async def _happy_eyeballs(
        self, local: LocalCertificate, remote: Aid, targets: list[Addr], timeout_s: float
    ) -> PeerConnection:
        winner: list[PeerConnection] = []
        errors: list[str] = []
        failures: list[HandshakeFailed] = []
        attempts: list[PeerConnection] = []

        async def attempt(addr: Addr, delay: float, tg: anyio.abc.TaskGroup) -> None:
            await anyio.sleep(delay)
            if winner:
                return
            self.dials += 1
            pc = self.service.dial(local, remote, addr)
            attempts.append(pc)
            try:
                await pc.wait_ready()
            except HandshakeFailed as exc:
                errors.append(f"{addr[0]}:{addr[1]}: {exc}")
                failures.append(exc)
                return
            if not winner:
                winner.append(pc)
                tg.cancel_scope.cancel()

        try:
            with anyio.move_on_after(timeout_s):
                async with anyio.create_task_group() as tg:
                    for i, addr in enumerate(targets):
                        tg.start_soon(attempt, addr, i * DIAL_STAGGER_S, tg)
        finally:  # also when the dial is cancelled (another path won, or its time ran out)
            for pc in attempts:
                if not winner or pc is not winner[0]:
                    pc.close(0, "another path won")
        if winner:
            return winner[0]
        cause = failures[-1] if failures else None  # the last attempt's, when one failed
        if errors and len(errors) == len(targets):
            raise HandshakeFailed(f"could not verify {remote}: " + "; ".join(errors),
                                  aid=remote, operation="connect") from cause  # fmt: skip
        raise RequestTimeout(
            f"no answer from {remote} within {timeout_s:g} s at "
            + ", ".join(f"{h}:{p}" for h, p in targets)
            + (f" ({'; '.join(errors)})" if errors else ""),
            aid=remote, operation="connect",
        ) from cause  # fmt: skip

    async def maintain(self) -> None:
        """Keep-alive, idle eviction and relay upgrades, forever (run in the node's task
        group)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._upgrade_loop, tg)
            await self._keepalive_loop()

    async def _upgrade_loop(self, tg: anyio.abc.TaskGroup) -> None:
        while True:
            await anyio.sleep(UPGRADE_TICK_S)
            now = self._now()
            for key, up in list(self._upgrading.items()):
                if self._pool.get(key) is not up.relay or up.relay.closed or now > up.until:
                    if not up.running:
                        del self._upgrading[key]
                elif now >= up.next and not up.running:
                    up.running = True
                    tg.start_soon(self._try_upgrade, key, up, tg)

    async def _try_upgrade(
        self, key: tuple[Aid, Aid], up: _Upgrade, tg: anyio.abc.TaskGroup
    ) -> None:
        """One call through the hubs without the relay; its connection replaces the relay's."""
        assert self._upgrade_path is not None
        self.upgrade_tries += 1
        began = self._now()
        pc: PeerConnection | None = None
        try:
            with anyio.move_on_after(self.upgrade_try_s):
                pc = await self._upgrade_path(up.local, key[1], up.hubs)
        except (A2ALError, OSError) as exc:
            logger.info("connect.upgrade_failed peer=%s error=%s", key[1].short(), exc)
        finally:
            up.running = False
            up.next = self._now() + self.upgrade_retry_s
        if pc is None:
            return
        kind, addr = hub_kind(pc)
        if kind == RELAY or self._pool.get(key) is not up.relay or up.relay.closed:
            if kind != PUNCHED:  # a punch's dial stays (see punch_paths.quic_dial)
                pc.close(0, "not an upgrade")
            return
        took = self._now() - began
        used = UsedPath(kind, addr, took, took)
        self._pool[key] = pc
        self._used[pc] = used
        self.paths.put(key[1], used, self._now())
        self._upgrading.pop(key, None)
        self.upgrades += 1
        logger.info("connect.upgraded peer=%s path=%s addr=%s", key[1].short(), kind, addr)
        tg.start_soon(_retire, up.relay)

    async def _keepalive_loop(self) -> None:
        while True:
            await anyio.sleep(self.keepalive_s)
            now = self._now()
            for key, pc in list(self._pool.items()):
                if pc.closed:
                    del self._pool[key]
                elif now - pc.last_used > POOL_IDLE_EVICT_S and not pc.streams:
                    del self._pool[key]
                    pc.close(0, "idle")
                else:
                    try:
                        pc.ping()  # marks only this connection for the host
                    except Exception as exc:  # its stack refused (e.g. a core closed under
                        if not containable(exc):  # us): this connection only, not the round
                            raise
                        del self._pool[key]
                        pc.close(0, "keep-alive failed")
                        logger.info("connect.keepalive_failed peer=%s error=%r", key, exc)


async def _retire(relay: PeerConnection) -> None:
    """Close a replaced relay connection once its streams are done (at most after the pool's
    idle time)."""
    with anyio.move_on_after(POOL_IDLE_EVICT_S):
        while relay.streams and not relay.closed:  # noqa: ASYNC110 (no event for "no stream")
            await anyio.sleep(1.0)
    relay.close(0, "moved to a path without the relay")
