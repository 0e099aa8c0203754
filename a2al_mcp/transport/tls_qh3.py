"""qh3 as the QUIC stack of outbound connections (a2al-wire §5.1). Core.

qh3 mirrors aioquic's sans-I/O ``QuicConnection`` API over a Rust packet core, and sends data
several times cheaper than aioquic (reading/quic-perf.md §2.3). It cannot *request* a client
certificate, so it never accepts connections here: :class:`Qh3ClientConnection` only dials,
and inbound connections stay on aioquic (:class:`~a2al_mcp.transport.tls.A2ALQuicConnection`).

A :class:`Qh3ClientConnection` authenticates exactly like an aioquic client:

* it presents the local identity's certificate when the server asks (the A2AL certificate of
  :func:`~a2al_mcp.transport.tls.make_certificate`, converted to qh3's key types);
* it checks the server's leaf certificate **inside** the handshake, right after qh3 checked
  the CertificateVerify signature, with :func:`~a2al_mcp.transport.tls.identify_server`; a
  failure aborts the handshake with bad_certificate (QUIC error 0x12a) before our Finished;
* :attr:`Qh3ClientConnection.handshake_confirmed` waits for the server's HANDSHAKE_DONE, i.e.
  for the server to have accepted our certificate.

Its events are handed out as aioquic event objects, so :mod:`~a2al_mcp.transport.quic_host`
and :mod:`~a2al_mcp.transport.session` need not know which stack runs.

Like :mod:`~a2al_mcp.transport.tls` for aioquic, this is the **only** module allowed to touch
qh3 private names (checked against qh3 2.1.0; the tests cover every one of them):

* ``QuicConnection._create_tls`` — overridden to swap our ``tls.Context`` subclass in right
  after qh3 builds it (it is rebuilt on Retry and version negotiation, and so swapped again);
* ``QuicConnection._handshake_confirmed`` — read: set when HANDSHAKE_DONE arrived;
* ``QuicConnection._tls`` (the TLS bridge) and its public ``tls`` attribute — the context;
* ``tls.Context._client_handle_certificate_verify`` — overridden to check the server's
  identity after qh3 checked the signature; ``tls.Context._peer_certificate`` — read there.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast

from aioquic.quic import events as aq_events
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import VerificationError
from .tls import (
    ALPN,
    IDLE_TIMEOUT_S,
    MAX_DATA,
    MAX_DATAGRAM_SIZE,
    MAX_STREAM_DATA,
    LocalCertificate,
    PeerIdentity,
    identify_server,
)

try:
    from qh3 import tls as qh3_tls
    from qh3.quic import events as qh3_events
    from qh3.quic.configuration import QuicConfiguration as Qh3Configuration
    from qh3.quic.connection import QuicConnection as Qh3Connection
except ImportError:  # pragma: no cover - qh3 is a dependency; this keeps the node usable
    AVAILABLE = False
else:
    AVAILABLE = True

if TYPE_CHECKING:
    from ..identity import Aid

__all__ = ["AVAILABLE", "Qh3ClientConnection", "qh3_client_connection"]

_ED25519: Final = 0x0807
"""TLS SignatureScheme ed25519; qh3's default list leaves EdDSA out."""


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
    config = Qh3Configuration(
        is_client=True,
        alpn_protocols=[ALPN],
        server_name=str(expected),
        verify_mode=ssl.CERT_NONE,
        idle_timeout=idle_timeout,
        max_datagram_size=max_datagram_size,
        # DPLPMTUD (RFC 8899), as quic-go in a2ald: start at max_datagram_size and grow only
        # once a padded probe was acknowledged (up to about 1450 bytes), so it is safe on any
        # path; fewer, larger packets are most of what an aioquic receiver pays for
        probe_datagram_size=True,
        max_data=MAX_DATA,
        max_stream_data=MAX_STREAM_DATA,
        signature_algorithms=[
            _ED25519,
            *(int(a) for a in qh3_tls.SignatureAlgorithm if int(a) != _ED25519),
        ],
    )
    if local is not None:
        pem = local.certificate.public_bytes(serialization.Encoding.PEM)
        key = local.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        config.certificate = qh3_tls.load_pem_x509_certificates(pem)[0]
        config.private_key = qh3_tls.load_pem_private_key(key)
    return Qh3ClientConnection(
        configuration=config, now_wall=now_wall, expected=expected, local=local
    )


if AVAILABLE:

    class _Qh3TlsContext(qh3_tls.Context):
        """qh3's client TLS context with the A2AL server check. Never constructed:
        :meth:`Qh3ClientConnection._create_tls` changes the class of qh3's context."""

        _a2al_conn: Qh3ClientConnection

        def _client_handle_certificate_verify(self, input_buf: Any) -> None:
            super()._client_handle_certificate_verify(input_buf)  # signature: possession
            self._a2al_conn._a2al_verify_peer(self._peer_certificate)

    class Qh3ClientConnection(Qh3Connection):
        """A qh3 ``QuicConnection`` (client only) with A2AL server authentication, whose
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
            self._a2al_peer: PeerIdentity | None = None
            self._a2al_local_aid = None if local is None else local.aid
            super().__init__(configuration=configuration)

        @property
        def handshake_confirmed(self) -> bool:
            """True once the server's HANDSHAKE_DONE arrived and its certificate proved
            the expected AID."""
            return self._handshake_confirmed and self._a2al_peer is not None

        @property
        def peer_identity(self) -> PeerIdentity | None:
            """The verified server; None until :attr:`handshake_confirmed`."""
            return self._a2al_peer if self.handshake_confirmed else None

        @property
        def server_name(self) -> str | None:
            """The SNI we sent (the expected AID)."""
            return str(self._a2al_expected)

        @property
        def local_identity_aid(self) -> Aid | None:
            """The AID of the certificate we present (None if none)."""
            return self._a2al_local_aid

        def pending_send_bytes(self, stream_id: int) -> int:
            """Bytes written to ``stream_id`` that were not sent yet."""
            return self.get_send_buffer_size(stream_id)

        def next_event(self) -> Any:
            event = super().next_event()
            if event is None:
                return None
            mapped = _EVENTS.get(type(event))
            if mapped is None:
                return self.next_event()  # an event aioquic does not have: nobody reads it
            cls, names = mapped
            return cls(**{name: getattr(event, name) for name in names})

        def _create_tls(self, remote_source_cid: bytes | None) -> Any:
            bridge = super()._create_tls(remote_source_cid)
            bridge.tls.__class__ = _Qh3TlsContext
            cast(_Qh3TlsContext, bridge.tls)._a2al_conn = self
            return bridge

        def _a2al_verify_peer(self, cert: Any) -> None:
            if cert is None:
                raise qh3_tls.AlertBadCertificate("no peer certificate")
            try:
                leaf = x509.load_der_x509_certificate(cert.public_bytes())
                peer = identify_server(leaf, self._a2al_expected, self._a2al_now_wall())
            except (ValueError, VerificationError) as exc:
                raise qh3_tls.AlertBadCertificate(str(exc)) from exc
            self._a2al_peer = peer
