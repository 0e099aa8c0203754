"""Record payloads: endpoint (0x01), agent profile (0x02), topic (0x10), mailbox (0x80).

Each payload is canonical CBOR with Go's struct rules (a2al-wire §3.6–3.9): fields
without ``omitempty`` are always written (nil lists as ``null``), ``omitempty`` fields
are left out at their zero value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final, Self

from .. import _cbor, _digest
from .._dataclass import dataclass
from ..errors import DecodeError, LimitExceeded, UsageError
from ..identity.aid import Aid
from . import limits

__all__ = [
    "AgentProfilePayload",
    "EndpointPayload",
    "MailboxPayload",
    "TopicPayload",
    "topic_key",
]


def topic_key(topic: str) -> bytes:
    """The DHT key of a topic: SHA-256("topic:" ‖ UTF-8 topic), case-sensitive.

    Raises:
        UsageError: the topic is not valid Unicode (a lone surrogate has no UTF-8 form).
    """
    try:
        raw = topic.encode()
    except UnicodeEncodeError:
        raise UsageError("a topic must be valid Unicode text (it has a lone surrogate)") from None
    return _digest.sha256(b"topic:" + raw).digest()


def _nil(items: tuple[str, ...]) -> list[str] | None:
    """Go encodes a nil slice as null; we treat an empty tuple as nil."""
    return list(items) if items else None


META_DEPTH_MAX: Final = 16
"""Deepest nesting of lists and maps in a payload's ``meta`` we encode (Go's CBOR decoder
stops at 32; the C encoder of cbor2 overflows the C stack, killing the process, near 10,000)."""


def _check_meta(meta: Mapping[Any, Any], what: str) -> None:
    """Refuse a ``meta`` with no faithful A2AL encoding, before cbor2 sees it: nesting deeper
    than :data:`META_DEPTH_MAX`, integers outside CBOR's 64-bit range (cbor2 would write a
    bignum tag, which A2AL decoders refuse), text with lone surrogates (not UTF-8).

    Raises:
        LimitExceeded: nested too deeply.
        UsageError: an integer or a text that cannot be encoded.
    """
    stack: list[tuple[object, int]] = [(meta, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode()
                except UnicodeEncodeError:
                    raise UsageError(f"{what}: meta text is not valid Unicode") from None
        elif isinstance(value, int) and not isinstance(value, bool):
            if not -(2**64) <= value < 2**64:
                raise UsageError(f"{what}: meta integer outside the 64-bit range")
        elif isinstance(value, Mapping | list | tuple):
            if depth > META_DEPTH_MAX:
                raise LimitExceeded(f"{what}: meta nested deeper than {META_DEPTH_MAX} levels")
            if isinstance(value, Mapping):
                stack.extend((k, depth + 1) for k in value)
                stack.extend((v, depth + 1) for v in value.values())
            else:
                stack.extend((v, depth + 1) for v in value)


def _dumps_texts(m: dict[int, Any], what: str) -> bytes:
    """Canonical CBOR of a payload map holding caller texts; a text with a lone surrogate
    (no UTF-8 form) is a UsageError, not cbor2's UnicodeEncodeError."""
    try:
        return _cbor.dumps(m)
    except UnicodeEncodeError:
        raise UsageError(f"{what}: a text is not valid Unicode (it has a lone surrogate)") from None


def _meta(value: dict[Any, Any] | None, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not all(isinstance(k, str) for k in value):
        raise DecodeError(f"{what}: meta keys must be text")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointPayload:
    """Where an AID can be reached (rec_type 0x01)."""

    endpoints: tuple[str, ...] = ()
    """``quic://host:port`` URLs, in preference order."""
    nat_type: int = 0
    """0 unknown, 1 full cone/public, 2 restricted, 3 port restricted, 4 symmetric."""
    signal: str = ""
    """Primary signaling hub base URL (``ws://``/``wss://``)."""
    turns: tuple[str, ...] = ()
    """Deprecated credential-free TURN hints."""
    signals: tuple[str, ...] = ()
    """All live signaling hub base URLs."""

    def to_bytes(self) -> bytes:
        """Canonical CBOR."""
        m: dict[int, Any] = {1: _nil(self.endpoints), 2: self.nat_type}
        if self.signal:
            m[3] = self.signal
        if self.turns:
            m[4] = list(self.turns)
        if self.signals:
            m[5] = list(self.signals)
        return _cbor.dumps(m)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode and check the limits a2ald enforces (nat_type, URL counts and sizes)."""
        value = _cbor.loads(data)
        if type(value) is dict and len(value) == 2:  # the common shape: endpoints + nat_type
            endpoints, nat_type = value.get(1, ()), value.get(2)
            if (
                type(nat_type) is int
                and 0 <= nat_type <= limits.ENDPOINT_NAT_TYPE_MAX
                and (endpoints is None or type(endpoints) is list)
                and all(type(e) is str for e in endpoints or ())
            ):
                return cls(endpoints=tuple(endpoints or ()), nat_type=nat_type)
        if not isinstance(value, dict):
            raise DecodeError(f"endpoint payload: expected a CBOR map, got {type(value).__name__}")
        f = _cbor.Fields(value, "endpoint payload")
        p = cls(
            endpoints=f.text_list(1) or (),
            nat_type=f.uint(2, 8),
            signal=f.text(3),
            turns=f.text_list(4) or (),
            signals=f.text_list(5) or (),
        )
        if p.nat_type > limits.ENDPOINT_NAT_TYPE_MAX:
            raise DecodeError(f"endpoint payload: nat_type {p.nat_type} is over 4")
        if len(p.signal.encode()) > limits.ENDPOINT_SIGNAL_URL_MAX:
            raise DecodeError("endpoint payload: signal URL too long")
        if len(p.turns) > limits.ENDPOINT_TURNS_MAX or any(
            len(u.encode()) > limits.ENDPOINT_TURN_URL_MAX for u in p.turns
        ):
            raise DecodeError("endpoint payload: too many or too long turn hints")
        if len(p.signals) > limits.ENDPOINT_SIGNALS_MAX or any(
            len(u.encode()) > limits.ENDPOINT_SIGNAL_URL_MAX for u in p.signals
        ):
            raise DecodeError("endpoint payload: too many or too long signal URLs")
        return p


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicPayload:
    """A service registration under a topic (rec_type 0x10)."""

    topic: str
    """The topic string; must equal the topic searched for."""
    name: str = ""
    protocols: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    brief: str = ""
    """At most 140 code points."""
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    version: int = 1

    def to_bytes(self) -> bytes:
        """Canonical CBOR; raises LimitExceeded over 512 bytes, a brief over 140 chars or a
        meta nested deeper than 16, UsageError for meta values CBOR cannot carry."""
        if len(self.brief) > limits.BRIEF_MAX_CHARS:
            raise LimitExceeded(f"brief is {len(self.brief)} characters; the limit is 140")
        m: dict[int, Any] = {
            1: self.version or 1,
            2: self.topic,
            3: self.name,
            4: _nil(self.protocols),
            5: _nil(self.tags),
            6: self.brief,
        }
        if self.meta:
            _check_meta(self.meta, "topic payload")
            m[7] = dict(self.meta)
        data = _dumps_texts(m, "topic payload")
        if len(data) > limits.TOPIC_PAYLOAD_MAX:
            raise LimitExceeded(
                f"topic payload is {len(data)} bytes; the limit is {limits.TOPIC_PAYLOAD_MAX}"
            )
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode and check: ≤ 512 bytes, non-empty topic, brief ≤ 140 code points."""
        if len(data) > limits.TOPIC_PAYLOAD_MAX:
            raise DecodeError("topic payload over 512 bytes")
        f = _cbor.loads_map(data, "topic payload")
        p = cls(
            version=f.uint(1, 8),
            topic=f.text(2),
            name=f.text(3),
            protocols=f.text_list(4) or (),
            tags=f.text_list(5) or (),
            brief=f.text(6),
            meta=_meta(f.map_(7), "topic payload"),
        )
        if not p.topic:
            raise DecodeError("topic payload: empty topic")
        if len(p.brief) > limits.BRIEF_MAX_CHARS:
            raise DecodeError("topic payload: brief over 140 characters")
        return p


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentProfilePayload:
    """An agent's self-description (rec_type 0x02)."""

    name: str = ""
    brief: str = ""
    protocols: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()
    card_hash: bytes = b""
    """SHA-256 of the agent card."""
    modalities: tuple[str, ...] = ()
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    version: int = 1

    def to_bytes(self) -> bytes:
        """Canonical CBOR; raises LimitExceeded over 700 bytes or a meta nested deeper than 16,
        UsageError for meta values CBOR cannot carry."""
        m: dict[int, Any] = {1: self.version or 1}
        fields: dict[int, Any] = {
            2: self.name,
            3: self.brief,
            4: list(self.protocols),
            5: list(self.skills),
            6: self.card_hash,
            8: list(self.modalities),
            9: dict(self.meta),
        }
        m.update({k: v for k, v in fields.items() if v})
        if self.meta:
            _check_meta(self.meta, "profile payload")
        data = _dumps_texts(m, "profile payload")
        if len(data) > limits.PROFILE_PAYLOAD_MAX:
            raise LimitExceeded(f"profile payload is {len(data)} bytes; the limit is 700")
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode a profile payload."""
        f = _cbor.loads_map(data, "profile payload")
        return cls(
            version=f.uint(1, 8),
            name=f.text(2),
            brief=f.text(3),
            protocols=f.text_list(4) or (),
            skills=f.text_list(5) or (),
            card_hash=f.bytes_(6),
            modalities=f.text_list(8) or (),
            meta=_meta(f.map_(9), "profile payload"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxPayload:
    """A sealed note (rec_type 0x80); see :mod:`a2al_mcp.protocol.mailbox_crypto`."""

    recipient: Aid
    sender: Aid
    ephemeral_pk: bytes
    """X25519 ephemeral public key (32 bytes)."""
    ciphertext: bytes
    """AES-256-GCM output including the 16-byte tag."""
    nonce: bytes
    """12 bytes."""

    def to_bytes(self) -> bytes:
        """Canonical CBOR (all keys always present)."""
        return _cbor.dumps(
            {
                1: bytes(self.recipient),
                2: bytes(self.sender),
                3: self.ephemeral_pk,
                4: self.ciphertext,
                5: self.nonce,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode and shape-check (21-byte AIDs, 32-byte key, 12-byte nonce)."""
        if len(data) > limits.MAILBOX_PAYLOAD_MAX:
            raise DecodeError("mailbox payload over 512 bytes")
        f = _cbor.loads_map(data, "mailbox payload")
        return cls(
            recipient=Aid(f.bytes_(1, size=21)),
            sender=Aid(f.bytes_(2, size=21)),
            ephemeral_pk=f.bytes_(3, size=32),
            ciphertext=f.bytes_(4),
            nonce=f.bytes_(5, size=12),
        )
