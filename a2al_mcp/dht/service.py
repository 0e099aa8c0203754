"""DhtService: the async face of a :class:`~a2al_mcp.dht.core.DhtCore`.

The core is sans-I/O: a command (``lookup``, ``publish``...) returns an operation id and, some
datagrams and timers later, the core emits the operation's finishing event. The service turns
that into one awaitable call: it starts the operation, flushes the driver (which sends what the
core queued), and waits for the event the driver hands back through :meth:`on_event`. A caller
that gives up (cancelled, or past the service's timeout) cancels the operation in the core, so
no more datagrams leave for it.

Events that belong to no operation go to the narrow callbacks given at construction: an address
a peer reports for us, and mailbox records STOREd with us or pushed to a subscription.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Final, TypeVar

import anyio

from .._clock import Clock
from .._dataclass import dataclass
from .._types import Addr
from ..config import DhtConfig
from ..errors import NodeClosed, RequestTimeout
from ..identity.aid import NodeId
from ..protocol import timers
from ..protocol.records import SignedRecord
from . import events as ev
from .core import DhtCore, DhtStats
from .lookup import LookupKind
from .store import PutOutcome

__all__ = ["DHT_EVENT_TYPES", "DhtService", "operation_timeout"]

DHT_EVENT_TYPES: Final = (
    ev.PingFinished,
    ev.BootstrapFinished,
    ev.LookupFinished,
    ev.PublishFinished,
    ev.RecordPushed,
    ev.MailboxStored,
    ev.AddressObserved,
)
"""Every event class :data:`~a2al_mcp.dht.events.DhtEvent` names, for ``isinstance``."""

_F = TypeVar("_F", ev.PingFinished, ev.BootstrapFinished, ev.LookupFinished, ev.PublishFinished)


def operation_timeout(config: DhtConfig) -> float:
    """How long one DHT operation (bootstrap, lookup, publish) is awaited before
    RequestTimeout: a backstop, since every RPC of the core has its own deadline and every
    operation ends. a2ald's budget for RPCs outside lookups (3 attempts of 5 s, §4.5, the seed
    PINGs' 15 s) plus 16 lookup RPC deadlines; 47 s by default."""
    return timers.RPC_ATTEMPT_TIMEOUT_S * timers.RPC_ATTEMPTS + 16 * config.lookup_rpc_timeout_s


@dataclass(slots=True)
class _Waiter:
    done: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    result: ev.DhtEvent | None = None


class DhtService:
    """Awaitable DHT operations over one core, driven by someone else's endpoint."""

    def __init__(
        self,
        core: DhtCore,
        *,
        clock: Clock,
        flush: Callable[[], None],
        timeout_s: float,
        closed_cause: Callable[[], BaseException | None] = lambda: None,
        on_address: Callable[[Addr], None] | None = None,
        on_mailbox: Callable[[ev.MailboxStored | ev.RecordPushed], None] | None = None,
    ) -> None:
        """
        Args:
            core: the DHT core (its datagrams and timers are the driver's business).
            clock: ``now`` for every command.
            flush: makes the driver send what the core queued and deliver its events to
                :meth:`on_event` (``UdpEndpoint.flush``).
            timeout_s: how long one operation is awaited (see :func:`operation_timeout`).
            closed_cause: what ended the owner, the cause of :class:`NodeClosed`.
            on_address: an address a peer sees us at (``AddressObserved``).
            on_mailbox: a mailbox record a peer STOREd with us or pushed to us.
        """
        self._core = core
        self._clock = clock
        self._flush = flush
        self._timeout_s = timeout_s
        self._closed_cause = closed_cause
        self._on_address = on_address
        self._on_mailbox = on_mailbox
        self._waiters: dict[int, _Waiter] = {}
        self._closed = False

    # -- driver side ------------------------------------------------------------------

    def on_event(self, event: ev.DhtEvent) -> None:
        """One event of the core: a finished operation wakes its caller; the others go to
        the callbacks."""
        if isinstance(event, ev.AddressObserved):
            if self._on_address is not None:
                self._on_address(event.addr)
        elif isinstance(event, ev.MailboxStored | ev.RecordPushed):
            if self._on_mailbox is not None:
                self._on_mailbox(event)
        elif isinstance(
            event, ev.PingFinished | ev.BootstrapFinished | ev.LookupFinished | ev.PublishFinished
        ):
            waiter = self._waiters.get(event.op_id)
            if waiter is not None and waiter.result is None:
                waiter.result = event
                waiter.done.set()

    def close(self) -> None:
        """Wake every caller (they raise NodeClosed) and refuse new operations."""
        self._closed = True
        for waiter in self._waiters.values():
            waiter.done.set()

    # -- state ------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """The routing table has someone to ask."""
        return len(self._core.routing) > 0

    @property
    def core(self) -> DhtCore:
        """The core behind the service (for its driver and for inspection)."""
        return self._core

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    def statistics(self) -> DhtStats:
        return self._core.statistics()

    def peer_addrs(self) -> list[Addr]:
        """Routing-table peers' addresses, healthiest and most recently seen first."""
        peers = sorted(self._core.routing.peers(), key=lambda p: (p.health, -p.last_seen))
        return [p.addr for p in peers]

    def cache_record(self, key: NodeId, record: SignedRecord) -> PutOutcome:
        """Keep a record learnt outside the DHT (stream-0 AgentInfo) like a lookup hit."""
        return self._core.cache_record(key, record, self._clock.monotonic())

    # -- operations -------------------------------------------------------------------

    async def ping(self, addr: Addr) -> ev.PingFinished:
        return await self._run(lambda now: self._core.ping(addr, now), ev.PingFinished)

    async def bootstrap(self, addrs: Iterable[Addr]) -> ev.BootstrapFinished:
        seeds = list(addrs)
        return await self._run(lambda now: self._core.bootstrap(seeds, now), ev.BootstrapFinished)

    async def lookup(
        self, target: NodeId, kind: LookupKind, *, rec_type: int = 0, subscribe: bool = False
    ) -> ev.LookupFinished:
        return await self._run(
            lambda now: self._core.lookup(target, kind, now, rec_type=rec_type,
                                          subscribe=subscribe),
            ev.LookupFinished,
        )  # fmt: skip

    async def publish(self, record: SignedRecord, key: NodeId) -> ev.PublishFinished:
        return await self._run(lambda now: self._core.publish(record, key, now),
                               ev.PublishFinished)  # fmt: skip

    async def _run(self, start: Callable[[float], int], kind: type[_F]) -> _F:
        if self._closed:
            raise NodeClosed("the DHT service is closed") from self._closed_cause()
        op_id = start(self._clock.monotonic())
        waiter = _Waiter()
        self._waiters[op_id] = waiter
        self._flush()
        try:
            with anyio.fail_after(self._timeout_s):
                await waiter.done.wait()
        except TimeoutError as exc:
            raise RequestTimeout(
                f"DHT operation did not finish in {self._timeout_s:g} s",
                operation=kind.__name__.removesuffix("Finished").lower(),
            ) from exc
        finally:
            del self._waiters[op_id]
            if waiter.result is None and self._core.cancel(op_id):  # timed out or cancelled
                self._flush()  # re-arm the timer without the op's deadlines
        result = waiter.result
        if result is None:
            raise NodeClosed("the node closed during the operation") from self._closed_cause()
        if not isinstance(result, kind):
            raise TypeError(f"operation {op_id} finished with {type(result).__name__}")
        return result
