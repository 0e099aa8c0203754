"""The certificates we present on QUIC, built exactly as a2ald builds them (a2al-wire §5.1). Core.

Both sides of an A2AL QUIC connection present a self-signed Ed25519 certificate generated
at start-up for each local identity; both QUIC stacks (:mod:`~a2al_mcp.transport.tls` for
aioquic, :mod:`~a2al_mcp.transport.tls_qh3` for qh3) use the ones made here:

* :func:`make_certificate` builds the certificate as a2ald does (X.509 v3, random serial
  below 2^127, ``O=a2al``, valid from ``now - 1 h`` to ``now + 365 d``, KeyUsage
  digitalSignature (critical), ExtKeyUsage serverAuth + clientAuth, and for delegated
  identities the extension :data:`DELEGATION_OID`, see :class:`DelegationExtension`);
* :class:`CertificateStore` holds one certificate per local identity and picks the one a
  client asked for by SNI (the expected AID's display string).

How a peer's certificate is checked is :mod:`~a2al_mcp.transport.peer_identity`'s. This
module is sans-I/O: wall-clock time comes in as arguments, randomness through an injected
:class:`~a2al_mcp._random.Rng`.
"""

from __future__ import annotations

import datetime
import functools
from typing import TYPE_CHECKING, Final, Self

from .. import _cbor
from .._dataclass import dataclass
from ..errors import DecodeError, UsageError
from ..identity import Aid, DelegationProof, Identity

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from .._random import Rng

    DELEGATION_OID: x509.ObjectIdentifier

__all__ = [
    "CERT_BACKDATE_S",
    "CERT_LIFETIME_S",
    "DELEGATION_OID",
    "CertificateStore",
    "DelegationExtension",
    "LocalCertificate",
    "make_certificate",
]

_DELEGATION_OID_DOTTED: Final = "1.3.6.1.4.1.999999.1"
"""The OID of the certificate extension carrying ``{1: agent AID, 2: DelegationProof}``
(:data:`DELEGATION_OID` is it as an ``x509.ObjectIdentifier``)."""

CERT_BACKDATE_S: Final = 3600
"""NotBefore is this many seconds before the time the certificate is made."""

CERT_LIFETIME_S: Final = 365 * 24 * 3600
"""NotAfter is this many seconds after the time the certificate is made."""
_SERIAL_BITS: Final = 127


# cryptography's x509 package (with the email, calendar and locale modules it loads: ~60 ms
# and ~1.5 MiB here) is imported when a certificate is first built or read, i.e. with the
# first QUIC connection, not when the node starts (its certificates are drawn at start and
# built on first use: LocalCertificate).


@functools.cache
def _delegation_oid() -> x509.ObjectIdentifier:
    from cryptography import x509

    return x509.ObjectIdentifier(_DELEGATION_OID_DOTTED)


def __getattr__(name: str) -> object:
    """``DELEGATION_OID``, made on first use (PEP 562): see :func:`_delegation_oid`."""
    if name == "DELEGATION_OID":
        return _delegation_oid()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------ delegation extension


def _der_octet_string(content: bytes) -> bytes:
    """DER OCTET STRING: tag 0x04, minimal definite length, content."""
    n = len(content)
    if n < 0x80:
        return bytes([0x04, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x04, 0x80 | len(size)]) + size + content


def _der_octet_string_content(data: bytes) -> bytes:
    """The content of one DER OCTET STRING that spans all of ``data``.

    Raises:
        DecodeError: not an OCTET STRING, a non-minimal or indefinite length, or
            truncated/trailing bytes.
    """
    if len(data) < 2 or data[0] != 0x04:
        raise DecodeError("delegation extension: expected a DER OCTET STRING")
    first = data[1]
    if first < 0x80:
        n, pos = first, 2
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            raise DecodeError("delegation extension: bad DER length")
        n, pos = int.from_bytes(data[2 : 2 + count], "big"), 2 + count
        if n < 0x80 or data[2] == 0:
            raise DecodeError("delegation extension: non-minimal DER length")
    if len(data) != pos + n:
        raise DecodeError("delegation extension: DER length does not match the data")
    return data[pos:]


@dataclass(frozen=True, slots=True)
class DelegationExtension:
    """The delegation extension of a delegated identity's certificate (a2ald's format).

    extnValue = DER OCTET STRING whose content is CBOR
    ``{1: agent AID (bstr 21), 2: DelegationProof CBOR (bstr)}``, keys in order 1, 2.
    """

    agent: Aid
    """The AID the certificate's (operational) key claims to act as."""
    proof: DelegationProof
    """The owner's proof authorising the certificate key for ``agent``."""

    def to_bytes(self) -> bytes:
        """The extnValue content: a DER OCTET STRING around the CBOR map."""
        return _der_octet_string(_cbor.dumps({1: bytes(self.agent), 2: self.proof.to_bytes()}))

    @classmethod
    def from_bytes(cls, value: bytes) -> Self:
        """Parse an extnValue content (lenient about unknown CBOR keys, as Go is).

        Raises:
            DecodeError: malformed DER, CBOR, AID or delegation proof.
        """
        f = _cbor.loads_map(_der_octet_string_content(value), "delegation extension")
        agent = Aid(f.bytes_(1, size=21))
        return cls(agent, DelegationProof.from_bytes(f.bytes_(2)))

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> Self | None:
        """The certificate's delegation extension, or None if it has none.

        Raises:
            DecodeError: the extensions, or this extension, do not parse.
        """
        from cryptography import x509

        try:
            ext = cert.extensions.get_extension_for_oid(_delegation_oid())
        except x509.ExtensionNotFound:
            return None
        except ValueError as exc:  # duplicate or malformed extensions
            raise DecodeError(f"certificate extensions do not parse: {exc}") from exc
        value = ext.value
        if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover - private OID
            raise DecodeError("delegation extension: unexpected extension type")
        return cls.from_bytes(value.value)


# ------------------------------------------------------------------------ certificates


def _utc(ts: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)


def _draw_serial(rng: Rng) -> int:
    """A certificate serial number as a2ald draws it: 127 random bits, 0 taken as 1 (X.509
    serials are positive; Go may draw 0, p = 2^-127)."""
    return (int.from_bytes(rng.bytes(16), "big") & ((1 << _SERIAL_BITS) - 1)) or 1


def _build_certificate(
    identity: Identity, *, serial: int, start: int
) -> tuple[x509.Certificate, Ed25519PrivateKey]:
    """The self-signed certificate of ``identity`` with ``serial``, valid from
    ``start - 1 h`` to ``start + 365 d`` (see :func:`make_certificate`). Deterministic:
    Ed25519 signatures are, so the same inputs give the same DER."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    private_key = Ed25519PrivateKey.from_private_bytes(identity.key.seed)
    org_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "a2al")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(org_name)
        .issuer_name(org_name)
        .public_key(private_key.public_key())
        .serial_number(serial)
        .not_valid_before(_utc(start - CERT_BACKDATE_S))
        .not_valid_after(_utc(start + CERT_LIFETIME_S))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if identity.delegation is not None:
        ext = DelegationExtension(identity.aid, identity.delegation)
        builder = builder.add_extension(
            x509.UnrecognizedExtension(_delegation_oid(), ext.to_bytes()), critical=False
        )
    return builder.sign(private_key, algorithm=None), private_key


def make_certificate(
    identity: Identity, *, now: float, rng: Rng
) -> tuple[x509.Certificate, Ed25519PrivateKey]:
    """Build the self-signed certificate of ``identity`` as a2ald does (a2al-wire §5.1).

    Args:
        identity: the local identity; it signs with ``identity.key`` (for a delegated
            identity the operational key) and a delegated identity's certificate carries
            its proof in the :data:`DELEGATION_OID` extension.
        now: Unix time in seconds; the certificate is valid from ``now - 1 h`` (whole
            seconds) to ``now + 365 d``.
        rng: draws the 127-bit serial number.

    Returns:
        The certificate and the Ed25519 private key that goes with it.
    """
    return _build_certificate(identity, serial=_draw_serial(rng), start=int(now))


class LocalCertificate:
    """A local identity with the certificate and key it presents on QUIC.

    :meth:`create` draws the serial number and reads the time at once but builds the
    certificate when it is first used (the first QUIC connection), so a node that makes
    none never loads cryptography's x509; the DER is the same either way."""

    __slots__ = ("_built", "_serial", "_start", "identity")

    identity: Identity
    """The identity the certificate speaks for."""
    _built: tuple[x509.Certificate, Ed25519PrivateKey] | None

    def __init__(
        self,
        identity: Identity,
        certificate: x509.Certificate | None = None,
        private_key: Ed25519PrivateKey | None = None,
        *,
        serial: int = 0,
        start: int = 0,
    ) -> None:
        """Either a ready ``certificate`` and ``private_key``, or neither: then the
        certificate is built on first use with ``serial`` (> 0), valid from ``start``
        (Unix seconds) as :func:`make_certificate` builds it.

        Raises:
            UsageError: one of ``certificate``/``private_key`` without the other, or
                neither and no positive ``serial``.
        """
        if (certificate is None) != (private_key is None):
            raise UsageError("a local certificate needs both the certificate and its key")
        self.identity = identity
        self._built = None
        if certificate is not None and private_key is not None:
            self._built = (certificate, private_key)
        elif serial <= 0:
            raise UsageError("a certificate built on first use needs a positive serial")
        self._serial = serial
        self._start = start

    @classmethod
    def create(cls, identity: Identity, *, now: float, rng: Rng) -> Self:
        """The certificate of ``identity`` (see :func:`make_certificate`): serial drawn now,
        valid from ``now``, built on first use."""
        return cls(identity, serial=_draw_serial(rng), start=int(now))

    def _pair(self) -> tuple[x509.Certificate, Ed25519PrivateKey]:
        if self._built is None:
            self._built = _build_certificate(self.identity, serial=self._serial, start=self._start)
        return self._built

    @property
    def certificate(self) -> x509.Certificate:
        """Its self-signed certificate (:func:`make_certificate`)."""
        return self._pair()[0]

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The key that signs the TLS CertificateVerify."""
        return self._pair()[1]

    @property
    def aid(self) -> Aid:
        """The AID this certificate speaks for."""
        return self.identity.aid


class CertificateStore:
    """One certificate per local identity, with a default (the node identity).

    A server presents the certificate of the identity named by the client's SNI and
    falls back to the default when the SNI is absent, unknown or not an AID. Certificates
    are made once per process (a2ald regenerates them every run).
    """

    __slots__ = ("_by_aid", "_default")

    def __init__(self, default: LocalCertificate) -> None:
        self._default = default
        self._by_aid: dict[Aid, LocalCertificate] = {default.aid: default}

    @classmethod
    def generate(cls, default: Identity, *others: Identity, now: float, rng: Rng) -> Self:
        """A store with fresh certificates for ``default`` and ``others``."""
        store = cls(LocalCertificate.create(default, now=now, rng=rng))
        for identity in others:
            store.add(LocalCertificate.create(identity, now=now, rng=rng))
        return store

    @property
    def default(self) -> LocalCertificate:
        """The certificate presented when the SNI names no local identity."""
        return self._default

    def add(self, local: LocalCertificate) -> None:
        """Add or replace the certificate of ``local.aid`` (replacing the default's too)."""
        self._by_aid[local.aid] = local
        if local.aid == self._default.aid:
            self._default = local

    def remove(self, aid: Aid) -> None:
        """Forget the certificate of ``aid`` (nothing happens if there is none).

        Raises:
            UsageError: ``aid`` is the default identity.
        """
        if aid == self._default.aid:
            raise UsageError("cannot remove the default identity's certificate")
        self._by_aid.pop(aid, None)

    def get(self, aid: Aid) -> LocalCertificate | None:
        """The certificate of ``aid``, or None."""
        return self._by_aid.get(aid)

    def select(self, server_name: str | None) -> LocalCertificate:
        """The certificate for a ClientHello's SNI: the named identity, else the default."""
        if not server_name:
            return self._default
        try:
            aid = Aid.from_str(server_name)
        except DecodeError:
            return self._default
        return self._by_aid.get(aid, self._default)

    def aids(self) -> tuple[Aid, ...]:
        """The AIDs with a certificate, the default first."""
        rest = sorted(aid for aid in self._by_aid if aid != self._default.aid)
        return (self._default.aid, *rest)

    def __contains__(self, aid: object) -> bool:
        return aid in self._by_aid

    def __len__(self) -> int:
        return len(self._by_aid)
