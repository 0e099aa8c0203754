"""Async QUIC peers: verified connections and byte streams over the shared socket (driver).

:class:`QuicService` sits on the node's :class:`~a2al_mcp.transport.endpoint.UdpEndpoint`
next to the DHT: it owns the :class:`~a2al_mcp.transport.quic_host.QuicHost` core, gives every
connection a :class:`~a2al_mcp.transport.session.Session`, and turns their events into
awaitable objects:

* :class:`PeerConnection` — one mutually authenticated connection; ``peer`` is the verified
  remote identity, ``local_aid`` the local identity it speaks for. Usable only after
  :meth:`PeerConnection.wait_ready` (the client-side handshake trap: we wait for the server's
  HANDSHAKE_DONE, i.e. for the server to have accepted our certificate).
* :class:`PeerStream` — an :class:`anyio.abc.ByteStream` over one QUIC stream, with real
  back-pressure: :meth:`PeerStream.send` waits while more than ``send_buffer`` bytes sit
  unacknowledged in aioquic's (otherwise unbounded) send buffer.

Inbound work is handed to callbacks the node installs (:class:`InboundHandlers`): the route of
a new connection, service streams (to admit or refuse) and mailbox frames. Handlers run as
tasks in the service's task group; a failing handler resets its stream, never the node.

The service enforces the transport's part of the node's resource budget
(:class:`~a2al_mcp.config.LimitsConfig`): admission of inbound connections (in
:class:`~a2al_mcp.transport.quic_host.QuicHost`: totals, per source, handshakes, Retry,
handshake timeout), idle eviction of accepted connections when the total is reached,
connections per remote AID, streams per connection, and receive windows that follow the
application's reads (:mod:`~a2al_mcp.transport.flow`). What each limit refused is counted
in :meth:`QuicService.statistics`.

The three classes drive one another through methods and attributes without a leading
underscore (``PeerStream.feed``/``mark_stopped``/``fail``, ``PeerConnection.streams``,
``wait_event``, ``after_read``, ``on_session_event``, ``check_ready``, ``on_gone``,
``QuicService.on_route``/``on_service``/``on_mailbox``/``count_aid``/``new_budget`` …):
they are internal to the transport — the service's event path, not an application API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Final, cast

import anyio
import anyio.abc
from anyio import BrokenResourceError, ClosedResourceError, EndOfStream

from .._random import Rng
from .._types import Addr
from ..config import LimitsConfig
from ..errors import (
    AccessDenied,
    ConnectionClosed,
    HandshakeFailed,
    NodeClosed,
    RequestTimeout,
    UsageError,
)
from ..identity.aid import Aid
from ..protocol import session_frames as sf
from . import flow, tls
from . import session as ss
from .budget import ReceiveBudget, TransportCounters
from .quic_host import ConnectionAccepted, ConnectionEvent, ConnectionGone, HostEvent, QuicHost
from .tls_qh3 import AVAILABLE as QH3_AVAILABLE  # without qh3, aioquic runs both ways
from .tls_qh3 import qh3_client_connection, qh3_server_connection

if TYPE_CHECKING:
    from aioquic.quic import events as qe

    from .tls_qh3 import Qh3ClientConnection, Qh3ServerConnection

    Connection = tls.A2ALQuicConnection | Qh3ClientConnection | Qh3ServerConnection
    """A mutually authenticated QUIC connection, either stack, either side."""

__all__ = [
    "DEFAULT_INBOUND_STACK",
    "DEFAULT_OUTBOUND_STACK",
    "QH3_AVAILABLE",
    "QUIC_STACKS",
    "InboundHandlers",
    "PeerConnection",
    "PeerStream",
    "QuicService",
    "QuicStats",
]

logger = logging.getLogger(__name__)

SEND_BUFFER_BYTES: Final = 1 << 20
"""Unacknowledged bytes a stream may hold before :meth:`PeerStream.send` waits."""
ROUTE_TIMEOUT_S: Final = 15.0
"""An inbound connection must complete stream 0 this fast (a2ald 0.3.5)."""
APP_ERROR_UNKNOWN_AGENT: Final = 1
APP_ERROR_LIMIT: Final = 2
"""Application close code: a limit of ours was reached (per-AID connections, eviction)."""
_FLOW_CONTROL_ERROR: Final = 0x3
QUIC_STACKS: Final = ("qh3", "aioquic")
"""The QUIC stacks connections can run on, each way (both with A2AL's mutual TLS)."""
DEFAULT_OUTBOUND_STACK: str = "qh3" if QH3_AVAILABLE else "aioquic"
"""The stack a :class:`QuicService` dials with unless told otherwise: qh3 when installed
(its Rust packet core moves data several times cheaper than aioquic), else aioquic."""
DEFAULT_INBOUND_STACK: str = "qh3" if QH3_AVAILABLE else "aioquic"
"""The stack a :class:`QuicService` accepts with unless told otherwise (as above)."""


ERR_RESOURCE: Final = 0x44
"""Stream reset code when the node's unread bytes would pass ``limits.receive_buffer_total``
(ours: a2ald's codes stop at 0x43; any peer treats an unknown code as a plain reset)."""


class PeerStream(anyio.abc.ByteStream):
    """One QUIC stream to or from a verified peer."""

    def __init__(self, conn: PeerConnection, stream_id: int) -> None:
        self.connection = conn
        self.stream_id = stream_id
        self._buf = bytearray()
        self._eof = False
        self._reset: int | None = None
        self._readable = anyio.Event()
        self._write_closed = False
        self._closed = False
        self._stopped: int | None = None
        """The peer sent STOP_SENDING with this code: we write nothing more."""

    @property
    def peer(self) -> Aid:
        """The verified AID at the other end (a caller AID for inbound streams)."""
        return self.connection.peer_aid

    # -- fed by the service ---------------------------------------------------------------

    def feed(self, data: bytes, end: bool) -> None:
        """Bytes (and maybe the FIN) arrived for this stream (transport-internal)."""
        if self._closed:
            return  # closed locally: nobody will read it (and it is not held)
        if data:
            conn = self.connection
            if conn.budget.over_total(len(data), conn.service.limits.receive_buffer_total):
                conn.service.counters.reset_memory += 1
                self._abort(ERR_RESOURCE)
                return
            self._buf += data
            conn.budget.hold(self.stream_id, len(data))
        self._eof = self._eof or end
        self._readable.set()

    def mark_stopped(self, error_code: int) -> None:
        """The peer sent STOP_SENDING (transport-internal)."""
        self._stopped = error_code

    def fail(self, error_code: int) -> None:
        """The stream was reset or its connection ended: wake the reader (transport-internal)."""
        self._reset = error_code
        self._readable.set()

    # -- ByteStream -----------------------------------------------------------------------

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while not self._buf:
            if self._closed:
                raise ClosedResourceError
            if self._reset is not None:
                raise BrokenResourceError(f"stream reset by peer (code {self._reset:#x})")
            if self._eof:
                raise EndOfStream
            self._readable = anyio.Event()
            await self.connection.wait_event(self._readable)
        data = bytes(self._buf[:max_bytes])
        del self._buf[:max_bytes]
        self.connection.after_read(self.stream_id, len(data))
        return data

    @property
    def buffered(self) -> int:
        """Received bytes not read yet."""
        return len(self._buf)

    async def send(self, item: bytes) -> None:
        if self._closed or self._write_closed:
            raise ClosedResourceError
        if self._reset is not None:
            raise BrokenResourceError(f"stream reset by peer (code {self._reset:#x})")
        if self._stopped is not None:
            raise BrokenResourceError(f"the peer stopped reading (code {self._stopped:#x})")
        pc = self.connection
        pc.last_active = pc.service.now()
        limit = pc.service.send_buffer
        view = memoryview(item)
        chunk = 64 * 1024
        queued = False  # written to the connection, not transmitted yet
        for start in range(0, len(view), chunk):
            while pc.conn.pending_send_bytes(self.stream_id) > limit:
                if queued:  # what fits leaves now; maybe that is enough
                    pc.transmit()
                    queued = False
                    continue
                await pc.wait_progress()
                if self._reset is not None or pc.closed:
                    raise BrokenResourceError("the connection or stream went away")
            pc.session.send(self.stream_id, bytes(view[start : start + chunk]))
            queued = True
        if queued:  # one transmit for the whole write (aioquic's _transmit_soon)
            pc.transmit()

    async def send_eof(self) -> None:
        if self._write_closed or self._closed:
            return
        self._write_closed = True
        if not self.connection.closed:
            self.connection.session.send(self.stream_id, b"", end_stream=True)
            self.connection.transmit()

    async def aclose(self) -> None:
        """Close both ways: FIN our side; if the peer has not finished, ask it to stop
        (STOP_SENDING, code 0) — nobody will read what it sends. Never raises for a stream
        the peer stopped or reset."""
        if self._closed:
            return
        await self.send_eof()
        if not self._eof and self._reset is None and not self.connection.closed:
            self.connection.session.stop_reading(self.stream_id, 0)
            self.connection.transmit()
        self._release()

    def reset(self, error_code: int = ss.ERR_ACCESS_DENIED) -> None:
        """Abort the stream in both directions."""
        if not self.connection.closed and not self._closed:
            self.connection.session.refuse(self.stream_id, error_code)
            self.connection.transmit()
        self._release()

    def _abort(self, error_code: int) -> None:
        """Reset by us for the node's sake (not by the application): both directions are
        reset, the unread bytes dropped, and the reader sees a broken stream."""
        conn = self.connection
        if not conn.closed:
            conn.session.refuse(self.stream_id, error_code)
            conn.transmit()
        self.fail(error_code)
        self._forget()

    def _release(self) -> None:
        """Closed locally: forget the unread bytes and the stream."""
        self._closed = True
        self._readable.set()
        self._forget()

    def _forget(self) -> None:
        unread = len(self._buf)
        self._buf = bytearray()
        self.connection.streams.pop(self.stream_id, None)
        self.connection.after_read(self.stream_id, unread, gone=True)


_NONE_ENDED: Final[frozenset[anyio.Event]] = frozenset()
"""Shared by every connection that has not ended (one empty set, not one each)."""


class PeerConnection:
    """A QUIC connection with a verified peer."""

    # class-level defaults: most connections never set them (no per-instance slot)
    _is_ready = False
    _waits: dict[anyio.Event, int] | None = None
    """Events tasks wait on in :meth:`wait_event` (how many tasks each): :meth:`on_gone`
    sets them, so no wait needs a task of its own to watch for the end."""
    _ended_waits: AbstractSet[anyio.Event] = _NONE_ENDED
    """The events :meth:`on_gone` set (their waiters raise BrokenResourceError)."""

    def __init__(self, service: QuicService, conn: Connection, addr: Addr,
                 *, session: ss.Session, budget: ReceiveBudget | None = None) -> None:  # fmt: skip
        self.service = service
        self.conn = conn
        self.addr = addr
        self.session = session
        self.local_aid: Aid | None = conn.local_identity_aid if not session.is_dialer else None
        self.streams: dict[int, PeerStream] = {}
        """Open streams by ID (transport-internal: the service adds, streams remove)."""
        self._ready = anyio.Event()
        """Set when the connection became ready, or ended before (wakes wait_ready)."""
        self.routed = anyio.Event()
        """Set when an inbound connection's route frame arrived, or when the connection
        ended first (transport-internal)."""
        self._gone = anyio.Event()
        self.progress = anyio.Event()
        """Set on every QUIC event of this connection, and when it received, sent or fired
        a timer while a writer waits on it (transport-internal)."""
        self.progress_waiters = 0
        """Writers blocked in :meth:`wait_progress` (transport-internal)."""
        self._waiting: dict[int, tuple[anyio.Event, list[ss.SessionEvent]]] = {}
        self.close_reason: str = ""
        self.closed = False
        self.peer_control: ss.PeerControl | None = None
        self.last_used = service.now()
        self.last_active = self.last_used
        """When the peer or we last did anything on a stream (for idle eviction)."""
        self.budget: ReceiveBudget = budget or service.new_budget()
        self.counted_aid: tuple[Aid, Aid | None] | None = None
        """The (peer, local) pair this connection is counted under (transport-internal)."""

    @property
    def is_dialer(self) -> bool:
        return self.session.is_dialer

    @property
    def ready(self) -> bool:
        return self._is_ready

    @property
    def peer_aid(self) -> Aid:
        ident = self.conn.peer_identity
        if ident is None:
            raise HandshakeFailed("the peer is not authenticated yet")
        return ident.aid

    @property
    def peer(self) -> tls.PeerIdentity:
        ident = self.conn.peer_identity
        if ident is None:
            raise HandshakeFailed("the peer is not authenticated yet")
        return ident

    async def wait_ready(self) -> None:
        """Until the handshake is confirmed and the peer verified (HandshakeFailed if the
        connection ends first)."""
        try:
            await self.wait_event(self._ready)
        except BrokenResourceError:
            raise HandshakeFailed(f"connection failed: {self.close_reason or 'closed'}") from None

    async def wait_event(self, event: anyio.Event) -> None:
        """Wait for ``event`` unless the connection goes away first (BrokenResourceError
        then; transport-internal)."""
        if not event.is_set():
            if self.closed:
                raise BrokenResourceError(f"connection closed: {self.close_reason}")
            waits = self._waits
            if waits is None:
                waits = self._waits = {}
            waits[event] = waits.get(event, 0) + 1
            try:
                await event.wait()  # on_gone sets it too
            finally:
                n = waits[event] - 1
                if n:
                    waits[event] = n
                else:
                    del waits[event]
                    if not waits:
                        self._waits = None  # most connections wait rarely: hold no dict
        if event in self._ended_waits:
            raise BrokenResourceError(f"connection closed: {self.close_reason}")

    async def wait_progress(self) -> None:
        """Until the connection next moves: a QUIC event, a datagram in or out, a timer
        (:meth:`QuicService.on_active`), or its end (transport-internal). Every writer
        waiting on one connection waits on the same event."""
        if self.closed:
            return
        if self.progress.is_set():
            self.progress = anyio.Event()
        self.progress_waiters += 1
        try:
            await self.progress.wait()  # on_gone sets it too
        finally:
            self.progress_waiters -= 1

    async def open_stream(self, token: str | None = None, *,
                          admission: bool | None = None) -> PeerStream:  # fmt: skip
        """A new service stream to the peer (``a2s1`` when the peer advertised it, raw
        otherwise).

        Raises:
            AccessDenied: the peer refused the admission.
            ConnectionClosed: the connection is closed.
        """
        if self.closed:
            raise ConnectionClosed(self.close_reason)
        await self.wait_ready()
        sid, preamble = self.session.open_service_stream(token, admission=admission)
        stream = PeerStream(self, sid)
        self.streams[sid] = stream
        self.transmit()
        self.last_used = self.service.now()
        if preamble:
            result = await self._await(sid)
            if not isinstance(result, ss.AdmissionResult):  # reset instead of an answer
                self.streams.pop(sid, None)
                raise AccessDenied(f"{self.peer_aid} reset the stream instead of admitting it",
                                   aid=self.peer_aid, operation="open stream")  # fmt: skip
            if not result.admitted:
                self.streams.pop(sid, None)
                raise AccessDenied(f"{self.peer_aid} refused the stream: {result.reason}",
                                   reason=result.reason, aid=self.peer_aid,
                                   operation="open stream")  # fmt: skip
        return stream

    async def send_mailbox(self, frame: sf.MailboxFrame, timeout_s: float = 5.0) -> None:
        """Deliver one mailbox frame and wait for the ``01`` acknowledgement.

        Raises:
            RequestTimeout: no acknowledgement in time.
            ConnectionClosed: the connection or the stream went away.
        """
        await self.wait_ready()
        sid = self.session.send_mailbox(frame)
        self.transmit()
        try:
            with anyio.fail_after(timeout_s):
                event = await self._await(sid)
        except TimeoutError:
            raise RequestTimeout(f"no mailbox acknowledgement in {timeout_s:g} s") from None
        if not isinstance(event, ss.MailboxAcked):
            code = event.error_code if isinstance(event, ss.StreamReset) else 0
            raise ConnectionClosed(f"mailbox stream failed: {event}", error_code=code)

    async def _await(self, stream_id: int) -> ss.SessionEvent:
        slot: tuple[anyio.Event, list[ss.SessionEvent]] = (anyio.Event(), [])
        self._waiting[stream_id] = slot
        try:
            await self.wait_event(slot[0])
        except BrokenResourceError as exc:
            raise ConnectionClosed(str(exc)) from None
        finally:
            self._waiting.pop(stream_id, None)
        return slot[1][0]

    def close(self, error_code: int = 0, reason: str = "") -> None:
        """Close the connection (the peer sees ``error_code``). It counts as closed at once
        (the pool hands it out no more), though QUIC reports its end only after the closing
        period."""
        if not self.closed:
            self.conn.close(error_code=error_code, reason_phrase=reason)
            self.service.host.closing(self.conn)
            self.service.host.drain(self.conn)
            self.transmit()
            if not self.closed:
                self.on_gone(reason or "closed")

    def after_read(self, stream_id: int, n: int, *, gone: bool = False) -> None:
        """The application read (or dropped) ``n`` bytes of a stream: give credit back
        (transport-internal)."""
        if gone:
            self.budget.drop(stream_id)
        else:
            self.budget.release(stream_id, n)
        if not self.closed and flow.after_read(self.conn, self.budget):
            self.service.host.drain(self.conn)
            self.transmit()

    def ping(self) -> None:
        """Send a PING now (keep-alive)."""
        if not self.closed:
            self.conn.send_ping(0)
            self.transmit()

    def transmit(self) -> None:
        """Send what a command on this connection queued: mark it for the host (only
        marked connections are asked for datagrams) and flush. Every command on ``conn`` or
        ``session`` is followed by this, as aioquic's ``transmit()`` follows a command
        (transport-internal)."""
        self.service.transmit(self.conn)

    def idle_since(self) -> float | None:
        """When this connection became idle (no stream open either way), or None."""
        if self.streams or self._waiting or self.session.stream_count > 1:
            return None
        if self.session.stream_count == 1 and not self.session.has_only_route_stream():
            return None
        return self.last_active

    # -- fed by the service ---------------------------------------------------------------

    def on_session_event(self, e: ss.SessionEvent) -> None:
        """One event of this connection's session (transport-internal)."""
        waiter = self._waiting.get(getattr(e, "stream_id", -1))
        self.last_active = self.service.now()
        if isinstance(e, ss.StreamData):
            stream = self.streams.get(e.stream_id)
            if stream is not None:
                stream.feed(e.data, e.end_stream)
        elif isinstance(e, ss.StreamStopped):
            stopped = self.streams.get(e.stream_id)
            if stopped is not None:
                stopped.mark_stopped(e.error_code)
        elif isinstance(e, ss.StreamReset):
            stream = self.streams.pop(e.stream_id, None)
            if stream is not None:
                stream.fail(e.error_code)
            if waiter is not None:
                waiter[1].append(e)
                waiter[0].set()
        elif isinstance(e, ss.AdmissionResult | ss.MailboxAcked):
            if waiter is not None:
                waiter[1].append(e)
                waiter[0].set()
        elif isinstance(e, ss.PeerControl):
            self.peer_control = e
            self.service.handlers.on_peer_control(self, e)
        elif isinstance(e, ss.RouteReceived):
            self.service.on_route(self, e)
        elif isinstance(e, ss.ServiceRequested):
            self.service.on_service(self, e)
        elif isinstance(e, ss.MailboxReceived):
            self.service.on_mailbox(self, e)

    def check_ready(self) -> None:
        """Mark the connection ready once verified and routed (transport-internal)."""
        if self._is_ready or self.closed:
            return
        verified = self.conn.peer_identity is not None and self.conn.handshake_confirmed
        if verified and (self.is_dialer or self.local_aid is not None):
            if not self.service.count_aid(self):
                return
            self._is_ready = True
            self._ready.set()

    def on_gone(self, reason: str) -> None:
        """The connection ended: fail its streams, release its budget (transport-internal)."""
        self.closed = True
        self.close_reason = reason
        if self._waits:  # wake every wait_event first: its waiter sees the end
            ended = self._ended_waits = {e for e in self._waits if not e.is_set()}
            for event in ended:
                event.set()
        if not self._is_ready:
            self._ended_waits = {*self._ended_waits, self._ready}
            self._ready.set()  # a later wait_ready fails at once
        for stream in list(self.streams.values()):
            stream.fail(0)
        self.streams.clear()
        self.budget.drop_all()
        self.service.uncount_aid(self)
        self._gone.set()
        self.progress.set()


@dataclasses.dataclass(slots=True)
class InboundHandlers:
    """What the node does with inbound work. Every callback runs synchronously in the
    event path and must not block; long work goes to ``spawn``."""

    route: Callable[[PeerConnection, ss.RouteReceived], Aid | None] = lambda c, r: None
    """Choose the local identity an inbound connection speaks to (None: refuse it)."""
    service: Callable[[PeerConnection, PeerStream, str | None], Awaitable[None]] | None = None
    """Serve an admitted inbound stream (runs as a task). Given the stream and the token."""
    admit: Callable[[PeerConnection, str | None], tuple[bool, str]] = lambda c, t: (True, "")
    """Decide an inbound service stream: (admitted, reason)."""
    mailbox: Callable[[PeerConnection, sf.MailboxFrame], Awaitable[bool]] | None = None
    """Store a mailbox frame; True to acknowledge (runs as a task)."""
    agent_info: Callable[[Aid, int], list[bytes]] = lambda aid, seq: []
    """Topic records to send a dialer of ``aid`` that holds ``seq``."""
    on_peer_control: Callable[[PeerConnection, ss.PeerControl], None] = lambda c, e: None
    """The acceptor's answer on stream 0 (ObservedAddr and AgentInfo)."""


@dataclasses.dataclass(frozen=True, slots=True)
class QuicStats:
    """The QUIC service in numbers: what is live, what is held, and what each limit of
    ``[limits]`` refused (see :class:`~a2al_mcp.transport.budget.TransportCounters`)."""

    connections: int
    """Live connections (both ways, closing ones included)."""
    inbound: int
    """Live accepted connections."""
    half_open: int
    """Inbound handshakes in progress."""
    accepted: int
    """Inbound connections ever started."""
    buffered_bytes: int
    """Received stream bytes waiting for the application, over all connections."""
    stream_entries: int
    """Session stream-table entries over all connections."""
    refused_routes: int
    """Inbound connections closed for naming no local agent."""
    counters: TransportCounters
    """What each limit refused, evicted or dropped."""


def _stack(way: str, name: str) -> str:
    if name not in QUIC_STACKS or (name == "qh3" and not QH3_AVAILABLE):
        raise UsageError(f"unavailable {way} QUIC stack: {name!r}")
    return name


class QuicService:
    """QUIC connections of one node, over the node's shared socket."""

    def __init__(
        self,
        *,
        certificates: tls.CertificateStore,
        flush: Callable[[], None],
        now: Callable[[], float],
        wall: Callable[[], float],
        spawn: Callable[[Callable[[], Awaitable[None]]], None],
        handlers: InboundHandlers | None = None,
        max_connections: int | None = None,
        max_streams_per_connection: int | None = None,
        send_buffer: int = SEND_BUFFER_BYTES,
        outbound_stack: str | None = None,
        inbound_stack: str | None = None,
        limits: LimitsConfig | None = None,
        handshake_timeout_s: float = 10.0,
        idle_timeout_s: float = tls.IDLE_TIMEOUT_S,
        rng: Rng | None = None,
    ) -> None:
        """``outbound_stack`` and ``inbound_stack`` pick the QUIC stack of dialled and of
        accepted connections (each one of :data:`QUIC_STACKS`; by default
        :data:`DEFAULT_OUTBOUND_STACK` and :data:`DEFAULT_INBOUND_STACK`).

        ``limits`` is the resource budget (connections, handshakes, streams, receive
        buffers, idle eviction); ``max_connections`` / ``max_streams_per_connection``
        override its ``connections`` / ``streams_per_connection``.
        ``handshake_timeout_s`` bounds inbound handshakes; ``idle_timeout_s`` is every
        connection's QUIC max idle timeout (both stacks); ``rng`` makes Retry connection IDs
        and the Retry token key."""
        self.outbound_stack = _stack("outbound", outbound_stack or DEFAULT_OUTBOUND_STACK)
        self.inbound_stack = _stack("inbound", inbound_stack or DEFAULT_INBOUND_STACK)
        self.certificates = certificates
        self._flush = flush
        self.now = now
        self.wall = wall
        self._spawn = spawn
        self.handlers = handlers or InboundHandlers()
        self.send_buffer = send_buffer
        self.idle_timeout_s = idle_timeout_s
        limits = limits or LimitsConfig()
        if max_connections is not None:
            limits = dataclasses.replace(
                limits,
                connections=max_connections,
                connections_per_ip=min(limits.connections_per_ip, max_connections),
            )
        if max_streams_per_connection is not None:
            limits = dataclasses.replace(limits, streams_per_connection=max_streams_per_connection)
        self.limits = limits
        self.max_streams = limits.streams_per_connection
        self.counters = TransportCounters()
        self._buffered = [0]  # shared by every connection's ReceiveBudget
        self.host = QuicHost(
            self._server_conn,
            limits=limits,
            handshake_timeout_s=handshake_timeout_s,
            rng=rng,
            evict=self._evict_idle,
            counters=self.counters,
            on_active=self.on_active,
            tracked=True,  # every command of this module is followed by a mark (transmit)
        )
        self._conns: dict[object, PeerConnection] = {}
        self._per_aid: Counter[tuple[Aid, Aid | None]] = Counter()
        """Accepted connections per (remote AID, our identity it reached)."""
        self._evict_not_before = 0.0
        self.refused_connections = 0
        self._closing = False

    def flush(self) -> None:
        """Send what commands issued on any connection queued, then flush the endpoint.

        For callers that issue commands on ``PeerConnection.conn`` or ``.session``
        themselves: every live connection is marked (see
        :meth:`~a2al_mcp.transport.quic_host.QuicHost.touch`), so this costs a pass over
        them all; :meth:`PeerConnection.transmit` (used by every command of this module)
        marks only its own."""
        host = self.host
        for conn in host.connections():
            host.touch(conn)
        self._flush()

    def transmit(self, conn: object) -> None:
        """Mark ``conn`` (a command was issued on it) and flush (transport-internal)."""
        self.host.touch(cast("Connection", conn))
        self._flush()

    @property
    def refused_streams(self) -> int:
        """Peer streams refused (stream limit, or nothing serves them)."""
        return self.counters.refused_streams

    @property
    def buffered_bytes(self) -> int:
        """Received stream bytes not read yet by the application, over all connections."""
        return self._buffered[0]

    def statistics(self) -> QuicStats:
        c = self.counters
        writes_dropped = c.writes_dropped + sum(
            pc.session.writes_dropped for pc in self._conns.values()
        )
        refused_streams = c.refused_streams + sum(
            pc.session.refused_streams for pc in self._conns.values()
        )
        return QuicStats(
            connections=len(self._conns),
            inbound=sum(1 for pc in self._conns.values() if not pc.is_dialer),
            half_open=self.host.admission.half_open_count,
            accepted=self.host.statistics().accepted,
            buffered_bytes=self._buffered[0],
            stream_entries=sum(pc.session.stream_count for pc in self._conns.values()),
            refused_routes=self.refused_connections,
            counters=dataclasses.replace(
                c, writes_dropped=writes_dropped, refused_streams=refused_streams
            ),
        )

    def new_budget(self) -> ReceiveBudget:
        """A connection's receive budget, sharing the node's total (transport-internal)."""
        return ReceiveBudget(
            stream_window=self.limits.stream_receive_buffer,
            connection_window=self.limits.connection_receive_buffer,
            shared=self._buffered,
        )

    def _session(self, conn: Connection, observed_addr: Addr | None = None) -> ss.Session:
        return ss.Session(conn, observed_addr=observed_addr,
                          max_peer_streams=self.limits.streams_per_connection)  # fmt: skip

    def count_aid(self, pc: PeerConnection) -> bool:
        """An accepted connection became ready: count it for its peer AID and the local
        identity it reached; False (and closed) if that pair already has
        ``connections_per_aid`` connections. A node dialling several agents we host needs one
        connection per agent, so the pair is counted, not the remote AID alone. (Our own
        dials are the local user's choice: not counted.)"""
        if pc.is_dialer:
            return True
        aid = (pc.peer_aid, pc.local_aid)
        if self._per_aid[aid] >= self.limits.connections_per_aid:
            self.counters.refused_per_aid += 1
            pc.close(APP_ERROR_LIMIT, "too many connections from this AID")
            return False
        self._per_aid[aid] += 1
        pc.counted_aid = aid
        return True

    def uncount_aid(self, pc: PeerConnection) -> None:
        """Release the per-AID count of a connection that ended (transport-internal)."""
        aid, pc.counted_aid = pc.counted_aid, None
        if aid is not None:
            n = self._per_aid[aid] - 1
            if n > 0:
                self._per_aid[aid] = n
            else:
                del self._per_aid[aid]

    def _evict_idle(self) -> bool:
        """``limits.connections`` is reached: close the accepted connection idle longest,
        if one has been idle for ``limits.idle_evict_s``."""
        now = self.now()
        if now < self._evict_not_before:
            return False  # nothing could be idle long enough yet
        wait = self.limits.idle_evict_s
        best: PeerConnection | None = None
        best_since = 0.0
        earliest = now + wait
        for pc in self._conns.values():
            if pc.is_dialer or pc.closed or not pc.ready:
                continue
            since = pc.idle_since()
            if since is None:
                continue
            if now - since >= wait and (best is None or since < best_since):
                best, best_since = pc, since
            earliest = min(earliest, since + wait)
        if best is None:
            self._evict_not_before = earliest
            return False
        self.counters.evicted_idle += 1
        best.close(APP_ERROR_LIMIT, "idle; evicted to make room")
        return True

    def connections(self) -> list[PeerConnection]:
        return list(self._conns.values())

    # -- outbound -------------------------------------------------------------------------

    def dial(self, local: tls.LocalCertificate | None, expected: Aid, addr: Addr, *,
             held_topic_seq: int = 0) -> PeerConnection:  # fmt: skip
        """Start a connection from ``local`` to ``expected`` at ``addr``; await
        :meth:`PeerConnection.wait_ready` on the result. ``local=None`` presents no
        certificate (every A2AL server refuses that; for tests)."""
        if self._closing:
            raise NodeClosed("the QUIC service is closing")
        conn: Connection
        budget = self.new_budget()
        if self.outbound_stack == "qh3":
            conn = qh3_client_connection(
                local, expected, now_wall=self.wall, idle_timeout=self.idle_timeout_s
            )
            flow.adopt_qh3(conn, budget)
        else:
            config = tls.client_configuration(local, expected, idle_timeout=self.idle_timeout_s)
            flow.aioquic_windows(config, budget)
            aq = flow.FlowAioquicConnection(
                configuration=config, now_wall=self.wall, expected=expected
            )
            aq.a2al_budget = budget
            aq.a2al_limit_streams(self.limits.streams_per_connection)
            conn = aq
        session = self._session(conn)
        pc = PeerConnection(self, conn, addr, session=session, budget=budget)
        pc.local_aid = None if local is None else local.aid
        self._conns[conn] = pc
        self.host.connect(conn, addr, self.now())
        session.start(expected, held_topic_seq=held_topic_seq)
        pc.transmit()
        return pc

    # -- events from the endpoint ---------------------------------------------------------

    def on_event(self, event: HostEvent) -> None:
        """The endpoint's ``on_events`` hook for the ``quic`` core."""
        if isinstance(event, ConnectionAccepted):
            conn = cast("Connection", event.conn)  # made by _server_conn
            budget = getattr(conn, "a2al_budget", None)
            pc = PeerConnection(self, conn, event.addr,
                                session=self._session(conn, event.addr), budget=budget)  # fmt: skip
            self._conns[conn] = pc
            self._spawn(lambda: self._route_deadline(pc))
        elif isinstance(event, ConnectionEvent):
            known = self._conns.get(event.conn)
            if known is not None:
                self._on_quic_event(known, event.event)
        elif isinstance(event, ConnectionGone):
            gone = self._conns.pop(event.conn, None)
            if event.error_code == _FLOW_CONTROL_ERROR:
                self.counters.flow_control_violations += 1
            if gone is not None:
                code = f"error {event.error_code:#x}" if event.error_code else "closed"
                gone.on_gone(event.reason or code)

    def on_active(self, conn: object) -> None:
        """The host's ``on_active`` hook: ``conn`` received, sent or fired a timer, which
        may have freed its send buffer; wake its blocked writers (transport-internal)."""
        pc = self._conns.get(conn)
        if pc is not None and pc.progress_waiters:
            pc.progress.set()

    def _on_quic_event(self, pc: PeerConnection, e: qe.QuicEvent) -> None:
        session_events = pc.session.handle_event(e)
        # the session may have written (STOP_SENDING, a refusal): ask the connection at
        # the send that follows this delivery of events
        self.host.touch(pc.conn)
        for se in session_events:
            pc.on_session_event(se)
        pc.check_ready()
        pc.progress.set()

    # -- inbound --------------------------------------------------------------------------

    def _server_conn(self, dcid: bytes, addr: Addr, retry_scid: bytes | None = None
                     ) -> Connection:  # fmt: skip
        budget = self.new_budget()
        if self.inbound_stack == "qh3":
            conn = qh3_server_connection(
                self.certificates,
                original_destination_connection_id=dcid,
                now_wall=self.wall,
                idle_timeout=self.idle_timeout_s,
            )
            if retry_scid is not None:
                flow.set_retry_source(conn, retry_scid)
            flow.adopt_qh3(conn, budget)
            return conn
        config = tls.server_configuration(self.certificates, idle_timeout=self.idle_timeout_s)
        flow.aioquic_windows(config, budget)
        aq = flow.FlowAioquicConnection(
            configuration=config,
            now_wall=self.wall,
            store=self.certificates,
            original_destination_connection_id=dcid,
            retry_source_connection_id=retry_scid,
        )
        aq.a2al_budget = budget
        aq.a2al_limit_streams(self.limits.streams_per_connection)
        return aq

    async def _route_deadline(self, pc: PeerConnection) -> None:
        with anyio.move_on_after(ROUTE_TIMEOUT_S):
            with contextlib.suppress(BrokenResourceError):  # it closed first: nothing to do
                await pc.wait_event(pc.routed)
            return
        if not pc.closed:
            pc.close(APP_ERROR_UNKNOWN_AGENT, "no route frame in time")

    def on_route(self, pc: PeerConnection, route: ss.RouteReceived) -> None:
        """An inbound connection named its agent (transport-internal)."""
        pc.routed.set()
        local = self.handlers.route(pc, route)
        if local is None:
            self.refused_connections += 1
            pc.close(APP_ERROR_UNKNOWN_AGENT, "unknown agent")
            return
        pc.local_aid = local
        target = route.target or local
        pc.session.answer_route(self.handlers.agent_info(target, route.held_topic_seq))
        pc.check_ready()
        pc.transmit()

    def on_service(self, pc: PeerConnection, req: ss.ServiceRequested) -> None:
        """An inbound service stream asks for admission (transport-internal)."""
        handler = self.handlers.service
        if handler is None or pc.local_aid is None or len(pc.streams) >= self.max_streams:
            self.counters.refused_streams += 1
            pc.session.admit(req.stream_id, False, "no service here")
            pc.transmit()
            return
        admitted, reason = self.handlers.admit(pc, req.token)
        stream = PeerStream(pc, req.stream_id)
        if admitted:
            pc.streams[req.stream_id] = stream
        else:
            self.counters.refused_streams += 1
        for held in pc.session.admit(req.stream_id, admitted, reason):
            pc.on_session_event(held)
        pc.transmit()
        if admitted:
            self._spawn(lambda: self._serve(handler, pc, stream, req.token))

    async def _serve(
        self,
        handler: Callable[[PeerConnection, PeerStream, str | None], Awaitable[None]],
        pc: PeerConnection,
        stream: PeerStream,
        token: str | None,
    ) -> None:
        try:
            await handler(pc, stream, token)
            await stream.aclose()  # never raises for a stream the peer stopped or reset
        except Exception as exc:  # a broken handler resets its stream, nothing more
            logger.warning("serve.handler_failed peer=%s error=%r", pc.addr, exc, exc_info=True)
            stream.reset(ss.ERR_PROTOCOL)

    def on_mailbox(self, pc: PeerConnection, e: ss.MailboxReceived) -> None:
        """An inbound mailbox frame (transport-internal)."""
        handler = self.handlers.mailbox
        if handler is None or pc.local_aid is None:
            pc.session.refuse(e.stream_id, ss.ERR_ACCESS_DENIED)
            pc.transmit()
            return

        async def store() -> None:
            ok = await handler(pc, e.frame)
            if pc.closed:
                return
            if ok:
                pc.session.ack_mailbox(e.stream_id)
            else:
                pc.session.refuse(e.stream_id, ss.ERR_ACCESS_DENIED)
            pc.transmit()

        self._spawn(store)

    # -- lifetime -------------------------------------------------------------------------

    def close_all(self) -> None:
        """Close every connection (NO_ERROR); they finish in the background."""
        self._closing = True
        for pc in list(self._conns.values()):
            pc.close(0, "node closing")
