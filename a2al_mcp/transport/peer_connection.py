"""One mutually authenticated QUIC connection to a peer, awaitable (driver).

:class:`PeerConnection` is usable after :meth:`PeerConnection.wait_ready` (the client-side
handshake trap: we wait for the server's HANDSHAKE_DONE, i.e. for the server to have
accepted our certificate). It opens service streams (:class:`~a2al_mcp.transport.
peer_stream.PeerStream`) and sends mailbox frames through its
:class:`~a2al_mcp.transport.session.Session`, and follows every command with
:meth:`PeerConnection.transmit`, which marks the connection for the
:class:`~a2al_mcp.transport.quic_host.QuicHost` (only marked connections are asked for
datagrams) and flushes. Waits wake on events: :meth:`PeerConnection.on_gone` sets every
event a task waits on in :meth:`PeerConnection.wait_event`, so no wait needs a watcher task.
Made and fed by :class:`~a2al_mcp.transport.peer.QuicService`; re-exported by
:mod:`a2al_mcp.transport.peer`.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Final

import anyio
from anyio import BrokenResourceError

from .._types import Addr
from ..errors import AccessDenied, ConnectionClosed, HandshakeFailed, RequestTimeout
from ..identity.aid import Aid
from ..protocol import session_frames as sf
from . import session as ss
from .budget import ReceiveBudget
from .peer_stream import PeerStream

if TYPE_CHECKING:
    from . import tls
    from .peer import QuicService
    from .quic_path import QuicPath
    from .tls_qh3 import Qh3ClientConnection, Qh3ServerConnection

    Connection = tls.A2ALQuicConnection | Qh3ClientConnection | Qh3ServerConnection
    """A mutually authenticated QUIC connection, either stack, either side."""

__all__ = ["PeerConnection"]

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
    path: QuicPath | None = None
    """The datagram path this connection runs over, or None for the shared socket. On a
    path, :attr:`addr` is the path's synthetic address (never sent to on the socket);
    ``path.remote`` is the peer's address as the path reaches it."""

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

    def smoothed_rtt_s(self) -> float | None:
        """The QUIC stack's smoothed round-trip time of this connection (RFC 9002 §5.3), in
        seconds; None before its first RTT sample. Neither stack has a public accessor:
        this reads qh3's core (``smoothed_rtt``) or aioquic's loss recovery state."""
        core = getattr(self.conn, "_core", None)  # qh3: its Rust core keeps the estimate
        if core is not None:
            rtt = core.smoothed_rtt
        else:
            recovery = getattr(self.conn, "_loss", None)  # aioquic's QuicPacketRecovery
            if recovery is None or not getattr(recovery, "_rtt_initialized", False):
                return None
            rtt = getattr(recovery, "_rtt_smoothed", None)
        return float(rtt) if rtt else None

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
        from . import flow  # loaded with the first connection (the QUIC stacks)

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
