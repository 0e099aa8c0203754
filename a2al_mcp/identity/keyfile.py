"""Passphrase-protected export of an identity: scrypt + AES-256-GCM, as a JSON text blob.

The blob holds the signing key's seed and, for a delegated identity, its delegation proof. It
never holds an owner (master) key: that one is shown once when an agent is created.

An export to import may come from anyone (a user pastes what they were sent), so
:func:`import_identity` bounds everything before it spends anything: the text is at most
:data:`EXPORT_MAX_CHARS`, every field must have the type and size our exports have, and the
scrypt parameters must stay within :data:`SCRYPT_MEMORY_MAX` (128·n·r bytes) and
:data:`SCRYPT_WORK_MAX` (n·r·p); ours use n=2^15, r=8, p=1 (32 MiB, ~0.4 s). Every malformed
export is a :class:`~a2al_mcp.errors.DecodeError`. a2ald has no such format (its
``/agents/{aid}/export`` hands out the operational key over loopback).

The KDF is CPU-bound: async callers run these functions in a worker thread (the node does,
one at a time).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import DecodeError, UsageError, VerificationError
from .delegation import DelegationProof
from .keys import SigningKey
from .local import Identity

if TYPE_CHECKING:
    from .._random import Rng

__all__ = [
    "EXPORT_MAX_CHARS",
    "SCRYPT_MEMORY_MAX",
    "SCRYPT_WORK_MAX",
    "export_identity",
    "import_identity",
    "seal_identity",
]

_N: Final = 2**15
_R: Final = 8
_P: Final = 1
_FORMAT: Final = "a2al-mcp-identity-1"
_SALT: Final = 16
_NONCE: Final = 12

EXPORT_MAX_CHARS: Final = 16 * 1024
"""Longest export text accepted (ours are under 1 KiB: a seed and a delegation proof)."""
SCRYPT_MEMORY_MAX: Final = 64 * 2**20
"""Most memory an import may make scrypt use (128·n·r bytes; ours: 32 MiB)."""
SCRYPT_WORK_MAX: Final = 2 * _N * _R * _P
"""Most scrypt work (n·r·p) an import may ask for: twice ours (~0.8 s)."""
_P_MAX: Final = 2
_CIPHERTEXT_MAX: Final = 4096
"""Largest sealed inner document (ours: ~300 bytes)."""


def _key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(_utf8(passphrase))


def _utf8(passphrase: str) -> bytes:
    try:
        return passphrase.encode()
    except UnicodeEncodeError:
        raise UsageError("the passphrase is not valid Unicode (it has a lone surrogate)") from None


def export_identity(identity: Identity, passphrase: str, *, rng: Rng) -> str:
    """The identity sealed under ``passphrase`` (at least 8 characters)."""
    return seal_identity(identity, passphrase, salt=rng.bytes(_SALT), nonce=rng.bytes(_NONCE))


def seal_identity(identity: Identity, passphrase: str, *, salt: bytes, nonce: bytes) -> str:
    """:func:`export_identity` with the random salt (16 bytes) and nonce (12) given, so a
    caller can draw them on its own thread and run this (the KDF) in a worker."""
    if len(passphrase) < 8:
        raise UsageError("use a passphrase of at least 8 characters")
    inner = {"seed": identity.key.seed.hex()}
    if identity.delegation is not None:
        inner["delegation_proof"] = identity.delegation.to_bytes().hex()
    ct = AESGCM(_key(passphrase, salt, _N, _R, _P)).encrypt(
        nonce, json.dumps(inner).encode(), _FORMAT.encode()
    )
    b64 = base64.b64encode
    return json.dumps({"format": _FORMAT, "aid": str(identity.aid), "kdf": "scrypt", "n": _N,
                       "r": _R, "p": _P, "salt": b64(salt).decode(),
                       "nonce": b64(nonce).decode(), "ciphertext": b64(ct).decode()})  # fmt: skip


def _bad(why: str) -> DecodeError:
    return DecodeError(f"not an a2al-mcp identity export: {why}")


def _b64(doc: dict[str, Any], name: str, sizes: range) -> bytes:
    value = doc.get(name)
    if not isinstance(value, str):
        raise _bad(f"{name} must be base64 text")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise _bad(f"{name} is not base64") from exc
    if len(raw) not in sizes:
        raise _bad(f"{name} has {len(raw)} bytes")
    return raw


def _int(doc: dict[str, Any], name: str) -> int:
    value = doc.get(name)
    if type(value) is not int:  # not bool, float, text
        raise _bad(f"{name} must be an integer")
    return value


def _parse(blob: str) -> tuple[bytes, bytes, bytes, int, int, int]:
    if not isinstance(blob, str):
        raise TypeError("the export must be text")
    if len(blob) > EXPORT_MAX_CHARS:
        raise _bad(f"longer than {EXPORT_MAX_CHARS} characters")
    try:
        doc = json.loads(blob)
    except (ValueError, RecursionError) as exc:
        raise _bad("not JSON") from exc
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT or doc.get("kdf") != "scrypt":
        raise _bad("wrong format")
    n, r, p = _int(doc, "n"), _int(doc, "r"), _int(doc, "p")
    if n < 2 or n & (n - 1) or r < 1 or not 1 <= p <= _P_MAX:
        raise _bad("invalid scrypt parameters")
    if 128 * n * r > SCRYPT_MEMORY_MAX or n * r * p > SCRYPT_WORK_MAX:
        raise _bad(f"scrypt parameters n={n} r={r} p={p} cost more than this node allows "
                   f"({SCRYPT_MEMORY_MAX // 2**20} MiB, n·r·p ≤ {SCRYPT_WORK_MAX})")  # fmt: skip
    salt = _b64(doc, "salt", range(8, 65))
    nonce = _b64(doc, "nonce", range(_NONCE, _NONCE + 1))
    ct = _b64(doc, "ciphertext", range(16, _CIPHERTEXT_MAX + 1))
    return salt, nonce, ct, n, r, p


def import_identity(blob: str, passphrase: str, *, now: float) -> Identity:
    """Open a blob made by :func:`export_identity`.

    Raises:
        DecodeError: not such a blob, or one asking for more scrypt than allowed.
        VerificationError: wrong passphrase or tampered.
        UsageError: the delegation proof no longer verifies; the passphrase is not Unicode.
    """
    salt, nonce, ct, n, r, p = _parse(blob)
    try:
        plain = AESGCM(_key(passphrase, salt, n, r, p)).decrypt(nonce, ct, _FORMAT.encode())
    except InvalidTag:
        raise VerificationError("wrong passphrase, or the export was altered") from None
    # Sealed under the right passphrase, so whoever made it knew it: still check the shape.
    try:
        inner = json.loads(plain)
        if not isinstance(inner, dict) or not isinstance(inner.get("seed"), str):
            raise _bad("no key inside")
        key = SigningKey(bytes.fromhex(inner["seed"]))
        proof_hex = inner.get("delegation_proof")
        if proof_hex is None:
            return Identity.from_key(key)
        if not isinstance(proof_hex, str):
            raise _bad("delegation proof must be hex text")
        proof = DelegationProof.from_bytes(bytes.fromhex(proof_hex))
    except (ValueError, RecursionError):  # no cause: a JSON error would hold the plaintext
        raise _bad("malformed content") from None
    return Identity.from_delegation(key, proof, now)
