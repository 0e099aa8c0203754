"""qh3 as the QUIC stack of our connections, both ways (a2al-wire §5.1). Core.

qh3 mirrors aioquic's sans-I/O ``QuicConnection`` API over a Rust packet core and moves data
several times cheaper than aioquic (reading/quic-perf.md §2.3). Its TLS layer is Python
(``qh3.tls``) and, as a server, cannot *request* a client certificate;
:mod:`~a2al_mcp.transport.qh3_handshake` adds what is missing, so qh3 can accept A2AL
connections too. This module makes the connections:

:class:`Qh3ClientConnection` (dialling) authenticates exactly like the aioquic client:

* it presents the local identity's certificate when the server asks (the A2AL certificate of
  :func:`~a2al_mcp.transport.certificates.make_certificate`, converted to qh3's key types);
* it checks the server's leaf certificate **inside** the handshake, right after qh3 checked
  the CertificateVerify signature, with
  :func:`~a2al_mcp.transport.peer_identity.identify_server`; a failure aborts the handshake
  with bad_certificate (QUIC error 0x12a) before our Finished;
* :attr:`Qh3ClientConnection.handshake_confirmed` waits for the server's HANDSHAKE_DONE, i.e.
  for the server to have accepted our certificate.

:class:`Qh3ServerConnection` (accepting) answers like the aioquic server with
``_request_client_certificate``: it presents the certificate the ClientHello's SNI names
(:meth:`~a2al_mcp.transport.certificates.CertificateStore.select`), sends a CertificateRequest
for Ed25519, and requires the client's Certificate and CertificateVerify before its Finished:
an empty Certificate, a bad signature or a certificate that proves nothing
(:func:`~a2al_mcp.transport.peer_identity.identify_client`, delegation proof included) aborts
the handshake (:class:`~a2al_mcp.transport.qh3_handshake.Qh3ServerTlsContext`).

Events of both are handed out as aioquic event objects, so
:mod:`~a2al_mcp.transport.quic_host` and :mod:`~a2al_mcp.transport.session` need not know
which stack runs.

Like :mod:`~a2al_mcp.transport.tls` for aioquic, this module and
:mod:`~a2al_mcp.transport.qh3_handshake` (which lists its own) are the **only** modules allowed
to touch qh3 private names (checked against qh3 2.1.0; the tests cover every one of them).
This one touches:

* ``QuicConnection._create_tls`` — overridden to swap our ``tls.Context`` subclasses in right
  after qh3 builds it (it is rebuilt on Retry and version negotiation, and so swapped again);
* ``QuicConnection._handshake_confirmed`` — read: set when HANDSHAKE_DONE arrived (client) or
  the handshake completed (server);
* ``QuicConnection._close_event`` — read: set once the connection is closing (locally, by
  the peer or by an error), after which writes are dropped as aioquic does;
* ``QuicConnection._call_core``, ``_core``, ``_configuration``, ``_handshake_complete`` and
  ``qh3._hazmat.pull_quic_header`` — in :class:`Qh3ServerConnection`'s mending of qh3's
  anti-amplification stall (credit whole datagrams; "capacity exhausted" means wait);
* ``QuicConnection._core`` (its ``poll_transmit`` and ``receive_many_datagrams``),
  ``_drain_core``, ``_quic_logger``, ``_log_datagram`` and ``_log_packets`` — in the
  per-datagram paths, which skip qh3's logging work when there is no logger;
* ``qh3._hazmat`` (``Certificate``, ``Ed25519PrivateKey``) — our certificate as qh3 objects.

The key share limits (:data:`KEY_SHARE_LENGTHS`, :data:`X25519MLKEM768` and its share
lengths) are :mod:`~a2al_mcp.transport.handshake_guard`'s, re-exported here.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from aioquic.quic import events as aq_events
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import VerificationError
from .certificates import CertificateStore, LocalCertificate
from .handshake_guard import (
    KEY_SHARE_LENGTHS,
    X25519MLKEM768,
    X25519MLKEM768_CLIENT_SHARE,
    X25519MLKEM768_SERVER_SHARE,
)
from .peer_identity import PeerIdentity, identify_client, identify_server
from .quic_settings import ALPN, IDLE_TIMEOUT_S, MAX_DATA, MAX_DATAGRAM_SIZE, MAX_STREAM_DATA

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
    from .qh3_handshake import ED25519, Qh3ClientTlsContext, Qh3ServerTlsContext

if TYPE_CHECKING:
    from ..identity import Aid

__all__ = [
    "AVAILABLE",
    "KEY_SHARE_LENGTHS",
    "X25519MLKEM768",
    "X25519MLKEM768_CLIENT_SHARE",
    "X25519MLKEM768_SERVER_SHARE",
    "CleanCloseFilter",
    "Qh3ClientConnection",
    "Qh3ServerConnection",
    "qh3_client_connection",
    "qh3_server_connection",
]


class CleanCloseFilter(logging.Filter):
    """qh3 logs every CONNECTION_CLOSE a peer sends at WARNING on its ``quic`` logger, the
    clean ones (error code 0, NO_ERROR: a node closing, a pool dropping an idle connection)
    too, so each ordinary close printed a warning. This filter drops exactly those; a close
    with an error code still shows."""

    MESSAGE: Final = "Native peer close: %r"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != self.MESSAGE or not isinstance(record.args, tuple) or not record.args:
            return True
        native = record.args[0]
        return not (isinstance(native, tuple) and len(native) > 2 and native[2] == 0)


if AVAILABLE:
    logging.getLogger("quic").addFilter(CleanCloseFilter())

_CAPACITY_EXHAUSTED: Final = "packet builder capacity exhausted"
"""qh3's core error when a frame does not fit the datagram (see Qh3ServerConnection)."""


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
            ED25519,
            *(int(a) for a in qh3_tls.SignatureAlgorithm if int(a) != ED25519),
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


if AVAILABLE:

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
            Qh3ClientTlsContext.adopt(bridge.tls, self)
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
            Qh3ServerTlsContext.adopt(bridge.tls, self)
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
