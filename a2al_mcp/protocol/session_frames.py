"""QUIC stream framings (a2al-wire §5.2–5.4): route frame, control messages, stream preambles.

Stream 0 starts with a 25-byte route frame ``magic ‖ AID``. With ``a2r2`` each side then
sends control messages ``type (1) ‖ length (uint16 BE) ‖ payload`` until FIN. Data streams
start with a 4-byte magic: ``a2mb`` (mailbox frame), ``a2s1`` (admission preamble), or raw
service bytes.

Parsers here are incremental and sans-I/O: :class:`ControlReader` takes bytes in any
chunking (one byte at a time included) and yields whole messages.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final, Self

from .._dataclass import dataclass
from ..errors import DecodeError, LimitExceeded
from ..identity.aid import Aid
from .limits import ACCESS_TOKEN_MAX, CONTROL_PAYLOAD_MAX, MAILBOX_FRAME_RECORD_MAX

__all__ = [
    "MAGIC_ADMISSION",
    "MAGIC_MAILBOX",
    "MAGIC_ROUTE_V1",
    "MAGIC_ROUTE_V2",
    "ControlMessage",
    "ControlReader",
    "ControlType",
    "MailboxFrame",
    "MailboxFrameReader",
    "RouteFrame",
    "access_result",
    "admission_preamble",
    "agent_info_hint",
    "parse_access_result",
    "parse_agent_info_hint",
]

MAGIC_ROUTE_V1: Final = b"a2r1"
MAGIC_ROUTE_V2: Final = b"a2r2"
MAGIC_MAILBOX: Final = b"a2mb"
MAGIC_ADMISSION: Final = b"a2s1"
MAILBOX_ACK: Final = b"\x01"
ROUTE_FRAME_LEN: Final = 25


class ControlType(IntEnum):
    """Control message types on stream 0 and in admission preambles."""

    OBSERVED_ADDR = 0x01
    AGENT_INFO_HINT = 0x02
    AGENT_INFO = 0x03
    ACCESS_TOKEN = 0x04
    ACCESS_RESULT = 0x05
    SERVICE_STREAM_CAPABLE = 0x06
    END_OF_ADMISSION = 0x07
    ENVELOPE_CAPABLE = 0x08


@dataclass(frozen=True, slots=True)
class RouteFrame:
    """The first 25 bytes of stream 0: which local agent the dialer wants."""

    target: Aid
    magic: bytes = MAGIC_ROUTE_V2

    def to_bytes(self) -> bytes:
        return self.magic + bytes(self.target)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Parse exactly 25 bytes.

        Raises:
            DecodeError: wrong length, unknown magic, or not an AID.
        """
        if len(data) != ROUTE_FRAME_LEN:
            raise DecodeError(f"route frame must be {ROUTE_FRAME_LEN} bytes, got {len(data)}")
        magic = data[:4]
        if magic not in (MAGIC_ROUTE_V1, MAGIC_ROUTE_V2):
            raise DecodeError(f"unknown route frame magic {magic!r}")
        return cls(Aid(data[4:]), magic)


@dataclass(frozen=True, slots=True)
class ControlMessage:
    """One ``type ‖ length ‖ payload`` control message."""

    type: int
    payload: bytes = b""

    def to_bytes(self) -> bytes:
        """Encode; raises LimitExceeded over the 4096-byte payload cap."""
        if len(self.payload) > CONTROL_PAYLOAD_MAX:
            raise LimitExceeded(f"control payload over {CONTROL_PAYLOAD_MAX} bytes")
        return bytes([self.type]) + len(self.payload).to_bytes(2, "big") + self.payload


class ControlReader:
    """Incremental parser of control messages; feed bytes, collect whole messages."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[ControlMessage]:
        """Add bytes; return the messages completed by them.

        Raises:
            DecodeError: a message declares a payload over 4096 bytes.
        """
        self._buf += data
        out: list[ControlMessage] = []
        while len(self._buf) >= 3:
            length = int.from_bytes(self._buf[1:3], "big")
            if length > CONTROL_PAYLOAD_MAX:
                raise DecodeError(
                    f"control message of {length} bytes exceeds {CONTROL_PAYLOAD_MAX}"
                )
            if len(self._buf) < 3 + length:
                break
            out.append(ControlMessage(self._buf[0], bytes(self._buf[3 : 3 + length])))
            del self._buf[: 3 + length]
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held back."""
        return len(self._buf)


def agent_info_hint(target: Aid, held_topic_seq: int = 0) -> ControlMessage:
    """Type 2: the target AID and the highest topic seq the dialer already holds."""
    return ControlMessage(
        ControlType.AGENT_INFO_HINT, bytes(target) + held_topic_seq.to_bytes(8, "big")
    )


def parse_agent_info_hint(payload: bytes) -> tuple[Aid, int]:
    """Inverse of :func:`agent_info_hint`."""
    if len(payload) != 29:
        raise DecodeError(f"AgentInfoHint must be 29 bytes, got {len(payload)}")
    return Aid(payload[:21]), int.from_bytes(payload[21:], "big")


def admission_preamble(token: str | None = None) -> bytes:
    """``a2s1`` ‖ [type 4 token] ‖ type 7 end-of-admission."""
    out = bytearray(MAGIC_ADMISSION)
    if token:
        raw = token.encode()
        if len(raw) > ACCESS_TOKEN_MAX:
            raise LimitExceeded(f"access token over {ACCESS_TOKEN_MAX} bytes")
        out += ControlMessage(ControlType.ACCESS_TOKEN, raw).to_bytes()
    out += ControlMessage(ControlType.END_OF_ADMISSION).to_bytes()
    return bytes(out)


def access_result(admitted: bool, reason: str = "") -> ControlMessage:
    """Type 5: ``01`` admitted, or ``00 ‖ reason``."""
    if admitted:
        return ControlMessage(ControlType.ACCESS_RESULT, b"\x01")
    return ControlMessage(ControlType.ACCESS_RESULT, b"\x00" + (reason or "denied").encode())


def parse_access_result(payload: bytes) -> tuple[bool, str]:
    """(admitted, reason); an empty payload counts as admitted."""
    if not payload or payload[0] == 1:
        return True, ""
    return False, payload[1:].decode("utf-8", "replace") or "denied"


@dataclass(frozen=True, slots=True)
class MailboxFrame:
    """``a2mb`` ‖ msg_id (32) ‖ length (uint32 BE) ‖ SignedRecord CBOR; answered by ``01``."""

    msg_id: bytes
    record: bytes
    """The SignedRecord CBOR bytes."""

    def to_bytes(self) -> bytes:
        if len(self.msg_id) != 32:
            raise DecodeError("mailbox frame msg_id must be 32 bytes")
        if len(self.record) > MAILBOX_FRAME_RECORD_MAX:
            raise LimitExceeded(f"mailbox record over {MAILBOX_FRAME_RECORD_MAX} bytes")
        return MAGIC_MAILBOX + self.msg_id + len(self.record).to_bytes(4, "big") + self.record


class MailboxFrameReader:
    """Incremental parser of one mailbox frame (the stream's bytes *after* the magic)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> MailboxFrame | None:
        """Add bytes; return the frame once complete.

        Raises:
            DecodeError: the declared record length exceeds 65536 bytes, or extra bytes follow.
        """
        self._buf += data
        if len(self._buf) < 36:
            return None
        length = int.from_bytes(self._buf[32:36], "big")
        if length > MAILBOX_FRAME_RECORD_MAX:
            raise DecodeError(f"mailbox frame record of {length} bytes exceeds the cap")
        if len(self._buf) < 36 + length:
            return None
        if len(self._buf) > 36 + length:
            raise DecodeError("bytes after the mailbox frame")
        return MailboxFrame(bytes(self._buf[:32]), bytes(self._buf[36:]))
