"""The A2AL session layer over one QUIC connection (a2al-wire §5.2–5.4). Sans-I/O.

Like aioquic's ``H3Connection``, a :class:`Session` wraps a ``QuicConnection``, takes its
``QuicEvent``s through :meth:`Session.handle_event` and returns :class:`SessionEvent`\\ s;
commands (``open_service_stream``, ``send_mailbox``, ``admit`` …) write to the connection and
the driver transmits afterwards.

**Stream 0.** The dialer opens it first and writes ``a2r2 ‖ AID`` (the local agent it wants)
and an AgentInfoHint, then FIN. The acceptor reads the 25-byte route frame and the dialer's
control messages up to FIN (:class:`RouteReceived`), then answers with ObservedAddr, AgentInfo
records and ServiceStreamCapable, and FIN (:meth:`Session.answer_route`). The dialer sees
those as :class:`PeerControl`. The dialer does not wait for the answer before opening data
streams.

**Mode B** (a2al-wire §4.11, ``routed=False``): no stream 0 exchange; every stream is a data
stream, a raw one carrying one DHT message. An acceptor that cannot know (a call to its node
AID, ``routed=None``) lets stream 0's first four bytes decide: ``a2r1``/``a2r2`` or not.

**Data streams** (any stream the peer opens after stream 0) start with a 4-byte magic:
``a2mb`` → one mailbox frame (:class:`MailboxReceived`, answered by :meth:`ack_mailbox`);
``a2s1`` → an admission preamble (token, end-of-admission), answered by :meth:`admit` with an
access result; another ``a2??`` → refused; anything else → a raw service stream whose first
four bytes are replayed (:class:`ServiceRequested` with ``legacy=True``; :meth:`admit` decides
without writing a result). Admitted streams carry :class:`StreamData` both ways.

This module keeps the connection-level part: the stream table, the commands and every write
to the connection. The events are :mod:`~a2al_mcp.transport.session_events`'s (re-exported
here), stream 0's exchange :mod:`~a2al_mcp.transport.session_route`'s, and the data streams'
state machines :mod:`~a2al_mcp.transport.session_streams`'s.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

from aioquic.quic import events as qe

from .._types import Addr
from ..errors import DecodeError
from ..identity.aid import Aid
from ..protocol import session_frames as sf
from .session_events import (
    ERR_ACCESS_DENIED,
    ERR_NO_INBOUND,
    ERR_PROTOCOL,
    AdmissionResult,
    MailboxAcked,
    MailboxReceived,
    PeerControl,
    RouteReceived,
    ServiceRequested,
    SessionEvent,
    StreamData,
    StreamReset,
    StreamStopped,
)
from .session_route import (
    ROUTE_ANSWER_MAX,
    ROUTE_STREAM,
    RouteRequestReader,
    answer_over_budget,
    read_route_answer,
    route_answer,
    route_request,
)
from .session_streams import StreamKind, StreamState, feed_data_stream, locally_initiated

__all__ = [
    "ERR_ACCESS_DENIED",
    "ERR_NO_INBOUND",
    "ERR_PROTOCOL",
    "ROUTE_ANSWER_MAX",
    "AdmissionResult",
    "MailboxAcked",
    "MailboxReceived",
    "PeerControl",
    "RouteReceived",
    "ServiceRequested",
    "Session",
    "SessionEvent",
    "StreamConnection",
    "StreamData",
    "StreamReset",
    "StreamStopped",
]


class StreamConnection(Protocol):
    """What a session needs of its QUIC connection (aioquic's ``QuicConnection`` API; qh3's
    mirrors it)."""

    @property
    def configuration(self) -> Any: ...

    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int: ...

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None: ...

    def reset_stream(self, stream_id: int, error_code: int) -> None: ...

    def stop_stream(self, stream_id: int, error_code: int) -> None: ...


class Session:
    """The A2AL protocol on one QUIC connection.

    The stream table holds a stream until it is finished both ways (FIN or reset each
    way, STOP_SENDING counting as our side's end); then its entry is freed. Writes to a
    stream whose sending side the peer stopped or reset are dropped, never raised, and
    counted (:attr:`writes_dropped`).

    Args:
        conn: the connection (client side for the dialer, server side for the acceptor).
        observed_addr: acceptor only: the dialer's UDP address, reported as ObservedAddr.
        max_peer_streams: streams the peer may have open at once (more are reset at once,
            counted in :attr:`refused_streams`); None: no limit here.
        routed: False for a Mode-B connection (a2al-wire §4.11): no stream 0 exchange
            either way; every stream, the first included, is a data stream (on Mode B, a raw
            one carrying one DHT message). None (acceptor only): either — the first bytes of
            stream 0 decide (``a2r1``/``a2r2``: routed, anything else: Mode B); a call to a
            node AID may be either.
    """

    def __init__(self, conn: StreamConnection, *, observed_addr: Addr | None = None,
                 max_peer_streams: int | None = None,
                 routed: bool | None = True) -> None:  # fmt: skip
        self.conn = conn
        self.is_dialer: bool = conn.configuration.is_client
        self._observed = observed_addr
        self._streams: dict[int, StreamState] = {}
        if routed is None and conn.configuration.is_client:
            raise ValueError("only the acceptor can tell a Mode-B connection by its stream 0")
        self.routed = routed
        """False: a Mode-B connection (no route frame; see the class docstring); None: not
        known yet."""
        self._sniff = bytearray()
        """Stream 0's first bytes while :attr:`routed` is None."""
        self._started = routed is False
        self._max_peer = max_peer_streams
        self._peer_open = 0
        self.writes_dropped = 0
        """Writes dropped because the stream's sending side was stopped or reset."""
        self.refused_streams = 0
        """Peer streams reset because ``max_peer_streams`` were open, and stream-0 answers
        over :data:`ROUTE_ANSWER_MAX` (also in :attr:`route_answer_overflows`)."""
        self.route_answer_overflows = 0
        """Dialer: stream-0 answers reset for exceeding :data:`ROUTE_ANSWER_MAX`."""
        self._route_answered = False
        self.peer_service_capable = False
        """The acceptor advertised ``a2s1`` support (type 6) on stream 0."""
        self.route: RouteReceived | None = None
        """Acceptor: the dialer's route, once stream 0 is complete."""
        self._route_reader = RouteRequestReader()

    # -- dialer commands ------------------------------------------------------------------

    def start(self, target: Aid, *, held_topic_seq: int = 0, token: str | None = None) -> None:
        """Dialer: open stream 0 with ``a2r2 ‖ target``, an AgentInfoHint (and an access token
        if given), then FIN. Must be the first stream of the connection."""
        stream_id = self.conn.get_next_available_stream_id()
        if stream_id != ROUTE_STREAM:
            raise RuntimeError("the route frame must be on the connection's first stream")
        data = route_request(target, held_topic_seq, token)
        self._streams[stream_id] = StreamState(StreamKind.ROUTE_OUT)
        self._started = True
        self._write(stream_id, data, end=True)

    def open_service_stream(
        self, token: str | None = None, *, admission: bool | None = None
    ) -> tuple[int, bool]:
        """Open a service stream. With ``admission`` (default: when the peer advertised it)
        an ``a2s1`` preamble goes first and :class:`AdmissionResult` follows; otherwise the
        stream is raw and usable at once. Returns the stream ID and whether a preamble
        (and so an admission result) is on its way."""
        self._check_started()
        use_preamble = self.peer_service_capable if admission is None else admission
        stream_id = self.conn.get_next_available_stream_id()
        if use_preamble:
            self._streams[stream_id] = StreamState(StreamKind.ADMISSION_OUT)
            self.conn.send_stream_data(stream_id, sf.admission_preamble(token))
        else:
            self._streams[stream_id] = StreamState(StreamKind.DATA)
            self.conn.send_stream_data(stream_id, b"")  # creates the stream now
        return stream_id, use_preamble

    def _check_started(self) -> None:
        if self.is_dialer and not self._started:
            raise RuntimeError("call start() first: stream 0 must carry the route frame")

    def send_mailbox(self, frame: sf.MailboxFrame) -> int:
        """Open a stream carrying one mailbox frame; :class:`MailboxAcked` follows."""
        self._check_started()
        stream_id = self.conn.get_next_available_stream_id()
        self._streams[stream_id] = StreamState(StreamKind.MAILBOX_OUT)
        self._write(stream_id, frame.to_bytes(), end=True)
        return stream_id

    # -- acceptor commands ----------------------------------------------------------------

    def answer_route(self, agent_info: list[bytes] | tuple[bytes, ...] = (), *,
                     service_capable: bool = True) -> None:  # fmt: skip
        """Acceptor: write our stream-0 part (ObservedAddr, AgentInfo records, type 6) and
        FIN. Nothing is written for ``a2r1`` dialers."""
        if self._route_answered or self.route is None or self.route.legacy:
            return
        self._route_answered = True
        data = route_answer(self._observed, agent_info, service_capable=service_capable)
        self._write(ROUTE_STREAM, data, end=True)

    def admit(self, stream_id: int, admitted: bool, reason: str = "") -> list[SessionEvent]:
        """Acceptor: decide a :class:`ServiceRequested`. Returns the events held back until
        the decision (the replayed first bytes of a raw stream, data that followed)."""
        st = self._streams.get(stream_id)
        if st is None or st.kind is not StreamKind.PENDING:
            return []
        if not admitted:
            st.kind = StreamKind.DEAD
            if st.legacy:
                self._refuse(stream_id, ERR_ACCESS_DENIED)
            else:  # the reason reaches the dialer; we stop reading
                self._write(stream_id, sf.access_result(False, reason).to_bytes(), end=True)
                with contextlib.suppress(Exception):
                    self.conn.stop_stream(stream_id, ERR_ACCESS_DENIED)
            return []
        if not st.legacy:
            self._write(stream_id, sf.access_result(True).to_bytes())
        st.kind = StreamKind.DATA
        held, st.buf = bytes(st.buf), bytearray()
        if held or st.ended:
            return [StreamData(stream_id, held, st.ended)]
        return []

    def ack_mailbox(self, stream_id: int) -> None:
        """Acceptor: acknowledge a stored (or duplicate) mailbox frame and close."""
        st = self._streams.get(stream_id)
        if st is not None and st.kind is StreamKind.MAILBOX_IN:
            st.kind = StreamKind.DEAD
            self._write(stream_id, sf.MAILBOX_ACK, end=True)

    def refuse(self, stream_id: int, error_code: int = ERR_ACCESS_DENIED) -> None:
        """Reset a stream in both directions."""
        self._refuse(stream_id, error_code)

    # -- both sides -----------------------------------------------------------------------

    def send(self, stream_id: int, data: bytes, end_stream: bool = False) -> bool:
        """Write service bytes on an admitted (or raw) stream. False if the write was
        dropped (the peer stopped or reset the stream, or it is finished)."""
        return self._write(stream_id, data, end=end_stream)

    def stop_reading(self, stream_id: int, error_code: int) -> None:
        """We read no more of a stream (STOP_SENDING); the peer is expected to reset it."""
        with contextlib.suppress(Exception):
            self.conn.stop_stream(stream_id, error_code)

    def has_only_route_stream(self) -> bool:
        """Whether stream 0 is the only entry (it lingers for ``a2r1`` dialers)."""
        return self.routed is True and len(self._streams) == 1 and ROUTE_STREAM in self._streams

    @property
    def stream_count(self) -> int:
        """Entries in the stream table (streams not finished both ways)."""
        return len(self._streams)

    def handle_event(self, event: qe.QuicEvent) -> list[SessionEvent]:
        """Feed one QUIC event; returns the session events it completes."""
        if isinstance(event, qe.StreamDataReceived):
            return self._on_data(event.stream_id, event.data, event.end_stream)
        if isinstance(event, qe.StreamReset):
            sid = event.stream_id
            st = self._streams.get(sid)
            if st is not None:
                st.recv_done = True
                if st.kind is StreamKind.DEAD:
                    self._maybe_free(sid, st)
                    return []  # the peer's answer to our own refusal
                st.kind = StreamKind.DEAD
                self._refuse(sid, event.error_code)  # our side ends too: nothing reads it
            return [StreamReset(sid, event.error_code)]
        if isinstance(event, qe.StopSendingReceived):
            st = self._streams.get(event.stream_id)
            if st is None:
                return []
            st.send_done = True  # the stack resets our side itself
            data = st.kind is StreamKind.DATA
            self._maybe_free(event.stream_id, st)
            return [StreamStopped(event.stream_id, event.error_code)] if data else []
        return []

    # -- internals ------------------------------------------------------------------------

    def _on_data(self, stream_id: int, data: bytes, end: bool) -> list[SessionEvent]:
        if self.routed is None and stream_id == ROUTE_STREAM:
            self._sniff += data
            if len(self._sniff) < 4 and not end:
                return []  # (at most 3 bytes held)
            magic = bytes(self._sniff[:4])
            self.routed = magic in (sf.MAGIC_ROUTE_V1, sf.MAGIC_ROUTE_V2)
            data, self._sniff = bytes(self._sniff), bytearray()
        st = self._streams.get(stream_id)
        if st is None:
            if locally_initiated(stream_id, self.is_dialer):
                return []  # a stream we forgot (closed): ignore late bytes
            if self._max_peer is not None and self._peer_open >= self._max_peer:
                self.refused_streams += 1
                self._refuse(stream_id, ERR_PROTOCOL)
                return []
            kind = (
                StreamKind.ROUTE_IN
                if stream_id == ROUTE_STREAM and not self.is_dialer and self.routed is True
                else StreamKind.PEEK
            )
            st = self._streams[stream_id] = StreamState(kind)
            self._peer_open += 1
        if end:
            st.ended = True
            st.recv_done = True
        try:
            return self._dispatch(stream_id, st, data, end)
        finally:
            if st.recv_done:
                if (
                    st.kind is StreamKind.DEAD
                    and not st.send_done
                    and (stream_id != ROUTE_STREAM or self.routed is False)
                ):
                    self._write(stream_id, b"", end=True)  # nothing to answer: end our side
                self._maybe_free(stream_id, st)

    def _dispatch(
        self, stream_id: int, st: StreamState, data: bytes, end: bool
    ) -> list[SessionEvent]:
        try:
            match st.kind:
                case StreamKind.ROUTE_IN:
                    route = self._route_reader.feed(st, data, end)
                    if route is None:
                        return []
                    self.route = route
                    return [route]
                case StreamKind.ROUTE_OUT:
                    return self._route_out(st, data, end)
                case _:
                    return feed_data_stream(stream_id, st, data, end)
        except DecodeError:
            self._refuse(stream_id, ERR_PROTOCOL)
            return [StreamReset(stream_id, ERR_PROTOCOL)]

    def _route_out(self, st: StreamState, data: bytes, end: bool) -> list[SessionEvent]:
        if answer_over_budget(st, data):
            self.route_answer_overflows += 1
            self.refused_streams += 1
            self._refuse(ROUTE_STREAM, ERR_PROTOCOL)
            return [StreamReset(ROUTE_STREAM, ERR_PROTOCOL)]
        answer = read_route_answer(st, data, end)
        if answer is None:
            return []
        self.peer_service_capable = answer.service_capable
        return [answer]

    def _refuse(self, stream_id: int, error_code: int) -> None:
        st = self._streams.get(stream_id)
        # Either direction may already be finished (aioquic raises then): nothing to undo.
        if st is None or not st.send_done:
            with contextlib.suppress(Exception):
                self.conn.reset_stream(stream_id, error_code)
        if st is None or not st.recv_done:
            with contextlib.suppress(Exception):
                self.conn.stop_stream(stream_id, error_code)
        if st is not None:
            st.kind = StreamKind.DEAD
            st.send_done = True
            self._maybe_free(stream_id, st)

    def _write(self, stream_id: int, data: bytes, *, end: bool = False) -> bool:
        """Every write to the connection: dropped (and counted) once the stream's sending
        side is over — the stacks raise there (aioquic RuntimeError after a reset or FIN,
        ValueError on a finished stream; qh3 ValueError)."""
        st = self._streams.get(stream_id)
        if st is not None and st.send_done:
            self.writes_dropped += 1
            return False
        try:
            self.conn.send_stream_data(stream_id, data, end_stream=end)
        except (RuntimeError, ValueError):
            self.writes_dropped += 1
            if st is not None:
                st.send_done = True
                self._maybe_free(stream_id, st)
            return False
        if end and st is not None:
            st.send_done = True
            self._maybe_free(stream_id, st)
        return True

    def _maybe_free(self, stream_id: int, st: StreamState) -> None:
        """Drop a stream's entry once it is finished both ways (the stack delivers nothing
        more for it and we write nothing more)."""
        if st.recv_done and st.send_done and self._streams.get(stream_id) is st:
            del self._streams[stream_id]
            if not locally_initiated(stream_id, self.is_dialer):
                self._peer_open -= 1
