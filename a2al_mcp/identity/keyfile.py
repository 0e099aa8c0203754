"""Passphrase-protected export of an identity: scrypt + AES-256-GCM, as a JSON text blob.

The blob holds the signing key's seed and, for a delegated identity, its delegation proof. It
never holds an owner (master) key: that one is shown once when an agent is created.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import DecodeError, UsageError, VerificationError
from .delegation import DelegationProof
from .keys import SigningKey
from .local import Identity

if TYPE_CHECKING:
    from .._random import Rng

__all__ = ["export_identity", "import_identity"]

_N: Final = 2**15
_R: Final = 8
_P: Final = 1
_FORMAT: Final = "a2al-mcp-identity-1"


def _key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def export_identity(identity: Identity, passphrase: str, *, rng: Rng) -> str:
    """The identity sealed under ``passphrase`` (at least 8 characters)."""
    if len(passphrase) < 8:
        raise UsageError("use a passphrase of at least 8 characters")
    inner = {"seed": identity.key.seed.hex()}
    if identity.delegation is not None:
        inner["delegation_proof"] = identity.delegation.to_bytes().hex()
    salt, nonce = rng.bytes(16), rng.bytes(12)
    ct = AESGCM(_key(passphrase, salt, _N, _R, _P)).encrypt(
        nonce, json.dumps(inner).encode(), _FORMAT.encode()
    )
    b64 = base64.b64encode
    return json.dumps({"format": _FORMAT, "aid": str(identity.aid), "kdf": "scrypt", "n": _N,
                       "r": _R, "p": _P, "salt": b64(salt).decode(),
                       "nonce": b64(nonce).decode(), "ciphertext": b64(ct).decode()})  # fmt: skip


def import_identity(blob: str, passphrase: str, *, now: float) -> Identity:
    """Open a blob made by :func:`export_identity`.

    Raises:
        DecodeError: not such a blob. VerificationError: wrong passphrase or tampered, or the
            delegation proof no longer verifies.
    """
    try:
        doc = json.loads(blob)
        if doc.get("format") != _FORMAT or doc.get("kdf") != "scrypt":
            raise DecodeError("not an a2al-mcp identity export")
        salt, nonce, ct = (base64.b64decode(doc[k]) for k in ("salt", "nonce", "ciphertext"))
        n, r, p = int(doc["n"]), int(doc["r"]), int(doc["p"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DecodeError(f"not an a2al-mcp identity export: {exc}") from None
    if not (2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16):
        raise DecodeError("identity export has unreasonable scrypt parameters")
    try:
        inner = json.loads(AESGCM(_key(passphrase, salt, n, r, p)).decrypt(
            nonce, ct, _FORMAT.encode()))  # fmt: skip
    except InvalidTag:
        raise VerificationError("wrong passphrase, or the export was altered") from None
    key = SigningKey(bytes.fromhex(inner["seed"]))
    if "delegation_proof" in inner:
        proof = DelegationProof.from_bytes(bytes.fromhex(inner["delegation_proof"]))
        return Identity.from_delegation(key, proof, now)
    return Identity.from_key(key)
