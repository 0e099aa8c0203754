"""Async QUIC peers: verified connections and byte streams over the shared socket (driver).

:class:`QuicService` sits on the node's :class:`~a2al_mcp.transport.endpoint.UdpEndpoint`
next to the DHT: it owns the :class:`~a2al_mcp.transport.quic_host.QuicHost` core, gives every
connection a :class:`~a2al_mcp.transport.session.Session`, and turns their events into
awaitable objects:

* :class:`PeerConnection` (:mod:`~a2al_mcp.transport.peer_connection`) — one mutually
  authenticated connection; ``peer`` is the verified remote identity, ``local_aid`` the local
  identity it speaks for. Usable only after :meth:`PeerConnection.wait_ready` (the
  client-side handshake trap: we wait for the server's HANDSHAKE_DONE, i.e. for the server to
  have accepted our certificate).
* :class:`PeerStream` (:mod:`~a2al_mcp.transport.peer_stream`) — an
  :class:`anyio.abc.ByteStream` over one QUIC stream, with real back-pressure:
  :meth:`PeerStream.send` waits while more than ``send_buffer`` bytes sit unsent in the
  stack's (otherwise unbounded) send buffer.

Both are re-exported here. Every command on a connection is followed by
:meth:`PeerConnection.transmit` (mark it for the host, then flush): the host asks only
marked connections for datagrams (:mod:`~a2al_mcp.transport.quic_host`).

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

A connection may also run over another datagram path than the shared socket — an ICE pair,
a TURN relay (issue 18): :meth:`QuicService.dial` with ``path=``, or
:meth:`QuicService.accept_path` for a connection the peer opens on it. The host keeps such a
connection apart from the socket's (:mod:`~a2al_mcp.transport.quic_paths`), its driver
(:class:`~a2al_mcp.transport.quic_path.QuicPath`) carries its datagrams; everything else —
identities, handlers, limits, admission, statistics, containment — is the same as on the
socket.

The three classes drive one another through methods and attributes without a leading
underscore (``PeerStream.feed``/``mark_stopped``/``fail``, ``PeerConnection.streams``,
``wait_event``, ``after_read``, ``on_session_event``, ``check_ready``, ``on_gone``,
``QuicService.on_route``/``on_service``/``on_mailbox``/``count_aid``/``new_budget`` …):
they are internal to the transport — the service's event path, not an application API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, cast

import anyio
import anyio.abc
from anyio import BrokenResourceError

from .._dataclass import dataclass
from .._random import Rng
from .._types import Addr
from ..config import LimitsConfig
from ..errors import (
    NodeClosed,
    UsageError,
)
from ..identity.aid import Aid
from ..protocol import session_frames as sf
from . import session as ss
from .budget import ReceiveBudget, TransportCounters
from .peer_connection import PeerConnection
from .peer_stream import ERR_RESOURCE, PeerStream
from .quic_host import ConnectionAccepted, ConnectionEvent, ConnectionGone, HostEvent, QuicHost
from .quic_path import DatagramLink, QuicPath
from .quic_settings import IDLE_TIMEOUT_S

if TYPE_CHECKING:
    from aioquic.quic import events as qe

    from . import tls
    from .peer_connection import Connection

__all__ = [
    "DEFAULT_INBOUND_STACK",
    "DEFAULT_OUTBOUND_STACK",
    "ERR_RESOURCE",
    "QH3_AVAILABLE",
    "QUIC_STACKS",
    "InboundHandlers",
    "PeerConnection",
    "PeerStream",
    "QuicPath",
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
QH3_AVAILABLE: Final = importlib.util.find_spec("qh3") is not None
"""qh3 is installed (without it, aioquic runs both ways). Known without importing it: the
QUIC stacks (aioquic's TLS, qh3, pyOpenSSL, cryptography's x509) load with the first
connection (:meth:`QuicService.dial`, ``_server_conn``), so a process that only uses the DHT
never pays for them (about 150 ms and 7 MiB at start)."""

DEFAULT_OUTBOUND_STACK: str = "qh3" if QH3_AVAILABLE else "aioquic"
"""The stack a :class:`QuicService` dials with unless told otherwise: qh3 when installed
(its Rust packet core moves data several times cheaper than aioquic), else aioquic."""
DEFAULT_INBOUND_STACK: str = "qh3" if QH3_AVAILABLE else "aioquic"
"""The stack a :class:`QuicService` accepts with unless told otherwise (as above)."""


@dataclass(slots=True)
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
    dht_stream: Callable[[PeerConnection, PeerStream], Awaitable[None]] | None = None
    """Read one raw stream carrying a DHT message (runs as a task): every peer stream of a
    Mode-B connection (a2al-wire §4.11), and a raw stream that :attr:`raw_dht` lets through
    on a Mode-A one. None: Mode-B streams are refused."""
    raw_dht: Callable[[PeerConnection], bool] = lambda c: False
    """Whether a raw (no magic) stream on this routed connection goes to :attr:`dht_stream`
    rather than being served (a2ald 0.3.5's 'recovered misrouted dht': a connection to the
    node's AID, which serves nothing)."""


@dataclass(frozen=True, slots=True)
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
    paths: int = 0
    """Live datagram paths other than the socket (ICE pairs), with or without a connection."""


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
        idle_timeout_s: float = IDLE_TIMEOUT_S,
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
            on_path_output=self._path_output,
        )
        self._conns: dict[object, PeerConnection] = {}
        self._paths: dict[Addr, QuicPath] = {}
        self._dht_paths: set[Addr] = set()
        """Paths whose accepted connection is a Mode-B one (see :meth:`accept_path`)."""
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
            paths=len(self._paths),
        )

    def new_budget(self) -> ReceiveBudget:
        """A connection's receive budget, sharing the node's total (transport-internal)."""
        return ReceiveBudget(
            stream_window=self.limits.stream_receive_buffer,
            connection_window=self.limits.connection_receive_buffer,
            shared=self._buffered,
        )

    def _session(self, conn: Connection, observed_addr: Addr | None = None, *,
                 routed: bool | None = True) -> ss.Session:  # fmt: skip
        return ss.Session(conn, observed_addr=observed_addr, routed=routed,
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
             held_topic_seq: int = 0, path: DatagramLink | QuicPath | None = None,
             path_label: str = "path",
             on_path_close: Callable[[], Awaitable[None]] | None = None,
             dht_only: bool = False) -> PeerConnection:  # fmt: skip
        """Start a connection from ``local`` to ``expected`` at ``addr``; await
        :meth:`PeerConnection.wait_ready` on the result. ``local=None`` presents no
        certificate (every A2AL server refuses that; for tests).

        With ``path`` (a :class:`~a2al_mcp.transport.quic_path.DatagramLink` such as a
        connected ICE session, or a path from :meth:`open_path`), the connection runs over
        that path instead of the socket: ``addr`` is then the peer's address as the path
        reaches it (``QuicPath.remote``, for reports), ``path_label`` says what the path
        is, and ``on_path_close`` releases the link when the path ends. The connection's
        ``path`` is the :class:`QuicPath`, its ``addr`` the path's synthetic address.
        Closing the connection ends the path; the path failing closes the connection.

        ``dht_only``: a Mode-B connection (a2al-wire §4.11): no route frame; its streams
        carry one DHT message each (:meth:`PeerConnection.open_stream` with
        ``admission=False``), the peer's go to ``handlers.dht_stream``."""
        if self._closing:
            raise NodeClosed("the QUIC service is closing")
        if isinstance(path, QuicPath):
            return self.dial(local, expected, path.addr, held_topic_seq=held_topic_seq,
                             dht_only=dht_only)  # fmt: skip
        if path is not None:
            opened = self.open_path(path, remote=addr, label=path_label,
                                    on_close=on_path_close)  # fmt: skip
            try:
                return self.dial(local, expected, opened.addr, held_topic_seq=held_topic_seq,
                                 dht_only=dht_only)  # fmt: skip
            except BaseException:
                opened.close("dial failed")  # the path we opened for it: its link released
                raise
        from . import flow, tls  # the QUIC stacks load with the first connection
        from .tls_qh3 import qh3_client_connection

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
        session = self._session(conn, routed=not dht_only)
        pc = PeerConnection(self, conn, addr, session=session, budget=budget)
        pc.local_aid = None if local is None else local.aid
        self.host.connect(conn, addr, self.now())
        self._conns[conn] = pc
        on_path = self._paths.get(addr) if self._paths else None
        if on_path is not None:
            on_path.bind(pc)
        if not dht_only:
            session.start(expected, held_topic_seq=held_topic_seq)
        pc.transmit()
        return pc

    # -- other datagram paths ------------------------------------------------------------

    def open_path(self, link: DatagramLink, *, remote: Addr | None = None,
                  accept: bool = False, label: str = "path",
                  on_close: Callable[[], Awaitable[None]] | None = None) -> QuicPath:  # fmt: skip
        """A datagram path to one peer over ``link``, driven by a task of the service's
        ``spawn``: dial over it (:meth:`dial` with ``path=``), or, with ``accept``, the
        first INITIAL arriving on it opens a connection (:meth:`accept_path`).

        Args:
            link: ``send``/``receive`` datagrams to and from the peer (a connected ICE
                session); any exception from it ends the path.
            remote: the peer's address as the link reaches it (reports; an accepted
                connection's ObservedAddr).
            label: what the path is (``"ice"``, ``"relay"``), for reports.
            on_close: releases the link when the path ends (e.g. the ICE session's close).

        Raises:
            NodeClosed: the service is closing.
        """
        if self._closing:
            raise NodeClosed("the QUIC service is closing")
        addr = self.host.attach_path(accept=accept)
        path = QuicPath(link, addr, host=self.host, counters=self.counters, now=self.now,
                        flush=self._flush, remote=remote, label=label, on_close=on_close,
                        on_end=self._path_ended)  # fmt: skip
        self._paths[addr] = path
        self._spawn(path.run)
        return path

    def accept_path(self, link: DatagramLink, *, remote: Addr | None = None,
                    label: str = "path",
                    on_close: Callable[[], Awaitable[None]] | None = None,
                    dht_only: bool = False) -> QuicPath:  # fmt: skip
        """Accept the connection a peer opens over ``link`` (we are the QUIC server: the
        ICE callee). The connection is admitted, routed and served as one on the socket;
        ``await path.wait_connection()`` gives it. Arguments as :meth:`open_path`.

        ``dht_only``: the peer called our node AID, so the connection may be a Mode-B one
        (a2al-wire §4.11, DHT messages only) or a routed one to the node: stream 0's first
        bytes decide (:class:`~a2al_mcp.transport.session.Session` with ``routed=None``).
        No route frame is awaited: the connection speaks for the node (``handlers.route``
        without a target) until a route frame says otherwise; on Mode B each of its streams
        goes to ``handlers.dht_stream``."""
        path = self.open_path(link, remote=remote, accept=True, label=label, on_close=on_close)
        if dht_only:
            self._dht_paths.add(path.addr)
        return path

    def paths(self) -> list[QuicPath]:
        """The live datagram paths."""
        return list(self._paths.values())

    def _path_output(self, addr: Addr) -> None:
        path = self._paths.get(addr)
        if path is not None:
            path.wake()

    def _path_ended(self, path: QuicPath) -> None:
        self._paths.pop(path.addr, None)
        self._dht_paths.discard(path.addr)

    # -- events from the endpoint ---------------------------------------------------------

    def on_event(self, event: HostEvent) -> None:
        """The endpoint's ``on_events`` hook for the ``quic`` core."""
        if isinstance(event, ConnectionAccepted):
            conn = cast("Connection", event.conn)  # made by _server_conn
            budget = getattr(conn, "a2al_budget", None)
            path = self._paths.get(event.addr) if self._paths else None
            observed = event.addr if path is None else path.remote
            dht_only = event.addr in self._dht_paths
            pc = PeerConnection(self, conn, event.addr,
                                session=self._session(conn, observed,
                                                      routed=None if dht_only else True),
                                budget=budget)  # fmt: skip
            self._conns[conn] = pc
            if path is not None:
                path.bind(pc)
            if dht_only:  # Mode B unless stream 0 says otherwise: the node (SNI, else node)
                pc.routed.set()
                pc.local_aid = self.handlers.route(pc, ss.RouteReceived(None, legacy=True))
            else:
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
                if gone.path is not None:
                    gone.path.finish(event.reason or code)

    def on_active(self, conn: object) -> None:
        """The host's ``on_active`` hook: ``conn`` received, sent or fired a timer, which
        may have freed its send buffer; wake its blocked writers (transport-internal)."""
        pc = self._conns.get(conn)
        if pc is None:
            return
        if pc.progress_waiters:
            pc.progress.set()
        if not pc.ready and pc.session.routed is not True:
            # Mode B: no stream-0 answer follows the handshake, and HANDSHAKE_DONE comes
            # with no QUIC event: the datagram that confirmed it makes the connection ready
            pc.check_ready()

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
        from . import flow, tls  # the QUIC stacks load with the first connection
        from .tls_qh3 import qh3_server_connection

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
        dht = self.handlers.dht_stream
        mode_b = pc.session.routed is not True
        if mode_b or (req.legacy and dht is not None and self.handlers.raw_dht(pc)):
            self._dht_stream(pc, req, dht)
            return
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

    def _dht_stream(
        self,
        pc: PeerConnection,
        req: ss.ServiceRequested,
        handler: Callable[[PeerConnection, PeerStream], Awaitable[None]] | None,
    ) -> None:
        """A raw stream of a Mode-B connection (or a misrouted one): read by ``handler``;
        refused when there is none, when it is not raw or past the stream limit."""
        if handler is None or not req.legacy or len(pc.streams) >= self.max_streams:
            self.counters.refused_streams += 1
            pc.session.admit(req.stream_id, False, "no DHT here")
            pc.transmit()
            return
        stream = PeerStream(pc, req.stream_id)
        pc.streams[req.stream_id] = stream
        for held in pc.session.admit(req.stream_id, True):
            pc.on_session_event(held)
        pc.transmit()

        async def read() -> None:
            try:
                await handler(pc, stream)
            finally:
                await stream.aclose()

        self._spawn(read)

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
        if handler is None or pc.local_aid is None or pc.session.routed is not True:
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
        for path in list(self._paths.values()):
            path.close("node closing")
