"""Stream 0 of a :class:`~a2al_mcp.transport.session.Session`: the route and agent-info
exchange (a2al-wire §5.2). Sans-I/O.

The dialer opens it first and writes ``a2r2 ‖ AID`` (the local agent it wants) and an
AgentInfoHint (:func:`route_request`), then FIN. The acceptor reads the 25-byte route frame
and the dialer's control messages up to FIN (:class:`RouteRequestReader`), then answers with
ObservedAddr, AgentInfo records and ServiceStreamCapable (:func:`route_answer`), and FIN. The
dialer reads that answer (:func:`read_route_answer`, bounded by :data:`ROUTE_ANSWER_MAX`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Final

from .._types import Addr
from ..errors import DecodeError
from ..identity.aid import Aid
from ..protocol import session_frames as sf
from ..protocol.limits import ACCESS_TOKEN_MAX, CONTROL_PAYLOAD_MAX
from ..protocol.wireaddr import decode_addr, encode_addr
from .session_events import PeerControl, RouteReceived
from .session_streams import StreamKind, StreamState

__all__ = [
    "ROUTE_ANSWER_MAX",
    "ROUTE_STREAM",
    "RouteRequestReader",
    "answer_over_budget",
    "read_route_answer",
    "route_answer",
    "route_request",
]

ROUTE_STREAM: Final = 0
ROUTE_ANSWER_MAX: Final = 16 * (3 + CONTROL_PAYLOAD_MAX)
"""Most bytes the dialer reads of the acceptor's stream-0 answer (ObservedAddr, AgentInfo
records, capabilities) before resetting it: sixteen full-size control messages, room for
dozens of topic records (each under 1 KiB). a2al-wire sets no bound; a2ald reads to FIN."""


def route_request(target: Aid, held_topic_seq: int = 0, token: str | None = None) -> bytes:
    """Dialer: stream 0's bytes: ``a2r2 ‖ target``, an AgentInfoHint and, if given, an
    access token.

    Raises:
        DecodeError: the token is over :data:`~a2al_mcp.protocol.limits.ACCESS_TOKEN_MAX`
            bytes.
    """
    data = sf.RouteFrame(target).to_bytes() + sf.agent_info_hint(target, held_topic_seq).to_bytes()
    if token:
        data += sf.ControlMessage(sf.ControlType.ACCESS_TOKEN, _token_bytes(token)).to_bytes()
    return data


def route_answer(
    observed: Addr | None, agent_info: Iterable[bytes], *, service_capable: bool
) -> bytes:
    """Acceptor: our stream-0 part: ObservedAddr (if known), AgentInfo records, type 6."""
    out = bytearray()
    if observed is not None:
        out += sf.ControlMessage(sf.ControlType.OBSERVED_ADDR, encode_addr(observed)).to_bytes()
    for rec in agent_info:
        out += sf.ControlMessage(sf.ControlType.AGENT_INFO, rec).to_bytes()
    if service_capable:
        out += sf.ControlMessage(sf.ControlType.SERVICE_STREAM_CAPABLE).to_bytes()
    return bytes(out)


class RouteRequestReader:
    """Acceptor: reads the dialer's stream 0 (route frame, then control messages to FIN).

    The route target outlives the stream's entry in the session's table, as it did when it
    was the session's own attribute.
    """

    __slots__ = ("target",)

    def __init__(self) -> None:
        self.target: Aid | None = None
        """The ``a2r2`` route frame's target, once read."""

    def feed(self, st: StreamState, data: bytes, end: bool) -> RouteReceived | None:
        """Advance stream 0 by ``data``; the route once the dialer's part is complete
        (``st`` is then dead).

        Raises:
            DecodeError: a malformed control message.
        """
        if not st.legacy and self.target is None:
            st.buf += data
            if len(st.buf) < sf.ROUTE_FRAME_LEN:
                if end:  # FIN before a whole route frame
                    return _routed(st, None, legacy=True)
                return None
            frame = bytes(st.buf[: sf.ROUTE_FRAME_LEN])
            data, st.buf = bytes(st.buf[sf.ROUTE_FRAME_LEN :]), bytearray()
            try:
                route = sf.RouteFrame.from_bytes(frame)
            except DecodeError:  # consumed either way; fall back to SNI (a2al-wire §5.2)
                return _routed(st, None, legacy=True)
            if route.magic == sf.MAGIC_ROUTE_V1:
                return _routed(st, route.target, legacy=True)
            self.target = route.target
        for msg in st.control.feed(data):
            if msg.type == sf.ControlType.AGENT_INFO_HINT:
                try:
                    _, st.held_seq = sf.parse_agent_info_hint(msg.payload)
                except DecodeError:
                    continue
            elif msg.type == sf.ControlType.ACCESS_TOKEN and len(msg.payload) <= ACCESS_TOKEN_MAX:
                st.token = msg.payload.decode("utf-8", "replace")
        if end:
            return _routed(st, self.target, legacy=False)
        return None


def _routed(st: StreamState, target: Aid | None, *, legacy: bool) -> RouteReceived:
    st.kind, st.buf = StreamKind.DEAD, bytearray()
    return RouteReceived(target, legacy=legacy, held_topic_seq=st.held_seq, token=st.token)


def answer_over_budget(st: StreamState, data: bytes) -> bool:
    """Dialer: count ``data`` against :data:`ROUTE_ANSWER_MAX`; True once it is exceeded."""
    st.received += len(data)
    return st.received > ROUTE_ANSWER_MAX


def read_route_answer(st: StreamState, data: bytes, end: bool) -> PeerControl | None:
    """Dialer: advance stream 0 by the acceptor's ``data``; its answer once complete (``st``
    is then dead).

    Raises:
        DecodeError: a malformed control message.
    """
    st.answer += st.control.feed(data)  # parsed as it comes: no copy of the whole answer
    if not end:
        return None
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
    st.kind, st.answer = StreamKind.DEAD, []
    return PeerControl(observed, tuple(info), service, envelope)


def _token_bytes(token: str) -> bytes:
    raw = token.encode()
    if len(raw) > ACCESS_TOKEN_MAX:
        raise DecodeError(f"access token over {ACCESS_TOKEN_MAX} bytes")
    return raw
