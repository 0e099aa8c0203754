"""qh3 as the QUIC stack of our connections, both ways (a2al-wire §5.1). Core.

qh3 mirrors aioquic's sans-I/O ``QuicConnection`` API over a Rust packet core and moves data
several times cheaper than aioquic (reading/quic-perf.md §2.3). Its TLS layer is Python
(``qh3.tls``) and, as a server, cannot *request* a client certificate: it never sends a
CertificateRequest and has no states for the client's Certificate and CertificateVerify. This
module adds them, so qh3 can accept A2AL connections too.

:class:`Qh3ClientConnection` (dialling) authenticates exactly like the aioquic client:

* it presents the local identity's certificate when the server asks (the A2AL certificate of
  :func:`~a2al_mcp.transport.tls.make_certificate`, converted to qh3's key types);
* it checks the server's leaf certificate **inside** the handshake, right after qh3 checked
  the CertificateVerify signature, with :func:`~a2al_mcp.transport.tls.identify_server`; a
  failure aborts the handshake with bad_certificate (QUIC error 0x12a) before our Finished;
* :attr:`Qh3ClientConnection.handshake_confirmed` waits for the server's HANDSHAKE_DONE, i.e.
  for the server to have accepted our certificate.

:class:`Qh3ServerConnection` (accepting) answers like the aioquic server with
``_request_client_certificate``: it presents the certificate the ClientHello's SNI names
(:meth:`~a2al_mcp.transport.tls.CertificateStore.select`), sends a CertificateRequest for
Ed25519, and requires the client's Certificate and CertificateVerify before its Finished: an
empty Certificate, a bad signature or a certificate that proves nothing
(:func:`~a2al_mcp.transport.tls.identify_client`, delegation proof included) aborts the
handshake. Its handshake is the one A2AL uses and nothing else: a full (EC)DHE handshake with
X25519MLKEM768, X25519 or P-256 (no HelloRetryRequest), no PSK, no early data, no session
tickets, no ALPS.

Events of both are handed out as aioquic event objects, so
:mod:`~a2al_mcp.transport.quic_host` and :mod:`~a2al_mcp.transport.session` need not know
which stack runs.

Like :mod:`~a2al_mcp.transport.tls` for aioquic, this is the **only** module allowed to touch
qh3 private names (checked against qh3 2.1.0; the tests cover every one of them):

* ``QuicConnection._create_tls`` — overridden to swap our ``tls.Context`` subclass in right
  after qh3 builds it (it is rebuilt on Retry and version negotiation, and so swapped again);
* ``QuicConnection._handshake_confirmed`` — read: set when HANDSHAKE_DONE arrived (client) or
  the handshake completed (server);
* ``QuicConnection._close_event`` — read: set once the connection is closing (locally, by
  the peer or by an error), after which writes are dropped as aioquic does;
* ``tls.Context._client_handle_certificate_verify`` — overridden to check the server's
  identity after qh3 checked the signature; ``tls.Context._peer_certificate`` — read there;
* ``tls.Context._server_handle_hello`` — replaced (server) by :meth:`_Qh3ServerTlsContext.
  _server_handle_hello`, which uses the context's ``_cipher_suites``,
  ``_legacy_compression_methods``, ``_supported_versions``, ``_alpn_protocols`` and sets
  ``_enc_key`` / ``_dec_key`` through ``_setup_traffic_protection``, ``_next_dec_key`` and
  ``_expected_verify_data`` as qh3's own does, so that qh3's ``_server_handle_finished``
  completes the handshake;
* ``tls.Context._receive_buffer`` — the partial-message buffer, read while the client's
  Certificate and CertificateVerify are handled;
* ``QuicConnection._call_core``, ``_core``, ``_configuration``, ``_handshake_complete`` and
  ``qh3._hazmat.pull_quic_header`` — in :class:`Qh3ServerConnection`'s mending of qh3's
  anti-amplification stall (credit whole datagrams; "capacity exhausted" means wait);
* ``QuicConnection._core`` (its ``poll_transmit`` and ``receive_many_datagrams``),
  ``_drain_core``, ``_quic_logger``, ``_log_datagram`` and ``_log_packets`` — in the
  per-datagram paths, which skip qh3's logging work when there is no logger;
* ``qh3._hazmat`` (``Buffer``, ``BufferReadError``, ``CryptoError``, ``Certificate``,
  ``Ed25519PrivateKey``, the key exchanges) and ``qh3.tls._is_grease_value`` — building
  blocks of the server handshake;
* ``tls.Context._client_handle_hello`` — overridden (client) to check the length of the
  ServerHello's key share before qh3 exchanges; ``tls.Context._x25519_kyber_768_private_key``
  (and its X25519 and P-256/384/521 twins) — read there: which groups we offered.

Hostile handshakes (reading/issue 14): qh3 turns only ``tls.Alert`` into a CONNECTION_CLOSE;
anything else its TLS raises (a short message, a bad point, and for an X25519MLKEM768 share
of the wrong length a Rust *panic*, a ``BaseException``) would escape ``receive_datagram``
and leave the connection half-open. So both contexts check every key share's length before
any exchange (X25519 32 bytes, P-256 65 uncompressed, X25519MLKEM768 1,216 from a client and
1,120 from a server: ML-KEM-768's encapsulation key or ciphertext followed by the X25519
share, draft-ietf-tls-ecdhe-mlkem), and turn any other failure of a handshake message into an
alert, as aioquic does; handshake messages longer than :data:`MAX_HANDSHAKE_MESSAGE` are
refused before they are buffered.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast

from aioquic.quic import events as aq_events
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .._containment import containable
from ..errors import VerificationError
from .tls import (
    ALPN,
    IDLE_TIMEOUT_S,
    MAX_DATA,
    MAX_DATAGRAM_SIZE,
    MAX_HANDSHAKE_MESSAGE,
    MAX_STREAM_DATA,
    CertificateStore,
    LocalCertificate,
    PeerIdentity,
    identify_client,
    identify_server,
)

try:
    from qh3 import _hazmat as qh3_hazmat
    from qh3 import tls as qh3_tls
    from qh3.quic import events as qh3_events
    from qh3.quic import packet as qh3_packet
    from qh3.quic.configuration import QuicConfiguration as Qh3Configuration
    from qh3.quic.connection import QuicConnection as Qh3Connection
    from qh3.quic.connection import QuicConnectionError as Qh3ConnectionError
except ImportError:  # pragma: no cover - qh3 is a dependency; this keeps the node usable
    AVAILABLE = False
else:
    AVAILABLE = True

if TYPE_CHECKING:
    from ..identity import Aid

__all__ = [
    "AVAILABLE",
    "Qh3ClientConnection",
    "Qh3ServerConnection",
    "qh3_client_connection",
    "qh3_server_connection",
]

_ED25519: Final = 0x0807
"""TLS SignatureScheme ed25519; qh3's default list leaves EdDSA out."""

_SERVER_CONTEXT: Final = b"TLS 1.3, server CertificateVerify"
_CLIENT_CONTEXT: Final = b"TLS 1.3, client CertificateVerify"

KEY_SHARE_LENGTHS: Final = {0x001D: 32, 0x0017: 65, 0x0018: 97, 0x0019: 133}
"""Key share length by group (RFC 8446 §4.2.8.2): X25519; P-256, P-384, P-521 uncompressed."""

X25519MLKEM768: Final = 0x11EC
X25519MLKEM768_CLIENT_SHARE: Final = 1184 + 32
"""ML-KEM-768 encapsulation key, then the X25519 share (draft-ietf-tls-ecdhe-mlkem §4.1)."""
X25519MLKEM768_SERVER_SHARE: Final = 1088 + 32
"""ML-KEM-768 ciphertext, then the X25519 share."""

_CAPACITY_EXHAUSTED: Final = "packet builder capacity exhausted"
"""qh3's core error when a frame does not fit the datagram (see Qh3ServerConnection)."""

# what the server waits for after its flight (qh3's state stays SERVER_EXPECT_FINISHED)
_EXPECT_CERTIFICATE: Final = 0
_EXPECT_CERTIFICATE_VERIFY: Final = 1
_EXPECT_FINISHED: Final = 2


def _to_aioquic_events() -> dict[type, tuple[type, tuple[str, ...]]]:
    table: dict[type, tuple[type, tuple[str, ...]]] = {}
    if not AVAILABLE:  # pragma: no cover
        return table
    for name in dir(aq_events):
        ours, theirs = getattr(aq_events, name), getattr(qh3_events, name, None)
        if isinstance(ours, type) and isinstance(theirs, type) and dataclasses.is_dataclass(ours):
            table[theirs] = (ours, tuple(f.name for f in dataclasses.fields(ours)))
    return table


_EVENTS: Final = _to_aioquic_events()


def _configuration(
    *, is_client: bool, idle_timeout: float, max_datagram_size: int, **kwargs: Any
) -> Qh3Configuration:
    """The settings both sides share with the aioquic ones (ALPN, flow-control windows)."""
    return Qh3Configuration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        idle_timeout=idle_timeout,
        max_datagram_size=max_datagram_size,
        # DPLPMTUD (RFC 8899), as quic-go in a2ald: start at max_datagram_size and grow only
        # once a padded probe was acknowledged (up to about 1450 bytes), so it is safe on any
        # path; fewer, larger packets are most of what a receiver pays for
        probe_datagram_size=True,
        max_data=MAX_DATA,
        max_stream_data=MAX_STREAM_DATA,
        **kwargs,
    )


def _qh3_credentials(local: LocalCertificate) -> tuple[Any, Any]:
    """``local``'s certificate and key as qh3 objects."""
    der = local.certificate.public_bytes(serialization.Encoding.DER)
    key = local.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return qh3_hazmat.Certificate(der), qh3_hazmat.Ed25519PrivateKey(key)


def qh3_client_connection(
    local: LocalCertificate | None,
    expected: Aid,
    *,
    now_wall: Callable[[], float],
    idle_timeout: float = IDLE_TIMEOUT_S,
    max_datagram_size: int = MAX_DATAGRAM_SIZE,
) -> Qh3ClientConnection:
    """A qh3 client connection dialling ``expected`` as ``local`` (the settings of
    :func:`~a2al_mcp.transport.tls.client_configuration`: SNI ``str(expected)``, ALPN, no
    chain validation but AID pinning, no session tickets, the same flow-control windows;
    and path MTU discovery, which aioquic lacks)."""
    config = _configuration(
        is_client=True,
        idle_timeout=idle_timeout,
        max_datagram_size=max_datagram_size,
        server_name=str(expected),
        verify_mode=ssl.CERT_NONE,
        signature_algorithms=[
            _ED25519,
            *(int(a) for a in qh3_tls.SignatureAlgorithm if int(a) != _ED25519),
        ],
    )
    if local is not None:
        config.certificate, config.private_key = _qh3_credentials(local)
    return Qh3ClientConnection(
        configuration=config, now_wall=now_wall, expected=expected, local=local
    )


def qh3_server_connection(
    store: CertificateStore,
    *,
    original_destination_connection_id: bytes,
    now_wall: Callable[[], float],
    idle_timeout: float = IDLE_TIMEOUT_S,
    max_datagram_size: int = MAX_DATAGRAM_SIZE,
) -> Qh3ServerConnection:
    """A qh3 server connection accepting for the identities in ``store`` (the settings of
    :func:`~a2al_mcp.transport.tls.server_configuration`, plus path MTU discovery).
    ``original_destination_connection_id`` is the DCID of the client's first INITIAL."""
    config = _configuration(
        is_client=False, idle_timeout=idle_timeout, max_datagram_size=max_datagram_size
    )
    # qh3 insists on a server certificate; the one the SNI names is chosen in the handshake
    config.certificate, config.private_key = _qh3_credentials(store.default)
    return Qh3ServerConnection(
        configuration=config,
        original_destination_connection_id=original_destination_connection_id,
        now_wall=now_wall,
        store=store,
    )


def _push_certificate_request(buf: Any) -> None:
    """A CertificateRequest (RFC 8446 §4.3.2): empty context, Ed25519 signatures only."""
    buf.push_uint8(qh3_tls.HandshakeType.CERTIFICATE_REQUEST)
    with qh3_tls.push_block(buf, 3):
        qh3_tls.push_opaque(buf, 1, b"")
        with (
            qh3_tls.push_block(buf, 2),
            qh3_tls.push_extension(buf, qh3_tls.ExtensionType.SIGNATURE_ALGORITHMS),
        ):
            qh3_tls.push_list(buf, 2, buf.push_uint16, [_ED25519])


if AVAILABLE:
    _KEY_EXCHANGES: Final[dict[int, Callable[[], Any]]] = {
        qh3_tls.Group.X25519ML768: qh3_hazmat.X25519ML768KeyExchange,
        qh3_tls.Group.X25519: qh3_hazmat.X25519KeyExchange,
        qh3_tls.Group.SECP256R1: qh3_hazmat.ECDHP256KeyExchange,
    }

    def _check_key_share(group: int, share: bytes, *, from_client: bool) -> None:
        """Refuse a key share whose length is wrong for its group, before any exchange
        (qh3's X25519MLKEM768 panics on a short one); illegal_parameter as aioquic."""
        if group == X25519MLKEM768:
            want = X25519MLKEM768_CLIENT_SHARE if from_client else X25519MLKEM768_SERVER_SHARE
        else:
            want = KEY_SHARE_LENGTHS.get(group, len(share))
        uncompressed = group in (0x0017, 0x0018, 0x0019)  # legacy_form 4 (RFC 8446 §4.2.8.2)
        if len(share) != want or (uncompressed and share[:1] != b"\x04"):
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

    def _handle_alerting(ctx: qh3_tls.Context, handle: Callable[[], None]) -> None:
        """Run ``handle`` (a context's ``handle_message``) so that it fails only with an
        alert, which qh3 sends in a CONNECTION_CLOSE (cancellation and exit propagate)."""
        try:
            handle()
        except qh3_tls.Alert:
            raise
        except BaseException as exc:
            if not containable(exc):
                raise
            raise _as_alert(exc) from exc
        pending = ctx._receive_buffer
        if len(pending) >= 4 and int.from_bytes(pending[1:4], "big") > MAX_HANDSHAKE_MESSAGE:
            raise qh3_tls.AlertUnexpectedMessage("handshake message too long")

    class _AlertNoApplicationProtocol(qh3_tls.Alert):
        description = qh3_tls.AlertDescription.no_application_protocol

    class _Qh3TlsContext(qh3_tls.Context):
        """qh3's client TLS context with the A2AL server check. Never constructed:
        :meth:`Qh3ClientConnection._create_tls` changes the class of qh3's context."""

        a2al_conn: Qh3ClientConnection

        def handle_message(
            self, input_data: bytes, output_buf: dict[Any, Any], epoch: int = -1
        ) -> None:
            _handle_alerting(self, lambda: super(_Qh3TlsContext, self).handle_message(
                input_data, output_buf, epoch))  # fmt: skip

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

    class _Qh3ServerTlsContext(qh3_tls.Context):
        """qh3's server TLS context with A2AL's mutual authentication. Never constructed:
        :meth:`Qh3ServerConnection._create_tls` changes the class of qh3's context."""

        a2al_conn: Qh3ServerConnection
        a2al_expect: int
        a2al_leaf: x509.Certificate | None

        def handle_message(
            self, input_data: bytes, output_buf: dict[Any, Any], epoch: int = -1
        ) -> None:
            _handle_alerting(self, lambda: self._a2al_handle_message(input_data, output_buf, epoch))

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
                excl_fn=qh3_tls._is_grease_value,
            )
            compression_method = qh3_tls.negotiate(
                self._legacy_compression_methods,
                hello.legacy_compression_methods,
                qh3_tls.AlertHandshakeFailure("No supported compression method"),
            )
            qh3_tls.negotiate(
                [_ED25519],
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
                        certificates=[
                            (local.certificate.public_bytes(serialization.Encoding.DER), b"")
                        ]
                    ),
                )
            signature = local.private_key.sign(ks.certificate_verify_data(_SERVER_CONTEXT))
            with qh3_tls.push_message(ks, handshake_buf):
                qh3_tls.push_certificate_verify(
                    handshake_buf, qh3_tls.CertificateVerify(_ED25519, signature)
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
            if verify.algorithm != _ED25519 or not isinstance(key, Ed25519PublicKey):
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

    class _Qh3Base(Qh3Connection):
        """What both qh3 connections add: the A2AL peer, aioquic events, send buffer."""

        _a2al_peer: PeerIdentity | None
        _a2al_local_aid: Aid | None

        @property
        def handshake_confirmed(self) -> bool:
            """True once both sides accepted each other: a client when the server's
            HANDSHAKE_DONE arrived, a server when its handshake completed; either way with
            a peer certificate that proved its AID."""
            return self._handshake_confirmed and self._a2al_peer is not None

        @property
        def peer_identity(self) -> PeerIdentity | None:
            """The verified peer; None until :attr:`handshake_confirmed`."""
            return self._a2al_peer if self.handshake_confirmed else None

        @property
        def local_identity_aid(self) -> Aid | None:
            """The AID of the certificate we present (None if none, or on a server before
            the ClientHello)."""
            return self._a2al_local_aid

        def pending_send_bytes(self, stream_id: int) -> int:
            """Bytes written to ``stream_id`` that were not sent yet."""
            if self._close_event is not None:
                return 0
            return self.get_send_buffer_size(stream_id)

        # Once a connection is closing, qh3's core raises on every write where aioquic takes
        # the bytes and drops them; the end is reported by ConnectionTerminated either way,
        # and a writer racing with it must not crash.

        def send_stream_data(self, stream_id: int, data: Any, end_stream: bool = False) -> None:
            if self._close_event is None:
                super().send_stream_data(stream_id, data, end_stream)

        def reset_stream(self, stream_id: int, error_code: int) -> None:
            if self._close_event is None:
                super().reset_stream(stream_id, error_code)

        def stop_stream(self, stream_id: int, error_code: int) -> None:
            if self._close_event is None:
                super().stop_stream(stream_id, error_code)

        # -- the per-datagram paths, without qh3's Python overhead ------------------------

        def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
            """As qh3's, which also parses every packet header again to log it, even
            without a logger (a sixth of a sending process)."""
            core = self._core
            if core is None:
                return []
            out: list[tuple[bytes, Any]] = []
            poll = core.poll_transmit
            try:
                while (transmit := poll(now)) is not None:
                    out.append((transmit[0], transmit[1]))
                    if self._quic_logger is not None:
                        self._log_datagram("datagrams_sent", transmit[0])
                        self._log_packets("packet_sent", transmit[0])
            except RuntimeError as exc:
                if not self._a2al_wait_on(exc):
                    raise Qh3ConnectionError(qh3_packet.QuicErrorCode.INTERNAL_ERROR, None,
                                             str(exc)) from exc  # fmt: skip
            return out

        def _a2al_wait_on(self, exc: RuntimeError) -> bool:
            """Whether an error of the core's ``poll_transmit`` only means "not now"."""
            return False

        def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
            if not self._a2al_take([data], addr, now):
                super().receive_datagram(data, addr, now)

        def receive_many_datagrams(self, datagrams: list[bytes], addr: Any, now: float) -> None:
            """Several datagrams from ``addr``: after the handshake the core takes them in
            one call; before it, one by one (as qh3's own)."""
            if not self._a2al_take(datagrams, addr, now):
                for data in datagrams:
                    self.receive_datagram(data, addr, now)

        def _a2al_take(self, datagrams: list[bytes], addr: Any, now: float) -> bool:
            """Once the handshake is done (and with no logger) the core takes whole
            datagrams in one call, as in qh3's receive_many_datagrams but without its
            per-datagram Python (no split into packets, no header parse). False before."""
            core = self._core
            if core is None or not self._handshake_complete or self._quic_logger is not None:
                return False
            self._call_core(core.receive_many_datagrams, datagrams, addr, now)
            self._drain_core()
            return True

        def next_event(self) -> Any:
            event = super().next_event()
            if event is None:
                return None
            mapped = _EVENTS.get(type(event))
            if mapped is None:
                return self.next_event()  # an event aioquic does not have: nobody reads it
            cls, names = mapped
            return cls(**{name: getattr(event, name) for name in names})

    class Qh3ClientConnection(_Qh3Base):
        """A qh3 ``QuicConnection`` (client) with A2AL server authentication, whose
        events are aioquic event objects. Interface as
        :class:`~a2al_mcp.transport.tls.A2ALQuicConnection`."""

        def __init__(
            self,
            *,
            configuration: Qh3Configuration,
            now_wall: Callable[[], float],
            expected: Aid,
            local: LocalCertificate | None,
        ) -> None:
            assert configuration.is_client and configuration.verify_mode == ssl.CERT_NONE
            self._a2al_expected = expected
            self._a2al_now_wall = now_wall
            self._a2al_peer = None
            self._a2al_local_aid = None if local is None else local.aid
            super().__init__(configuration=configuration)

        @property
        def server_name(self) -> str | None:
            """The SNI we sent (the expected AID)."""
            return str(self._a2al_expected)

        def _create_tls(self, remote_source_cid: bytes | None) -> Any:
            bridge = super()._create_tls(remote_source_cid)
            bridge.tls.__class__ = _Qh3TlsContext
            cast(_Qh3TlsContext, bridge.tls).a2al_conn = self
            return bridge

        def a2al_verify_peer(self, cert: Any) -> None:
            if cert is None:
                raise qh3_tls.AlertBadCertificate("no peer certificate")
            try:
                leaf = x509.load_der_x509_certificate(cert.public_bytes())
                peer = identify_server(leaf, self._a2al_expected, self._a2al_now_wall())
            except (ValueError, VerificationError) as exc:
                raise qh3_tls.AlertBadCertificate(str(exc)) from exc
            self._a2al_peer = peer

    class Qh3ServerConnection(_Qh3Base):
        """A qh3 ``QuicConnection`` (server) that requests, requires and verifies the
        client's certificate and presents the one the SNI names. Interface as
        :class:`~a2al_mcp.transport.tls.A2ALQuicConnection`."""

        def __init__(
            self,
            *,
            configuration: Qh3Configuration,
            original_destination_connection_id: bytes,
            now_wall: Callable[[], float],
            store: CertificateStore,
        ) -> None:
            assert not configuration.is_client
            self._a2al_store = store
            self._a2al_now_wall = now_wall
            self._a2al_peer = None
            self._a2al_local_aid = None
            self._a2al_server_name: str | None = None
            super().__init__(
                configuration=configuration,
                original_destination_connection_id=original_destination_connection_id,
            )

        @property
        def server_name(self) -> str | None:
            """The SNI the client sent (None if absent or before the ClientHello)."""
            return self._a2al_server_name

        # -- qh3 2.1.0's anti-amplification stall (reading/quic-perf.md §2.3, "700 ms") ---
        #
        # Before the client's address is validated a server may send 3x what it received
        # (RFC 9000 §8.1). qh3's Python layer hands its core one packet slice at a time and
        # the core credits only the slice, so bytes after the last packet (aioquic pads its
        # Initial datagram with zeros *after* the packet) never count: a 1200-byte aioquic
        # Initial holding a 560-byte packet buys 1680 bytes, not 3600. And when the budget
        # left is smaller than the next frame, the core's packet builder fails with
        # "capacity exhausted" instead of waiting, and qh3 loses the datagram it had built.
        # The handshake then stalls until the client's PTO (~700 ms). Both are mended here,
        # until the handshake completes (the path is validated from then on):
        # * trailing non-packet bytes go to the core together with the packet before them
        #   (the core processes the packet, credits the whole slice, ignores the rest);
        # * "capacity exhausted" from poll_transmit means "nothing more fits now" (qh3's
        #   builder is transactional: nothing was consumed).

        _a2al_rx: list[Any] | None = None
        """While a datagram is received before the handshake completed: [datagram, offset
        of the next packet slice]."""

        def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
            if self._handshake_complete:
                super().receive_datagram(data, addr, now)
                return
            self._a2al_rx = [bytes(data), 0]
            try:
                super().receive_datagram(data, addr, now)
            finally:
                self._a2al_rx = None

        def _call_core(self, operation: Callable[..., Any], *args: Any) -> Any:
            rx = self._a2al_rx
            if (
                rx is not None
                and self._core is not None
                and operation == self._core.receive_datagram
            ):
                data, offset = rx
                if offset >= len(data):  # the trailing bytes, already handed in: a no-op
                    return (1, len(args[0]), 0, 0, 0, 0)
                end = rx[1] = offset + len(args[0])
                if end < len(data) and not self._a2al_is_packet(data, end):
                    rx[1] = len(data)
                    args = (data[offset:], *args[1:])
            return super()._call_core(operation, *args)

        def _a2al_wait_on(self, exc: RuntimeError) -> bool:
            return not self._handshake_complete and str(exc) == _CAPACITY_EXHAUSTED

        def _a2al_is_packet(self, data: bytes, offset: int) -> bool:
            try:
                qh3_hazmat.pull_quic_header(data, offset, self._configuration.connection_id_length)
            except ValueError:
                return False
            return True

        def _create_tls(self, remote_source_cid: bytes | None) -> Any:
            bridge = super()._create_tls(remote_source_cid)
            bridge.tls.__class__ = _Qh3ServerTlsContext
            ctx = cast(_Qh3ServerTlsContext, bridge.tls)
            ctx.a2al_conn = self
            ctx.a2al_expect = _EXPECT_CERTIFICATE
            ctx.a2al_leaf = None
            return bridge

        def a2al_choose_certificate(self, server_name: str | None) -> LocalCertificate:
            local = self._a2al_store.select(server_name)
            self._a2al_server_name = server_name
            self._a2al_local_aid = local.aid
            return local

        def a2al_verify_client(self, leaf: x509.Certificate) -> None:
            try:
                self._a2al_peer = identify_client(leaf, self._a2al_now_wall())
            except VerificationError as exc:
                raise qh3_tls.AlertBadCertificate(str(exc)) from exc
