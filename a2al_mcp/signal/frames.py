"""The signalling hub's CBOR frames (a2al-wire §6.4, checked against captured a2ald 0.3.5 bytes).

Every WebSocket message on ``/signal`` and ``/ice`` is one CBOR map with text keys, written by
a2ald's default encoder in the fixed order of its ``Frame`` struct — ``t u p c a s r f g addrs
ts t0 nt d`` — with every key but ``t`` left out when its value is empty (Go ``omitempty``:
``""``, ``0``, an empty list or byte string). Integers take their shortest form (``ts`` as a
full 8-byte head only because Unix milliseconds need it). :func:`encode` writes exactly that,
so a frame built from a captured one encodes to the captured bytes.

:func:`decode` is strict and bounded: at most ``max_bytes`` (else :class:`FrameTooLarge`), one
CBOR map with text keys and a known type (else :class:`UnknownFrameType`, which carries the
type), each known key of its Go type (else :class:`~a2al_mcp.errors.DecodeError`). Unknown
keys are ignored, as Go ignores them. Nothing else escapes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final, Literal, TypeAlias, get_args

import cbor2

from .. import _cbor
from ..errors import DecodeError, LimitExceeded

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "FRAME_TYPES",
    "Frame",
    "FrameTooLarge",
    "FrameType",
    "UnknownFrameType",
    "decode",
    "encode",
]

FrameType: TypeAlias = Literal[
    "cred", "cand", "eoc", "reg", "ack", "incoming", "noagent",
    "punch-init", "punch-ack", "punch-go", "dht",
]  # fmt: skip
"""Every type a2ald 0.3.5 writes (``ack`` is missing from its struct comment, not the wire)."""

FRAME_TYPES: Final[frozenset[str]] = frozenset(get_args(FrameType))

DEFAULT_MAX_FRAME_BYTES: Final = 64 * 1024
"""The cap :func:`decode` applies unless told otherwise (the largest real frame seen is 140
bytes; a ``dht`` frame carries one DHT message, at most 64 KiB on UDP)."""

_STR_KEYS: Final = ("u", "p", "c", "a", "s", "r", "f", "g")
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1


class UnknownFrameType(DecodeError):
    """A well-formed frame whose ``t`` is not one a2ald writes; ``frame_type`` says which."""

    def __init__(self, frame_type: str) -> None:
        super().__init__(f"unknown signalling frame type {frame_type[:32]!r}")
        self.frame_type = frame_type


class FrameTooLarge(LimitExceeded):
    """A frame longer than the cap; refused before any decoding."""

    def __init__(self, size: int, cap: int) -> None:
        super().__init__(f"signalling frame of {size} bytes exceeds the {cap}-byte cap")
        self.size = size
        self.cap = cap


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One frame; fields named by their wire keys (a2ald's ``signaling.Frame``).

    ``u``/``p``: ICE ufrag and password (``cred``); ``c``: one ICE candidate in pion's form
    without the ``candidate:`` prefix (``cand``); ``a``: the AID to register (``reg``); ``s``:
    reserved signature; ``r``/``f``/``g``: room, caller AID, target AID (``incoming``);
    ``addrs``, ``ts`` (Unix ms; ``punch-ack`` echoes the ``punch-init`` one), ``nt`` (sender's
    NAT type): ``punch-init``/``punch-ack``; ``t0``: ``punch-go`` fire time (never sent by
    0.3.5); ``d``: one raw signed DHT message (``dht``).
    """

    t: FrameType
    u: str = ""
    p: str = ""
    c: str = ""
    a: str = ""
    s: str = ""
    r: str = ""
    f: str = ""
    g: str = ""
    addrs: tuple[str, ...] = ()
    ts: int = 0
    t0: int = 0
    nt: int = 0
    d: bytes = b""

    def __post_init__(self) -> None:
        if self.t not in FRAME_TYPES:
            raise UnknownFrameType(str(self.t))
        for name in ("ts", "t0"):
            value = getattr(self, name)
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise ValueError(f"frame field {name} must fit an int64")
        if not 0 <= self.nt <= 255:
            raise ValueError("frame field nt must fit a uint8")


def encode(frame: Frame) -> bytes:
    """The frame's bytes, as a2ald writes them (key order fixed, empty values left out)."""
    out: dict[str, Any] = {"t": frame.t}
    for key in _STR_KEYS:
        value = getattr(frame, key)
        if value:
            out[key] = value
    if frame.addrs:
        out["addrs"] = list(frame.addrs)
    for key in ("ts", "t0", "nt"):
        value = getattr(frame, key)
        if value:
            out[key] = value
    if frame.d:
        out["d"] = bytes(frame.d)
    return cbor2.dumps(out)  # insertion order: no sorting, like Go's struct encoding


def decode(data: bytes, *, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Frame:
    """Parse one frame.

    Raises:
        FrameTooLarge: ``data`` is longer than ``max_bytes``.
        UnknownFrameType: a well-formed map whose ``t`` is a string a2ald does not write.
        DecodeError: anything else malformed (not CBOR, not a map, non-text keys, no ``t``,
            a known key of the wrong type or out of range).
    """
    if len(data) > max_bytes:
        raise FrameTooLarge(len(data), max_bytes)
    value = _cbor.loads(bytes(data))
    if not isinstance(value, dict):
        raise DecodeError(f"signalling frame: expected a CBOR map, got {type(value).__name__}")
    if not all(isinstance(k, str) for k in value):
        raise DecodeError("signalling frame: every key must be a text string")
    kind = value.get("t")
    if not isinstance(kind, str):
        raise DecodeError("signalling frame: missing or non-text 't'")
    if kind not in FRAME_TYPES:
        raise UnknownFrameType(kind)
    fields: dict[str, Any] = {}
    for key in _STR_KEYS:
        if key in value:
            fields[key] = _text(value[key], key)
    if "addrs" in value:
        addrs = value["addrs"]
        if addrs is None:  # Go decodes null into a nil slice
            addrs = []
        if not isinstance(addrs, list):
            raise DecodeError("signalling frame: 'addrs' must be an array of text")
        fields["addrs"] = tuple(_text(x, "addrs") for x in addrs)
    for key in ("ts", "t0"):
        if key in value:
            fields[key] = _int(value[key], key, _INT64_MIN, _INT64_MAX)
    if "nt" in value:
        fields["nt"] = _int(value["nt"], "nt", 0, 255)
    if "d" in value:
        d = value["d"]
        if d is None:
            d = b""
        if not isinstance(d, bytes):
            raise DecodeError("signalling frame: 'd' must be a byte string")
        fields["d"] = d
    return Frame(kind, **fields)  # type: ignore[arg-type]  # checked against FRAME_TYPES


def _text(value: object, key: str) -> str:
    if value is None:  # Go leaves the field empty
        return ""
    if not isinstance(value, str):
        raise DecodeError(f"signalling frame: {key!r} must be a text string")
    return value


def _int(value: object, key: str, low: int, high: int) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DecodeError(f"signalling frame: {key!r} must be an integer in [{low}, {high}]")
    return value
