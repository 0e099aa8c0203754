"""Every QUIC connection of a node behind one datagram core (ARCHITECTURE §B3, §B4).

:class:`QuicHost` is what aioquic's ``asyncio/server.py`` does, without the socket: it routes
each QUIC datagram to its connection by destination connection ID, creates a server-side
connection for an unknown INITIAL of at least 1200 bytes, follows the connection IDs each
connection issues and retires, aggregates timers, and drains every connection's events into
one queue of :class:`HostEvent`. Consecutive in-order data of one stream (aioquic emits one
``StreamDataReceived`` per packet) leaves the queue as one event, so the layers above pay per
batch of datagrams rather than per datagram. It follows the :class:`~a2al_mcp._types.DatagramCore`
contract, so :class:`~a2al_mcp.transport.endpoint.UdpEndpoint` drives it next to the DHT core
on the same socket, and tests drive two hosts in memory.

**Admission** (issue 14, the resource budget): an INITIAL gets a connection only within the
limits of :class:`~a2al_mcp.transport.budget.Admission` — live connections in total (an idle
accepted connection may be evicted to make room, through the ``evict`` callback), per source
IPv4 address or IPv6 /64, handshakes in progress in total and per source. With more than
``retry_above_half_open`` handshakes in progress a client must first prove its address: it
gets a stateless QUIC Retry (what aioquic's ``asyncio/server.py`` does, here with a keyed
token from :class:`~a2al_mcp.transport.budget.RetryTokens`), and its next INITIAL, carrying
the token, gets a connection whose transport parameters name the original and the Retry
connection IDs. An inbound connection whose handshake has not completed within
``handshake_timeout_s`` is dropped without a word (it may never have been a client).
Every refusal is counted in :class:`~a2al_mcp.transport.budget.TransportCounters`.

**Containment**: a connection whose stack raises (``receive_datagram``, ``handle_timer``,
``get_timer``, ``datagrams_to_send``, ``next_event``; any exception that
:func:`~a2al_mcp._containment.containable` allows, qh3's Rust panics included) is closed
(best effort, INTERNAL_ERROR) and forgotten at once, with a :class:`ConnectionGone`: it frees
its slot, its deadline leaves the timer, and it cannot stop the other connections' timers or
sends. Counted (``connections_failed``), logged at most once per 30 s.

**Only what moved is asked** (issue 15): a send on one connection must not cost a pass over
all of them, nor must a thousand idle connections cost a pass per timer. A connection is
asked for datagrams at the next :meth:`QuicHost.datagrams_to_send` when it is *marked*:

* it received datagrams, or its timer fired (:meth:`QuicHost.handle_timer`);
* a command was issued on it — whoever issues one (``send_stream_data``, ``reset_stream``,
  ``stop_stream``, ``close``, ``send_ping``, ``after_read``'s new credit …) calls
  :meth:`QuicHost.touch` afterwards (:meth:`QuicHost.connect`, :meth:`QuicHost.closing` and
  :meth:`QuicHost.drain` do it themselves), as a command on an aioquic connection must be
  followed by ``transmit()``;
* it sent datagrams at the previous ask (it may have stopped short: pacing, a full
  congestion window, qh3's "capacity exhausted" during a handshake), until an ask finds
  nothing;
* its deadline has passed (a delayed ACK is written by ``datagrams_to_send`` itself once
  due, before the timer loop comes round).

So a connection is asked whenever a loop over all of them could have found something, and an
idle one is never asked. This holds for a *tracked* host (``tracked=True``: the
:class:`~a2al_mcp.transport.peer.QuicService`, which marks after every command it issues); an
untracked host (the default, for drivers and tests that issue commands on connections
without telling it) asks every connection at every send and reads every timer, as a plain
loop would. Deadlines sit in a heap of
``(deadline, sequence, connection)`` with lazy deletion: a connection's ``get_timer()`` is
read again only after it was marked or asked; the entry it replaces stays in the heap, is no
longer the connection's own (``_timer_of``), and is skipped when it surfaces.

Sans-I/O: no sockets, no clock reads, no randomness of its own (connections bring theirs;
Retry connection IDs and the token key come from the injected ``rng``).
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Final, Protocol, cast

from aioquic.buffer import Buffer  # type: ignore[attr-defined]  # re-exported from _buffer
from aioquic.quic import events as qe
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicPacketType,
    encode_quic_retry,
    pull_quic_header,
)

from .._containment import containable
from .._random import Rng, SystemRng
from .._types import Addr, Datagram
from ..config import LimitsConfig
from .budget import Admission, RetryTokens, TransportCounters, ip_key

__all__ = [
    "ConnectionAccepted",
    "ConnectionEvent",
    "ConnectionGone",
    "HostEvent",
    "HostStatistics",
    "QuicHost",
    "SansIoConnection",
]

SMALLEST_INITIAL: Final = 1200
"""RFC 9000 §14.1: a client's INITIAL datagram is at least this long."""

_LONG_HEADER: Final = 0x80
DUE_SLACK_S: Final = 1e-6
"""A deadline this close ahead counts as passed when asking for datagrams: a stack keeps its
time in whole microseconds (qh3) and may find an ACK due a rounding error before the float
its ``get_timer()`` gave."""
LOG_INTERVAL_S: Final = 30.0
"""At most one log line per this many seconds for failing connections (all are counted)."""

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


_TimerEntry = tuple[float, int, SansIoConnection]


class _BatchConnection(SansIoConnection, Protocol):
    """A connection that takes several datagrams from one address at once (qh3's)."""

    def receive_many_datagrams(self, datagrams: list[bytes], addr: Any, now: float) -> None: ...


class _DataRun:
    """Consecutive ``StreamDataReceived`` of one stream, queued as one event."""

    __slots__ = ("chunks", "conn", "end", "stream_id")

    def __init__(self, conn: SansIoConnection, event: qe.StreamDataReceived) -> None:
        self.conn = conn
        self.stream_id = event.stream_id
        self.chunks = [event.data]
        self.end = event.end_stream

    def event(self) -> ConnectionEvent:
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        return ConnectionEvent(
            self.conn,
            qe.StreamDataReceived(data=data, end_stream=self.end, stream_id=self.stream_id),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionAccepted:
    """A peer opened a connection to us (its handshake is still running)."""

    conn: SansIoConnection
    addr: Addr


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """An aioquic event of one connection."""

    conn: SansIoConnection
    event: qe.QuicEvent


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionGone:
    """A connection ended and was removed from the host (after its final event)."""

    conn: SansIoConnection
    error_code: int
    reason: str


HostEvent = ConnectionAccepted | ConnectionEvent | ConnectionGone


@dataclasses.dataclass(frozen=True, slots=True)
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


@dataclasses.dataclass(slots=True)
class _Inbound:
    key: str
    """:func:`~a2al_mcp.transport.budget.ip_key` of the client."""
    deadline: float
    half_open: bool = True


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
    ) -> None:
        self._factory = server_factory
        self._tracked = tracked
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
        self._handshake_timeout = handshake_timeout_s
        self._rng = rng or SystemRng()
        self._retry = RetryTokens(self._rng)
        self._evict = evict
        self._by_cid: dict[bytes, SansIoConnection] = {}
        self._cids: dict[SansIoConnection, set[bytes]] = {}
        self._inbound: dict[SansIoConnection, _Inbound] = {}
        self._deadlines: deque[tuple[float, SansIoConnection]] = deque()
        self._closing: set[SansIoConnection] = set()
        self._marked: dict[SansIoConnection, None] = {}
        """Connections to ask at the next :meth:`datagrams_to_send` (an ordered set)."""
        self._stale: dict[SansIoConnection, None] = {}
        """Connections whose ``get_timer()`` must be read again (an ordered set)."""
        self._timers: list[_TimerEntry] = []
        """Heap of (deadline, sequence, connection); an entry counts only while it is its
        connection's ``_timer_of`` (lazy deletion). Sequences are unique: connections are
        never compared."""
        self._timer_of: dict[SansIoConnection, _TimerEntry] = {}
        self._sequence = 0
        self._outbox: list[Datagram] = []
        self._events: deque[HostEvent | _DataRun] = deque()
        self._accepted = 0
        self._dropped_unknown = 0
        self._dropped_malformed = 0
        self._now = 0.0
        """The latest time any call brought (for the rate limit of failure logs)."""
        self._last_log: float | None = None

    # -- commands -----------------------------------------------------------------------

    def connect(self, conn: SansIoConnection, addr: Addr, now: float) -> None:
        """Start a client connection (``conn`` is configured as a client) towards ``addr``.
        The driver must flush afterwards."""
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
            self._marked[conn] = None
            self._stale[conn] = None

    def closing(self, conn: SansIoConnection) -> None:
        """``conn`` was closed locally: it no longer counts against the limits while it
        finishes its closing period (and it is no longer half-open). Marks it (its
        CONNECTION_CLOSE is due)."""
        if conn in self._cids:
            self.touch(conn)
            self._closing.add(conn)
            self._settle(conn)
            inbound = self._inbound.pop(conn, None)
            if inbound is not None:
                self.admission.closed(inbound.key)

    def drain(self, conn: SansIoConnection) -> None:
        """Collect the events a command on ``conn`` produced (e.g. ``close()``, or new
        flow-control credit); marks it (:meth:`touch`)."""
        if conn in self._cids:
            self.touch(conn)
            self._guarded(conn, self._drain, conn)

    # -- DatagramCore -------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
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
        self._now = now
        self._marked[conn] = None
        self._stale[conn] = None
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
        self._marked[conn] = None
        self._stale[conn] = None
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
        dcid: bytes = header.destination_cid
        odcid, rscid = dcid, None
        if header.token:
            # only our Retry hands out tokens (we send no NEW_TOKEN): without a valid one
            # the client's transport-parameter checks would fail anyway
            valid = self._retry.validate(header.token, addr, dcid, now)
            if valid is None:
                self.counters.retry_tokens_invalid += 1
                return None
            odcid, rscid = valid, dcid
        elif self.admission.needs_retry():
            self._send_retry(header, addr, now)
            return None
        key = ip_key(addr)
        if self.live() >= self.admission.connections and self._evict is not None:
            self._evict()
        if not self.admission.check(key, self.live()):
            return None
        conn = self._factory(odcid, addr) if rscid is None else self._factory(odcid, addr, rscid)
        self._register(conn)
        self._by_cid[dcid] = conn  # the client's first packets still carry its chosen DCID
        self._cids[conn].add(dcid)
        self._accepted += 1
        self.admission.opened(key)
        deadline = now + self._handshake_timeout
        self._inbound[conn] = _Inbound(key, deadline)
        self._deadlines.append((deadline, conn))
        self._events.append(ConnectionAccepted(conn, addr))
        return conn

    def _send_retry(self, header: Any, addr: Addr, now: float) -> None:
        """A stateless Retry (RFC 9000 §8.1.2): the client must come back with the token."""
        scid = self._rng.bytes(self._cid_length)
        token = self._retry.create(addr, header.destination_cid, scid, now)
        packet = encode_quic_retry(
            version=header.version,
            source_cid=scid,
            destination_cid=header.source_cid,
            original_destination_cid=header.destination_cid,
            retry_token=token,
        )
        self._outbox.append((packet, addr))
        self.counters.retries_sent += 1

    def _settle(self, conn: SansIoConnection) -> None:
        """``conn`` is no longer half-open (authenticated, closing or gone)."""
        inbound = self._inbound.get(conn)
        if inbound is not None and inbound.half_open:
            inbound.half_open = False
            self.admission.established(inbound.key)

    def _expire_handshakes(self, now: float) -> None:
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, conn = deadlines.popleft()
            inbound = self._inbound.get(conn)
            if inbound is None or not inbound.half_open or conn in self._closing:
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
        self._refresh_timers()
        timers, timer_of = self._timers, self._timer_of
        due: list[SansIoConnection] = []
        while timers and timers[0][0] <= now:
            entry = heapq.heappop(timers)
            conn = entry[2]
            if timer_of.get(conn) is entry:
                del timer_of[conn]  # read again below, once it fired
                due.append(conn)
        for conn in due:
            if conn not in self._cids:
                continue  # forgotten while the loop ran
            self._stale[conn] = None
            try:
                deadline = conn.get_timer()  # aioquic's handle_timer relies on this read
                if deadline is not None and deadline <= now:
                    conn.handle_timer(now)
                    self._marked[conn] = None
                    self._drain(conn)
                    if self._on_active is not None:
                        self._on_active(conn)
            except BaseException as exc:
                self._failed_connection(conn, exc)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        self._now = now
        out: list[Datagram] = []
        asked, self._marked = self._marked, {}
        if self._tracked:
            self._add_due(asked, now)
        else:
            asked.update(dict.fromkeys(self._cids))
        stale, again = self._stale, self._marked
        for conn in asked:
            if conn not in self._cids:
                continue
            stale[conn] = None  # sending moves its deadlines (ACKs, loss, pacing)
            try:
                # connections hand back the (host, port) tuples they were given
                sent = conn.datagrams_to_send(now)
                out.extend(sent)
                self._drain(conn)
                if sent:
                    again[conn] = None  # it may have stopped short: ask until it is empty
                    if self._on_active is not None:
                        self._on_active(conn)
            except BaseException as exc:
                self._failed_connection(conn, exc)
        if self._outbox:  # Retry packets, and the last words of failed connections
            out.extend(self._outbox)
            self._outbox = []
        return out

    def get_timer(self) -> float | None:
        best: float | None = None
        deadlines = self._deadlines
        while deadlines and (
            (inbound := self._inbound.get(deadlines[0][1])) is None or not inbound.half_open
        ):
            deadlines.popleft()  # settled or gone: no deadline any more
        if deadlines:
            best = deadlines[0][0]
        self._refresh_timers()
        timers, timer_of = self._timers, self._timer_of
        while timers and timer_of.get(timers[0][2]) is not timers[0]:
            heapq.heappop(timers)  # replaced or gone
        if timers and (best is None or timers[0][0] < best):
            best = timers[0][0]
        return best

    def _refresh_timers(self) -> None:
        """Read the timer of every connection marked or asked since its last read (only
        those), and give each its heap entry."""
        if not self._tracked:
            self._stale.update(dict.fromkeys(self._cids))
        if not self._stale:
            return
        stale, self._stale = self._stale, {}
        timers, timer_of = self._timers, self._timer_of
        for conn in stale:
            if conn not in self._cids:
                continue
            try:
                t = conn.get_timer()
            except BaseException as exc:
                self._failed_connection(conn, exc)
                continue
            entry = timer_of.get(conn)
            if entry is not None:
                if entry[0] == t:
                    continue  # unchanged: its entry stands
                del timer_of[conn]  # its heap entry is dead from now on
            if t is not None:
                self._sequence += 1
                entry = (t, self._sequence, conn)
                timer_of[conn] = entry
                heapq.heappush(timers, entry)
        if len(timers) > 2 * len(timer_of) + 64:  # mostly dead entries: compact
            self._timers = [e for e in timers if timer_of.get(e[2]) is e]
            heapq.heapify(self._timers)

    def _add_due(self, asked: dict[SansIoConnection, None], now: float) -> None:
        """Add to ``asked`` the connections whose deadline has passed (the heap's entries
        up to ``now``, without popping them: :meth:`handle_timer` still fires them)."""
        timers, timer_of = self._timers, self._timer_of
        now += DUE_SLACK_S
        if not timers or timers[0][0] > now:
            return
        todo = [0]
        n = len(timers)
        while todo:
            i = todo.pop()
            entry = timers[i]
            if entry[0] > now:
                continue
            if timer_of.get(entry[2]) is entry:
                asked[entry[2]] = None
            child = 2 * i + 1
            if child < n:
                todo.append(child)
                if child + 1 < n:
                    todo.append(child + 1)

    def next_event(self) -> HostEvent | None:
        if not self._events:
            return None
        event = self._events.popleft()
        return event.event() if isinstance(event, _DataRun) else event

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
        self.counters.connections_failed += 1
        if self._last_log is None or self._now - self._last_log >= LOG_INTERVAL_S:
            self._last_log = self._now
            logger.warning("quic_host.connection_failed error=%r (closed; further failures "
                           "counted, logged at most every %.0f s)", exc, LOG_INTERVAL_S,
                           exc_info=exc)  # fmt: skip
        close = getattr(conn, "close", None)
        try:
            if close is not None:
                close(error_code=QuicErrorCode.INTERNAL_ERROR, reason_phrase="internal error")
            self._outbox.extend(conn.datagrams_to_send(self._now))
        except BaseException as again:  # it is broken: it goes without a word
            if not containable(again):
                raise
        self._forget(conn)
        self._events.append(ConnectionGone(conn, QuicErrorCode.INTERNAL_ERROR,
                                           f"contained {type(exc).__name__}"))  # fmt: skip

    def _register(self, conn: SansIoConnection) -> None:
        cids = self._cids.setdefault(conn, set())
        cids.add(conn.host_cid)
        self._by_cid[conn.host_cid] = conn
        self._marked[conn] = None
        self._stale[conn] = None

    def _drain(self, conn: SansIoConnection) -> None:
        cids = self._cids.get(conn)
        if cids is None:
            return
        events = self._events
        while (event := conn.next_event()) is not None:
            if isinstance(event, qe.StreamDataReceived):
                last = events[-1] if events else None
                if (
                    isinstance(last, _DataRun)
                    and last.conn is conn
                    and last.stream_id == event.stream_id
                    and not last.end
                ):
                    last.chunks.append(event.data)
                    last.end = event.end_stream
                else:
                    events.append(_DataRun(conn, event))
                continue
            if isinstance(event, qe.ConnectionIdIssued):
                self._by_cid[event.connection_id] = conn
                cids.add(event.connection_id)
            elif isinstance(event, qe.ConnectionIdRetired):
                if self._by_cid.get(event.connection_id) is conn:
                    del self._by_cid[event.connection_id]
                cids.discard(event.connection_id)
            elif isinstance(event, qe.HandshakeCompleted):
                self._settle(conn)
            self._events.append(ConnectionEvent(conn, event))
            if isinstance(event, qe.ConnectionTerminated):
                self._forget(conn)
                self._events.append(ConnectionGone(conn, event.error_code, event.reason_phrase))
                return

    def _forget(self, conn: SansIoConnection) -> None:
        self._settle(conn)
        inbound = self._inbound.pop(conn, None)
        if inbound is not None:
            self.admission.closed(inbound.key)
        self._closing.discard(conn)
        self._marked.pop(conn, None)
        self._stale.pop(conn, None)
        self._timer_of.pop(conn, None)  # its heap entry is dead
        for cid in self._cids.pop(conn, ()):
            if self._by_cid.get(cid) is conn:
                del self._by_cid[cid]
