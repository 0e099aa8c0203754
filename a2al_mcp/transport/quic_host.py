"""Every QUIC connection of a node behind one datagram core (ARCHITECTURE §B3, §B4).

:class:`QuicHost` is what aioquic's ``asyncio/server.py`` does, without the socket: it routes
each QUIC datagram to its connection by destination connection ID, creates a server-side
connection for an unknown INITIAL of at least 1200 bytes, follows the connection IDs each
connection issues and retires, aggregates timers, and drains every connection's events into
one queue of :class:`HostEvent`. Consecutive in-order data of one stream (aioquic emits one
``StreamDataReceived`` per packet) leaves the queue as one event, so the layers above pay per
batch of datagrams rather than per datagram (:mod:`~a2al_mcp.transport.quic_event_queue`).
It follows the :class:`~a2al_mcp._types.DatagramCore` contract, so
:class:`~a2al_mcp.transport.endpoint.UdpEndpoint` drives it next to the DHT core on the same
socket, and tests drive two hosts in memory.

**Admission** (issue 14, the resource budget): an INITIAL gets a connection only within the
limits of :class:`~a2al_mcp.transport.budget.Admission`, perhaps after a stateless Retry;
inbound handshakes that do not complete in time are dropped
(:mod:`~a2al_mcp.transport.quic_admission`).

**Containment**: a connection whose stack raises is closed (best effort, INTERNAL_ERROR),
counted, and forgotten at once with a :class:`ConnectionGone`, so it cannot stop the other
connections' timers or sends (:mod:`~a2al_mcp.transport.quic_containment`).

**Only what moved is asked** (issue 15): a connection is asked for datagrams only when it
is marked (it received, fired a timer, sent at the previous ask, its deadline passed, or a
command was issued on it and :meth:`QuicHost.touch` called), and its ``get_timer()`` is read
again only then; deadlines sit in a heap with lazy deletion
(:mod:`~a2al_mcp.transport.quic_schedule`). An untracked host (the default) asks every
connection and reads every timer, as a plain loop would.

**Other paths** (issue 18): a connection may run over another datagram path than the
shared socket (an ICE pair, a relay), known here by a synthetic address that no socket
datagram carries (:mod:`~a2al_mcp.transport.quic_paths`): :meth:`QuicHost.attach_path`,
then :meth:`QuicHost.connect` to its address, or datagrams handed in with
:meth:`QuicHost.receive_path_datagram` (an INITIAL opens the connection, with the same
admission). What such a connection sends is not in :meth:`QuicHost.datagrams_to_send` (the
socket's output) but queued for its path (:meth:`QuicHost.take_path_datagrams`; the driver
is told by ``on_path_output``). A datagram never crosses from the socket to a path-bound
connection, nor from a path to any other connection (dropped, counted in
``TransportCounters.path_misrouted``). Without paths, nothing of this costs a datagram more
than one empty-dict test.

Sans-I/O: no sockets, no clock reads, no randomness of its own (connections bring theirs;
Retry connection IDs and the token key come from the injected ``rng``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Final, Protocol, cast

from aioquic.buffer import Buffer  # type: ignore[attr-defined]  # re-exported from _buffer
from aioquic.quic import events as qe
from aioquic.quic.packet import QuicErrorCode, QuicPacketType, pull_quic_header

from .._containment import containable
from .._dataclass import dataclass
from .._random import Rng, SystemRng
from .._types import Addr, Datagram
from ..config import LimitsConfig
from ..errors import UsageError
from .budget import Admission, TransportCounters
from .quic_admission import SMALLEST_INITIAL as SMALLEST_INITIAL
from .quic_admission import Admit, InboundGate
from .quic_containment import LOG_INTERVAL_S as LOG_INTERVAL_S
from .quic_containment import Containment
from .quic_event_queue import EventQueue
from .quic_paths import PathTable, is_path_addr
from .quic_schedule import DUE_SLACK_S as DUE_SLACK_S
from .quic_schedule import ConnectionSchedule

__all__ = [
    "ConnectionAccepted",
    "ConnectionEvent",
    "ConnectionGone",
    "HostEvent",
    "HostStatistics",
    "QuicHost",
    "SansIoConnection",
]

_LONG_HEADER: Final = 0x80

logger = logging.getLogger(__name__)


class SansIoConnection(Protocol):
    """The seam between the host and a QUIC stack: aioquic's sans-I/O ``QuicConnection``
    API, which qh3's mirrors (ARCHITECTURE §B3). Events are aioquic event objects."""

    @property
    def host_cid(self) -> bytes: ...

    def connect(self, addr: Any, now: float) -> None: ...

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None: ...

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_event(self) -> qe.QuicEvent | None: ...


class _BatchConnection(SansIoConnection, Protocol):
    """A connection that takes several datagrams from one address at once (qh3's)."""

    def receive_many_datagrams(self, datagrams: list[bytes], addr: Any, now: float) -> None: ...


@dataclass(frozen=True, slots=True)
class ConnectionAccepted:
    """A peer opened a connection to us (its handshake is still running)."""

    conn: SansIoConnection
    addr: Addr


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """An aioquic event of one connection."""

    conn: SansIoConnection
    event: qe.QuicEvent


@dataclass(frozen=True, slots=True)
class ConnectionGone:
    """A connection ended and was removed from the host (after its final event)."""

    conn: SansIoConnection
    error_code: int
    reason: str


HostEvent = ConnectionAccepted | ConnectionEvent | ConnectionGone


@dataclass(frozen=True, slots=True)
class HostStatistics:
    connections: int
    accepted: int
    dropped_unknown: int
    """Datagrams for no known connection that could not start one."""
    dropped_malformed: int
    refused_full: int
    """INITIALs refused by any admission limit (the counters say which)."""
    half_open: int = 0
    """Inbound handshakes in progress."""
    failed: int = 0
    """Connections whose stack raised: closed and forgotten (see Containment)."""


class QuicHost:
    """Connections by connection ID; one datagram core for all of them.

    Args:
        server_factory: builds the server-side connection for a new INITIAL, given its
            original destination connection ID and the peer address — and, after a Retry,
            the Retry's source connection ID as a third argument; None refuses inbound
            connections.
        cid_length: length of the connection IDs our connections issue (aioquic's
            ``QuicConfiguration.connection_id_length``, 8 by default).
        max_connections: live connections (``limits.connections`` when ``limits`` is
            given).
        limits: the admission limits (default: :class:`~a2al_mcp.config.LimitsConfig`'s,
            with ``connections = max_connections``).
        handshake_timeout_s: an inbound connection not authenticated by then is dropped.
        rng: source of Retry connection IDs and of the token key.
        evict: called when ``connections`` is reached; closes an idle connection (and
            reports it with :meth:`closing`) and returns True, or returns False.
        counters: where refusals are counted (shared with the service).
        on_active: called with a connection that received datagrams, fired a timer or
            sent datagrams — what can free its send buffer (acknowledgements, a window
            update, pacing); the service wakes its blocked writers on it instead of polling.
        tracked: the driver calls :meth:`touch` after every command it issues on a
            connection, so only marked connections are asked (see "Only what moved is
            asked"); False asks them all.
        on_path_output: called with a path's synthetic address when datagrams start to wait
            for it (its queue was empty): its driver takes them with
            :meth:`take_path_datagrams`.
    """

    def __init__(
        self,
        server_factory: Callable[..., SansIoConnection] | None = None,
        *,
        cid_length: int = 8,
        max_connections: int = 1024,
        limits: LimitsConfig | None = None,
        handshake_timeout_s: float = 10.0,
        rng: Rng | None = None,
        evict: Callable[[], bool] | None = None,
        counters: TransportCounters | None = None,
        on_active: Callable[[SansIoConnection], None] | None = None,
        tracked: bool = False,
        on_path_output: Callable[[Addr], None] | None = None,
    ) -> None:
        self._factory = server_factory
        self._on_path_output = on_path_output
        self._on_active = on_active
        self._cid_length = cid_length
        connections = max_connections if limits is None else limits.connections
        limits = limits or LimitsConfig()
        self.counters = counters if counters is not None else TransportCounters()
        self.admission = Admission(
            connections=connections,
            connections_per_ip=limits.connections_per_ip,
            half_open=limits.half_open,
            half_open_per_ip=limits.half_open_per_ip,
            retry_above_half_open=limits.retry_above_half_open,
            counters=self.counters,
        )
        self._gate: InboundGate[SansIoConnection] = InboundGate(
            self.admission,
            self.counters,
            rng=rng or SystemRng(),
            cid_length=cid_length,
            handshake_timeout_s=handshake_timeout_s,
            live=self.live,
            evict=evict,
        )
        self._by_cid: dict[bytes, SansIoConnection] = {}
        self._cids: dict[SansIoConnection, set[bytes]] = {}
        self._closing: set[SansIoConnection] = set()
        self._schedule: ConnectionSchedule[SansIoConnection] = ConnectionSchedule(
            self._cids, tracked=tracked, on_error=self._failed_connection
        )
        self._outbox: list[Datagram] = []
        self._paths: PathTable[SansIoConnection] = PathTable(self.counters)
        self._has_paths = False
        """Any path attached (a plain attribute: read for every socket datagram)."""
        self._events: EventQueue[SansIoConnection, HostEvent] = EventQueue(ConnectionEvent)
        self._accepted = 0
        self._dropped_unknown = 0
        self._dropped_malformed = 0
        self._now = 0.0
        """The latest time any call brought (for failing connections' last words)."""
        self._containment = Containment(self.counters, logger)

    # -- commands -----------------------------------------------------------------------

    def connect(self, conn: SansIoConnection, addr: Addr, now: float) -> None:
        """Start a client connection (``conn`` is configured as a client) towards ``addr``.
        The driver must flush afterwards. ``addr`` may be a path's synthetic address
        (:meth:`attach_path`): the connection is then bound to that path.

        Raises:
            UsageError: ``addr`` is a path that is gone or already carried a connection.
        """
        if self._paths.known(addr):
            self._paths.bind(addr, conn)
        elif is_path_addr(addr):
            raise UsageError(f"the datagram path {addr[0]} is gone")
        self._register(conn)
        try:
            conn.connect(addr, now=now)
        except BaseException:
            self._forget(conn)  # a local command: the caller sees the error
            raise
        self._guarded(conn, self._drain, conn)

    def connections(self) -> Iterator[SansIoConnection]:
        """The live connections."""
        return iter(list(self._cids))

    def __len__(self) -> int:
        return len(self._cids)

    def statistics(self) -> HostStatistics:
        c = self.counters
        return HostStatistics(
            connections=len(self._cids),
            accepted=self._accepted,
            dropped_unknown=self._dropped_unknown,
            dropped_malformed=self._dropped_malformed,
            refused_full=c.refused_connections + c.refused_per_ip + c.refused_half_open
            + c.refused_half_open_per_ip,
            half_open=self.admission.half_open_count, failed=self.counters.connections_failed,
        )  # fmt: skip

    def live(self) -> int:
        """Connections that count against ``limits.connections`` (not those closing)."""
        return len(self._cids) - len(self._closing)

    def touch(self, conn: SansIoConnection) -> None:
        """``conn`` may have something to send, or its deadline moved: a command was issued
        on it. Ask it at the next :meth:`datagrams_to_send` and read its timer again. Call it
        after every command on a connection (see "Only what moved is asked" above)."""
        if conn in self._cids:
            self._schedule.mark(conn)

    def closing(self, conn: SansIoConnection) -> None:
        """``conn`` was closed locally: it no longer counts against the limits while it
        finishes its closing period (and it is no longer half-open). Marks it (its
        CONNECTION_CLOSE is due)."""
        if conn in self._cids:
            self.touch(conn)
            self._closing.add(conn)
            self._gate.release(conn)

    def drain(self, conn: SansIoConnection) -> None:
        """Collect the events a command on ``conn`` produced (e.g. ``close()``, or new
        flow-control credit); marks it (:meth:`touch`)."""
        if conn in self._cids:
            self.touch(conn)
            self._guarded(conn, self._drain, conn)

    # -- other datagram paths ------------------------------------------------------------

    def attach_path(self, *, accept: bool = False) -> Addr:
        """A new datagram path; its synthetic address (see :mod:`.quic_paths`). Dial over it
        with :meth:`connect`; with ``accept``, an INITIAL arriving on it
        (:meth:`receive_path_datagram`) opens the one connection it carries."""
        self._has_paths = True
        return self._paths.attach(accept=accept)

    def detach_path(self, addr: Addr, reason: str) -> bool:
        """Forget a path; the connection bound to it, if still live, is forgotten at once
        and reported gone (:class:`ConnectionGone`, ``reason``): it has no way left to send.
        True if there was such a connection."""
        conn = self._paths.detach(addr)
        self._has_paths = bool(self._paths)
        if conn is None or conn not in self._cids:
            return False
        self._forget(conn)
        self._events.append(ConnectionGone(conn, QuicErrorCode.NO_ERROR, reason))
        return True

    def path_of(self, conn: SansIoConnection) -> Addr | None:
        """The synthetic address of the path ``conn`` is bound to (None: the socket)."""
        return self._paths.bound(conn)

    def path_connection(self, addr: Addr) -> SansIoConnection | None:
        """The live connection bound to the path at ``addr``, if any."""
        return self._paths.conn(addr)

    def take_path_datagrams(self, addr: Addr) -> list[bytes]:
        """The datagrams waiting for the path at ``addr`` (emptied): its driver sends them."""
        return self._paths.take(addr)

    def receive_path_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """A datagram that arrived on the path at ``addr``: to the connection bound to it, or
        an INITIAL that opens it (a path that accepts); anything else is dropped, counted."""
        paths = self._paths
        if not paths.known(addr):
            self._path_misrouted()
            return
        try:
            conn, header = self._lookup(data)
        except ValueError:
            self._dropped_malformed += 1
            return
        if conn is None:
            if not paths.can_accept(addr):
                self._path_misrouted()
                return
            conn = self._accept(header, len(data), addr, now)
            if conn is None:
                return
            paths.bind(addr, conn)
        elif paths.bound(conn) != addr:
            self._path_misrouted()
            return
        self._deliver(conn, data, addr, now)

    def _path_misrouted(self) -> None:
        self.counters.path_misrouted += 1

    # -- DatagramCore -------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """A datagram read from the socket (never one of a path-bound connection's)."""
        # the per-datagram path of every socket connection: kept inline, and with no path
        # attached it costs one attribute test more than before paths existed
        paths = self._has_paths
        if paths and not addr[1]:
            self._path_misrouted()  # port 0: it claims a path's address
            return
        conn = None
        if data and not data[0] & _LONG_HEADER:  # short header: the DCID follows byte 0
            conn = self._by_cid.get(data[1 : 1 + self._cid_length])
        if conn is None:
            try:
                header = pull_quic_header(Buffer(data=data), host_cid_length=self._cid_length)
            except ValueError:
                self._dropped_malformed += 1
                return
            conn = self._by_cid.get(header.destination_cid)
            if conn is None:
                conn = self._accept(header, len(data), addr, now)
                if conn is None:
                    return
                paths = False  # opened by this socket datagram: not bound to a path
        if paths and self._paths.bound(conn) is not None:
            self._path_misrouted()  # a socket datagram for a connection on another path
            return
        self._now = now
        self._schedule.mark(conn)
        try:
            conn.receive_datagram(data, addr, now)
            self._drain(conn)
        except BaseException as exc:
            self._failed_connection(conn, exc)
        if self._on_active is not None:
            self._on_active(conn)

    def _lookup(self, data: bytes) -> tuple[SansIoConnection | None, Any]:
        """The connection ``data`` is for (None if none), and its parsed header when it had
        to be parsed (the short-header fast path does not).

        Raises:
            ValueError: not a QUIC packet header.
        """
        if data and not data[0] & _LONG_HEADER:  # short header: the DCID follows byte 0
            conn = self._by_cid.get(data[1 : 1 + self._cid_length])
            if conn is not None:
                return conn, None
        header = pull_quic_header(Buffer(data=data), host_cid_length=self._cid_length)
        return self._by_cid.get(header.destination_cid), header

    def _deliver(self, conn: SansIoConnection, data: bytes, addr: Addr, now: float) -> None:
        self._now = now
        self._schedule.mark(conn)
        try:
            conn.receive_datagram(data, addr, now)
            self._drain(conn)
        except BaseException as exc:
            self._failed_connection(conn, exc)
        if self._on_active is not None:
            self._on_active(conn)

    def receive_datagrams(self, datagrams: list[tuple[bytes, Addr]], now: float) -> None:
        """:meth:`receive_datagram` for a batch read in one wake-up (one ``now``).

        Consecutive short-header datagrams of one connection from one address go to it in
        one ``receive_many_datagrams`` call where the connection has one (qh3: its core
        takes the whole run), and its events are drained once per run. A connection error
        stops only that run: the connection is closed and forgotten (see Containment)."""
        cid_length = self._cid_length
        by_cid = self._by_cid
        has_paths = self._has_paths  # nothing attaches or detaches a path during a batch
        run: list[bytes] = []
        run_conn: SansIoConnection | None = None
        run_addr: Addr | None = None
        for data, addr in datagrams:
            conn = None
            if data and not data[0] & _LONG_HEADER:
                conn = by_cid.get(data[1 : 1 + cid_length])
            if conn is not None and conn is run_conn and addr == run_addr:
                run.append(data)
                continue
            if run_conn is not None:
                self._receive_run(run_conn, run, run_addr, now)
                run_conn = None
            if has_paths and (
                not addr[1] or (conn is not None and self._paths.bound(conn) is not None)
            ):
                self._path_misrouted()  # a socket datagram for a connection on another path
                continue  # fmt: skip
            if conn is not None and hasattr(conn, "receive_many_datagrams"):
                run, run_conn, run_addr = [data], conn, addr
            else:
                self.receive_datagram(data, addr, now)
        if run_conn is not None:
            self._receive_run(run_conn, run, run_addr, now)

    def _receive_run(
        self, conn: SansIoConnection, run: list[bytes], addr: Addr | None, now: float
    ) -> None:
        self._now = now
        self._schedule.mark(conn)
        try:
            if len(run) == 1:
                conn.receive_datagram(run[0], addr, now)
            else:
                cast(_BatchConnection, conn).receive_many_datagrams(run, addr, now)
            self._drain(conn)
        except BaseException as exc:
            self._failed_connection(conn, exc)
        if self._on_active is not None:
            self._on_active(conn)

    def _accept(self, header: Any, size: int, addr: Addr, now: float) -> SansIoConnection | None:
        if (
            header.packet_type != QuicPacketType.INITIAL
            or size < SMALLEST_INITIAL
            or not self._factory
        ):
            self._dropped_unknown += 1
            return None
        admit = self._gate.admit(header, addr, now)
        if not isinstance(admit, Admit):
            if admit is not None:  # a Retry
                if self._has_paths and self._paths.known(addr):
                    self._to_path(addr, admit[0])
                else:
                    self._outbox.append(admit)
            return None
        odcid, rscid = admit.original_cid, admit.retry_cid
        conn = self._factory(odcid, addr) if rscid is None else self._factory(odcid, addr, rscid)
        self._register(conn)
        dcid: bytes = header.destination_cid
        self._by_cid[dcid] = conn  # the client's first packets still carry its chosen DCID
        self._cids[conn].add(dcid)
        self._accepted += 1
        self._gate.opened(conn, admit.key, now)
        self._events.append(ConnectionAccepted(conn, addr))
        return conn

    def _expire_handshakes(self, now: float) -> None:
        for conn in self._gate.expired(now):
            if conn in self._closing:
                continue
            # dropped without a CONNECTION_CLOSE: it may never have been a real client
            self.counters.handshake_timeouts += 1
            self._forget(conn)
            self._events.append(
                ConnectionGone(conn, QuicErrorCode.CONNECTION_REFUSED, "handshake timeout")
            )

    def handle_timer(self, now: float) -> None:
        self._now = now
        self._expire_handshakes(now)
        schedule = self._schedule
        for conn in schedule.take_due(now):
            if conn not in self._cids:
                continue  # forgotten while the loop ran
            schedule.reread(conn)
            try:
                deadline = conn.get_timer()  # aioquic's handle_timer relies on this read
                if deadline is not None and deadline <= now:
                    conn.handle_timer(now)
                    schedule.ask(conn)
                    self._drain(conn)
                    if self._on_active is not None:
                        self._on_active(conn)
            except BaseException as exc:
                self._failed_connection(conn, exc)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        self._now = now
        out: list[Datagram] = []
        schedule = self._schedule
        paths = self._paths
        for conn in schedule.take_asked(now):
            if conn not in self._cids:
                continue
            schedule.reread(conn)  # sending moves its deadlines (ACKs, loss, pacing)
            try:
                # connections hand back the (host, port) tuples they were given
                sent = conn.datagrams_to_send(now)
                path = paths.bound(conn) if self._has_paths else None
                if path is None:
                    out.extend(sent)
                else:
                    for data, _ in sent:  # whatever it names, it has only its path
                        self._to_path(path, data)
                self._drain(conn)
                if sent:
                    schedule.ask(conn)  # it may have stopped short: ask until it is empty
                    if self._on_active is not None:
                        self._on_active(conn)
            except BaseException as exc:
                self._failed_connection(conn, exc)
        if self._outbox:  # Retry packets, and the last words of failed connections
            out.extend(self._outbox)
            self._outbox = []
        return out

    def _to_path(self, addr: Addr, data: bytes) -> None:
        if self._paths.queue(addr, data) and self._on_path_output is not None:
            self._on_path_output(addr)

    def get_timer(self) -> float | None:
        best = self._gate.next_deadline()
        t = self._schedule.next_deadline()
        if t is not None and (best is None or t < best):
            best = t
        return best

    def next_event(self) -> HostEvent | None:
        return self._events.pop()

    # -- internals ----------------------------------------------------------------------

    def _guarded(self, conn: SansIoConnection, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as exc:
            self._failed_connection(conn, exc)

    def _failed_connection(self, conn: SansIoConnection, exc: BaseException) -> None:
        """``conn``'s stack raised ``exc``: close it (best effort, its CONNECTION_CLOSE goes
        out with the next send) and forget it now, or re-raise cancellation and exit."""
        if not containable(exc):
            raise exc
        if conn not in self._cids:
            return
        last_words = self._containment.last_words(conn, exc, self._now)
        path = self._paths.bound(conn) if self._has_paths else None
        if path is None:
            self._outbox.extend(last_words)
        else:
            for data, _ in last_words:
                self._to_path(path, data)
        self._forget(conn)
        self._events.append(ConnectionGone(conn, QuicErrorCode.INTERNAL_ERROR,
                                           f"contained {type(exc).__name__}"))  # fmt: skip

    def _register(self, conn: SansIoConnection) -> None:
        cids = self._cids.setdefault(conn, set())
        cids.add(conn.host_cid)
        self._by_cid[conn.host_cid] = conn
        self._schedule.mark(conn)

    def _drain(self, conn: SansIoConnection) -> None:
        cids = self._cids.get(conn)
        if cids is None:
            return
        events = self._events
        while (event := conn.next_event()) is not None:
            if isinstance(event, qe.StreamDataReceived):
                events.stream_data(conn, event)
                continue
            if isinstance(event, qe.ConnectionIdIssued):
                self._by_cid[event.connection_id] = conn
                cids.add(event.connection_id)
            elif isinstance(event, qe.ConnectionIdRetired):
                if self._by_cid.get(event.connection_id) is conn:
                    del self._by_cid[event.connection_id]
                cids.discard(event.connection_id)
            elif isinstance(event, qe.HandshakeCompleted):
                self._gate.settle(conn)
            self._events.append(ConnectionEvent(conn, event))
            if isinstance(event, qe.ConnectionTerminated):
                self._forget(conn)
                self._events.append(ConnectionGone(conn, event.error_code, event.reason_phrase))
                return

    def _forget(self, conn: SansIoConnection) -> None:
        if self._has_paths:
            self._paths.unbind(conn)
        self._gate.release(conn)
        self._closing.discard(conn)
        self._schedule.forget(conn)
        for cid in self._cids.pop(conn, ()):
            if self._by_cid.get(cid) is conn:
                del self._by_cid[cid]
