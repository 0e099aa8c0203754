"""What a :class:`~a2al_mcp.transport.session.Session` reports, and the error codes it
resets streams with (a2al-wire §5.2–5.4). Sans-I/O: plain values, no behaviour."""

from __future__ import annotations

from typing import Final

from .._dataclass import dataclass
from .._types import Addr
from ..identity.aid import Aid
from ..protocol import session_frames as sf

__all__ = [
    "ERR_ACCESS_DENIED",
    "ERR_NO_INBOUND",
    "ERR_PROTOCOL",
    "AdmissionResult",
    "MailboxAcked",
    "MailboxReceived",
    "PeerControl",
    "RouteReceived",
    "ServiceRequested",
    "SessionEvent",
    "StreamData",
    "StreamReset",
    "StreamStopped",
]

ERR_ACCESS_DENIED: Final = 0x41
ERR_NO_INBOUND: Final = 0x42
ERR_PROTOCOL: Final = 0x1


@dataclass(frozen=True, slots=True)
class RouteReceived:
    """Acceptor: the dialer's stream 0 is complete. ``target`` is None when the route frame
    was unusable (fall back to SNI, then the node identity)."""

    target: Aid | None
    legacy: bool
    """``a2r1``: no control exchange."""
    held_topic_seq: int = 0
    token: str | None = None


@dataclass(frozen=True, slots=True)
class PeerControl:
    """Dialer: the acceptor's stream-0 answer is complete."""

    observed_addr: Addr | None
    agent_info: tuple[bytes, ...]
    """SignedRecord CBOR of the target's topic records (verify before use)."""
    service_capable: bool
    envelope_capable: bool


@dataclass(frozen=True, slots=True)
class ServiceRequested:
    """Acceptor: the peer opened a service stream; call :meth:`Session.admit`."""

    stream_id: int
    token: str | None
    legacy: bool
    """A raw stream (no ``a2s1`` preamble): no access result is written."""


@dataclass(frozen=True, slots=True)
class AdmissionResult:
    """Dialer: the answer to an ``a2s1`` preamble."""

    stream_id: int
    admitted: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class MailboxReceived:
    """Acceptor: a complete ``a2mb`` frame; verify, store, then :meth:`Session.ack_mailbox`."""

    stream_id: int
    frame: sf.MailboxFrame


@dataclass(frozen=True, slots=True)
class MailboxAcked:
    """Dialer: the recipient acknowledged a mailbox frame (``01``)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamData:
    """Service bytes on an admitted stream (either side)."""

    stream_id: int
    data: bytes
    end_stream: bool


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The peer reset a stream, or a stream was refused for a protocol error."""

    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True)
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
