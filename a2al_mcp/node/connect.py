"""AID → verified QUIC connection: dial targets, Happy Eyeballs, a pool, back-off (§5.5).

:class:`Connector` keeps one connection per ``(local AID, remote AID)``. A new connection dials
every ``quic://``/``udp://`` endpoint of the remote's endpoint record (IP literals, de-duplicated,
IPv6 only where our socket can send it), starting one attempt every 250 ms until one is
verified; the others are closed. Failed dials back off 15 s, doubling to 5 min. Pooled
connections are pinged every ``quic.keepalive_s`` (25 s, §5.1) and closed after 5 min without
use. The timers are a2ald's (:mod:`a2al_mcp.protocol.timers`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final
from urllib.parse import urlsplit

import anyio

from .._containment import containable
from .._types import Addr
from ..errors import HandshakeFailed, RequestTimeout, Unreachable
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

__all__ = ["Connector", "dial_targets"]

logger = logging.getLogger(__name__)

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


@dataclasses.dataclass(slots=True)
class _Backoff:
    until: float
    delay: float


class Connector:
    """Connections to remote AIDs, pooled per (local, remote)."""

    def __init__(
        self,
        service: QuicService,
        *,
        now: Callable[[], float],
        ipv6: bool,
        keepalive_s: float = QUIC_KEEPALIVE_S,
    ) -> None:
        """``keepalive_s``: how often pooled connections are pinged (``quic.keepalive_s``);
        it must stay under the peers' QUIC idle timeout."""
        self.service = service
        self.keepalive_s = keepalive_s
        self._now = now
        self._ipv6 = ipv6
        self._pool: dict[tuple[Aid, Aid], PeerConnection] = {}
        self._backoff: dict[tuple[Aid, Aid], _Backoff] = {}
        self._dialing: dict[tuple[Aid, Aid], anyio.Event] = {}
        self.dials = 0
        self.dial_failures = 0

    def pooled(self, local: Aid, remote: Aid) -> bool:
        """Whether a live connection from ``local`` to ``remote`` is in the pool now."""
        pc = self._pool.get((local, remote))
        return pc is not None and not pc.closed

    async def connect(
        self,
        local: LocalCertificate,
        remote: Aid,
        endpoints: Callable[[], Awaitable[Sequence[str]]],
        *,
        timeout_s: float = DIAL_TIMEOUT_S,
    ) -> PeerConnection:
        """A verified connection from ``local`` to ``remote`` (pooled, or dialled now).

        ``endpoints`` is called only when a dial is needed (it resolves the record).

        Raises:
            Unreachable: no endpoint, or back-off after recent failures.
            HandshakeFailed: every endpoint answered but none proved ``remote`` (the cause
                is the last attempt's failure).
            RequestTimeout: nothing was verified within ``timeout_s``.

        Each names ``remote`` (``aid``) and the ``connect`` operation.
        """
        key = (local.aid, remote)
        while True:
            pc = self._pool.get(key)
            if pc is not None and not pc.closed:
                pc.last_used = self._now()
                return pc
            pending = self._dialing.get(key)
            if pending is None:
                break
            await pending.wait()  # someone else dials: share the outcome
            if key not in self._pool:
                break
        bo = self._backoff.get(key)
        if bo is not None and bo.until > self._now():
            raise Unreachable(
                f"{remote} failed recently; next attempt in {bo.until - self._now():.0f} s",
                aid=remote, operation="connect",
            )  # fmt: skip
        done = self._dialing[key] = anyio.Event()
        try:
            urls = await endpoints()
            targets = dial_targets(urls, ipv6=self._ipv6)
            if not targets:
                raise Unreachable(f"{remote} publishes no endpoint we can dial ({list(urls)})",
                                  aid=remote, operation="connect")  # fmt: skip
            pc = await self._happy_eyeballs(local, remote, targets, timeout_s)
        except (Unreachable, HandshakeFailed, RequestTimeout):
            self.dial_failures += 1
            delay = min(bo.delay * 2, DIAL_BACKOFF_MAX_S) if bo else DIAL_BACKOFF_START_S
            self._backoff[key] = _Backoff(self._now() + delay, delay)
            raise
        finally:
            del self._dialing[key]
            done.set()
        self._backoff.pop(key, None)
        self._pool[key] = pc
        return pc

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

        with anyio.move_on_after(timeout_s):
            async with anyio.create_task_group() as tg:
                for i, addr in enumerate(targets):
                    tg.start_soon(attempt, addr, i * DIAL_STAGGER_S, tg)
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
        """Keep-alive and idle eviction, forever (run in the node's task group)."""
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
