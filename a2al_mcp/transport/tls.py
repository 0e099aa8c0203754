"""aioquic as the QUIC stack of our connections: configuration and handshake glue (§5.1). Core.

Both sides of an A2AL QUIC connection present the self-signed Ed25519 certificate of a local
identity (:mod:`~a2al_mcp.transport.certificates`) and check the peer's inside the handshake
(:mod:`~a2al_mcp.transport.peer_identity`). This module fits both into aioquic:

* :func:`client_configuration` / :func:`server_configuration` build the
  ``QuicConfiguration`` (with the settings of :mod:`~a2al_mcp.transport.quic_settings`), and
  :class:`A2ALQuicConnection` is a ``QuicConnection`` that requests, requires and verifies
  certificates during the handshake, presenting the one the client's SNI names;
* :func:`pending_send_bytes` reads how much a stream has buffered.

The certificate and peer-check names (:func:`make_certificate`, :class:`CertificateStore`,
:func:`identify_server`, ...) and the shared settings are re-exported here, where they lived
first. This module is sans-I/O: wall-clock time comes in as a ``now_wall`` callable.

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

import ssl
from collections.abc import Callable
from typing import Final, Protocol, cast

from aioquic import tls
from aioquic._buffer import Buffer  # aioquic.buffer re-exports it implicitly (mypy)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from cryptography import x509

from ..errors import UsageError, VerificationError
from ..identity import Aid
from .certificates import (
    CERT_BACKDATE_S,
    CERT_LIFETIME_S,
    DELEGATION_OID,
    CertificateStore,
    DelegationExtension,
    LocalCertificate,
    make_certificate,
)
from .handshake_guard import (
    MAX_HANDSHAKE_MESSAGE,
    contain_handshake_failure,
    handshake_message_too_long,
)
from .peer_identity import PeerIdentity, claimed_aid, identify_client, identify_server
from .quic_settings import ALPN, IDLE_TIMEOUT_S, MAX_DATA, MAX_DATAGRAM_SIZE, MAX_STREAM_DATA

__all__ = [
    "ALPN",
    "CERT_BACKDATE_S",
    "CERT_LIFETIME_S",
    "DELEGATION_OID",
    "IDLE_TIMEOUT_S",
    "MAX_DATA",
    "MAX_DATAGRAM_SIZE",
    "MAX_HANDSHAKE_MESSAGE",
    "MAX_STREAM_DATA",
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

_PEEK_ERRORS: Final = (ValueError, tls.Alert, AssertionError)
"""What aioquic's TLS parsers raise on garbage: BufferReadError is a ValueError, and
AssertionError means a wrong message type."""


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


def _as_alert(exc: BaseException) -> tls.Alert:
    """The alert for a failure of a handshake message that aioquic did not turn into one."""
    if isinstance(exc, ValueError):  # BufferReadError and friends: a garbled message
        return tls.AlertDecodeError(f"Could not parse TLS message: {exc!r}")
    return tls.AlertHandshakeFailure(f"handshake failed: {type(exc).__name__}")


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
        contain_handshake_failure(
            lambda: super(_A2ALTlsContext, self).handle_message(input_data, output_buf),
            alert=tls.Alert,
            as_alert=_as_alert,
        )
        if handshake_message_too_long(self._receive_buffer):
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
                local_aid = claimed_aid(configuration.certificate)
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
