"""AIDs (agent addresses) and NodeIDs: bytes forms, text forms, derivation.

An AID is 21 bytes: a version byte (0xA0–0xAF) and a 20-byte hash (a2al-wire §2.1).
The NodeID of an AID is SHA-256 of its 21 bytes and places it in the DHT keyspace.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final, Self

from .. import _digest
from ..errors import DecodeError
from .chain_text import (
    base58check_decode,
    eip55,
    paralism_bech32_decode,
    paralism_bech32_encode,
    parse_eip55,
)
from .keys import VerifyKey

__all__ = ["Aid", "AidVersion", "NodeId"]


class AidVersion(IntEnum):
    """The assigned AID version bytes."""

    ED25519 = 0xA0
    P256 = 0xA1
    PARALISM = 0xA2
    ETHEREUM = 0xA3


AID_LEN: Final = 21
NODE_ID_LEN: Final = 32


def _native_checksum(raw: bytes) -> str:
    lower = raw.hex()
    digest = _digest.sha256(lower.encode()).digest()
    out = []
    for i, c in enumerate(lower):
        nibble = digest[i // 2] >> 4 if i % 2 == 0 else digest[i // 2] & 0x0F
        out.append(c.upper() if c.isalpha() and nibble >= 8 else c)
    return "".join(out)


class Aid:
    """A 21-byte agent address. Hashable, ordered by bytes, immutable."""

    __slots__ = ("_node_id", "_raw", "_text")

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes):
            raise TypeError("Aid takes bytes; use Aid.from_str for text")
        if len(raw) != AID_LEN:
            raise DecodeError(f"AID must be {AID_LEN} bytes, got {len(raw)}")
        if not 0xA0 <= raw[0] <= 0xAF:
            raise DecodeError(f"AID version byte 0x{raw[0]:02x} is outside 0xA0-0xAF")
        self._raw = raw
        self._node_id: NodeId | None = None
        self._text: str | None = None

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        """The AID with these 21 bytes."""
        return cls(bytes(raw))

    @classmethod
    def from_public_key(cls, key: VerifyKey | bytes) -> Self:
        """The native (0xA0) AID of an Ed25519 public key: 0xA0 ‖ SHA-256(key)[:20]."""
        raw = bytes(key)
        if len(raw) != 32:
            raise DecodeError(f"Ed25519 public key must be 32 bytes, got {len(raw)}")
        return cls(bytes([AidVersion.ED25519]) + _digest.sha256(raw).digest()[:20])

    @classmethod
    def from_str(cls, text: str) -> Self:
        """Parse any text form: native checksummed hex, Ethereum 0x, Paralism bc1/pr1/1….

        Raises:
            DecodeError: with a sentence saying what is wrong.
        """
        if not isinstance(text, str):
            raise TypeError("Aid.from_str takes a string")
        s = text.strip()
        if len(s) == 42 and s[:2] in ("0x", "0X"):
            return cls(bytes([AidVersion.ETHEREUM]) + parse_eip55(s))
        low = s.lower()
        if low.startswith(("bc1", "pr1")):
            return cls(bytes([AidVersion.PARALISM]) + paralism_bech32_decode(s, ("bc", "pr")))
        if s.startswith("1") and 26 <= len(s) <= 35:
            return cls(bytes([AidVersion.PARALISM]) + base58check_decode(s, 0x00))
        if len(s) != 2 * AID_LEN:
            raise DecodeError(
                f"not an AID: expected 42 hex characters (or 0x…/bc1… forms), got {len(s)}"
            )
        try:
            raw = bytes.fromhex(s)
        except ValueError:
            raise DecodeError("not an AID: contains non-hex characters") from None
        if s != low and s != _native_checksum(raw):
            raise DecodeError(
                "AID checksum mismatch: letter case must be the checksummed form or all lowercase"
            )
        return cls(raw)

    @property
    def version(self) -> int:
        """The version byte (0xA0 for native Ed25519 AIDs)."""
        return self._raw[0]

    @property
    def hash20(self) -> bytes:
        """The 20 bytes after the version byte."""
        return self._raw[1:]

    @property
    def node_id(self) -> NodeId:
        """SHA-256 of the 21 AID bytes: this AID's place in the DHT."""
        nid = self._node_id
        if nid is None:
            nid = self._node_id = NodeId(_digest.sha256(self._raw).digest())
        return nid

    def matches_key(self, key: VerifyKey | bytes) -> bool:
        """True if this is the native AID of the Ed25519 public key."""
        return self.version == AidVersion.ED25519 and Aid.from_public_key(key) == self

    def __bytes__(self) -> bytes:
        return self._raw

    def __str__(self) -> str:
        text = self._text
        if text is None:  # each form carries a hash checksum: compute it once
            if self._raw[0] == AidVersion.ETHEREUM:
                text = eip55(self._raw[1:])
            elif self._raw[0] == AidVersion.PARALISM:
                text = paralism_bech32_encode("bc", self._raw[1:])
            else:
                text = _native_checksum(self._raw)
            self._text = text
        return text

    def __repr__(self) -> str:
        return f"Aid('{self}')"

    def short(self) -> str:
        """A short form for logs: first 8 and last 4 characters of the text form."""
        s = str(self)
        return f"{s[:8]}…{s[-4:]}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Aid) and other._raw == self._raw

    def __lt__(self, other: Aid) -> bool:
        return self._raw < other._raw

    def __hash__(self) -> int:
        return hash(self._raw)


class NodeId:
    """A 32-byte position in the DHT keyspace (XOR metric)."""

    __slots__ = ("_int", "_raw")

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes):
            raise TypeError("NodeId takes bytes")
        if len(raw) != NODE_ID_LEN:
            raise DecodeError(f"NodeID must be {NODE_ID_LEN} bytes, got {len(raw)}")
        self._raw = raw
        self._int = -1

    @classmethod
    def from_hex(cls, text: str) -> Self:
        """Parse 64 hex digits (any case)."""
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError:
            raise DecodeError("NodeID must be 64 hex digits") from None

    def __bytes__(self) -> bytes:
        return self._raw

    def __str__(self) -> str:
        return self._raw.hex()

    def __repr__(self) -> str:
        return f"NodeId({self._raw.hex()})"

    def __int__(self) -> int:
        if self._int < 0:
            self._int = int.from_bytes(self._raw, "big")
        return self._int

    def distance(self, other: NodeId) -> int:
        """XOR distance as a 256-bit integer."""
        return int(self) ^ int(other)

    def common_prefix_len(self, other: NodeId) -> int:
        """Number of leading equal bits (256 if equal)."""
        return 256 - self.distance(other).bit_length()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NodeId) and other._raw == self._raw

    def __lt__(self, other: NodeId) -> bool:
        return self._raw < other._raw

    def __hash__(self) -> int:
        return hash(self._raw)
