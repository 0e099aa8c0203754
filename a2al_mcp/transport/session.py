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

**Data streams** (any stream the peer opens after stream 0) start with a 4-byte magic:
``a2mb`` → one mailbox frame (:class:`MailboxReceived`, answered by :meth:`ack_mailbox`);
``a2s1`` → an admission preamble (token, end-of-admission), answered by :meth:`admit` with an
access result; another ``a2??`` → refused; anything else → a raw service stream whose first
four bytes are replayed (:class:`ServiceRequested` with ``legacy=True``; :meth:`admit` decides
without writing a result). Admitted streams carry :class:`StreamData` both ways.
"""

from __future__ import annotations

import contextlib
import dataclasses
from enum import Enum
from typing import Any, Final, Protocol

from aioquic.quic import events as qe

from .._types import Addr
from ..errors import DecodeError
from ..identity.aid import Aid
from ..protocol import session_frames as sf
from ..protocol.limits import ACCESS_TOKEN_MAX, CONTROL_PAYLOAD_MAX
from ..protocol.wireaddr import decode_addr, encode_addr

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

ERR_ACCESS_DENIED: Final = 0x41
ERR_NO_INBOUND: Final = 0x42
ERR_PROTOCOL: Final = 0x1
ROUTE_ANSWER_MAX: Final = 16 * (3 + CONTROL_PAYLOAD_MAX)
"""Most bytes the dialer reads of the acceptor's stream-0 answer (ObservedAddr, AgentInfo
records, capabilities) before resetting it: sixteen full-size control messages, room for
dozens of topic records (each under 1 KiB). a2al-wire sets no bound; a2ald reads to FIN."""
_ROUTE_STREAM: Final = 0
_UNSET: Final = object()


@dataclasses.dataclass(frozen=True, slots=True)
class RouteReceived:
    """Acceptor: the dialer's stream 0 is complete. ``target`` is None when the route frame
    was unusable (fall back to SNI, then the node identity)."""

    target: Aid | None
    legacy: bool
    """``a2r1``: no control exchange."""
    held_topic_seq: int = 0
    token: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PeerControl:
    """Dialer: the acceptor's stream-0 answer is complete."""

    observed_addr: Addr | None
    agent_info: tuple[bytes, ...]
    """SignedRecord CBOR of the target's topic records (verify before use)."""
    service_capable: bool
    envelope_capable: bool


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceRequested:
    """Acceptor: the peer opened a service stream; call :meth:`Session.admit`."""

    stream_id: int
    token: str | None
    legacy: bool
    """A raw stream (no ``a2s1`` preamble): no access result is written."""


@dataclasses.dataclass(frozen=True, slots=True)
class AdmissionResult:
    """Dialer: the answer to an ``a2s1`` preamble."""

    stream_id: int
    admitted: bool
    reason: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class MailboxReceived:
    """Acceptor: a complete ``a2mb`` frame; verify, store, then :meth:`Session.ack_mailbox`."""

    stream_id: int
    frame: sf.MailboxFrame


@dataclasses.dataclass(frozen=True, slots=True)
class MailboxAcked:
    """Dialer: the recipient acknowledged a mailbox frame (``01``)."""

    stream_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class StreamData:
    """Service bytes on an admitted stream (either side)."""

    stream_id: int
    data: bytes
    end_stream: bool


@dataclasses.dataclass(frozen=True, slots=True)
class StreamReset:
    """The peer reset a stream, or a stream was refused for a protocol error."""

    stream_id: int
    error_code: int


@dataclasses.dataclass(frozen=True, slots=True)
class StreamStopped:
    """The peer asked us to stop sending on a stream (STOP_SENDING): our writes to it are
    dropped from now on (counted in ``writes_dropped``)."""

    stream_id: int
    error_code: int


SessionEvent = (
    RouteReceived
    | PeerControl
    | ServiceRequested
    | AdmissionResult
    | MailboxReceived
    | MailboxAcked
    | StreamData
    | StreamReset
    | StreamStopped
)


class StreamConnection(Protocol):
    """What a session needs of its QUIC connection (aioquic's ``QuicConnection`` API; qh3's
    mirrors it)."""

    @property
    def configuration(self) -> Any: ...

    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int: ...

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None: ...

    def reset_stream(self, stream_id: int, error_code: int) -> None: ...

    def stop_stream(self, stream_id: int, error_code: int) -> None: ...


class _Kind(Enum):
    ROUTE_IN = "route-in"  # acceptor's view of stream 0
    ROUTE_OUT = "route-out"  # dialer's view of stream 0
    PEEK = "peek"  # a peer stream whose magic is not read yet
    ADMISSION_IN = "admission-in"  # reading an a2s1 preamble
    PENDING = "pending"  # waiting for admit()
    MAILBOX_IN = "mailbox-in"
    MAILBOX_OUT = "mailbox-out"
    ADMISSION_OUT = "admission-out"  # our a2s1 preamble sent, result awaited
    DATA = "data"
    DEAD = "dead"


@dataclasses.dataclass(slots=True)
class _Stream:
    kind: _Kind
    buf: bytearray = dataclasses.field(default_factory=bytearray)
    control: sf.ControlReader = dataclasses.field(default_factory=sf.ControlReader)
    mailbox: sf.MailboxFrameReader | None = None
    token: str | None = None
    legacy: bool = False
    ended: bool = False
    held_seq: int = 0
    recv_done: bool = False
    """The stack delivers nothing more (FIN delivered or the peer reset it)."""
    send_done: bool = False
    """We wrote FIN or reset, or the peer sent STOP_SENDING: we write nothing more."""
    received: int = 0
    """Dialer's stream 0: bytes of the acceptor's answer so far."""
    answer: list[sf.ControlMessage] = dataclasses.field(default_factory=list)
    """Dialer's stream 0: the acceptor's control messages so far."""


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
    """

    def __init__(self, conn: StreamConnection, *, observed_addr: Addr | None = None,
                 max_peer_streams: int | None = None) -> None:  # fmt: skip
        self.conn = conn
        self.is_dialer: bool = conn.configuration.is_client
        self._observed = observed_addr
        self._streams: dict[int, _Stream] = {}
        self._started = False
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
        self._route_target: Aid | object = _UNSET

    # -- dialer commands ------------------------------------------------------------------

    def start(self, target: Aid, *, held_topic_seq: int = 0, token: str | None = None) -> None:
        """Dialer: open stream 0 with ``a2r2 ‖ target``, an AgentInfoHint (and an access token
        if given), then FIN. Must be the first stream of the connection."""
        stream_id = self.conn.get_next_available_stream_id()
        if stream_id != _ROUTE_STREAM:
            raise RuntimeError("the route frame must be on the connection's first stream")
        data = (
            sf.RouteFrame(target).to_bytes() + sf.agent_info_hint(target, held_topic_seq).to_bytes()
        )
        if token:
            data += sf.ControlMessage(sf.ControlType.ACCESS_TOKEN, _token_bytes(token)).to_bytes()
        self._streams[stream_id] = _Stream(_Kind.ROUTE_OUT)
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
            self._streams[stream_id] = _Stream(_Kind.ADMISSION_OUT)
            self.conn.send_stream_data(stream_id, sf.admission_preamble(token))
        else:
            self._streams[stream_id] = _Stream(_Kind.DATA)
            self.conn.send_stream_data(stream_id, b"")  # creates the stream now
        return stream_id, use_preamble

    def _check_started(self) -> None:
        if self.is_dialer and not self._started:
            raise RuntimeError("call start() first: stream 0 must carry the route frame")

    def send_mailbox(self, frame: sf.MailboxFrame) -> int:
        """Open a stream carrying one mailbox frame; :class:`MailboxAcked` follows."""
        self._check_started()
        stream_id = self.conn.get_next_available_stream_id()
        self._streams[stream_id] = _Stream(_Kind.MAILBOX_OUT)
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
        out = bytearray()
        if self._observed is not None:
            out += sf.ControlMessage(
                sf.ControlType.OBSERVED_ADDR, encode_addr(self._observed)
            ).to_bytes()
        for rec in agent_info:
            out += sf.ControlMessage(sf.ControlType.AGENT_INFO, rec).to_bytes()
        if service_capable:
            out += sf.ControlMessage(sf.ControlType.SERVICE_STREAM_CAPABLE).to_bytes()
        self._write(_ROUTE_STREAM, bytes(out), end=True)

    def admit(self, stream_id: int, admitted: bool, reason: str = "") -> list[SessionEvent]:
        """Acceptor: decide a :class:`ServiceRequested`. Returns the events held back until
        the decision (the replayed first bytes of a raw stream, data that followed)."""
        st = self._streams.get(stream_id)
        if st is None or st.kind is not _Kind.PENDING:
            return []
        if not admitted:
            st.kind = _Kind.DEAD
            if st.legacy:
                self._refuse(stream_id, ERR_ACCESS_DENIED)
            else:  # the reason reaches the dialer; we stop reading
                self._write(stream_id, sf.access_result(False, reason).to_bytes(), end=True)
                with contextlib.suppress(Exception):
                    self.conn.stop_stream(stream_id, ERR_ACCESS_DENIED)
            return []
        if not st.legacy:
            self._write(stream_id, sf.access_result(True).to_bytes())
        st.kind = _Kind.DATA
        held, st.buf = bytes(st.buf), bytearray()
        if held or st.ended:
            return [StreamData(stream_id, held, st.ended)]
        return []

    def ack_mailbox(self, stream_id: int) -> None:
        """Acceptor: acknowledge a stored (or duplicate) mailbox frame and close."""
        st = self._streams.get(stream_id)
        if st is not None and st.kind is _Kind.MAILBOX_IN:
            st.kind = _Kind.DEAD
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
        return len(self._streams) == 1 and _ROUTE_STREAM in self._streams

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
                if st.kind is _Kind.DEAD:
                    self._maybe_free(sid, st)
                    return []  # the peer's answer to our own refusal
                st.kind = _Kind.DEAD
                self._refuse(sid, event.error_code)  # our side ends too: nothing reads it
            return [StreamReset(sid, event.error_code)]
        if isinstance(event, qe.StopSendingReceived):
            st = self._streams.get(event.stream_id)
            if st is None:
                return []
            st.send_done = True  # the stack resets our side itself
            data = st.kind is _Kind.DATA
            self._maybe_free(event.stream_id, st)
            return [StreamStopped(event.stream_id, event.error_code)] if data else []
        return []

    # -- internals ------------------------------------------------------------------------

    def _on_data(self, stream_id: int, data: bytes, end: bool) -> list[SessionEvent]:
        st = self._streams.get(stream_id)
        if st is None:
            if _locally_initiated(stream_id, self.is_dialer):
                return []  # a stream we forgot (closed): ignore late bytes
            if self._max_peer is not None and self._peer_open >= self._max_peer:
                self.refused_streams += 1
                self._refuse(stream_id, ERR_PROTOCOL)
                return []
            kind = (
                _Kind.ROUTE_IN if stream_id == _ROUTE_STREAM and not self.is_dialer else _Kind.PEEK
            )
            st = self._streams[stream_id] = _Stream(kind)
            self._peer_open += 1
        if end:
            st.ended = True
            st.recv_done = True
        try:
            return self._dispatch(stream_id, st, data, end)
        finally:
            if st.recv_done:
                if st.kind is _Kind.DEAD and not st.send_done and stream_id != _ROUTE_STREAM:
                    self._write(stream_id, b"", end=True)  # nothing to answer: end our side
                self._maybe_free(stream_id, st)

    def _dispatch(self, stream_id: int, st: _Stream, data: bytes, end: bool) -> list[SessionEvent]:
        try:
            match st.kind:
                case _Kind.ROUTE_IN:
                    return self._route_in(st, data, end)
                case _Kind.ROUTE_OUT:
                    return self._route_out(st, data, end)
                case _Kind.PEEK:
                    return self._peek(stream_id, st, data, end)
                case _Kind.ADMISSION_IN:
                    return self._admission_in(stream_id, st, data)
                case _Kind.PENDING:
                    st.buf += data
                    return []
                case _Kind.MAILBOX_IN:
                    return self._mailbox_in(stream_id, st, data)
                case _Kind.MAILBOX_OUT:
                    if sf.MAILBOX_ACK in data:
                        st.kind = _Kind.DEAD
                        return [MailboxAcked(stream_id)]
                    return []
                case _Kind.ADMISSION_OUT:
                    return self._admission_out(stream_id, st, data, end)
                case _Kind.DATA:
                    return [StreamData(stream_id, data, end)] if data or end else []
                case _Kind.DEAD:
                    return []
        except DecodeError:
            self._refuse(stream_id, ERR_PROTOCOL)
            return [StreamReset(stream_id, ERR_PROTOCOL)]

    def _route_in(self, st: _Stream, data: bytes, end: bool) -> list[SessionEvent]:
        if not st.legacy and self._route_target is _UNSET:
            st.buf += data
            if len(st.buf) < sf.ROUTE_FRAME_LEN:
                if end:  # FIN before a whole route frame
                    return self._routed(st, None, legacy=True)
                return []
            frame = bytes(st.buf[: sf.ROUTE_FRAME_LEN])
            data, st.buf = bytes(st.buf[sf.ROUTE_FRAME_LEN :]), bytearray()
            try:
                route = sf.RouteFrame.from_bytes(frame)
            except DecodeError:  # consumed either way; fall back to SNI (a2al-wire §5.2)
                return self._routed(st, None, legacy=True)
            if route.magic == sf.MAGIC_ROUTE_V1:
                return self._routed(st, route.target, legacy=True)
            self._route_target = route.target
        for msg in st.control.feed(data):
            if msg.type == sf.ControlType.AGENT_INFO_HINT:
                try:
                    _, st.held_seq = sf.parse_agent_info_hint(msg.payload)
                except DecodeError:
                    continue
            elif msg.type == sf.ControlType.ACCESS_TOKEN and len(msg.payload) <= ACCESS_TOKEN_MAX:
                st.token = msg.payload.decode("utf-8", "replace")
        if end:
            target = self._route_target if isinstance(self._route_target, Aid) else None
            return self._routed(st, target, legacy=False)
        return []

    def _routed(self, st: _Stream, target: Aid | None, *, legacy: bool) -> list[SessionEvent]:
        st.kind, st.buf = _Kind.DEAD, bytearray()
        self.route = RouteReceived(target, legacy=legacy, held_topic_seq=st.held_seq,
                                   token=st.token)  # fmt: skip
        return [self.route]

    def _route_out(self, st: _Stream, data: bytes, end: bool) -> list[SessionEvent]:
        st.received += len(data)
        if st.received > ROUTE_ANSWER_MAX:
            self.route_answer_overflows += 1
            self.refused_streams += 1
            self._refuse(_ROUTE_STREAM, ERR_PROTOCOL)
            return [StreamReset(_ROUTE_STREAM, ERR_PROTOCOL)]
        st.answer += st.control.feed(data)  # parsed as it comes: no copy of the whole answer
        if not end:
            return []
        observed: Addr | None = None
        info: list[bytes] = []
        service = envelope = False
        for msg in st.answer:
            if msg.type == sf.ControlType.OBSERVED_ADDR:
                with contextlib.suppress(DecodeError):
                    observed = decode_addr(msg.payload)
            elif msg.type == sf.ControlType.AGENT_INFO:
                info.append(msg.payload)
            elif msg.type == sf.ControlType.SERVICE_STREAM_CAPABLE:
                service = True
            elif msg.type == sf.ControlType.ENVELOPE_CAPABLE:
                envelope = True
        st.kind, st.answer = _Kind.DEAD, []
        self.peer_service_capable = service
        return [PeerControl(observed, tuple(info), service, envelope)]

    def _peek(self, stream_id: int, st: _Stream, data: bytes, end: bool) -> list[SessionEvent]:
        st.buf += data
        if len(st.buf) < 4:
            if end:
                st.kind = _Kind.DEAD
            return []
        magic, rest = bytes(st.buf[:4]), bytes(st.buf[4:])
        st.buf = bytearray()
        if magic == sf.MAGIC_MAILBOX:
            st.kind, st.mailbox = _Kind.MAILBOX_IN, sf.MailboxFrameReader()
            return self._mailbox_in(stream_id, st, rest)
        if magic == sf.MAGIC_ADMISSION:
            st.kind = _Kind.ADMISSION_IN
            return self._admission_in(stream_id, st, rest)
        if magic[:2] == b"a2":
            self._refuse(stream_id, ERR_PROTOCOL)  # a feature we do not implement
            return [StreamReset(stream_id, ERR_PROTOCOL)]
        st.kind, st.legacy, st.buf = _Kind.PENDING, True, bytearray(magic + rest)
        return [ServiceRequested(stream_id, None, legacy=True)]

    def _admission_in(self, stream_id: int, st: _Stream, data: bytes) -> list[SessionEvent]:
        # Feed byte-exactly: whatever follows END_OF_ADMISSION is service data.
        st.buf += data
        while len(st.buf) >= 3:
            length = int.from_bytes(st.buf[1:3], "big")
            if len(st.buf) < 3 + length:
                break
            (msg,) = st.control.feed(bytes(st.buf[: 3 + length]))
            del st.buf[: 3 + length]
            if msg.type == sf.ControlType.ACCESS_TOKEN:
                if len(msg.payload) > ACCESS_TOKEN_MAX:
                    raise DecodeError("access token over 256 bytes")
                st.token = msg.payload.decode("utf-8", "replace")
            elif msg.type == sf.ControlType.END_OF_ADMISSION:
                st.kind = _Kind.PENDING
                return [ServiceRequested(stream_id, st.token, legacy=False)]
        if st.ended:
            st.kind = _Kind.DEAD
        return []

    def _mailbox_in(self, stream_id: int, st: _Stream, data: bytes) -> list[SessionEvent]:
        assert st.mailbox is not None
        frame = st.mailbox.feed(data)
        if frame is None:
            if st.ended:
                raise DecodeError("stream ended inside a mailbox frame")
            return []
        return [MailboxReceived(stream_id, frame)]

    def _admission_out(
        self, stream_id: int, st: _Stream, data: bytes, end: bool
    ) -> list[SessionEvent]:
        st.buf += data
        if len(st.buf) < 3:
            return [StreamReset(stream_id, ERR_PROTOCOL)] if end else []
        length = int.from_bytes(st.buf[1:3], "big")
        if len(st.buf) < 3 + length:
            return [StreamReset(stream_id, ERR_PROTOCOL)] if end else []
        msg_type, payload = st.buf[0], bytes(st.buf[3 : 3 + length])
        rest = bytes(st.buf[3 + length :])
        st.buf = bytearray()
        if msg_type != sf.ControlType.ACCESS_RESULT:
            raise DecodeError(f"expected an access result, got control type {msg_type}")
        admitted, reason = sf.parse_access_result(payload)
        out: list[SessionEvent] = [AdmissionResult(stream_id, admitted, reason)]
        if not admitted:
            st.kind = _Kind.DEAD
            return out
        st.kind = _Kind.DATA
        if rest or end:
            out.append(StreamData(stream_id, rest, end))
        return out

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
            st.kind = _Kind.DEAD
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

    def _maybe_free(self, stream_id: int, st: _Stream) -> None:
        """Drop a stream's entry once it is finished both ways (the stack delivers nothing
        more for it and we write nothing more)."""
        if st.recv_done and st.send_done and self._streams.get(stream_id) is st:
            del self._streams[stream_id]
            if not _locally_initiated(stream_id, self.is_dialer):
                self._peer_open -= 1


def _locally_initiated(stream_id: int, is_client: bool) -> bool:
    return (stream_id & 1) == (0 if is_client else 1)


def _token_bytes(token: str) -> bytes:
    raw = token.encode()
    if len(raw) > ACCESS_TOKEN_MAX:
        raise DecodeError(f"access token over {ACCESS_TOKEN_MAX} bytes")
    return raw
