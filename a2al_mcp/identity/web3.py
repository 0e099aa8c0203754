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

This module owns the delegation text and its checks; the digests, owner addresses and
secp256k1 signatures it uses live in :mod:`.wallet_signatures` (re-exported here).
"""

from __future__ import annotations

import re
from typing import Final, Literal

from ..errors import DecodeError, UsageError, VerificationError
from .aid import Aid, AidVersion
from .delegation import SCOPE_NETWORK_OPS, DelegationProof
from .keys import VerifyKey
from .wallet_signatures import (
    btc_signmessage,
    eip191_hash,
    eth_personal_sign,
    ethereum_aid,
    ethereum_signer,
    hash160,
    paralism_aid,
    paralism_signer,
    signmessage_hash,
)

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

_CHAIN_VERSION: Final = {"ethereum": AidVersion.ETHEREUM, "paralism": AidVersion.PARALISM}
_CHAIN_TITLE: Final = {"ethereum": "Ethereum", "paralism": "Paralism"}

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
