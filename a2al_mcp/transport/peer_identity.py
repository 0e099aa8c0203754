"""Who the peer of a QUIC connection proved to be: its leaf certificate checked (§5.1). Core.

Only the leaf public key and the optional delegation extension
(:class:`~a2al_mcp.transport.certificates.DelegationExtension`) are ever looked at:
:func:`identify_server` is the client's check of the server (pinned to the AID it dialled),
:func:`identify_client` the server's check of the client. Unlike a2ald, a server here
verifies a client's delegation proof before believing the AID it claims. Both QUIC stacks
(:mod:`~a2al_mcp.transport.tls`, :mod:`~a2al_mcp.transport.tls_qh3`) run these checks inside
the handshake. Sans-I/O: wall-clock time comes in as an argument.
"""

from __future__ import annotations

import dataclasses

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import DecodeError, VerificationError
from ..identity import Aid, DelegationProof
from .certificates import DelegationExtension

__all__ = ["PeerIdentity", "claimed_aid", "identify_client", "identify_server"]


@dataclasses.dataclass(frozen=True, slots=True)
class PeerIdentity:
    """Who the peer of a QUIC connection proved to be."""

    aid: Aid
    """The AID the peer acts as."""
    public_key: bytes
    """The raw Ed25519 key of its certificate (32 bytes; the operational key if delegated)."""
    delegation: DelegationProof | None
    """The verified proof linking ``public_key`` to ``aid``; None if ``aid`` derives from it."""


def _leaf_key(cert: x509.Certificate) -> bytes:
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise VerificationError(f"peer certificate key does not parse: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise VerificationError("peer certificate key is not Ed25519")
    return key.public_bytes_raw()


def _extension(cert: x509.Certificate, who: str) -> DelegationExtension | None:
    try:
        return DelegationExtension.from_certificate(cert)
    except DecodeError as exc:
        raise VerificationError(f"{who} certificate: {exc}") from exc


def identify_server(cert: x509.Certificate, expected: Aid, now: float) -> PeerIdentity:
    """The client's check of the server's leaf certificate, pinned to ``expected``.

    Accept when the leaf Ed25519 key derives ``expected``; otherwise require the
    delegation extension to name ``expected`` and carry a proof for the leaf key that is
    valid at ``now`` (a2ald's ``verifyPeerEd25519``; we also require the proof's own
    agent to be ``expected``, which a2ald leaves unchecked).

    Args:
        cert: the server's leaf certificate.
        expected: the AID the client dialled.
        now: Unix time in seconds, for the proof's expiry.

    Raises:
        VerificationError: the certificate does not prove ``expected`` (ExtraMissing when
            a blockchain owner's proof needs the ``web3`` extra).
    """
    key = _leaf_key(cert)
    if Aid.from_public_key(key) == expected:
        return PeerIdentity(expected, key, None)
    ext = _extension(cert, "server")
    if ext is None:
        raise VerificationError(
            f"server certificate is for {Aid.from_public_key(key)}, not {expected}, "
            "and carries no delegation"
        )
    if ext.agent != expected:
        raise VerificationError(f"server certificate delegation is for {ext.agent}, not {expected}")
    ext.proof.verify(now, op_pub=key, agent=expected)
    return PeerIdentity(expected, key, ext.proof)


def identify_client(cert: x509.Certificate, now: float) -> PeerIdentity:
    """The server's check of a client's leaf certificate.

    The leaf must be Ed25519. With a delegation extension the caller is its agent AID,
    and the proof **must** verify for the leaf key at ``now`` (a2ald takes the claim
    unverified); without one the caller is the AID of the leaf key.

    Args:
        cert: the client's leaf certificate.
        now: Unix time in seconds, for the proof's expiry.

    Raises:
        VerificationError: not Ed25519, or a delegation extension that is malformed or
            does not verify.
    """
    key = _leaf_key(cert)
    ext = _extension(cert, "client")
    if ext is None:
        return PeerIdentity(Aid.from_public_key(key), key, None)
    ext.proof.verify(now, op_pub=key, agent=ext.agent)
    return PeerIdentity(ext.agent, key, ext.proof)


def claimed_aid(cert: x509.Certificate) -> Aid:
    """The AID one of our own certificates speaks for (no proof check)."""
    ext = _extension(cert, "local")
    return ext.agent if ext is not None else Aid.from_public_key(_leaf_key(cert))
