"""Sealing and opening mailbox notes (a2al-wire §3.9).

Sender: X25519 with a fresh ephemeral key against the Montgomery form of the recipient's
Ed25519 key (the ``pubkey`` of its endpoint record: the operational key for delegated
agents); HKDF-SHA256(salt "a2al-mailbox\\0", info sender ‖ recipient) → AES-256-GCM key;
plaintext canonical ``{1: msg_type, 2: body}``; no associated data.

The cryptography primitives load with the first note sealed or opened: a node imports this
module for its constants and sends or receives notes later, if ever (issue 15: start-up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .. import _cbor
from .._dataclass import dataclass
from ..errors import DecodeError, LimitExceeded, VerificationError
from ..identity.keys import SigningKey, VerifyKey
from . import limits
from .payloads import MailboxPayload

if TYPE_CHECKING:
    from .._random import Rng
    from ..identity.aid import Aid

__all__ = ["MSG_TYPE_TEXT", "MailboxNote", "open_note", "seal_note"]

MAILBOX_SALT: Final = b"a2al-mailbox\x00"
MSG_TYPE_CONNECT_REQUEST: Final = 1
MSG_TYPE_CANDIDATES: Final = 2
MSG_TYPE_TEXT: Final = 3


@dataclass(frozen=True, slots=True)
class MailboxNote:
    """An opened note."""

    msg_type: int
    body: bytes


def _derive_key(shared: bytes, sender: Aid, recipient: Aid) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=MAILBOX_SALT,
        info=bytes(sender) + bytes(recipient),
    )
    return hkdf.derive(shared)


def seal_note(
    *,
    sender: Aid,
    recipient: Aid,
    recipient_key: VerifyKey,
    body: bytes,
    msg_type: int = MSG_TYPE_TEXT,
    rng: Rng,
) -> MailboxPayload:
    """Encrypt ``body`` to ``recipient_key``.

    Raises:
        LimitExceeded: the sealed payload would exceed 512 bytes (bodies ≤ 389 bytes fit).
    """
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    eph = X25519PrivateKey.from_private_bytes(rng.bytes(32))
    nonce = rng.bytes(12)
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient_key.to_x25519()))
    plaintext = _cbor.dumps({1: msg_type, 2: body})
    ciphertext = AESGCM(_derive_key(shared, sender, recipient)).encrypt(nonce, plaintext, None)
    payload = MailboxPayload(
        recipient=recipient,
        sender=sender,
        ephemeral_pk=eph.public_key().public_bytes_raw(),
        ciphertext=ciphertext,
        nonce=nonce,
    )
    size = len(payload.to_bytes())
    if size > limits.MAILBOX_PAYLOAD_MAX:
        raise LimitExceeded(
            f"note body of {len(body)} bytes is too large: the sealed note would be {size} bytes "
            f"and the limit is {limits.MAILBOX_PAYLOAD_MAX} (bodies up to "
            f"{limits.MAILBOX_BODY_MAX} bytes fit); send larger data over a direct connection"
        )
    return payload


def open_note(payload: MailboxPayload, *, own_aid: Aid, own_key: SigningKey) -> MailboxNote:
    """Decrypt a note addressed to ``own_aid`` with the key its endpoint record names.

    Raises:
        VerificationError: not for us, or the ciphertext does not authenticate.
        DecodeError: the plaintext is not the expected CBOR map.
    """
    if payload.recipient != own_aid:
        raise VerificationError("note is addressed to another AID")
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    priv = X25519PrivateKey.from_private_bytes(own_key.to_x25519())
    try:
        shared = priv.exchange(X25519PublicKey.from_public_bytes(payload.ephemeral_pk))
    except ValueError as exc:  # all-zero shared secret from a low-order point
        raise VerificationError("note ephemeral key is invalid") from exc
    key = _derive_key(shared, payload.sender, payload.recipient)
    try:
        plaintext = AESGCM(key).decrypt(payload.nonce, payload.ciphertext, None)
    except InvalidTag as exc:
        raise VerificationError("note does not decrypt (wrong key or tampered)") from exc
    f = _cbor.loads_map(plaintext, "mailbox plaintext")
    msg_type = f.uint(1, 8)
    if not f.has(2):
        raise DecodeError("mailbox plaintext lacks a body")
    return MailboxNote(msg_type, f.bytes_(2))
