"""TLS for the QUIC data plane: certificates, peer-AID checks, aioquic glue (a2al-wire §5.1). Core.

Both sides of an A2AL QUIC connection present a self-signed Ed25519 certificate generated
at start-up for each local identity. Only the leaf public key and the optional delegation
extension are ever looked at:

* :func:`make_certificate` builds the certificate exactly as a2ald does (X.509 v3, random
  serial below 2^127, ``O=a2al``, valid from ``now - 1 h`` to ``now + 365 d``, KeyUsage
  digitalSignature (critical), ExtKeyUsage serverAuth + clientAuth, and for delegated
  identities the extension :data:`DELEGATION_OID`, see :class:`DelegationExtension`);
* :func:`identify_server` is the client's check of the server (pinned to the AID it
  dialled), :func:`identify_client` the server's check of the client. Unlike a2ald, a
  server here verifies a client's delegation proof before believing the AID it claims;
* :class:`CertificateStore` holds one certificate per local identity and picks the one a
  client asked for by SNI (the expected AID's display string);
* :func:`client_configuration` / :func:`server_configuration` build the
  ``QuicConfiguration`` and :class:`A2ALQuicConnection` is a ``QuicConnection`` that
  requests, requires and verifies certificates during the handshake.

This module is sans-I/O: wall-clock time comes in as arguments (or a ``now_wall``
callable), randomness through an injected :class:`~a2al_mcp._random.Rng`.

It is the **only** module allowed to touch aioquic private names (checked against
aioquic 1.7.2; the tests cover every one of them):

* ``QuicConnection._initialize`` — overridden to swap our ``tls.Context`` subclass in
  right after aioquic builds the context (it is rebuilt on Retry and version negotiation,
  and so swapped again);
* ``QuicConnection._handshake_confirmed`` — read: a client is confirmed only once the
  server's HANDSHAKE_DONE arrived, i.e. after the server checked the client certificate;
* ``tls.Context._request_client_certificate`` — set on servers to send CertificateRequest
  (aioquic has no public switch for it);
* ``tls.Context._peer_certificate`` — read: the peer's leaf certificate;
* ``tls.Context._receive_buffer`` — read: the length of a partial handshake message
  (:data:`MAX_HANDSHAKE_MESSAGE`);
* ``tls.Context._server_handle_hello`` — overridden to peek at the ClientHello's SNI and
  choose the certificate before aioquic answers (aioquic keeps no SNI);
* ``tls.Context._server_handle_certificate`` — overridden to refuse an empty client
  Certificate (aioquic would carry on unauthenticated);
* ``tls.Context._server_handle_certificate_verify`` and
  ``tls.Context._client_handle_certificate_verify`` — overridden to check the peer's
  identity right after aioquic checked the CertificateVerify signature (possession);
* ``QuicConnection._streams`` and ``QuicStreamSender._buffer_start`` / ``_buffer_stop`` —
  read by :func:`pending_send_bytes`, because ``send_stream_data`` buffers without limit
  and aioquic exposes no send-buffer level.

Also used: the private module ``aioquic._buffer`` (for ``Buffer``, which
``aioquic.buffer`` re-exports only implicitly), and the public but undocumented
``tls.pull_client_hello``, ``tls.pull_certificate`` and ``tls.Context.certificate`` /
``certificate_private_key``.
"""

from __future__ import annotations

import dataclasses
import datetime
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol, Self, cast

from aioquic import tls
from aioquic._buffer import Buffer  # aioquic.buffer re-exports it implicitly (mypy)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .. import _cbor
from .._containment import containable
from ..errors import DecodeError, UsageError, VerificationError
from ..identity import Aid, DelegationProof, Identity
from ..protocol.timers import QUIC_IDLE_TIMEOUT_S

if TYPE_CHECKING:
    from .._random import Rng

__all__ = [
    "ALPN",
    "CERT_BACKDATE_S",
    "CERT_LIFETIME_S",
    "DELEGATION_OID",
    "IDLE_TIMEOUT_S",
    "MAX_DATAGRAM_SIZE",
    "MAX_HANDSHAKE_MESSAGE",
    "A2ALQuicConnection",
    "CertificateStore",
    "DelegationExtension",
    "LocalCertificate",
    "PeerIdentity",
    "client_configuration",
    "identify_client",
    "identify_server",
    "make_certificate",
    "pending_send_bytes",
    "server_configuration",
]

ALPN: Final = "a2al-quic-1"
"""The one ALPN protocol of the A2AL data plane; both sides must offer it."""

DELEGATION_OID: Final = x509.ObjectIdentifier("1.3.6.1.4.1.999999.1")
"""The certificate extension carrying ``{1: agent AID, 2: DelegationProof}``."""

CERT_BACKDATE_S: Final = 3600
"""NotBefore is this many seconds before the time the certificate is made."""

CERT_LIFETIME_S: Final = 365 * 24 * 3600
"""NotAfter is this many seconds after the time the certificate is made."""

IDLE_TIMEOUT_S: Final = QUIC_IDLE_TIMEOUT_S
"""a2ald's QUIC max idle timeout (§5.1; ``quic.idle_timeout_s`` tunes it per node)."""

MAX_DATAGRAM_SIZE: Final = 1200
"""QUIC datagram size: the smallest every path must carry (RFC 9000 §14)."""

MAX_DATA: Final = 32 * 1024 * 1024
"""Connection flow-control window (aioquic's 1 MiB default halves bulk throughput)."""

MAX_STREAM_DATA: Final = 8 * 1024 * 1024
"""Per-stream flow-control window."""

MAX_HANDSHAKE_MESSAGE: Final = 262_144
"""Longest TLS handshake message accepted from a peer (Go's crypto/tls, which a2ald uses,
takes Certificate messages up to 256 KiB; an A2AL certificate is about 500 bytes). Longer
ones are refused with unexpected_message before they are buffered whole."""

_SERIAL_BITS: Final = 127
_ORG_NAME: Final = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "a2al")])
_PEEK_ERRORS: Final = (ValueError, tls.Alert, AssertionError)
"""What aioquic's TLS parsers raise on garbage: BufferReadError is a ValueError, and
AssertionError means a wrong message type."""


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


@dataclasses.dataclass(frozen=True, slots=True)
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
        try:
            ext = cert.extensions.get_extension_for_oid(DELEGATION_OID)
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
    private_key = Ed25519PrivateKey.from_private_bytes(identity.key.seed)
    serial = int.from_bytes(rng.bytes(16), "big") & ((1 << _SERIAL_BITS) - 1)
    start = int(now)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_ORG_NAME)
        .issuer_name(_ORG_NAME)
        .public_key(private_key.public_key())
        .serial_number(serial or 1)  # X.509 serials are positive; Go may draw 0 (p = 2^-127)
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
            x509.UnrecognizedExtension(DELEGATION_OID, ext.to_bytes()), critical=False
        )
    return builder.sign(private_key, algorithm=None), private_key


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class LocalCertificate:
    """A local identity with the certificate and key it presents on QUIC."""

    identity: Identity
    """The identity the certificate speaks for."""
    certificate: x509.Certificate
    """Its self-signed certificate (:func:`make_certificate`)."""
    private_key: Ed25519PrivateKey
    """The key that signs the TLS CertificateVerify."""

    @classmethod
    def create(cls, identity: Identity, *, now: float, rng: Rng) -> Self:
        """Make the certificate of ``identity`` (see :func:`make_certificate`)."""
        cert, key = make_certificate(identity, now=now, rng=rng)
        return cls(identity, cert, key)

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


# ------------------------------------------------------------------------ peer checks


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


def _claimed_aid(cert: x509.Certificate) -> Aid:
    """The AID one of our own certificates speaks for (no proof check)."""
    ext = _extension(cert, "local")
    return ext.agent if ext is not None else Aid.from_public_key(_leaf_key(cert))


# ------------------------------------------------------------------------ configurations


def client_configuration(
    local: LocalCertificate | None,
    expected: Aid,
    *,
    idle_timeout: float = IDLE_TIMEOUT_S,
    max_datagram_size: int = MAX_DATAGRAM_SIZE,
) -> QuicConfiguration:
    """The QUIC configuration for dialling ``expected`` as ``local``.

    SNI is ``str(expected)``; chain validation is off (:class:`A2ALQuicConnection` pins
    the AID instead); no session tickets (a resumed session shows no certificate).

    Args:
        local: the certificate to present (a2ald requires one); None presents nothing,
            which every A2AL server refuses (useful in tests only).
        expected: the AID the server must prove.
        idle_timeout: QUIC max idle timeout in seconds.
        max_datagram_size: largest QUIC datagram sent.
    """
    return QuicConfiguration(
        is_client=True,
        alpn_protocols=[ALPN],
        server_name=str(expected),
        certificate=None if local is None else local.certificate,
        private_key=None if local is None else local.private_key,
        verify_mode=ssl.CERT_NONE,
        idle_timeout=idle_timeout,
        max_datagram_size=max_datagram_size,
        max_data=MAX_DATA,
        max_stream_data=MAX_STREAM_DATA,
    )


def server_configuration(
    store: CertificateStore,
    *,
    idle_timeout: float = IDLE_TIMEOUT_S,
    max_datagram_size: int = MAX_DATAGRAM_SIZE,
) -> QuicConfiguration:
    """The QUIC configuration for accepting connections for the identities in ``store``.

    It carries the default certificate; :class:`A2ALQuicConnection` swaps in the one the
    client's SNI names.
    """
    return QuicConfiguration(
        is_client=False,
        alpn_protocols=[ALPN],
        certificate=store.default.certificate,
        private_key=store.default.private_key,
        idle_timeout=idle_timeout,
        max_datagram_size=max_datagram_size,
        max_data=MAX_DATA,
        max_stream_data=MAX_STREAM_DATA,
    )


# ------------------------------------------------------------------------ aioquic glue


def _peek_server_name(input_buf: Buffer) -> str | None:
    """The SNI of a ClientHello, without consuming ``input_buf`` (None if absent/garbled)."""
    try:
        hello = tls.pull_client_hello(Buffer(data=input_buf.data_slice(0, input_buf.capacity)))
    except _PEEK_ERRORS:
        return None  # aioquic's own parse reports the error
    return hello.server_name


def _peek_certificate_count(input_buf: Buffer) -> int | None:
    """How many certificates a Certificate message holds (None if garbled)."""
    try:
        cert = tls.pull_certificate(Buffer(data=input_buf.data_slice(0, input_buf.capacity)))
    except _PEEK_ERRORS:
        return None
    return len(cert.certificates)


class _A2ALTlsContext(tls.Context):
    """aioquic's TLS context with A2AL's certificate choice and peer checks.

    Never constructed: :meth:`A2ALQuicConnection._initialize` changes the class of the
    context aioquic built and sets ``a2al_conn``.
    """

    a2al_conn: A2ALQuicConnection

    def handle_message(self, input_data: bytes, output_buf: dict[tls.Epoch, Buffer]) -> None:
        """aioquic's, failing only with an alert (sent in a CONNECTION_CLOSE): aioquic
        alerts on most garbage itself; anything else a hostile handshake message makes it
        raise would escape ``receive_datagram`` and leave the connection half-open."""
        try:
            super().handle_message(input_data, output_buf)
        except tls.Alert:
            raise
        except BaseException as exc:
            if not containable(exc):
                raise
            if isinstance(exc, ValueError):
                raise tls.AlertDecodeError(f"Could not parse TLS message: {exc!r}") from exc
            raise tls.AlertHandshakeFailure(f"handshake failed: {type(exc).__name__}") from exc
        pending = self._receive_buffer
        if len(pending) >= 4 and int.from_bytes(pending[1:4], "big") > MAX_HANDSHAKE_MESSAGE:
            raise tls.AlertUnexpectedMessage("handshake message too long")

    def _client_handle_certificate_verify(self, input_buf: Buffer) -> None:
        super()._client_handle_certificate_verify(input_buf)  # signature: key possession
        self.a2al_conn.a2al_verify_peer(self._peer_certificate)

    def _server_handle_hello(
        self, input_buf: Buffer, initial_buf: Buffer, handshake_buf: Buffer
    ) -> None:
        self.a2al_conn.a2al_choose_certificate(self, _peek_server_name(input_buf))
        super()._server_handle_hello(input_buf, initial_buf, handshake_buf)

    def _server_handle_certificate(self, input_buf: Buffer) -> None:
        if _peek_certificate_count(input_buf) == 0:
            raise tls.AlertBadCertificate("client certificate required")
        super()._server_handle_certificate(input_buf)

    def _server_handle_certificate_verify(self, input_buf: Buffer) -> None:
        super()._server_handle_certificate_verify(input_buf)  # signature: key possession
        self.a2al_conn.a2al_verify_peer(self._peer_certificate)


class A2ALQuicConnection(QuicConnection):
    """A ``QuicConnection`` with A2AL mutual authentication.

    A client checks that the server proves ``expected`` (:func:`identify_server`); a
    server requests and requires a client certificate, checks it
    (:func:`identify_client`) and presents the certificate the client's SNI names
    (:meth:`CertificateStore.select`). A failed check aborts the handshake with a
    bad_certificate alert (QUIC error 0x12a). Use :attr:`handshake_confirmed`, not
    aioquic's ``HandshakeCompleted`` event, to know that both sides accepted each other.

    Args:
        configuration: from :func:`client_configuration` or :func:`server_configuration`.
        now_wall: returns the Unix time in seconds, for delegation-proof expiry.
        expected: (clients) the AID the server must prove.
        store: (servers) the local certificates to choose from by SNI.
        original_destination_connection_id: (servers) as for ``QuicConnection``.
        retry_source_connection_id: (servers) as for ``QuicConnection``.

    Raises:
        UsageError: ``expected``/``store`` missing or given to the wrong side, or a client
            configuration that would validate chains or resume a session.
    """

    def __init__(
        self,
        *,
        configuration: QuicConfiguration,
        now_wall: Callable[[], float],
        expected: Aid | None = None,
        store: CertificateStore | None = None,
        original_destination_connection_id: bytes | None = None,
        retry_source_connection_id: bytes | None = None,
    ) -> None:
        local_aid: Aid | None = None
        if configuration.is_client:
            if expected is None or store is not None:
                raise UsageError("a client connection takes expected= and no store=")
            if configuration.verify_mode != ssl.CERT_NONE:
                raise UsageError("A2AL clients pin AIDs: use verify_mode=ssl.CERT_NONE")
            if configuration.session_ticket is not None:
                raise UsageError("session resumption skips certificates; A2AL does not use it")
            if configuration.certificate is not None:
                local_aid = _claimed_aid(configuration.certificate)
        elif store is None or expected is not None:
            raise UsageError("a server connection takes store= and no expected=")
        self._a2al_expected = expected
        self._a2al_store = store
        self._a2al_now_wall = now_wall
        self._a2al_peer: PeerIdentity | None = None
        self._a2al_server_name: str | None = configuration.server_name
        self._a2al_local_aid = local_aid
        super().__init__(
            configuration=configuration,
            original_destination_connection_id=original_destination_connection_id,
            retry_source_connection_id=retry_source_connection_id,
        )

    # -- public, read-only --------------------------------------------------------------

    @property
    def handshake_confirmed(self) -> bool:
        """True once both sides accepted each other.

        A client is confirmed when the server's HANDSHAKE_DONE arrives (its own
        ``HandshakeCompleted`` comes earlier, before the server checked the client); a
        server when its handshake completed with a verified client certificate.
        """
        return self._handshake_confirmed and self._a2al_peer is not None

    @property
    def peer_identity(self) -> PeerIdentity | None:
        """The verified peer; None until :attr:`handshake_confirmed`."""
        return self._a2al_peer if self.handshake_confirmed else None

    @property
    def server_name(self) -> str | None:
        """The SNI: on a server what the client sent (None if absent), on a client what
        we sent."""
        return self._a2al_server_name

    @property
    def local_identity_aid(self) -> Aid | None:
        """The AID of the certificate we present: on a server the one chosen by SNI (None
        before the ClientHello), on a client the configured one (None if none)."""
        return self._a2al_local_aid

    def pending_send_bytes(self, stream_id: int) -> int:
        """See :func:`pending_send_bytes`."""
        return _aioquic_pending_send_bytes(self, stream_id)

    # -- aioquic hooks -----------------------------------------------------------------

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        self.tls.__class__ = _A2ALTlsContext
        ctx = cast(_A2ALTlsContext, self.tls)
        ctx.a2al_conn = self
        if not self.configuration.is_client:
            ctx._request_client_certificate = True

    def a2al_choose_certificate(self, ctx: tls.Context, server_name: str | None) -> None:
        """Server: present the certificate the SNI names (before aioquic answers)."""
        assert self._a2al_store is not None
        local = self._a2al_store.select(server_name)
        ctx.certificate = local.certificate
        ctx.certificate_private_key = local.private_key
        self._a2al_server_name = server_name
        self._a2al_local_aid = local.aid

    def a2al_verify_peer(self, cert: x509.Certificate | None) -> None:
        """Check the peer's leaf certificate; abort the handshake if it proves nothing."""
        if cert is None:
            raise tls.AlertBadCertificate("no peer certificate")
        now = self._a2al_now_wall()
        try:
            if self._a2al_expected is not None:
                peer = identify_server(cert, self._a2al_expected, now)
            else:
                peer = identify_client(cert, now)
        except VerificationError as exc:
            raise tls.AlertBadCertificate(str(exc)) from exc
        self._a2al_peer = peer


class _HasPendingSendBytes(Protocol):
    def pending_send_bytes(self, stream_id: int) -> int: ...


def pending_send_bytes(conn: QuicConnection | _HasPendingSendBytes, stream_id: int) -> int:
    """Bytes written to a stream that the peer has not acknowledged yet (0 if unknown).

    ``send_stream_data`` buffers without limit; writers wait while this is above their
    budget (aioquic keeps unacknowledged data in ``[_buffer_start, _buffer_stop)``). Another
    stack's connection answers itself (qh3: the bytes not sent yet).
    """
    if isinstance(conn, QuicConnection):
        return _aioquic_pending_send_bytes(conn, stream_id)
    return conn.pending_send_bytes(stream_id)


def _aioquic_pending_send_bytes(conn: QuicConnection, stream_id: int) -> int:
    stream = conn._streams.get(stream_id)
    if stream is None:
        return 0
    sender = stream.sender
    return sender._buffer_stop - sender._buffer_start
