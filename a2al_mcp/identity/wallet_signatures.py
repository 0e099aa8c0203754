"""secp256k1 wallet signatures and addresses: Ethereum and Bitcoin-style (Paralism) owners.

Digests (EIP-191 ``personal_sign``, Bitcoin ``signmessage``, HASH160), owner AIDs derived from
keys, signers recovered from 65-byte signatures, and deterministic signing (RFC 6979, low s).
The delegation text these sign and its checks live in :mod:`.web3`.

secp256k1 comes from ``coincurve``, the optional ``web3`` extra, imported on first use; without
it these functions raise :class:`~a2al_mcp.errors.ExtraMissing`.
"""

from __future__ import annotations

import hashlib
import struct
from typing import TYPE_CHECKING, Final

from ..errors import DecodeError, ExtraMissing, VerificationError
from ._keccak import keccak256
from ._ripemd160 import ripemd160
from .aid import Aid, AidVersion

if TYPE_CHECKING:
    from coincurve import PrivateKey, PublicKey

__all__ = [
    "btc_signmessage",
    "eip191_hash",
    "eth_personal_sign",
    "ethereum_aid",
    "ethereum_signer",
    "hash160",
    "paralism_aid",
    "paralism_signer",
    "signmessage_hash",
]

_EXTRA_HINT: Final = 'needs the web3 extra: pip install "a2al-mcp[web3]"'
_VERIFY_WHAT: Final = "verifying Ethereum/Paralism delegation proofs"
_SIGN_WHAT: Final = "signing Ethereum/Paralism delegation proofs"

_EIP191_PREFIX: Final = b"\x19Ethereum Signed Message:\n"
_SIGNMESSAGE_MAGIC: Final = b"Bitcoin Signed Message:\n"


# -- digests -----------------------------------------------------------------------------


def eip191_hash(message: str | bytes) -> bytes:
    """EIP-191 ``personal_sign`` digest: Keccak-256 of prefix ‖ decimal byte length ‖ text."""
    data = _utf8(message)
    return keccak256(_EIP191_PREFIX + str(len(data)).encode() + data)


def signmessage_hash(message: str | bytes) -> bytes:
    """Bitcoin ``signmessage`` digest: double SHA-256 of varstr(magic) ‖ varstr(message)."""
    data = _utf8(message)
    payload = _varstr(_SIGNMESSAGE_MAGIC) + _varstr(data)
    return hashlib.sha256(hashlib.sha256(payload).digest()).digest()


def hash160(data: bytes) -> bytes:
    """RIPEMD-160 of SHA-256 of ``data`` (Bitcoin's HASH160), 20 bytes."""
    return ripemd160(hashlib.sha256(data).digest())


# -- owner AIDs --------------------------------------------------------------------------


def ethereum_aid(key: bytes) -> Aid:
    """The Ethereum AID (0xA3 ‖ Keccak-256(X ‖ Y)[12:]) of a secp256k1 key.

    Args:
        key: a 32-byte private key, or a public key: 33 bytes compressed, 65 bytes
            uncompressed (``04 ‖ X ‖ Y``) or 64 bytes raw ``X ‖ Y``.

    Raises:
        DecodeError: not a valid secp256k1 key.
        ExtraMissing: the ``web3`` extra is not installed.
    """
    pub = _public_key(key, _SIGN_WHAT)
    return _ethereum_aid_of(pub.format(compressed=False))


def paralism_aid(key: bytes, *, compressed: bool | None = None) -> Aid:
    """The Paralism AID (0xA2 ‖ HASH160(serialized public key)) of a secp256k1 key.

    Args:
        key: a 32-byte private key, or a public key (33, 65 or raw 64 bytes).
        compressed: serialize the public key compressed (33 bytes) or uncompressed (65 bytes)
            before hashing; the two give different addresses. None (the default) means
            compressed for private keys and raw 64-byte keys, and as given for 33/65-byte keys.

    Raises:
        DecodeError: not a valid secp256k1 key.
        ExtraMissing: the ``web3`` extra is not installed.
    """
    pub = _public_key(key, _SIGN_WHAT)
    if compressed is None:
        compressed = len(key) != 65
    return _paralism_aid_of(pub.format(compressed=compressed))


# -- signer recovery ---------------------------------------------------------------------


def ethereum_signer(message: str | bytes, signature: bytes) -> Aid:
    """The Ethereum AID whose key made this EIP-191 ``personal_sign`` signature.

    Args:
        message: the signed text (UTF-8 encoded if a str).
        signature: 65 bytes ``r ‖ s ‖ v``, v ∈ {27, 28}; v ∈ {0, 1} is accepted too.

    Raises:
        VerificationError: malformed signature or no key recoverable from it.
        ExtraMissing: the ``web3`` extra is not installed.
    """
    public_key_cls = _coincurve(_VERIFY_WHAT)[1]
    sig = _sig65(signature, "Ethereum")
    v = sig[64] + 27 if sig[64] < 27 else sig[64]
    if v not in (27, 28):
        raise VerificationError(
            f"Ethereum signature: v = {sig[64]} is not a recovery id (27/28, or 0/1)"
        )
    pub = _recover(public_key_cls, sig[:64], v - 27, eip191_hash(message), "Ethereum")
    return _ethereum_aid_of(pub.format(compressed=False))


def paralism_signer(message: str | bytes, signature: bytes) -> Aid:
    """The Paralism AID whose key made this Bitcoin ``signmessage`` compact signature.

    The header byte (27-34) carries the recovery id and whether the address hashes the
    compressed (31-34) or uncompressed (27-30) public key.

    Args:
        message: the signed text (UTF-8 encoded if a str).
        signature: 65 bytes ``header ‖ r ‖ s``.

    Raises:
        VerificationError: malformed signature or no key recoverable from it.
        ExtraMissing: the ``web3`` extra is not installed.
    """
    public_key_cls = _coincurve(_VERIFY_WHAT)[1]
    sig = _sig65(signature, "Paralism")
    header = sig[0]
    if not 27 <= header <= 34:
        raise VerificationError(
            f"Paralism signature: header byte {header} is outside 27-34 "
            "(not a signmessage compact signature)"
        )
    code = header - 27
    pub = _recover(public_key_cls, sig[1:], code & 3, signmessage_hash(message), "Paralism")
    return _paralism_aid_of(pub.format(compressed=bool(code & 4)))


# -- signing -----------------------------------------------------------------------------


def eth_personal_sign(eth_private_key: bytes, message: str | bytes) -> bytes:
    """An EIP-191 ``personal_sign`` signature: 65 bytes ``r ‖ s ‖ v`` with v ∈ {27, 28}.

    Deterministic (RFC 6979 nonces, low s), so equal to what eth-account or a2ald produce.

    Raises:
        DecodeError: not a 32-byte secp256k1 private key.
        ExtraMissing: the ``web3`` extra is not installed.
    """
    rec = _private_key(eth_private_key).sign_recoverable(eip191_hash(message), hasher=None)
    return rec[:64] + bytes([27 + rec[64]])


def btc_signmessage(
    btc_private_key: bytes, message: str | bytes, *, compressed: bool = True
) -> bytes:
    """A Bitcoin ``signmessage`` compact signature: 65 bytes ``header ‖ r ‖ s``.

    The header is 27 + recovery id, plus 4 when the signer's address hashes the compressed
    public key. Deterministic (RFC 6979 nonces, low s).

    Raises:
        DecodeError: not a 32-byte secp256k1 private key.
        ExtraMissing: the ``web3`` extra is not installed.
    """
    rec = _private_key(btc_private_key).sign_recoverable(signmessage_hash(message), hasher=None)
    return bytes([27 + rec[64] + (4 if compressed else 0)]) + rec[:64]


# -- helpers -----------------------------------------------------------------------------


def _coincurve(what: str) -> tuple[type[PrivateKey], type[PublicKey]]:
    """The coincurve key classes, or ExtraMissing naming the extra."""
    try:
        import coincurve
    except ImportError:
        raise ExtraMissing(f"{what} {_EXTRA_HINT}") from None
    return coincurve.PrivateKey, coincurve.PublicKey


def _private_key(secret: bytes) -> PrivateKey:
    private_key_cls = _coincurve(_SIGN_WHAT)[0]
    if not isinstance(secret, bytes):
        raise TypeError("secp256k1 private key must be bytes")
    if len(secret) != 32:
        raise DecodeError(f"secp256k1 private key must be 32 bytes, got {len(secret)}")
    try:
        return private_key_cls(secret)
    except ValueError:
        raise DecodeError(
            "secp256k1 private key is out of range (0 or >= the group order)"
        ) from None


def _public_key(key: bytes, what: str) -> PublicKey:
    if not isinstance(key, bytes):
        raise TypeError("secp256k1 key must be bytes")
    public_key_cls = _coincurve(what)[1]
    if len(key) == 32:
        return _private_key(key).public_key
    data = b"\x04" + key if len(key) == 64 else key
    if len(data) not in (33, 65):
        raise DecodeError(
            f"secp256k1 key must be 32 (private), 33, 64 or 65 (public) bytes, got {len(key)}"
        )
    try:
        return public_key_cls(data)
    except ValueError:
        raise DecodeError("not a valid secp256k1 public key") from None


def _recover(
    public_key_cls: type[PublicKey], rs: bytes, recid: int, digest: bytes, title: str
) -> PublicKey:
    try:
        return public_key_cls.from_signature_and_message(rs + bytes([recid]), digest, hasher=None)
    except ValueError:
        raise VerificationError(
            f"{title} signature: no public key can be recovered from it "
            "(r or s out of range, or not a signature)"
        ) from None


def _sig65(signature: bytes, title: str) -> bytes:
    if not isinstance(signature, bytes):
        raise TypeError("signature must be bytes")
    if len(signature) != 65:
        raise VerificationError(f"{title} signature must be 65 bytes, got {len(signature)}")
    return signature


def _ethereum_aid_of(uncompressed: bytes) -> Aid:
    return Aid(bytes([AidVersion.ETHEREUM]) + keccak256(uncompressed[1:])[12:])


def _paralism_aid_of(serialized: bytes) -> Aid:
    return Aid(bytes([AidVersion.PARALISM]) + hash160(serialized))


def _utf8(message: str | bytes) -> bytes:
    return message.encode("utf-8") if isinstance(message, str) else bytes(message)


def _varstr(data: bytes) -> bytes:
    """Bitcoin CompactSize length prefix ‖ data."""
    n = len(data)
    if n < 0xFD:
        prefix = bytes([n])
    elif n <= 0xFFFF:
        prefix = b"\xfd" + struct.pack("<H", n)
    elif n <= 0xFFFF_FFFF:
        prefix = b"\xfe" + struct.pack("<I", n)
    else:
        prefix = b"\xff" + struct.pack("<Q", n)
    return prefix + data
