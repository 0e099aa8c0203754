"""Blockchain owners: Ethereum (AID 0xA3) and Paralism (AID 0xA2) delegation proofs.

A wallet owner authorises an Ed25519 operational key by signing a short text message
(a2al-wire §2.3)::

    A2AL Delegation Authorization
    Authorize this Ed25519 key to operate on behalf of your Ethereum address.

    op_key:<64 lowercase hex of op_pub>
    agent:<AID display string>
    scope:<decimal>
    issued_at:<decimal>
    expires_at:<decimal>

(every line ends with ``\\n``, the last one too; Paralism says "Paralism address"). Ethereum
owners sign it with EIP-191 ``personal_sign`` (65 bytes ``r ‖ s ‖ v``); Paralism owners with
Bitcoin ``signmessage`` (65 bytes ``header ‖ r ‖ s``). Verification recovers the secp256k1
key, derives the owner's address from it and compares it with the AID, then checks that the
``key:value`` lines of the message match the proof's CBOR fields, exactly as a2ald does: the
two header lines are not checked, only the five key lines.

secp256k1 comes from ``coincurve``, the optional ``web3`` extra, imported on first use; without
it these functions raise :class:`~a2al_mcp.errors.ExtraMissing`. Expiry and scope against the
current time are checked by :meth:`DelegationProof.verify`, which calls
:func:`verify_blockchain_delegation` last.
"""

from __future__ import annotations

import hashlib
import re
import struct
from typing import TYPE_CHECKING, Final, Literal

from ..errors import DecodeError, ExtraMissing, UsageError, VerificationError
from ._keccak import keccak256
from ._ripemd160 import ripemd160
from .aid import Aid, AidVersion
from .delegation import SCOPE_NETWORK_OPS, DelegationProof
from .keys import VerifyKey

if TYPE_CHECKING:
    from coincurve import PrivateKey, PublicKey

__all__ = [
    "Chain",
    "btc_signmessage",
    "delegation_message",
    "eip191_hash",
    "eth_personal_sign",
    "ethereum_aid",
    "ethereum_signer",
    "hash160",
    "paralism_aid",
    "paralism_signer",
    "sign_ethereum_delegation",
    "sign_paralism_delegation",
    "signmessage_hash",
    "verify_blockchain_delegation",
]

Chain = Literal["ethereum", "paralism"]
"""The blockchain owner kinds: Ethereum (AID 0xA3) and Paralism (AID 0xA2)."""

_EXTRA_HINT: Final = 'needs the web3 extra: pip install "a2al-mcp[web3]"'
_VERIFY_WHAT: Final = "verifying Ethereum/Paralism delegation proofs"
_SIGN_WHAT: Final = "signing Ethereum/Paralism delegation proofs"

_CHAIN_VERSION: Final = {"ethereum": AidVersion.ETHEREUM, "paralism": AidVersion.PARALISM}
_CHAIN_TITLE: Final = {"ethereum": "Ethereum", "paralism": "Paralism"}

_EIP191_PREFIX: Final = b"\x19Ethereum Signed Message:\n"
_SIGNMESSAGE_MAGIC: Final = b"Bitcoin Signed Message:\n"

_FIELDS: Final = ("op_key", "agent", "scope", "issued_at", "expires_at")
_FIELD_BITS: Final = {"scope": 8, "issued_at": 64, "expires_at": 64}
_DIGITS: Final = re.compile(r"[0-9]+")
_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})*")
# What Go's strings.TrimSpace removes (unicode.IsSpace); Python's str.strip() removes more.
_GO_SPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)


# -- the signed text ---------------------------------------------------------------------


def delegation_message(
    chain: Chain,
    op_pub: VerifyKey | bytes,
    agent: Aid,
    scope: int,
    issued_at: int,
    expires_at: int,
) -> str:
    """The exact text a wallet signs to delegate ``agent`` to the Ed25519 key ``op_pub``.

    Args:
        chain: ``"ethereum"`` or ``"paralism"``; must match ``agent``'s version byte.
        op_pub: the 32-byte operational public key.
        agent: the owner's AID (0xA3 for Ethereum, 0xA2 for Paralism).
        scope: the delegation scope (1 = network operations).
        issued_at: Unix seconds.
        expires_at: Unix seconds, 0 = never.

    Returns:
        The message, each line ending in ``\\n`` (the last one too).

    Raises:
        DecodeError: ``op_pub`` is not 32 bytes.
        UsageError: unknown chain, an AID of another kind, or a number out of range.
    """
    raw_op = _op_pub_bytes(op_pub)
    _check_agent(chain, agent)
    _check_numbers(scope=scope, issued_at=issued_at, expires_at=expires_at)
    return (
        "A2AL Delegation Authorization\n"
        f"Authorize this Ed25519 key to operate on behalf of your {_CHAIN_TITLE[chain]} address.\n"
        "\n"
        f"op_key:{raw_op.hex()}\n"
        f"agent:{agent}\n"
        f"scope:{scope}\n"
        f"issued_at:{issued_at}\n"
        f"expires_at:{expires_at}\n"
    )


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


# -- verification ------------------------------------------------------------------------


def verify_blockchain_delegation(proof: DelegationProof) -> None:
    """Check the wallet signature and the signed text of an Ethereum or Paralism proof.

    This is the blockchain half of :meth:`DelegationProof.verify` (which checks the op key
    and AID arguments, the scope and the expiry first); it does not look at the time.

    Raises:
        VerificationError: the signature is malformed or made by another wallet than the
            agent's, a line of the message is missing or malformed, or the message's
            op_key/agent/scope/issued_at/expires_at differ from the proof's fields.
        ExtraMissing: the ``web3`` extra is not installed.
    """
    version = proof.agent.version
    if version == AidVersion.ETHEREUM:
        title, signer = "Ethereum", ethereum_signer(_message_bytes(proof), proof.signature)
    elif version == AidVersion.PARALISM:
        title, signer = "Paralism", paralism_signer(_message_bytes(proof), proof.signature)
    else:
        raise VerificationError(
            f"delegation proof: AID version 0x{version:02x} is not a blockchain owner"
        )
    if signer != proof.agent:
        raise VerificationError(
            f"{title} delegation proof: signed by {signer}, not by the agent {proof.agent}"
        )
    _check_message(proof)


def _message_bytes(proof: DelegationProof) -> bytes:
    try:
        return proof.message.encode("utf-8")
    except UnicodeEncodeError:
        raise VerificationError("delegation proof: message is not valid UTF-8") from None


def _check_message(proof: DelegationProof) -> None:
    """Compare the message's key lines with the proof's fields (Go's order and rules)."""
    values = _parse_message(proof.message)
    op_text = values["op_key"]
    op_hex = op_text.removeprefix("0x").removeprefix("0X")  # Go: TrimPrefix 0x, then 0X
    if not _HEX.fullmatch(op_hex):
        raise VerificationError(f"delegation proof message: op_key {op_text!r} is not hex")
    op_key = bytes.fromhex(op_hex)
    if op_key != proof.op_pub:
        raise VerificationError(
            f"delegation proof message: op_key {op_key.hex()} is not the proof's op_pub "
            f"{proof.op_pub.hex()}"
        )
    agent_text = values["agent"]
    try:
        agent = Aid.from_str(agent_text)
    except DecodeError as exc:
        raise VerificationError(
            f"delegation proof message: agent {agent_text!r} is not an AID ({exc})"
        ) from exc
    if agent != proof.agent:
        raise VerificationError(
            f"delegation proof message: agent {agent} is not the proof's agent {proof.agent}"
        )
    for name, proof_value in (
        ("scope", proof.scope),
        ("issued_at", proof.issued_at),
        ("expires_at", proof.expires_at),
    ):
        text = values[name]
        if int(text) != proof_value:
            raise VerificationError(
                f"delegation proof message: {name} {text} differs from the proof's {proof_value}"
            )


def _parse_message(message: str) -> dict[str, str]:
    """The five ``key:value`` lines, parsed as a2ald's ParseDelegationMessageFields does.

    Lines are split on ``\\n`` and trimmed; lines without ``:`` are skipped; key and value
    are split at the first ``:`` and trimmed; a later duplicate wins; numbers must be plain
    decimal and fit uint8 (scope) or uint64 (times), checked as each line is read.
    """
    values: dict[str, str] = {}
    for raw_line in message.split("\n"):
        line = raw_line.strip(_GO_SPACE)
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(_GO_SPACE), value.strip(_GO_SPACE)
        if key not in _FIELDS:
            continue
        bits = _FIELD_BITS.get(key)
        if bits is not None and not (_DIGITS.fullmatch(value) and int(value) < 1 << bits):
            raise VerificationError(
                f"delegation proof message: {key} {value!r} is not a decimal uint{bits}"
            )
        values[key] = value
    missing = [k for k in _FIELDS if k not in values]
    if missing:
        raise VerificationError(
            f"delegation proof message: missing line(s) {', '.join(m + ':' for m in missing)}"
        )
    return values


# -- signing (tests, demos, local wallets) -----------------------------------------------


def sign_ethereum_delegation(
    eth_private_key: bytes,
    op_pub: VerifyKey | bytes,
    *,
    issued_at: int,
    expires_at: int = 0,
    scope: int = SCOPE_NETWORK_OPS,
) -> DelegationProof:
    """Delegate the Ethereum address of ``eth_private_key`` to ``op_pub`` (EIP-191 personal_sign).

    Real wallets sign :func:`delegation_message` themselves; this helper is for tests,
    demos and keys held locally. The signature's v byte is 27 or 28, as a2ald writes it.

    Args:
        eth_private_key: the 32-byte secp256k1 private key of the owner.
        op_pub: the Ed25519 operational public key to authorise.
        issued_at: Unix seconds.
        expires_at: Unix seconds, 0 = never.
        scope: 1 = network operations.

    Raises:
        DecodeError: a key of the wrong size or not a valid secp256k1 private key.
        UsageError: a number out of range.
        ExtraMissing: the ``web3`` extra is not installed.
    """
    agent = ethereum_aid(eth_private_key)
    message = delegation_message("ethereum", op_pub, agent, scope, issued_at, expires_at)
    return DelegationProof(
        agent=agent,
        op_pub=_op_pub_bytes(op_pub),
        issued_at=issued_at,
        expires_at=expires_at,
        scope=scope,
        signature=eth_personal_sign(eth_private_key, message),
        message=message,
    )


def sign_paralism_delegation(
    btc_private_key: bytes,
    op_pub: VerifyKey | bytes,
    *,
    compressed: bool = True,
    issued_at: int,
    expires_at: int = 0,
    scope: int = SCOPE_NETWORK_OPS,
) -> DelegationProof:
    """Delegate the Paralism address of ``btc_private_key`` to ``op_pub`` (Bitcoin signmessage).

    Args:
        btc_private_key: the 32-byte secp256k1 private key of the owner.
        op_pub: the Ed25519 operational public key to authorise.
        compressed: whether the owner's address hashes the compressed public key (as a2ald
            and modern wallets do) or the uncompressed one; sets the header byte to 31-34
            or 27-30.
        issued_at: Unix seconds.
        expires_at: Unix seconds, 0 = never.
        scope: 1 = network operations.

    Raises:
        DecodeError: a key of the wrong size or not a valid secp256k1 private key.
        UsageError: a number out of range.
        ExtraMissing: the ``web3`` extra is not installed.
    """
    agent = paralism_aid(btc_private_key, compressed=compressed)
    message = delegation_message("paralism", op_pub, agent, scope, issued_at, expires_at)
    return DelegationProof(
        agent=agent,
        op_pub=_op_pub_bytes(op_pub),
        issued_at=issued_at,
        expires_at=expires_at,
        scope=scope,
        signature=btc_signmessage(btc_private_key, message, compressed=compressed),
        message=message,
    )


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


def _op_pub_bytes(op_pub: VerifyKey | bytes) -> bytes:
    raw = bytes(op_pub)
    if len(raw) != 32:
        raise DecodeError(f"Ed25519 operational key must be 32 bytes, got {len(raw)}")
    return raw


def _check_agent(chain: Chain, agent: Aid) -> None:
    want = _CHAIN_VERSION.get(chain)
    if want is None:
        raise UsageError(f"unknown chain {chain!r}: expected 'ethereum' or 'paralism'")
    if agent.version != want:
        raise UsageError(
            f"{_CHAIN_TITLE[chain]} delegation needs a 0x{want:02x} AID, got 0x{agent.version:02x}"
        )


def _check_numbers(**numbers: int) -> None:
    for name, value in numbers.items():
        bits = _FIELD_BITS[name]
        if type(value) is not int or not 0 <= value < 1 << bits:
            raise UsageError(f"{name} must be an integer in 0..2**{bits}-1, got {value!r}")


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
