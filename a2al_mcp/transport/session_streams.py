"""Per-stream state of a :class:`~a2al_mcp.transport.session.Session` and the state
machines of its data streams (a2al-wire §5.3–5.4). Sans-I/O.

A data stream (any stream the peer opens after stream 0) starts with a 4-byte magic:
``a2mb`` → one mailbox frame; ``a2s1`` → an admission preamble (token, end-of-admission);
another ``a2??`` → refused; anything else → a raw service stream whose first four bytes are
replayed. Our own streams wait for a mailbox ack or an access result. :func:`feed_data_stream`
advances one stream by the bytes the stack delivered and returns the events they complete;
the session owns the writes (admission, acks, refusals) and the stream table. Stream 0 is
:mod:`~a2al_mcp.transport.session_route`'s.
"""

from __future__ import annotations

import dataclasses
from enum import Enum

from .._dataclass import dataclass
from ..errors import DecodeError
from ..protocol import session_frames as sf
from ..protocol.limits import ACCESS_TOKEN_MAX
from .session_events import (
    ERR_PROTOCOL,
    AdmissionResult,
    MailboxAcked,
    MailboxReceived,
    ServiceRequested,
    SessionEvent,
    StreamData,
    StreamReset,
)

__all__ = ["StreamKind", "StreamState", "feed_data_stream", "locally_initiated"]


class StreamKind(Enum):
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


@dataclass(slots=True)
class StreamState:
    """One entry of a session's stream table."""

    kind: StreamKind
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


def locally_initiated(stream_id: int, is_client: bool) -> bool:
    """Whether our side opened the stream (QUIC stream ID's initiator bit)."""
    return (stream_id & 1) == (0 if is_client else 1)


def feed_data_stream(stream_id: int, st: StreamState, data: bytes, end: bool) -> list[SessionEvent]:
    """Advance a stream other than stream 0 by ``data`` (``end``: the peer's FIN came with
    it; ``st.ended`` is already set then).

    Raises:
        DecodeError: a protocol error on the stream; the caller refuses it.
    """
    match st.kind:
        case StreamKind.PEEK:
            return _peek(stream_id, st, data, end)
        case StreamKind.ADMISSION_IN:
            return _admission_in(stream_id, st, data)
        case StreamKind.PENDING:
            st.buf += data
            return []
        case StreamKind.MAILBOX_IN:
            return _mailbox_in(stream_id, st, data)
        case StreamKind.MAILBOX_OUT:
            if sf.MAILBOX_ACK in data:
                st.kind = StreamKind.DEAD
                return [MailboxAcked(stream_id)]
            return []
        case StreamKind.ADMISSION_OUT:
            return _admission_out(stream_id, st, data, end)
        case StreamKind.DATA:
            return [StreamData(stream_id, data, end)] if data or end else []
        case StreamKind.DEAD | StreamKind.ROUTE_IN | StreamKind.ROUTE_OUT:
            return []


def _peek(stream_id: int, st: StreamState, data: bytes, end: bool) -> list[SessionEvent]:
    st.buf += data
    if len(st.buf) < 4:
        if end:
            st.kind = StreamKind.DEAD
        return []
    magic, rest = bytes(st.buf[:4]), bytes(st.buf[4:])
    st.buf = bytearray()
    if magic == sf.MAGIC_MAILBOX:
        st.kind, st.mailbox = StreamKind.MAILBOX_IN, sf.MailboxFrameReader()
        return _mailbox_in(stream_id, st, rest)
    if magic == sf.MAGIC_ADMISSION:
        st.kind = StreamKind.ADMISSION_IN
        return _admission_in(stream_id, st, rest)
    if magic[:2] == b"a2":  # a feature we do not implement: refused
        raise DecodeError(f"unknown stream magic {magic!r}")
    st.kind, st.legacy, st.buf = StreamKind.PENDING, True, bytearray(magic + rest)
    return [ServiceRequested(stream_id, None, legacy=True)]


def _admission_in(stream_id: int, st: StreamState, data: bytes) -> list[SessionEvent]:
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
            st.kind = StreamKind.PENDING
            return [ServiceRequested(stream_id, st.token, legacy=False)]
    if st.ended:
        st.kind = StreamKind.DEAD
    return []


def _mailbox_in(stream_id: int, st: StreamState, data: bytes) -> list[SessionEvent]:
    assert st.mailbox is not None
    frame = st.mailbox.feed(data)
    if frame is None:
        if st.ended:
            raise DecodeError("stream ended inside a mailbox frame")
        return []
    return [MailboxReceived(stream_id, frame)]


def _admission_out(stream_id: int, st: StreamState, data: bytes, end: bool) -> list[SessionEvent]:
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
        st.kind = StreamKind.DEAD
        return out
    st.kind = StreamKind.DATA
    if rest or end:
        out.append(StreamData(stream_id, rest, end))
    return out
