"""The node's port-mapping service: :class:`PortMapper` runs a
:class:`~a2al_mcp.nat.portmap.PortMapMachine` against a gateway driver.

The node owns it in its task group::

    mapper = PortMapper.from_config(config.nat, listen=(host, port), on_change=callback)
    if mapper is not None:                       # None unless nat.upnp is true
        await task_group.start(mapper.run)       # returns at once; mapping goes on behind
        ...
        mapper.current()                         # ("198.51.99.41", 4121) or None
        mapper.network_changed()                 # local address changed: check now
        mapper.statistics()
        await mapper.aclose()                    # deletes the mapping (bounded), run() returns

Nothing is sent unless ``nat.upnp`` is true: :meth:`PortMapper.from_config` returns None
otherwise. The drivers are UPnP IGD v1/v2 (:mod:`.upnp`, when ``miniupnpc`` is installed)
then PCP/NAT-PMP (:mod:`.pmp`) to the default gateway or ``nat.gateway``.

Errors stay here: a driver's failure becomes the machine's failure event (counted, logged once
per back-off, at WARNING only when the reason changes), an ``on_change`` callback that raises is
counted and logged, and even a bug in this module ends only this service, never the node.
Cancelling the task group still deletes the mapping (shielded, within ``close_timeout_s``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections import deque
from collections.abc import Callable, Iterable

import anyio
from anyio.abc import TaskStatus

from .._clock import Clock, SystemClock
from .._containment import containable
from ..config import NatConfig
from ..errors import ExtraMissing, UsageError
from .pmp import PmpClient
from .portmap import (
    AddMapping,
    Close,
    Deleted,
    DeleteMapping,
    Discover,
    Effect,
    Event,
    GatewayFound,
    GatewayMissing,
    Lost,
    Mapped,
    MappingConflict,
    MappingFailed,
    MappingGranted,
    NetworkChanged,
    PortMapConfig,
    PortMapMachine,
    PortMapState,
    PortMapStats,
    SleepUntil,
    Start,
    Tick,
)
from .portmap_client import FirstGateway, GatewayClient, Granted
from .upnp import UpnpClient, load_miniupnpc

__all__ = ["PortMapper", "PortMapperStats", "portmap_config"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
OnChange = Callable[[Address | None], None]


def portmap_config(nat: NatConfig) -> PortMapConfig:
    """The port-mapping limits the ``[nat]`` settings choose (the rest keep their defaults)."""
    return PortMapConfig(
        lease_s=nat.upnp_lease_s,
        backoff_initial_s=nat.upnp_backoff_initial_s,
        backoff_max_s=nat.upnp_backoff_max_s,
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PortMapperStats:
    """What :meth:`PortMapper.statistics` reports."""

    running: bool
    protocol: str
    """``upnp``, ``pcp`` or ``nat-pmp`` once a gateway answered, else empty."""
    mapping: PortMapStats
    driver_errors: int
    """Gateway requests that failed (each one a failure or a failed deletion)."""
    callback_errors: int
    """``on_change`` calls that raised."""


class PortMapper:
    """Keeps one UDP port mapping on the LAN gateway for ``internal_port``."""

    def __init__(
        self,
        config: PortMapConfig,
        internal_port: int,
        client: GatewayClient,
        *,
        clock: Clock | None = None,
        on_change: OnChange | None = None,
    ) -> None:
        self._config = config
        self._machine = PortMapMachine(config, internal_port)
        self._client = client
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._on_change = on_change
        self._wake = anyio.Event()
        self._close_requested = False
        self._close_fed = False
        self._network_changed = False
        self._running = False
        self._started = False
        self._done = anyio.Event()
        self._discovery: anyio.CancelScope | None = None
        self._driver_errors = 0
        self._callback_errors = 0
        self._logged_reason = ""
        self._first_done = False

    @classmethod
    def from_config(
        cls,
        nat: NatConfig,
        *,
        listen: Address,
        clock: Clock | None = None,
        on_change: OnChange | None = None,
    ) -> PortMapper | None:
        """The node's mapper for its UDP socket bound to ``listen``, or None when ``nat.upnp``
        is false (nothing may be sent) or the socket is bound to loopback or to a specific
        IPv6 address (nothing a gateway could map to)."""
        if not nat.upnp:
            return None
        host, port = listen
        internal_host: str | None = None
        if host not in ("", "0.0.0.0", "::"):
            ip = ipaddress.ip_address(host)
            if ip.is_loopback or ip.version == 6:
                log.info("port mapping: not mapping a socket bound to %s", host)
                return None
            internal_host = host
        if port == 0:
            raise UsageError("port mapping needs the bound port, not 0")
        config = portmap_config(nat)
        clients: list[GatewayClient] = []
        try:
            load_miniupnpc()
            clients.append(UpnpClient(config, internal_host=internal_host))
        except ExtraMissing as exc:
            log.info("port mapping: UPnP off (%s); PCP/NAT-PMP only", exc)
        clients.append(PmpClient(config, gateway=nat.gateway or None, local_host=internal_host))
        return cls(config, port, FirstGateway(clients), clock=clock, on_change=on_change)

    # ------------------------------------------------------------------------- reading

    def current(self) -> Address | None:
        """The external address the gateway maps to us now, or None."""
        return self._machine.address

    @property
    def settling(self) -> bool:
        """A gateway was found and the first mapping request is under way: a mapping may be
        about to change what the node publishes. (Not while discovering: with no gateway
        that waits seconds for nothing, and the node should not.)"""
        return (
            self._running
            and not self._first_done
            and not self._close_requested
            and self._machine.state is PortMapState.ADDING
        )

    def statistics(self) -> PortMapperStats:
        return PortMapperStats(
            running=self._running,
            protocol=self._client.protocol,
            mapping=self._machine.statistics(),
            driver_errors=self._driver_errors,
            callback_errors=self._callback_errors,
        )

    # ------------------------------------------------------------------------ commands

    def network_changed(self) -> None:
        """Our address or route changed: look at the gateway now instead of at the next
        renewal or the end of the back-off."""
        self._network_changed = True
        self._wake.set()

    async def aclose(self) -> None:
        """Delete the mapping (if any) and wait until :meth:`run` has returned. Idempotent;
        immediate when :meth:`run` never started. A discovery under way is abandoned; a
        mapping request under way is answered first (one SOAP/PCP exchange)."""
        self._close_requested = True
        self._wake.set()
        if self._discovery is not None:
            self._discovery.cancel()
        if self._started:
            await self._done.wait()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Map, renew, remap and back off until :meth:`aclose` (or cancellation); then delete
        the mapping. Reports started at once (mapping takes seconds and is not awaited)."""
        if self._started:
            raise UsageError("PortMapper.run() called twice")
        self._started = True
        self._running = True
        task_status.started()
        try:
            if not self._close_requested:
                await self._drive(self._machine.handle(Start(), self._clock.monotonic()))
        except Exception as exc:
            if not containable(exc):
                raise
            log.error("port mapping stopped by an unexpected error", exc_info=exc)
        finally:
            try:
                await self._close_shielded()
            finally:
                self._running = False
                self._done.set()

    # ------------------------------------------------------------------------- driving

    async def _close_shielded(self) -> None:
        machine = self._machine
        if machine.closed or machine.state is PortMapState.IDLE:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._config.close_timeout_s):
            now = self._clock.monotonic()
            self._close_requested = self._close_fed = True
            effects = machine.handle(Close(), now)
            # A request cut short by cancellation will never be answered.
            if machine.state is PortMapState.DISCOVERING:
                effects += machine.handle(GatewayMissing("stopped"), now)
            elif machine.state is PortMapState.ADDING:
                effects += machine.handle(MappingFailed("stopped"), now)
            await self._drive(effects)

    async def _drive(self, effects: Iterable[Effect]) -> None:
        queue = deque(effects)
        while queue:
            event = await self._perform(queue.popleft())
            if event is None:
                continue
            if self._close_requested and not self._close_fed:
                self._close_fed = True
                queue.extend(self._machine.handle(Close(), self._clock.monotonic()))
            queue.extend(self._machine.handle(event, self._clock.monotonic()))

    async def _perform(self, effect: Effect) -> Event | None:
        match effect:
            case Discover():
                # The one long request (SSDP waits seconds): aclose() cuts it short.
                with anyio.CancelScope() as scope:
                    self._discovery = scope
                    if self._close_requested:
                        scope.cancel()
                    try:
                        return GatewayFound(await self._client.discover())
                    except Exception as exc:
                        self._first_done = True
                        return GatewayMissing(self._failed(exc))
                    finally:
                        self._discovery = None
                return GatewayMissing("closing")
            case AddMapping(external_port, internal_port, lease_s):
                try:
                    answer = await self._client.add(external_port, internal_port, lease_s)
                except Exception as exc:
                    self._first_done = True
                    return MappingFailed(self._failed(exc))
                if isinstance(answer, Granted):
                    return MappingGranted(answer.external_port, answer.lease_s, answer.external_ip)
                return MappingConflict(answer.external_port)
            case DeleteMapping(external_port):
                try:
                    await self._client.delete(external_port)
                except Exception as exc:
                    self._failed(exc)
                    return Deleted(ok=False)
                log.info("port mapping: deleted external port %d", external_port)
                return Deleted(ok=True)
            case Mapped(address, gateway):
                log.info("port mapping: %s:%d via %s", address[0], address[1], gateway)
                self._first_done = True
                self._logged_reason = ""
                self._notify(address)
            case Lost(address, reason):
                log.info("port mapping: lost %s:%d (%s)", address[0], address[1], reason)
                self._notify(None)
            case SleepUntil(deadline):
                await self._sleep_until(deadline)
                if self._network_changed and not self._close_requested:
                    self._network_changed = False
                    return NetworkChanged()
                return Tick()
        return None

    def _failed(self, exc: Exception) -> str:
        if not containable(exc):
            raise exc
        self._driver_errors += 1
        reason = str(exc) or type(exc).__name__
        # One failure = one back-off: this logs at most once per back-off, loudly only when
        # the reason is new.
        level = logging.DEBUG if reason == self._logged_reason else logging.WARNING
        self._logged_reason = reason
        log.log(level, "port mapping: %s", reason)
        return reason

    def _notify(self, address: Address | None) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(address)
        except Exception as exc:
            if not containable(exc):
                raise
            self._callback_errors += 1
            log.warning("port mapping: on_change callback failed", exc_info=exc)

    async def _sleep_until(self, deadline: float) -> None:
        if self._close_requested or self._network_changed:
            return
        self._wake = anyio.Event()
        with anyio.move_on_after(max(0.0, deadline - self._clock.monotonic())):
            await self._wake.wait()
