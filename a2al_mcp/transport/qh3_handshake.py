"""qh3's TLS contexts for A2AL: the server handshake qh3 lacks and the client's checks (§5.1). Core.

qh3's TLS layer is Python (``qh3.tls``) and, as a server, cannot *request* a client
certificate: it never sends a CertificateRequest and has no states for the client's
Certificate and CertificateVerify. :class:`Qh3ServerTlsContext` adds them: it presents the
certificate the ClientHello's SNI names, sends a CertificateRequest for Ed25519, and requires
the client's Certificate and CertificateVerify before its Finished, as aioquic's server with
``_request_client_certificate``. Its handshake is the one A2AL uses and nothing else: a full
(EC)DHE handshake with X25519MLKEM768, X25519 or P-256 (no HelloRetryRequest), no PSK, no early
data, no session tickets, no ALPS. :class:`Qh3ClientTlsContext` checks the server's identity
right after qh3 checked the CertificateVerify signature.

Neither is ever constructed: the connections of :mod:`~a2al_mcp.transport.tls_qh3` hand the
context qh3 built to :meth:`Qh3ClientTlsContext.adopt` / :meth:`Qh3ServerTlsContext.adopt`,
which change its class, and answer the hooks of :class:`ClientHooks` / :class:`ServerHooks`
(which certificate to present, whether the peer's proves its AID).

Hostile handshakes (reading/issue 14): qh3 turns only ``tls.Alert`` into a CONNECTION_CLOSE;
anything else its TLS raises (a short message, a bad point, and for an X25519MLKEM768 share
of the wrong length a Rust *panic*, a ``BaseException``) would escape ``receive_datagram``
and leave the connection half-open. So both contexts check every key share's length before
any exchange (:func:`~a2al_mcp.transport.handshake_guard.key_share_ok`: X25519 32 bytes, P-256
65 uncompressed, X25519MLKEM768 1,216 from a client and 1,120 from a server), and turn any
other failure of a handshake message into an alert, as aioquic does; handshake messages
longer than :data:`~a2al_mcp.transport.handshake_guard.MAX_HANDSHAKE_MESSAGE` are refused
before they are buffered.

Part of the qh3 adapter: with :mod:`~a2al_mcp.transport.tls_qh3`, the only modules allowed to
touch qh3 private names (checked against qh3 2.1.0; the tests cover every one of them). This
one touches:

* ``tls.Context._client_handle_certificate_verify`` — overridden to check the server's
  identity after qh3 checked the signature; ``tls.Context._peer_certificate`` — read there;
* ``tls.Context._server_handle_hello`` — replaced (server) by
  :meth:`Qh3ServerTlsContext._server_handle_hello`, which uses the context's
  ``_cipher_suites``, ``_legacy_compression_methods``, ``_supported_versions``,
  ``_alpn_protocols`` and sets ``_enc_key`` / ``_dec_key`` through
  ``_setup_traffic_protection``, ``_next_dec_key`` and ``_expected_verify_data`` as qh3's own
  does, so that qh3's ``_server_handle_finished`` completes the handshake;
* ``tls.Context._receive_buffer`` — the partial-message buffer, read while the client's
  Certificate and CertificateVerify are handled and to cap a message's length;
* ``qh3._hazmat`` (``Buffer``, ``BufferReadError``, ``CryptoError``, the key exchanges) and
  ``qh3.tls._is_grease_value`` — building blocks of the server handshake;
* ``tls.Context._client_handle_hello`` — overridden (client) to check the length of the
  ServerHello's key share before qh3 exchanges; ``tls.Context._x25519_kyber_768_private_key``
  (and its X25519 and P-256/384/521 twins) — read there: which groups we offered.

This module imports qh3: only :mod:`~a2al_mcp.transport.tls_qh3` imports it, once it found
qh3 installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol, Self, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from qh3 import _hazmat as qh3_hazmat
from qh3 import tls as qh3_tls

from .handshake_guard import (
    X25519MLKEM768,
    contain_handshake_failure,
    handshake_message_too_long,
    key_share_ok,
)
from .quic_settings import ALPN

if TYPE_CHECKING:
    from .certificates import LocalCertificate

__all__ = [
    "ED25519",
    "ClientHooks",
    "Qh3ClientTlsContext",
    "Qh3ServerTlsContext",
    "ServerHooks",
]

ED25519: Final = 0x0807
"""TLS SignatureScheme ed25519; qh3's default list leaves EdDSA out."""

_SERVER_CONTEXT: Final = b"TLS 1.3, server CertificateVerify"
_CLIENT_CONTEXT: Final = b"TLS 1.3, client CertificateVerify"

# what the server waits for after its flight (qh3's state stays SERVER_EXPECT_FINISHED)
_EXPECT_CERTIFICATE: Final = 0
_EXPECT_CERTIFICATE_VERIFY: Final = 1
_EXPECT_FINISHED: Final = 2


class ClientHooks(Protocol):
    """What :class:`Qh3ClientTlsContext` asks of its connection."""

    def a2al_verify_peer(self, cert: Any) -> None:
        """Check the server's leaf certificate (a qh3 ``Certificate``, or None); raise an
        alert if it proves nothing."""
        ...


class ServerHooks(Protocol):
    """What :class:`Qh3ServerTlsContext` asks of its connection."""

    def a2al_choose_certificate(self, server_name: str | None) -> LocalCertificate:
        """The certificate to present for the ClientHello's SNI."""
        ...

    def a2al_verify_client(self, leaf: x509.Certificate) -> None:
        """Check the client's leaf certificate; raise an alert if it proves nothing."""
        ...


def _push_certificate_request(buf: Any) -> None:
    """A CertificateRequest (RFC 8446 §4.3.2): empty context, Ed25519 signatures only."""
    buf.push_uint8(qh3_tls.HandshakeType.CERTIFICATE_REQUEST)
    with qh3_tls.push_block(buf, 3):
        qh3_tls.push_opaque(buf, 1, b"")
        with (
            qh3_tls.push_block(buf, 2),
            qh3_tls.push_extension(buf, qh3_tls.ExtensionType.SIGNATURE_ALGORITHMS),
        ):
            qh3_tls.push_list(buf, 2, buf.push_uint16, [ED25519])


_KEY_EXCHANGES: Final[dict[int, Callable[[], Any]]] = {
    qh3_tls.Group.X25519ML768: qh3_hazmat.X25519ML768KeyExchange,
    qh3_tls.Group.X25519: qh3_hazmat.X25519KeyExchange,
    qh3_tls.Group.SECP256R1: qh3_hazmat.ECDHP256KeyExchange,
}


def _check_key_share(group: int, share: bytes, *, from_client: bool) -> None:
    """Refuse a key share whose length is wrong for its group, before any exchange
    (qh3's X25519MLKEM768 panics on a short one); illegal_parameter as aioquic."""
    if not key_share_ok(group, share, from_client=from_client):
        who = "ClientHello" if from_client else "ServerHello"
        raise qh3_tls.AlertIllegalParameter(f"{who} has an invalid key share")


def _key_exchange(hello: Any) -> tuple[int, bytes, bytes]:
    """(group, our key share, shared secret) for the first key share of the client's
    we support (as qh3 does; no HelloRetryRequest)."""
    for group, peer_key in hello.key_share or ():
        kx_class = _KEY_EXCHANGES.get(group)
        if kx_class is None:
            continue
        _check_key_share(group, peer_key, from_client=True)
        kx = kx_class()
        try:
            shared = kx.exchange(peer_key)
            ours = kx.shared_ciphertext() if group == X25519MLKEM768 else kx.public_key()
        except qh3_hazmat.CryptoError as exc:  # not a point of the group, or all zeros
            raise qh3_tls.AlertIllegalParameter("ClientHello has an invalid key share") from exc
        return group, ours, shared
    raise qh3_tls.AlertHandshakeFailure("No supported key share group in ClientHello")


def _as_alert(exc: BaseException) -> qh3_tls.Alert:
    """The alert for a failure of a handshake message that qh3 did not turn into one."""
    if isinstance(exc, ValueError):  # BufferReadError and friends: a garbled message
        return qh3_tls.AlertDecodeError(f"Could not parse TLS message: {exc!r}")
    if isinstance(exc, qh3_hazmat.CryptoError):
        return qh3_tls.AlertIllegalParameter(f"invalid handshake value: {exc!r}")
    return qh3_tls.AlertHandshakeFailure(f"handshake failed: {type(exc).__name__}")


def _handle_alerting(handle: Callable[[], None]) -> None:
    """Run ``handle`` (a context's ``handle_message``) so that it fails only with an
    alert, which qh3 sends in a CONNECTION_CLOSE (cancellation and exit propagate)."""
    contain_handshake_failure(handle, alert=qh3_tls.Alert, as_alert=_as_alert)


class _AlertNoApplicationProtocol(qh3_tls.Alert):
    description = qh3_tls.AlertDescription.no_application_protocol


class Qh3ClientTlsContext(qh3_tls.Context):
    """qh3's client TLS context with the A2AL server check. Never constructed: a client
    connection hands the context qh3 built to :meth:`adopt`."""

    a2al_conn: ClientHooks

    @classmethod
    def adopt(cls, ctx: qh3_tls.Context, conn: ClientHooks) -> Self:
        """Make qh3's client context ``ctx`` one of ours, asking ``conn`` about the server."""
        ctx.__class__ = cls
        ours = cast(Self, ctx)
        ours.a2al_conn = conn
        return ours

    def handle_message(
        self, input_data: bytes, output_buf: dict[Any, Any], epoch: int = -1
    ) -> None:
        _handle_alerting(lambda: super(Qh3ClientTlsContext, self).handle_message(
            input_data, output_buf, epoch))  # fmt: skip
        if handshake_message_too_long(self._receive_buffer):
            raise qh3_tls.AlertUnexpectedMessage("handshake message too long")

    def _client_handle_hello(self, input_buf: Any, output_buf: Any) -> None:
        # qh3 exchanges without checking the share (a short X25519MLKEM768 one panics)
        hello = qh3_tls.pull_server_hello(
            qh3_hazmat.Buffer(data=input_buf.data_slice(0, input_buf.capacity))
        )
        if hello.key_share is not None:
            group, share = hello.key_share
            offered = {
                X25519MLKEM768: self._x25519_kyber_768_private_key,
                qh3_tls.Group.X25519: self._x25519_private_key,
                qh3_tls.Group.SECP256R1: self._ec_p256_private_key,
                qh3_tls.Group.SECP384R1: self._ec_p384_private_key,
                qh3_tls.Group.SECP521R1: self._ec_p521_private_key,
            }
            if offered.get(group) is None:
                raise qh3_tls.AlertIllegalParameter(
                    "ServerHello selected a key share group we did not offer"
                )
            _check_key_share(group, share, from_client=False)
        super()._client_handle_hello(input_buf, output_buf)

    def _client_handle_certificate_verify(self, input_buf: Any) -> None:
        super()._client_handle_certificate_verify(input_buf)  # signature: possession
        self.a2al_conn.a2al_verify_peer(self._peer_certificate)


class Qh3ServerTlsContext(qh3_tls.Context):
    """qh3's server TLS context with A2AL's mutual authentication. Never constructed: a
    server connection hands the context qh3 built to :meth:`adopt`."""

    a2al_conn: ServerHooks
    a2al_expect: int
    a2al_leaf: x509.Certificate | None

    @classmethod
    def adopt(cls, ctx: qh3_tls.Context, conn: ServerHooks) -> Self:
        """Make qh3's server context ``ctx`` one of ours, asking ``conn`` which certificate
        to present and whether the client's proves its AID."""
        ctx.__class__ = cls
        ours = cast(Self, ctx)
        ours.a2al_conn = conn
        ours.a2al_expect = _EXPECT_CERTIFICATE
        ours.a2al_leaf = None
        return ours

    def handle_message(
        self, input_data: bytes, output_buf: dict[Any, Any], epoch: int = -1
    ) -> None:
        _handle_alerting(lambda: self._a2al_handle_message(input_data, output_buf, epoch))
        if handshake_message_too_long(self._receive_buffer):
            raise qh3_tls.AlertUnexpectedMessage("handshake message too long")

    def _a2al_handle_message(
        self, input_data: bytes, output_buf: dict[Any, Any], epoch: int
    ) -> None:
        if (
            self.state != qh3_tls.State.SERVER_EXPECT_FINISHED
            or self.a2al_expect == _EXPECT_FINISHED
        ):
            super().handle_message(input_data, output_buf, epoch)
            return
        # the client's Certificate and CertificateVerify; qh3 takes it from Finished on
        self._receive_buffer += input_data
        while self.a2al_expect != _EXPECT_FINISHED and len(self._receive_buffer) >= 4:
            length = 4 + int.from_bytes(self._receive_buffer[1:4], "big")
            if len(self._receive_buffer) < length:
                return
            message = self._receive_buffer[:length]
            self._receive_buffer = self._receive_buffer[length:]
            if epoch >= 0 and epoch != qh3_tls.Epoch.HANDSHAKE:
                raise qh3_tls.AlertUnexpectedMessage
            buf = qh3_hazmat.Buffer(data=message)
            if self.a2al_expect == _EXPECT_CERTIFICATE:
                self._a2al_handle_certificate(buf)
            else:
                self._a2al_handle_certificate_verify(buf)
            if not buf.eof():
                raise qh3_tls.AlertDecodeError("extra bytes at the end of a handshake message")
        if self.a2al_expect == _EXPECT_FINISHED and self._receive_buffer:
            super().handle_message(b"", output_buf, epoch)

    def _server_handle_hello(
        self, input_buf: Any, initial_buf: Any, handshake_buf: Any, onertt_buf: Any
    ) -> None:
        hello = qh3_tls.pull_client_hello(input_buf)
        cipher_suite = qh3_tls.negotiate(
            self._cipher_suites,
            hello.cipher_suites,
            qh3_tls.AlertHandshakeFailure("No supported cipher suite"),
            excl_fn=qh3_tls._is_grease_value,  # noqa: SLF001
        )
        compression_method = qh3_tls.negotiate(
            self._legacy_compression_methods,
            hello.legacy_compression_methods,
            qh3_tls.AlertHandshakeFailure("No supported compression method"),
        )
        qh3_tls.negotiate(
            [ED25519],
            hello.signature_algorithms,
            qh3_tls.AlertHandshakeFailure("No supported signature algorithm"),
        )
        supported_version = qh3_tls.negotiate(
            self._supported_versions,
            hello.supported_versions,
            qh3_tls.AlertProtocolVersion("No supported protocol version"),
        )
        self.alpn_negotiated = qh3_tls.negotiate(
            [ALPN],
            hello.alpn_protocols,
            _AlertNoApplicationProtocol("No common ALPN protocols"),  # RFC 9001 §8.1
        )
        local = self.a2al_conn.a2al_choose_certificate(hello.server_name)
        self.client_random = hello.random
        # qh3's own server draws it so (as aioquic does); TLS randomness is never seeded
        self.server_random = os.urandom(32)  # noqa: TID251
        self.legacy_session_id = hello.legacy_session_id
        self.received_extensions = hello.other_extensions
        if self.alpn_cb:
            self.alpn_cb(self.alpn_negotiated)  # qh3's bridge reads transport parameters

        ks = self.key_schedule = qh3_tls.KeySchedule(cipher_suite)
        ks.extract(None)
        ks.update_hash(input_buf.data)
        group, our_share, shared = _key_exchange(hello)
        with qh3_tls.push_message(ks, initial_buf):
            qh3_tls.push_server_hello(
                initial_buf,
                qh3_tls.ServerHello(
                    random=self.server_random,
                    legacy_session_id=self.legacy_session_id,
                    cipher_suite=cipher_suite,
                    compression_method=compression_method,
                    key_share=(group, our_share),
                    supported_version=supported_version,
                ),
            )
        ks.extract(shared)
        self._setup_traffic_protection(
            qh3_tls.Direction.ENCRYPT, qh3_tls.Epoch.HANDSHAKE, b"s hs traffic"
        )
        self._setup_traffic_protection(
            qh3_tls.Direction.DECRYPT, qh3_tls.Epoch.HANDSHAKE, b"c hs traffic"
        )
        with qh3_tls.push_message(ks, handshake_buf):
            qh3_tls.push_encrypted_extensions(
                handshake_buf,
                qh3_tls.EncryptedExtensions(
                    alpn_protocol=self.alpn_negotiated,
                    other_extensions=self.handshake_extensions,
                ),
            )
        with qh3_tls.push_message(ks, handshake_buf):
            _push_certificate_request(handshake_buf)
        with qh3_tls.push_message(ks, handshake_buf):
            qh3_tls.push_certificate(
                handshake_buf,
                qh3_tls.Certificate(
                    certificates=[(local.certificate.public_bytes(serialization.Encoding.DER), b"")]
                ),
            )
        signature = local.private_key.sign(ks.certificate_verify_data(_SERVER_CONTEXT))
        with qh3_tls.push_message(ks, handshake_buf):
            qh3_tls.push_certificate_verify(
                handshake_buf, qh3_tls.CertificateVerify(ED25519, signature)
            )
        assert self._enc_key is not None  # set just above
        with qh3_tls.push_message(ks, handshake_buf):
            qh3_tls.push_finished(
                handshake_buf, qh3_tls.Finished(ks.finished_verify_data(self._enc_key))
            )
        # application secrets: transcript up to our Finished (RFC 8446 §7.1)
        ks.extract(None)
        self._setup_traffic_protection(
            qh3_tls.Direction.ENCRYPT, qh3_tls.Epoch.ONE_RTT, b"s ap traffic"
        )
        self._next_dec_key = ks.derive_secret(b"c ap traffic")
        self.a2al_expect = _EXPECT_CERTIFICATE
        self.a2al_leaf = None
        self._set_state(qh3_tls.State.SERVER_EXPECT_FINISHED)

    def _a2al_handle_certificate(self, input_buf: Any) -> None:
        certificate = qh3_tls.pull_certificate(input_buf)
        if certificate.request_context:
            raise qh3_tls.AlertIllegalParameter("unexpected certificate request context")
        if not certificate.certificates:
            raise qh3_tls.AlertBadCertificate("client certificate required")
        try:  # every entry, as aioquic: junk after a valid leaf is refused too
            chain = [x509.load_der_x509_certificate(der) for der, _ in certificate.certificates]
        except ValueError as exc:
            raise qh3_tls.AlertBadCertificate(f"unreadable client certificate: {exc}") from exc
        self.a2al_leaf = chain[0]
        self._a2al_key_schedule().update_hash(input_buf.data)
        self.a2al_expect = _EXPECT_CERTIFICATE_VERIFY

    def _a2al_handle_certificate_verify(self, input_buf: Any) -> None:
        verify = qh3_tls.pull_certificate_verify(input_buf)
        ks = self._a2al_key_schedule()
        leaf = self.a2al_leaf
        assert leaf is not None
        try:
            key = leaf.public_key()
        except (UnsupportedAlgorithm, ValueError) as exc:  # a key algorithm we cannot read
            raise qh3_tls.AlertBadCertificate(f"client certificate key: {exc}") from exc
        if verify.algorithm != ED25519 or not isinstance(key, Ed25519PublicKey):
            raise qh3_tls.AlertBadCertificate("client certificate is not Ed25519")
        try:  # possession of the certificate's key, over the transcript so far
            key.verify(verify.signature, ks.certificate_verify_data(_CLIENT_CONTEXT))
        except InvalidSignature as exc:
            raise qh3_tls.AlertDecryptError("bad client CertificateVerify") from exc
        self.a2al_conn.a2al_verify_client(leaf)
        ks.update_hash(input_buf.data)
        # what qh3's _server_handle_finished compares the client's Finished with
        assert self._dec_key is not None  # the client handshake secret
        self._expected_verify_data = ks.finished_verify_data(self._dec_key)
        self.a2al_expect = _EXPECT_FINISHED

    def _a2al_key_schedule(self) -> qh3_tls.KeySchedule:
        assert self.key_schedule is not None  # made with the ServerHello
        return self.key_schedule
