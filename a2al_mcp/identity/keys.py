"""Ed25519 key pairs, and their X25519 (Montgomery) forms for mailbox encryption."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .. import _digest
from ..errors import DecodeError, VerificationError

if TYPE_CHECKING:
    from .._random import Rng

__all__ = ["SigningKey", "VerifyKey"]

_P: Final = 2**255 - 19


@functools.lru_cache(maxsize=8192)
def _load_public_key(raw: bytes) -> Ed25519PublicKey | None:
    """Parse (decompress) a public key once; a pure function, memoised because the same
    publishers' keys recur on every republish and parsing costs about a tenth of a verify."""
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        return None


class VerifyKey:
    """An Ed25519 public key (32 bytes)."""

    __slots__ = ("_key", "_raw")

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes):
            raise TypeError("VerifyKey takes bytes")
        if len(raw) != 32:
            raise DecodeError(f"Ed25519 public key must be 32 bytes, got {len(raw)}")
        self._raw = raw
        self._key: Ed25519PublicKey | None = None

    def __bytes__(self) -> bytes:
        return self._raw

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyKey) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"VerifyKey({self._raw.hex()})"

    def is_valid(self, signature: bytes, message: bytes) -> bool:
        """True if ``signature`` is a valid Ed25519 signature of ``message`` by this key."""
        if len(signature) != 64:
            return False
        key = self._key
        if key is None:
            key = self._key = _load_public_key(self._raw)
            if key is None:
                return False
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def verify(self, signature: bytes, message: bytes, what: str = "signature") -> None:
        """Raise VerificationError unless ``signature`` is valid for ``message``."""
        if not self.is_valid(signature, message):
            raise VerificationError(f"{what} does not verify")

    def to_x25519(self) -> bytes:
        """The Montgomery u-coordinate of this point: the X25519 public key (32 bytes).

        u = (1 + y) / (1 - y) mod 2^255 - 19, with y the Edwards coordinate.
        """
        y = int.from_bytes(self._raw, "little") & ((1 << 255) - 1)
        if y >= _P or (1 - y) % _P == 0:
            raise VerificationError("Ed25519 public key has no X25519 form")
        u = (1 + y) * pow(1 - y, _P - 2, _P) % _P
        return u.to_bytes(32, "little")


class SigningKey:
    """An Ed25519 private key, held as its 32-byte seed."""

    __slots__ = ("_key", "_seed", "public")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes):
            raise TypeError("SigningKey takes bytes")
        if len(seed) != 32:
            raise DecodeError(f"Ed25519 seed must be 32 bytes, got {len(seed)}")
        self._seed = seed
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        raw = self._key.public_key().public_bytes_raw()
        self.public: VerifyKey = VerifyKey(raw)
        """The matching public key."""

    @classmethod
    def generate(cls, rng: Rng) -> SigningKey:
        """A new key from 32 random bytes of ``rng``."""
        return cls(rng.bytes(32))

    @classmethod
    def from_go_bytes(cls, data: bytes) -> SigningKey:
        """Load Go's 64-byte private key form (seed ‖ public key), checking the halves match."""
        if len(data) == 32:
            return cls(data)
        if len(data) != 64:
            raise DecodeError(f"Ed25519 private key must be 32 or 64 bytes, got {len(data)}")
        key = cls(data[:32])
        if bytes(key.public) != data[32:]:
            raise DecodeError("Ed25519 private key: public half does not match the seed")
        return key

    @property
    def seed(self) -> bytes:
        """The 32-byte seed. Treat as secret."""
        return self._seed

    def go_bytes(self) -> bytes:
        """Go's 64-byte private key form: seed ‖ public key."""
        return self._seed + bytes(self.public)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)

    def to_x25519(self) -> bytes:
        """The X25519 private scalar: SHA-512(seed)[:32], clamped."""
        h = bytearray(_digest.sha512(self._seed).digest()[:32])
        h[0] &= 248
        h[31] &= 127
        h[31] |= 64
        return bytes(h)

    def __repr__(self) -> str:
        return f"SigningKey(public={bytes(self.public).hex()})"
