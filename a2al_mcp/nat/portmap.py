"""Port mapping on the LAN gateway as a sans-I/O state machine (core: no clock, no sockets).

The node wants one mapping: UDP, internal port = its DHT/QUIC port, external port = the same
(a2ald's rule, wire §6.2: on a conflict try +1 … +9), lease 3600 s, renewed at half of what
the gateway granted, deleted on close. Failures back off from 60 s, doubling up to a cap (what
a2ald does, testbed README D9, rather than the "at most every 60 s" of the write-up). A lost or
changed gateway means a new mapping.

:class:`PortMapMachine` is driven by events (:class:`Start`, a driver's answers, :class:`Tick`,
:class:`NetworkChanged`, :class:`Close`) with ``now`` passed in, and answers with effects:
at most one request to the gateway (:class:`Discover`, :class:`AddMapping`,
:class:`DeleteMapping`), notifications (:class:`Mapped`, :class:`Lost`) and
:class:`SleepUntil` when it waits for a deadline. Which protocol talks to the gateway (UPnP
IGD, PCP, NAT-PMP) is the driver's business; :mod:`a2al_mcp.nat.portmap_service` runs the
machine against one.

Every limit is in :class:`PortMapConfig`.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Final

from ..errors import ConfigError, UsageError

__all__ = [
    "AddMapping",
    "Close",
    "DeleteMapping",
    "Deleted",
    "Discover",
    "Effect",
    "Event",
    "GatewayFound",
    "GatewayMissing",
    "Lost",
    "Mapped",
    "MappingConflict",
    "MappingFailed",
    "MappingGranted",
    "NetworkChanged",
    "PortMapConfig",
    "PortMapMachine",
    "PortMapState",
    "PortMapStats",
    "SleepUntil",
    "Start",
    "Tick",
]

MAX_PORT: Final = 65535


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PortMapConfig:
    """Every limit of port mapping, the machine's and its drivers'."""

    lease_s: int = 3600
    """Lease asked for (a2ald: 3600 s). IGDv2 gateways refuse 0 ("permanent")."""
    renew_fraction: float = 0.5
    """Renew after this fraction of the lease the gateway granted."""
    min_renew_s: float = 30.0
    """Never renew sooner than this after a grant (a gateway granting tiny leases is not
    hammered)."""
    port_tries: int = 10
    """External ports tried: the internal port, then +1 … (a2ald: +1 … +9)."""
    backoff_initial_s: float = 60.0
    """Wait after the first failure; doubles with each failure in a row."""
    backoff_max_s: float = 3600.0
    """Cap on the back-off."""
    discovery_timeout_s: float = 2.0
    """How long UPnP discovery waits for SSDP answers to each search target (at least 1 s;
    miniupnpc asks up to four in turn: with no gateway, discovery takes 4 × this)."""
    request_timeout_s: float = 10.0
    """Bound on one exchange with the gateway (a UPnP discovery plus description fetch, one
    SOAP call, one PCP/NAT-PMP request with its retransmissions)."""
    pmp_initial_rto_s: float = 0.25
    """PCP/NAT-PMP first retransmission timeout (RFC 6886 §3.1: 250 ms, doubling)."""
    pmp_tries: int = 4
    """PCP/NAT-PMP sends per request (RFC 6886 allows 9; 4 give up after 3.75 s)."""
    close_timeout_s: float = 3.0
    """Bound on deleting the mapping when the service closes."""
    description: str = "a2al-quic"
    """UPnP mapping description (a2ald's)."""

    def __post_init__(self) -> None:
        for name in (
            "lease_s",
            "min_renew_s",
            "backoff_initial_s",
            "backoff_max_s",
            "discovery_timeout_s",
            "request_timeout_s",
            "pmp_initial_rto_s",
            "close_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"port mapping: {name} must be positive")
        if not 0 < self.renew_fraction < 1:
            raise ConfigError("port mapping: renew_fraction must be between 0 and 1")
        if not 1 <= self.port_tries <= 100:
            raise ConfigError("port mapping: port_tries must be 1-100")
        if self.pmp_tries < 1:
            raise ConfigError("port mapping: pmp_tries must be at least 1")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError("port mapping: backoff_max_s must be ≥ backoff_initial_s")

    def backoff(self, streak: int) -> float:
        """The wait after ``streak`` failures in a row (``streak`` ≥ 1)."""
        return min(self.backoff_initial_s * 2.0 ** min(streak - 1, 62), self.backoff_max_s)


# ------------------------------------------------------------------------------- events in


@dataclasses.dataclass(frozen=True, slots=True)
class Start:
    """Begin: look for a gateway."""


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayFound:
    """The driver found a gateway; ``gateway`` names it (protocol and address), so a new
    name means a new gateway."""

    gateway: str


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayMissing:
    """No gateway answered (or none offers a protocol we speak)."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class MappingGranted:
    """The gateway holds ``external_ip:external_port`` → us for ``lease_s`` seconds (0: no
    expiry). PCP and NAT-PMP may grant another port than the one asked for."""

    external_port: int
    lease_s: float
    external_ip: str


@dataclasses.dataclass(frozen=True, slots=True)
class MappingConflict:
    """The external port asked for belongs to someone else (UPnP 718)."""

    external_port: int


@dataclasses.dataclass(frozen=True, slots=True)
class MappingFailed:
    """The gateway refused or did not answer a mapping request."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Deleted:
    """The deletion asked for is done (``ok``) or failed; either way it is over."""

    ok: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Tick:
    """Time passed (the driver woke at a :class:`SleepUntil` deadline)."""


@dataclasses.dataclass(frozen=True, slots=True)
class NetworkChanged:
    """Our local address or route changed: check the gateway and the mapping now."""


@dataclasses.dataclass(frozen=True, slots=True)
class Close:
    """Stop: delete the mapping if there is one."""


Event = (
    Start
    | GatewayFound
    | GatewayMissing
    | MappingGranted
    | MappingConflict
    | MappingFailed
    | Deleted
    | Tick
    | NetworkChanged
    | Close
)

# ------------------------------------------------------------------------------ effects out


@dataclasses.dataclass(frozen=True, slots=True)
class Discover:
    """Find the gateway; answer :class:`GatewayFound` or :class:`GatewayMissing`."""


@dataclasses.dataclass(frozen=True, slots=True)
class AddMapping:
    """Ask the gateway for UDP ``external_port`` → our ``internal_port`` for ``lease_s``;
    answer :class:`MappingGranted`, :class:`MappingConflict` or :class:`MappingFailed`."""

    external_port: int
    internal_port: int
    lease_s: int


@dataclasses.dataclass(frozen=True, slots=True)
class DeleteMapping:
    """Remove our mapping of ``external_port``; answer :class:`Deleted`."""

    external_port: int


@dataclasses.dataclass(frozen=True, slots=True)
class Mapped:
    """We are reachable at ``address`` (external ip, port) through ``gateway``. Emitted when
    the address is new or changed, not on every renewal."""

    address: tuple[str, int]
    gateway: str


@dataclasses.dataclass(frozen=True, slots=True)
class Lost:
    """The address announced by the last :class:`Mapped` no longer holds."""

    address: tuple[str, int]
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class SleepUntil:
    """Nothing to do before ``deadline`` (then send :class:`Tick`)."""

    deadline: float


Effect = Discover | AddMapping | DeleteMapping | Mapped | Lost | SleepUntil


class PortMapState(enum.Enum):
    IDLE = "idle"
    DISCOVERING = "discovering"
    ADDING = "adding"
    MAPPED = "mapped"
    BACKOFF = "backoff"
    DELETING = "deleting"
    CLOSED = "closed"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PortMapStats:
    """Counters and state of one :class:`PortMapMachine`."""

    state: str
    gateway: str | None
    address: tuple[str, int] | None
    discoveries: int
    add_requests: int
    grants: int
    renewals: int
    conflicts: int
    failures: int
    failure_streak: int
    losses: int
    deletions: int
    deadline: float | None
    last_error: str


_PENDING: Final = (PortMapState.DISCOVERING, PortMapState.ADDING)


class PortMapMachine:
    """One wanted UDP mapping of ``internal_port``; see the module docstring."""

    def __init__(self, config: PortMapConfig, internal_port: int) -> None:
        if not 1 <= internal_port <= MAX_PORT:
            raise UsageError(f"port mapping: internal port {internal_port} is not 1-65535")
        self._config = config
        self._internal = internal_port
        self._state = PortMapState.IDLE
        self._gateway: str | None = None
        self._held: int | None = None  # external port we hold on self._gateway
        self._address: tuple[str, int] | None = None  # announced by the last Mapped
        self._candidates: tuple[int, ...] = ()
        self._next_candidate = 0
        self._renewing = False
        self._closing = False
        self._deadline: float | None = None
        self._streak = 0
        self._last_error = ""
        self._n = dict.fromkeys(
            (
                "discoveries",
                "add_requests",
                "grants",
                "renewals",
                "conflicts",
                "failures",
                "losses",
                "deletions",
            ),
            0,
        )

    # ------------------------------------------------------------------- reading state

    @property
    def state(self) -> PortMapState:
        return self._state

    @property
    def address(self) -> tuple[str, int] | None:
        """The mapped external address, as last announced; None when not mapped."""
        return self._address

    @property
    def deadline(self) -> float | None:
        """When the machine next wants a :class:`Tick` (None: it waits for an answer)."""
        return self._deadline

    @property
    def closed(self) -> bool:
        return self._state is PortMapState.CLOSED

    def statistics(self) -> PortMapStats:
        return PortMapStats(
            state=self._state.value,
            gateway=self._gateway,
            address=self._address,
            failure_streak=self._streak,
            deadline=self._deadline,
            last_error=self._last_error,
            **self._n,
        )

    # ------------------------------------------------------------------------- driving

    def handle(self, event: Event, now: float) -> list[Effect]:
        """Advance on ``event`` at time ``now``; return what to do next.

        Raises:
            UsageError: a driver answer that matches no request of the current state (a bug
                in the caller), or :class:`Start` twice.
        """
        match event:
            case Start():
                if self._state is not PortMapState.IDLE:
                    raise UsageError("port mapping: started twice")
                return self._discover()
            case Close():
                return self._close()
            case Tick():
                return self._tick(now)
            case NetworkChanged():
                if self._state in (PortMapState.MAPPED, PortMapState.BACKOFF):
                    return self._discover()
                return []
            case GatewayFound(gateway):
                self._expect(PortMapState.DISCOVERING, event)
                return self._found(gateway, now)
            case GatewayMissing(reason):
                self._expect(PortMapState.DISCOVERING, event)
                if self._closing:
                    self._held = None  # no gateway to delete it from
                    return self._finish_close(reason)
                return self._fail(reason, now)
            case MappingGranted():
                self._expect(PortMapState.ADDING, event)
                return self._granted(event, now)
            case MappingConflict(port):
                self._expect(PortMapState.ADDING, event)
                return self._conflict(port, now)
            case MappingFailed(reason):
                self._expect(PortMapState.ADDING, event)
                if self._closing:
                    return self._finish_close(reason)
                return self._fail(reason, now)
            case Deleted():
                self._expect(PortMapState.DELETING, event)
                self._state = PortMapState.CLOSED
                return []
        raise UsageError(f"port mapping: unknown event {event!r}")

    # --------------------------------------------------------------------- transitions

    def _expect(self, state: PortMapState, event: Event) -> None:
        if self._state is not state:
            raise UsageError(
                f"port mapping: {type(event).__name__} while {self._state.value}, "
                f"expected while {state.value}"
            )

    def _discover(self) -> list[Effect]:
        self._renewing = self._held is not None
        self._state = PortMapState.DISCOVERING
        self._deadline = None
        self._n["discoveries"] += 1
        return [Discover()]

    def _found(self, gateway: str, now: float) -> list[Effect]:
        effects: list[Effect] = []
        if self._gateway is not None and gateway != self._gateway:
            # The old gateway is gone from where we look: its mapping (if any) expires there.
            effects += self._lose(f"gateway changed from {self._gateway} to {gateway}")
            self._held = None
            self._renewing = False
        self._gateway = gateway
        if self._closing:
            return effects + self._finish_close("closing")
        ports = [self._internal + i for i in range(self._config.port_tries)]
        ports = [p for p in ports if p <= MAX_PORT]
        if self._held is not None:
            ports = [self._held] + [p for p in ports if p != self._held]
        self._candidates = tuple(ports)
        self._next_candidate = 0
        return effects + self._add_next(now)

    def _add_next(self, now: float) -> list[Effect]:
        if self._next_candidate >= len(self._candidates):
            return self._fail(f"external ports {self._describe_candidates()} are all taken", now)
        port = self._candidates[self._next_candidate]
        self._next_candidate += 1
        self._state = PortMapState.ADDING
        self._n["add_requests"] += 1
        return [AddMapping(port, self._internal, self._config.lease_s)]

    def _describe_candidates(self) -> str:
        c = self._candidates
        return f"{c[0]}-{c[-1]}" if len(c) > 1 else str(c[0]) if c else "(none)"

    def _granted(self, grant: MappingGranted, now: float) -> list[Effect]:
        if not 1 <= grant.external_port <= MAX_PORT or not grant.external_ip:
            return self._fail(f"gateway granted an unusable mapping {grant!r}", now)
        effects: list[Effect] = []
        if self._held is not None and self._held != grant.external_port:
            effects += self._lose(f"external port moved to {grant.external_port}")
        self._held = grant.external_port
        self._n["grants"] += 1
        if self._renewing:
            self._n["renewals"] += 1
        if self._closing:
            return effects + self._finish_close("closing")
        self._streak = 0
        self._last_error = ""
        self._state = PortMapState.MAPPED
        lease = grant.lease_s if grant.lease_s > 0 else self._config.lease_s
        renew_in = max(lease * self._config.renew_fraction, self._config.min_renew_s)
        self._deadline = now + renew_in
        address = (grant.external_ip, grant.external_port)
        if address != self._address:
            if self._address is not None:
                effects += self._lose(f"external address changed to {address[0]}:{address[1]}")
            self._address = address
            effects.append(Mapped(address, self._gateway or ""))
        effects.append(SleepUntil(self._deadline))
        return effects

    def _conflict(self, port: int, now: float) -> list[Effect]:
        self._n["conflicts"] += 1
        effects: list[Effect] = []
        if self._held == port:
            # Our own mapping is gone and someone else took the port.
            effects += self._lose(f"external port {port} taken by another host")
            self._held = None
        if self._closing:
            return effects + self._finish_close("closing")
        return effects + self._add_next(now)

    def _fail(self, reason: str, now: float) -> list[Effect]:
        effects = self._lose(reason)
        self._held = None
        self._streak += 1
        self._n["failures"] += 1
        self._last_error = reason
        self._state = PortMapState.BACKOFF
        self._deadline = now + self._config.backoff(self._streak)
        effects.append(SleepUntil(self._deadline))
        return effects

    def _lose(self, reason: str) -> list[Effect]:
        if self._address is None:
            return []
        lost = Lost(self._address, reason)
        self._address = None
        self._n["losses"] += 1
        return [lost]

    def _tick(self, now: float) -> list[Effect]:
        if self._state not in (PortMapState.MAPPED, PortMapState.BACKOFF):
            return []
        if self._deadline is not None and now < self._deadline:
            return [SleepUntil(self._deadline)]  # woken early: wait on
        return self._discover()

    def _close(self) -> list[Effect]:
        if self._state in (PortMapState.DELETING, PortMapState.CLOSED):
            return []
        self._closing = True
        if self._state in _PENDING:
            return []  # the answer to the request in flight finishes the close
        return self._finish_close("closing")

    def _finish_close(self, reason: str) -> list[Effect]:
        effects = self._lose(reason)
        self._deadline = None
        if self._held is not None:
            port, self._held = self._held, None
            self._state = PortMapState.DELETING
            self._n["deletions"] += 1
            effects.append(DeleteMapping(port))
        else:
            self._state = PortMapState.CLOSED
        return effects
